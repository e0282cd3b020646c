//! LimitRanger admission (upstream `plugin/pkg/admission/limitranger`): on pod create,
//! containers without a request or limit get the namespace's LimitRange defaults
//! (`defaultRequest`, `default`), recorded in the `kubernetes.io/limit-ranger`
//! annotation; then every pod and claim is checked against `min`, `max` and
//! `maxLimitRequestRatio`, each violation worded as upstream.

use std::collections::BTreeMap;

use apis::quota::{pod_limits, pod_requests, ResourceList};
use apis::resource::Quantity;
use k8s_openapi::api::core::v1::{LimitRange, LimitRangeItem, Pod};
use serde_json::{json, Map, Value};

use super::{forbidden, Validation};
use crate::error::Result;
use crate::Registry;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The LimitRanges of `namespace`, from the watch cache.
fn limit_ranges(registry: &Registry, namespace: &str) -> Vec<LimitRange> {
    let Some(served) = registry.lookup("", "v1", "limitranges") else {
        return Vec::new();
    };
    served
        .store
        .cacher()
        .list(&served.store.scope_prefix(namespace), |_| true)
        .iter()
        .filter_map(|o| serde_json::from_slice(&o.json).ok())
        .collect()
}

fn items(lr: &LimitRange) -> impl Iterator<Item = &LimitRangeItem> {
    lr.spec.as_ref().into_iter().flat_map(|s| s.limits.iter())
}

/// Upstream `defaultContainerResourceRequirements`: (requests, limits) from the
/// Container items, later items winning.
fn container_defaults(lr: &LimitRange) -> (Map<String, Value>, Map<String, Value>) {
    let (mut requests, mut limits) = (Map::new(), Map::new());
    for item in items(lr).filter(|i| i.type_ == "Container") {
        for (k, v) in item.default_request.iter().flatten() {
            requests.insert(k.clone(), json!(v.0));
        }
        for (k, v) in item.default.iter().flatten() {
            limits.insert(k.clone(), json!(v.0));
        }
    }
    (requests, limits)
}

/// Fills missing entries of `resources.<field>` from `defaults`; returns the names set.
fn fill(
    container: &mut Map<String, Value>,
    field: &str,
    defaults: &Map<String, Value>,
) -> Vec<String> {
    if defaults.is_empty() {
        return Vec::new();
    }
    let resources = container.entry("resources").or_insert_with(|| json!({}));
    if !resources.is_object() {
        *resources = json!({});
    }
    let Some(resources) = resources.as_object_mut() else {
        return Vec::new();
    };
    let list = resources.entry(field).or_insert_with(|| json!({}));
    if !list.is_object() {
        *list = json!({});
    }
    let Some(list) = list.as_object_mut() else {
        return Vec::new();
    };
    let mut set = Vec::new();
    for (k, v) in defaults {
        if !list.contains_key(k) {
            list.insert(k.clone(), v.clone());
            set.push(k.clone());
        }
    }
    set.sort();
    set
}

