//! ResourceQuota admission (upstream `apiserver/pkg/admission/plugin/resourcequota`): a
//! create that would take a quota's `status.used` past `status.hard` is refused with
//! `exceeded quota: <name>, requested: …, used: …, limited: …`; otherwise its usage is
//! added to `status.used` before the object is written. A quota is considered once the
//! quota controller has written its `status.hard` (until then upstream ignores it too).
//! Quotas tracking cpu or memory also require every container to state them
//! (`failed quota: <name>: must specify …`).

use apis::quota::{self, Evaluator, ResourceList};
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::{forbidden, Validation};
use crate::error::{RegistryError, Result};
use crate::store::{Store, UpdateMode};
use crate::WriteOptions;

fn now() -> Timestamp {
    let n = chrono::Utc::now();
    Timestamp::new(
        n.timestamp(),
        i32::try_from(n.timestamp_subsec_nanos()).unwrap_or(0),
    )
    .unwrap_or_default()
}

fn sorted_names(names: &[String]) -> String {
    let mut v = names.to_vec();
    v.sort();
    v.join(",")
}

/// Checks `delta` against one quota; the quota's new `status.used` if it fits.
fn charge(
    served: &crate::Served,
    display: &str,
    rq: &ResourceQuota,
    delta: &ResourceList,
) -> Result<ResourceList> {
    let name = rq.metadata.name.as_deref().unwrap_or("");
    let hard = quota::hard(rq, true);
    let used = quota::used(rq);
    let hard_names: Vec<String> = hard.keys().cloned().collect();
    let requested = quota::mask(delta, &hard_names);
    let new_used = quota::add(&used, &requested);
    let requested_names: Vec<String> = requested.keys().cloned().collect();
    let (ok, exceeded) =
        quota::less_than_or_equal(&quota::mask(&new_used, &requested_names), &hard);
    if !ok {
        return Err(forbidden(
            served,
            display,
            format!(
                "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                quota::pretty_print(&quota::mask(&requested, &exceeded)),
                quota::pretty_print(&quota::mask(&used, &exceeded)),
                quota::pretty_print(&quota::mask(&hard, &exceeded)),
            ),
        ));
    }
    Ok(new_used)
}

fn typed(v: &Value) -> Result<ResourceQuota> {
    serde_json::from_value(v.clone()).map_err(RegistryError::internal)
}

/// Admits (and charges) a new object against the quotas of its namespace.
pub async fn admit(v: &Validation<'_>, obj: &Value, dry_run: bool) -> Result<()> {
    let Some(quotas) = v.registry.lookup("", "v1", "resourcequotas") else {
        return Ok(());
    };
    let store: &Store = &quotas.store;
    let cached = store
        .cacher()
        .list(&store.scope_prefix(v.namespace), |_| true);
    if cached.is_empty() {
        return Ok(());
    }
    let (group, resource) = (
        v.served.info.group.as_str(),
        v.served.info.resource.as_str(),
    );
    let evaluator = Evaluator::for_resource(group, resource);
    let pod: Option<Pod> = match evaluator {
        Evaluator::Pods => {
            Some(serde_json::from_value(obj.clone()).map_err(RegistryError::internal)?)
        }
        _ => None,
    };
    let mut interesting: Vec<String> = Vec::new();
    for c in &cached {
        let rq: ResourceQuota = serde_json::from_slice(&c.json).map_err(RegistryError::internal)?;
        let name = rq.metadata.name.clone().unwrap_or_default();
        let hard = quota::hard(&rq, true);
        let matched = evaluator.matching_resources(hard.keys());
        if matched.is_empty() || !quota::matches_scopes(&rq, pod.as_ref()) {
            continue;
        }
        if let Some(p) = &pod {
            if let Err(e) = quota::pod_constraints(&matched, p) {
                return Err(forbidden(
                    v.served,
                    &v.display_name,
                    format!("failed quota: {name}: {e}"),
                ));
            }
        }
        let used = quota::used(&rq);
        if matched.iter().any(|r| !used.contains_key(r)) {
            return Err(forbidden(
                v.served,
                &v.display_name,
                format!(
                    "status unknown for quota: {name}, resources: {}",
                    sorted_names(&matched)
                ),
            ));
        }
        interesting.push(name);
    }
    if interesting.is_empty() {
        return Ok(());
    }
    let usage = quota::usage_of(group, resource, obj, now()).map_err(RegistryError::internal)?;
    if usage.values().any(|q| q.is_negative()) {
        let negative: Vec<String> = usage
            .iter()
            .filter(|(_, q)| q.is_negative())
            .map(|(k, _)| k.clone())
            .collect();
        return Err(forbidden(
            v.served,
            &v.display_name,
            format!(
                "quota usage is negative for resource(s): {}",
                sorted_names(&negative)
            ),
        ));
    }
    let delta = quota::remove_zeros(&usage);
    if delta.is_empty() {
        return Ok(());
    }
    // Check every quota first, so a refusal by one does not leave another charged.
    for name in &interesting {
        let current = match store.get(v.namespace, name).await {
            Ok(q) => q,
            Err(RegistryError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        charge(v.served, &v.display_name, &typed(&current)?, &delta)?;
    }
    if dry_run {
        return Ok(());
    }
    for name in &interesting {
        let result = store
            .guaranteed_update(
                v.namespace,
                name,
                UpdateMode::Status,
                &WriteOptions::default(),
                &mut |cur| {
                    let Some(cur) = cur else {
                        return Err(RegistryError::NotFound {
                            group: String::new(),
                            resource: "resourcequotas".into(),
                            name: name.clone(),
                        });
                    };
                    let new_used = charge(v.served, &v.display_name, &typed(cur)?, &delta)?;
                    let mut next = cur.clone();
                    if let Some(status) = next
                        .as_object_mut()
                        .map(|o| o.entry("status").or_insert_with(|| json!({})))
                    {
                        status["used"] = json!(quota::to_api(&new_used));
                    }
                    Ok(next)
                },
            )
            .await;
        match result {
            Ok(_) | Err(RegistryError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
