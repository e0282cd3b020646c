//! Request classification, as upstream's `RequestInfoFactory`: which API path, verb,
//! group/version, namespace, resource, name and subresource a request addresses.

use std::collections::HashMap;

use http::Method;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// False for non-resource paths (`/healthz`, `/version`, discovery, OpenAPI).
    pub is_resource: bool,
    /// Lower-case verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// `api` or `apis`.
    pub prefix: String,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub name: String,
    pub subresource: String,
    /// Segments after the subresource (proxy paths).
    pub rest: Vec<String>,
}

/// Subresources of a namespace object that are not resources inside it.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

pub fn parse(method: &Method, path: &str, query: &Query) -> RequestInfo {
    let mut info = RequestInfo {
        verb: method.as_str().to_ascii_lowercase(),
        ..Default::default()
    };
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let (prefix, rest) = match parts.first() {
        Some(&"api") if parts.len() >= 2 => ("api", &parts[1..]),
        Some(&"apis") if parts.len() >= 3 => ("apis", &parts[1..]),
        _ => return info,
    };
    info.prefix = prefix.to_string();
    let rest: &[&str] = if prefix == "api" {
        info.version = rest[0].to_string();
        &rest[1..]
    } else {
        info.group = rest[0].to_string();
        info.version = rest[1].to_string();
        &rest[2..]
    };
    if rest.is_empty() {
        return info;
    }
    info.is_resource = true;
    let mut rest = rest.to_vec();
    // Deprecated `/watch/` path prefix.
    let mut watch_path = false;
    if rest.first() == Some(&"watch") {
        watch_path = true;
        rest.remove(0);
    }
    if rest.first() == Some(&"namespaces") {
        if rest.len() > 1 {
            info.namespace = rest[1].to_string();
            if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
                rest.drain(0..2);
            }
        }
    } else {
        info.namespace = String::new();
    }
    if rest.is_empty() {
        info.is_resource = false;
        return info;
    }
    info.resource = rest[0].to_string();
    if rest.len() > 1 {
        info.name = rest[1].to_string();
    }
    if rest.len() > 2 {
        info.subresource = rest[2].to_string();
    }
    if rest.len() > 3 {
        info.rest = rest[3..].iter().map(|s| s.to_string()).collect();
    }
    // `namespaces/{name}` addresses the namespace object itself.
    if info.resource == "namespaces" {
        info.namespace = String::new();
    }
    let watch = watch_path || query.flag("watch");
    info.verb = match (method.clone(), info.name.is_empty()) {
        (Method::GET, _) if watch => "watch",
        (Method::GET, true) => "list",
        (Method::GET, false) => "get",
        (Method::HEAD, _) => "get",
        (Method::POST, _) => "create",
        (Method::PUT, _) => "update",
        (Method::PATCH, _) => "patch",
        (Method::DELETE, true) => "deletecollection",
        (Method::DELETE, false) => "delete",
        (m, _) => {
            return RequestInfo {
                verb: m.as_str().to_ascii_lowercase(),
                ..info
            }
        }
    }
    .to_string();
    info
}

/// Parsed query string (last value wins, except `command` which repeats for exec).
#[derive(Clone, Debug, Default)]
pub struct Query {
    values: HashMap<String, Vec<String>>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(raw) = raw {
            for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
                values
                    .entry(k.into_owned())
                    .or_default()
                    .push(v.into_owned());
            }
        }
        Query { values }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.values.get(key).cloned().unwrap_or_default()
    }

    /// `true`/`1` → true.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1") | Some("True"))
    }

    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: Method, path: &str, q: &str) -> RequestInfo {
        parse(&method, path, &Query::parse(Some(q)))
    }

    #[test]
    fn classifies_paths_as_upstream() {
        let cases: &[(Method, &str, &str, (&str, &str, &str, &str, &str, &str))] = &[
            (
                Method::GET,
                "/api/v1/pods",
                "",
                ("list", "", "", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/x",
                "",
                ("get", "", "default", "pods", "x", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                "watch=true",
                ("watch", "", "default", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/watch/namespaces/default/pods",
                "",
                ("watch", "", "default", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/kube-system",
                "",
                ("get", "", "", "namespaces", "kube-system", ""),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/x/finalize",
                "",
                ("update", "", "", "namespaces", "x", "finalize"),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/x/status",
                "",
                ("update", "", "", "namespaces", "x", "status"),
            ),
            (
                Method::POST,
                "/apis/apps/v1/namespaces/d/deployments",
                "",
                ("create", "apps", "d", "deployments", "", ""),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/d/deployments/w/scale",
                "",
                ("patch", "apps", "d", "deployments", "w", "scale"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/d/configmaps",
                "",
                ("deletecollection", "", "d", "configmaps", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/nodes/n1",
                "",
                ("get", "", "", "nodes", "n1", ""),
            ),
        ];
        for (m, path, q, want) in cases {
            let i = p(m.clone(), path, q);
            assert!(i.is_resource, "{path}");
            assert_eq!(
                (
                    i.verb.as_str(),
                    i.group.as_str(),
                    i.namespace.as_str(),
                    i.resource.as_str(),
                    i.name.as_str(),
                    i.subresource.as_str()
                ),
                *want,
                "{path}"
            );
        }
        assert!(!p(Method::GET, "/apis/apps/v1", "").is_resource);
        assert!(!p(Method::GET, "/version", "").is_resource);
    }
}