/// The mutating half: applies every LimitRange's container defaults to a new pod.
pub fn mutate(registry: &Registry, namespace: &str, pod: &mut Value, default: impl Fn(&mut Value)) {
    let ranges = limit_ranges(registry, namespace);
    if ranges.is_empty() {
        return;
    }
    // Defaults first (a limit without a request gets the limit as request), so only what
    // is still missing comes from the LimitRange.
    default(pod);
    let mut notes: Vec<String> = Vec::new();
    for lr in &ranges {
        let (requests, limits) = container_defaults(lr);
        if requests.is_empty() && limits.is_empty() {
            continue;
        }
        for (field, what) in [
            ("containers", "container"),
            ("initContainers", "init container"),
        ] {
            let Some(containers) = pod
                .pointer_mut(&format!("/spec/{field}"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                let name = c
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let set_limits = fill(c, "limits", &limits);
                let set_requests = fill(c, "requests", &requests);
                if !set_requests.is_empty() {
                    notes.push(format!(
                        "{} request for {what} {name}",
                        set_requests.join(", ")
                    ));
                }
                if !set_limits.is_empty() {
                    notes.push(format!("{} limit for {what} {name}", set_limits.join(", ")));
                }
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    let meta = crate::meta::metadata_mut(pod);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if let Some(a) = annotations.as_object_mut() {
        a.insert(
            ANNOTATION.to_string(),
            json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
        );
    }
}

fn list(
    m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> ResourceList {
    m.into_iter()
        .flatten()
        .filter_map(|(k, v)| Quantity::parse(&v.0).ok().map(|q| (k.clone(), q)))
        .collect()
}

fn min_constraint(
    kind: &str,
    res: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(req) = requests.get(res) else {
        return Some(format!(
            "minimum {res} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if req < enforced {
        return Some(format!(
            "minimum {res} usage per {kind} is {enforced}, but request is {req}"
        ));
    }
    match limits.get(res) {
        Some(lim) if lim < enforced => Some(format!(
            "minimum {res} usage per {kind} is {enforced}, but limit is {lim}"
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    res: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(lim) = limits.get(res) else {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if lim > enforced {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}, but limit is {lim}"
        ));
    }
    match requests.get(res) {
        Some(req) if req > enforced => Some(format!(
            "maximum {res} usage per {kind} is {enforced}, but request is {req}"
        )),
        _ => None,
    }
}

/// Claims have no limits: `max` applies to the request.
fn max_request_constraint(
    kind: &str,
    res: &str,
    enforced: &Quantity,
    requests: &ResourceList,
) -> Option<String> {
    let Some(req) = requests.get(res) else {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    (req > enforced)
        .then(|| format!("maximum {res} usage per {kind} is {enforced}, but request is {req}"))
}

fn ratio_constraint(
    kind: &str,
    res: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let req = requests.get(res).filter(|q| !q.is_zero());
    let lim = limits.get(res).filter(|q| !q.is_zero());
    let Some(req) = req else {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    };
    let Some(lim) = lim else {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    };
    let observed = lim.as_f64() / req.as_f64();
    (observed > enforced.as_f64() + f64::EPSILON).then(|| {
        format!("{res} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}")
    })
}

fn check_item(
    item: &LimitRangeItem,
    requests: &ResourceList,
    limits: &ResourceList,
    errs: &mut Vec<String>,
) {
    let kind = item.type_.as_str();
    for (res, q) in list(item.min.as_ref()) {
        errs.extend(min_constraint(kind, &res, &q, requests, limits));
    }
    for (res, q) in list(item.max.as_ref()) {
        errs.extend(max_constraint(kind, &res, &q, requests, limits));
    }
    for (res, q) in list(item.max_limit_request_ratio.as_ref()) {
        errs.extend(ratio_constraint(kind, &res, &q, requests, limits));
    }
}

/// Upstream `PodValidateLimitFunc`.
pub fn pod_violations(lr: &LimitRange, pod: &Pod) -> Vec<String> {
    let mut errs = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return errs;
    };
    for item in items(lr) {
        match item.type_.as_str() {
            "Container" => {
                for c in spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                {
                    let r = c.resources.clone().unwrap_or_default();
                    check_item(
                        item,
                        &list(r.requests.as_ref()),
                        &list(r.limits.as_ref()),
                        &mut errs,
                    );
                }
            }
            "Pod" => check_item(item, &pod_requests(pod), &pod_limits(pod), &mut errs),
            _ => {}
        }
    }
    errs
}

/// Upstream `PersistentVolumeClaimValidateLimitFunc`.
pub fn claim_violations(lr: &LimitRange, requests: &ResourceList) -> Vec<String> {
    let mut errs = Vec::new();
    for item in items(lr).filter(|i| i.type_ == "PersistentVolumeClaim") {
        for (res, q) in list(item.min.as_ref()) {
            errs.extend(min_constraint(
                "PersistentVolumeClaim",
                &res,
                &q,
                requests,
                &ResourceList::new(),
            ));
        }
        for (res, q) in list(item.max.as_ref()) {
            errs.extend(max_request_constraint(
                "PersistentVolumeClaim",
                &res,
                &q,
                requests,
            ));
        }
    }
    errs
}

/// `utilerrors.NewAggregate(...).Error()`: one message as is, several in brackets.
fn aggregate(errs: &[String]) -> String {
    if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    }
}

/// The validating half: the first LimitRange a pod or claim violates refuses it.
pub fn validate(v: &Validation<'_>, obj: &Value) -> Result<()> {
    let kind = match (
        v.served.info.group.as_str(),
        v.served.info.resource.as_str(),
    ) {
        ("", "pods") => "pods",
        ("", "persistentvolumeclaims") => "persistentvolumeclaims",
        _ => return Ok(()),
    };
    let ranges = limit_ranges(v.registry, v.namespace);
    if ranges.is_empty() {
        return Ok(());
    }
    for lr in &ranges {
        let errs = if kind == "pods" {
            let Ok(pod) = serde_json::from_value::<Pod>(obj.clone()) else {
                return Ok(());
            };
            pod_violations(lr, &pod)
        } else {
            let requests: ResourceList = obj
                .pointer("/spec/resources/requests")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| {
                    v.as_str()
                        .and_then(|s| Quantity::parse(s).ok())
                        .map(|q| (k.clone(), q))
                })
                .collect();
            claim_violations(lr, &requests)
        };
        if !errs.is_empty() {
            return Err(forbidden(v.served, &v.display_name, aggregate(&errs)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(v: Value) -> LimitRange {
        serde_json::from_value(json!({"metadata": {"name": "lr"}, "spec": {"limits": [v]}}))
            .expect("limit range")
    }

    fn pod(resources: Value) -> Pod {
        serde_json::from_value(
            json!({"spec": {"containers": [{"name": "app", "resources": resources}]}}),
        )
        .expect("pod")
    }

    #[test]
    fn container_min_max_and_ratio_are_worded_as_upstream() {
        let range = lr(
            json!({"type": "Container", "min": {"cpu": "100m"}, "max": {"memory": "1Gi"}, "maxLimitRequestRatio": {"cpu": "2"}}),
        );
        let errs = pod_violations(
            &range,
            &pod(json!({"requests": {"cpu": "50m"}, "limits": {"cpu": "400m", "memory": "2Gi"}})),
        );
        assert_eq!(
            errs,
            vec![
                "minimum cpu usage per Container is 100m, but request is 50m",
                "maximum memory usage per Container is 1Gi, but limit is 2Gi",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 8.000000",
            ]
        );
        assert_eq!(
            pod_violations(&range, &pod(json!({}))),
            vec![
                "minimum cpu usage per Container is 100m.  No request is specified",
                "maximum memory usage per Container is 1Gi.  No limit is specified",
                "cpu max limit to request ratio per Container is 2, but no request is specified or request is 0",
            ]
        );
        assert!(pod_violations(
            &range,
            &pod(json!({"requests": {"cpu": "200m"}, "limits": {"cpu": "400m", "memory": "1Gi"}}))
        )
        .is_empty());
    }

    #[test]
    fn claims_are_held_to_storage_bounds() {
        let range = lr(
            json!({"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "5Gi"}}),
        );
        let req = |s: &str| -> ResourceList {
            [("storage".to_string(), Quantity::parse(s).expect("q"))].into()
        };
        assert_eq!(
            claim_violations(&range, &req("10Gi")),
            vec!["maximum storage usage per PersistentVolumeClaim is 5Gi, but request is 10Gi"]
        );
        assert_eq!(
            claim_violations(&range, &req("500Mi")),
            vec!["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
        );
        assert!(claim_violations(&range, &req("2Gi")).is_empty());
    }

    #[test]
    fn aggregates_like_utilerrors() {
        assert_eq!(aggregate(&["a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }
}
