//! Content negotiation: what the client sent (`Content-Type`) and wants (`Accept`).

use http::HeaderMap;

/// The response representation a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// `meta.k8s.io/v1 Table` (server-side printing).
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
}

pub fn accept(headers: &HeaderMap) -> Output {
    let Some(accept) = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return Output::Json;
    };
    for part in accept.split(',') {
        let part = part.trim();
        let (mime, params) = part.split_once(';').unwrap_or((part, ""));
        let params: Vec<(&str, &str)> = params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .collect();
        let has = |k: &str, v: &str| params.iter().any(|(pk, pv)| *pk == k && *pv == v);
        match mime.trim() {
            "application/json" if has("as", "Table") && has("g", "meta.k8s.io") => {
                return Output::Table
            }
            "application/json"
                if has("as", "PartialObjectMetadata") || has("as", "PartialObjectMetadataList") =>
            {
                return Output::Metadata
            }
            "application/json" if params.iter().any(|(k, _)| *k == "as") => continue,
            "application/json" | "*/*" | "application/*" => return Output::Json,
            "application/yaml" => return Output::Yaml,
            _ => continue,
        }
    }
    Output::Json
}

/// Whether the client asked for aggregated discovery (`as=APIGroupDiscoveryList`),
/// and with which version (`v2` or `v2beta1`).
pub fn aggregated_discovery(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(http::header::ACCEPT)?.to_str().ok()?;
    for part in accept.split(',') {
        if !part.contains("as=APIGroupDiscoveryList") || !part.contains("g=apidiscovery.k8s.io") {
            if part.trim().starts_with("application/json") && !part.contains("as=") {
                return None;
            }
            continue;
        }
        if part.contains("v=v2beta1") {
            return Some("v2beta1");
        }
        if part.contains("v=v2") {
            return Some("v2");
        }
    }
    None
}

/// Media type of a request body, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(accept: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(http::header::ACCEPT, accept.parse().expect("header"));
        m
    }

    #[test]
    fn kubectl_accept_headers() {
        assert_eq!(
            accept(&h("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")),
            Output::Table
        );
        assert_eq!(accept(&h("application/json, */*")), Output::Json);
        assert_eq!(
            accept(&h("application/vnd.kubernetes.protobuf, */*")),
            Output::Json
        );
        assert_eq!(
            aggregated_discovery(&h("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")),
            Some("v2")
        );
        assert_eq!(aggregated_discovery(&h("application/json, */*")), None);
    }
}
