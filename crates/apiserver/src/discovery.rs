//! API discovery: `/api`, `/apis`, per-group and per-version documents, and the
//! aggregated form (`apidiscovery.k8s.io/v2 APIGroupDiscoveryList`) kubectl 1.26+ asks
//! for first. All are built from the registry's resource table, so CRDs show up as soon
//! as they are served.

use std::sync::Arc;

use apis::resources::BUILTIN_GROUPS;
use apis::ResourceInfo;
use serde_json::{json, Value};

/// Groups in discovery order with their versions, preferred first.
pub fn groups(resources: &[Arc<ResourceInfo>]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (g, versions) in BUILTIN_GROUPS {
        let served: Vec<String> = versions
            .iter()
            .filter(|v| resources.iter().any(|r| r.group == *g && r.version == **v))
            .map(|v| v.to_string())
            .collect();
        if !served.is_empty() {
            out.push((g.to_string(), served));
        }
    }
    for r in resources {
        if BUILTIN_GROUPS.iter().any(|(g, _)| *g == r.group) {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) => {
                if !vs.contains(&r.version) {
                    vs.push(r.version.clone());
                }
            }
            None => out.push((r.group.clone(), vec![r.version.clone()])),
        }
    }
    for (g, vs) in out.iter_mut() {
        if !BUILTIN_GROUPS.iter().any(|(bg, _)| bg == g) {
            apis::crd::sort_versions(vs);
        }
    }
    out
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

fn api_group(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": group_version(group, v), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn api_group_list(resources: &[Arc<ResourceInfo>]) -> Value {
    let groups: Vec<Value> = groups(resources)
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| api_group(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group_doc(resources: &[Arc<ResourceInfo>], group: &str) -> Option<Value> {
    let all = groups(resources);
    let (_, vs) = all.iter().find(|(g, _)| g == group)?;
    let mut doc = api_group(group, vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

pub fn api_resource_list(
    resources: &[Arc<ResourceInfo>],
    group: &str,
    version: &str,
) -> Option<Value> {
    let in_gv: Vec<&Arc<ResourceInfo>> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if in_gv.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in in_gv {
        let mut entry = json!({
            "name": r.resource,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        for s in &r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.resource, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if !s.group.is_empty() {
                sub["group"] = json!(s.group);
            }
            if !s.version.is_empty() {
                sub["version"] = json!(s.version);
            }
            list.push(sub);
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": list,
    }))
}

/// Aggregated discovery for the core group (`core = true`, `/api`) or all others (`/apis`).
pub fn aggregated(resources: &[Arc<ResourceInfo>], core: bool, version: &str) -> Value {
    let mut items = Vec::new();
    for (group, versions) in groups(resources) {
        if group.is_empty() != core {
            continue;
        }
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| {
                let rs: Vec<Value> = resources
                    .iter()
                    .filter(|r| r.group == group && &r.version == v)
                    .map(|r| {
                        let subs: Vec<Value> = r
                            .subresources
                            .iter()
                            .map(|s| {
                                let g = if s.version.is_empty() { r.group.clone() } else { s.group.clone() };
                                let ver = if s.version.is_empty() { r.version.clone() } else { s.version.clone() };
                                json!({
                                    "subresource": s.name,
                                    "responseKind": {"group": g, "version": ver, "kind": s.kind},
                                    "verbs": s.verbs,
                                })
                            })
                            .collect();
                        let mut e = json!({
                            "resource": r.resource,
                            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                            "singularResource": r.singular,
                            "verbs": r.verbs,
                        });
                        if !r.short_names.is_empty() {
                            e["shortNames"] = json!(r.short_names);
                        }
                        if !r.categories.is_empty() {
                            e["categories"] = json!(r.categories);
                        }
                        if !subs.is_empty() {
                            e["subresources"] = json!(subs);
                        }
                        e
                    })
                    .collect();
                json!({"version": v, "resources": rs, "freshness": "Current"})
            })
            .collect();
        let metadata = if group.is_empty() {
            json!({"creationTimestamp": null})
        } else {
            json!({"name": group, "creationTimestamp": null})
        };
        items.push(json!({"metadata": metadata, "versions": vs}));
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resource_list_has_short_names_and_subresources() {
        let rs = apis::builtin_resources();
        let doc = api_resource_list(&rs, "", "v1").expect("core");
        let list = doc["resources"].as_array().expect("array");
        let pods = list.iter().find(|r| r["name"] == "pods").expect("pods");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(list.iter().any(|r| r["name"] == "pods/status"));
        let groups = api_group_list(&rs);
        let apps = groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["name"] == "apps")
            .expect("apps");
        assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");
        let agg = aggregated(&rs, false, "v2");
        assert!(agg["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["metadata"]["name"] == "autoscaling"));
    }
}
