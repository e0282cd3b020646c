//! Container environment: `env` (value, configMapKeyRef, secretKeyRef, fieldRef,
//! resourceFieldRef), `envFrom`, and `$(VAR)` expansion in values, command and args, as
//! the kubelet does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::Api;
use kube::Client;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        key: String,
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// The value of a downward API field path.
pub fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    if let Some(rest) = path
        .strip_prefix("metadata.labels['")
        .and_then(|r| r.strip_suffix("']"))
    {
        return Some(
            m.labels
                .as_ref()
                .and_then(|l| l.get(rest))
                .cloned()
                .unwrap_or_default(),
        );
    }
    if let Some(rest) = path
        .strip_prefix("metadata.annotations['")
        .and_then(|r| r.strip_suffix("']"))
    {
        return Some(
            m.annotations
                .as_ref()
                .and_then(|l| l.get(rest))
                .cloned()
                .unwrap_or_default(),
        );
    }
    let kv = |map: Option<&BTreeMap<String, String>>| {
        map.map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
    };
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => kv(m.labels.as_ref()),
        "metadata.annotations" => kv(m.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.hostIPs" => status
            .and_then(|s| s.host_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        _ => return None,
    })
}

/// Expands `$(NAME)` references from `vars`; `$$` escapes a `$`; unknown references stay.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let b = input.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = input[i + 2..].find(')') {
                    let name = &input[i + 2..i + 2 + end];
                    if let Some(v) = vars.get(name) {
                        out.push_str(v);
                    } else {
                        out.push_str(&input[i..i + 3 + end]);
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = input[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn resource_value(container: &Container, resource: &str, divisor: Option<&str>) -> String {
    let res = container.resources.clone().unwrap_or_default();
    let (which, name) = resource.split_once('.').unwrap_or(("limits", resource));
    let map = if which == "requests" {
        res.requests
    } else {
        res.limits
    };
    let q = map.and_then(|m| m.get(name).map(|q| q.0.clone()));
    let Some(q) = q else {
        return if name == "cpu" {
            std::thread::available_parallelism()
                .map(|n| n.get().to_string())
                .unwrap_or_else(|_| "1".into())
        } else {
            "0".into()
        };
    };
    let value = if name == "cpu" {
        crate::resources::cpu_millis(&q) as f64 / 1000.0
    } else {
        crate::resources::bytes(&q) as f64
    };
    let div = divisor
        .map(|d| {
            if name == "cpu" {
                crate::resources::cpu_millis(d) as f64 / 1000.0
            } else {
                crate::resources::bytes(d) as f64
            }
        })
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    format!("{}", (value / div).ceil() as i64)
}

/// The environment of `container` in order, with references resolved.
pub async fn container_env(
    client: &Client,
    pod: &Pod,
    container: &Container,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut cms: BTreeMap<String, Option<ConfigMap>> = BTreeMap::new();
    let mut secrets: BTreeMap<String, Option<Secret>> = BTreeMap::new();
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let set =
        |vars: &mut BTreeMap<String, String>, order: &mut Vec<String>, k: String, v: String| {
            if !vars.contains_key(&k) {
                order.push(k.clone());
            }
            vars.insert(k, v);
        };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            if !cms.contains_key(&r.name) {
                cms.insert(r.name.clone(), cm_api.get_opt(&r.name).await?);
            }
            match cms.get(&r.name).cloned().flatten() {
                Some(cm) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        set(&mut vars, &mut order, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &from.secret_ref {
            if !secrets.contains_key(&r.name) {
                secrets.insert(r.name.clone(), secret_api.get_opt(&r.name).await?);
            }
            match secrets.get(&r.name).cloned().flatten() {
                Some(s) => {
                    for (k, v) in s.data.unwrap_or_default() {
                        set(
                            &mut vars,
                            &mut order,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(EnvError::SecretNotFound(r.name.clone())),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            expand(v, &vars)
        } else if let Some(from) = &e.value_from {
            if let Some(r) = &from.config_map_key_ref {
                if !cms.contains_key(&r.name) {
                    cms.insert(r.name.clone(), cm_api.get_opt(&r.name).await?);
                }
                match cms.get(&r.name).cloned().flatten() {
                    Some(cm) => match cm.data.and_then(|d| d.get(&r.key).cloned()) {
                        Some(v) => v,
                        None if r.optional.unwrap_or(false) => continue,
                        None => {
                            return Err(EnvError::MissingKey {
                                key: r.key.clone(),
                                kind: "configmap",
                                namespace: ns,
                                name: r.name.clone(),
                            })
                        }
                    },
                    None if r.optional.unwrap_or(false) => continue,
                    None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
                }
            } else if let Some(r) = &from.secret_key_ref {
                if !secrets.contains_key(&r.name) {
                    secrets.insert(r.name.clone(), secret_api.get_opt(&r.name).await?);
                }
                match secrets.get(&r.name).cloned().flatten() {
                    Some(s) => match s.data.and_then(|d| d.get(&r.key).cloned()) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if r.optional.unwrap_or(false) => continue,
                        None => {
                            return Err(EnvError::MissingKey {
                                key: r.key.clone(),
                                kind: "secret",
                                namespace: ns,
                                name: r.name.clone(),
                            })
                        }
                    },
                    None if r.optional.unwrap_or(false) => continue,
                    None => return Err(EnvError::SecretNotFound(r.name.clone())),
                }
            } else if let Some(f) = &from.field_ref {
                field_value(pod, &f.field_path).unwrap_or_default()
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(
                    container,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                )
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut vars, &mut order, e.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.get(&k).cloned().unwrap_or_default();
            (k, v)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_references_like_the_kubelet() {
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
    }
}
