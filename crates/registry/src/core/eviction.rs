//! The pod eviction subresource (upstream `pkg/registry/core/pod/storage/eviction.go`):
//! a delete that honours PodDisruptionBudgets.
//!
//! Protocol with the disruption controller: the controller publishes, per budget, how
//! many pods may go now (`status.disruptionsAllowed`). An eviction of a covered, ready
//! pod takes one of those, records the pod in `status.disruptedPods` (so the controller
//! does not count it as healthy while it terminates) and only then deletes the pod; the
//! status write carries the budget's resourceVersion, so two evictions cannot spend the
//! same disruption. With none left, the answer is 429 TooManyRequests with a
//! `DisruptionTarget` cause, which `kubectl drain` retries. A budget the controller has
//! not processed since its last change (`observedGeneration < generation`) also answers
//! 429. Pods that are not running (Pending, finished, already terminating) are deleted
//! without consulting any budget.

use apis::selectors::LabelSelector;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::{json, Value};

use crate::error::{RegistryError, Result};
use crate::store::{DeleteOptions, UpdateMode, WriteOptions};
use crate::{meta, Registry, Served};

/// Most pods a budget may have recorded as disrupted (upstream `MaxDisruptedPodSize`).
pub const MAX_DISRUPTED_POD_SIZE: usize = 2000;
/// Conflicts retried before giving up (upstream `EvictionsRetry.Steps`).
const RETRIES: usize = 20;

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";
/// The cause type of budget refusals (upstream `policyv1.DisruptionBudgetCause`).
pub const DISRUPTION_BUDGET_CAUSE: &str = "DisruptionTarget";

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Pods whose eviction disrupts nothing (upstream `canIgnorePDB`).
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending")
        || meta::deletion_timestamp(pod).is_some()
}

fn should_enforce_resource_version(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && meta::deletion_timestamp(pod).is_none()
}

fn still_processing(name: &str) -> RegistryError {
    RegistryError::TooManyRequests {
        message: VIOLATION.to_string(),
        retry_after_seconds: 10,
        causes: vec![(
            DISRUPTION_BUDGET_CAUSE.to_string(),
            format!("The disruption budget {name} is still being processed by the server."),
        )],
    }
}

fn budget_forbidden(name: &str, why: &str) -> RegistryError {
    RegistryError::Forbidden(format!(
        "poddisruptionbudgets.policy \"{name}\" is forbidden: {why}"
    ))
}

/// The budgets in the pod's namespace whose selector matches it (an empty selector
/// matches nothing here, as upstream).
fn budgets_for(registry: &Registry, namespace: &str, pod: &Value) -> Vec<PodDisruptionBudget> {
    let Some(served) = registry.lookup("policy", "v1", "poddisruptionbudgets") else {
        return Vec::new();
    };
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    served
        .store
        .cacher()
        .list(&served.store.scope_prefix(namespace), |_| true)
        .iter()
        .filter_map(|o| serde_json::from_slice::<PodDisruptionBudget>(&o.json).ok())
        .filter(|pdb| {
            let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                return false;
            };
            match LabelSelector::from_metav1(sel) {
                Ok(s) => !s.is_empty() && s.matches(&labels),
                Err(_) => false,
            }
        })
        .collect()
}

/// Upstream `pdbhelper.UpdateDisruptionAllowedCondition` on a JSON status.
pub fn set_disruption_allowed_condition(status: &mut Value, now: &str) {
    let allowed = status
        .get("disruptionsAllowed")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        > 0;
    let generation = status
        .get("observedGeneration")
        .cloned()
        .unwrap_or(json!(0));
    let (state, reason) = if allowed {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let existing = conditions
        .iter_mut()
        .find(|c| c["type"] == "DisruptionAllowed");
    match existing {
        Some(c) => {
            if c["status"] != state {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(state);
            c["reason"] = json!(reason);
            c["message"] = json!("");
            c["observedGeneration"] = generation;
        }
        None => conditions.push(json!({
            "type": "DisruptionAllowed", "status": state, "reason": reason, "message": "",
            "observedGeneration": generation, "lastTransitionTime": now,
        })),
    }
    status["conditions"] = json!(conditions);
}

/// Upstream `checkAndDecrement`, as one optimistic update of the budget's status.
async fn check_and_decrement(
    registry: &Registry,
    namespace: &str,
    budget: &str,
    pod_name: &str,
    dry_run: bool,
) -> Result<()> {
    let served = registry
        .lookup("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| RegistryError::internal("poddisruptionbudgets not served"))?;
    let opts = WriteOptions { dry_run };
    served
        .store
        .guaranteed_update(namespace, budget, UpdateMode::Status, &opts, &mut |cur| {
            let Some(cur) = cur else {
                return Err(RegistryError::NotFound {
                    group: "policy".into(),
                    resource: "poddisruptionbudgets".into(),
                    name: budget.to_string(),
                });
            };
            let pdb: PodDisruptionBudget = serde_json::from_value(cur.clone()).map_err(RegistryError::internal)?;
            let status = pdb.status.clone().unwrap_or_default();
            if status.observed_generation.unwrap_or(0) < pdb.metadata.generation.unwrap_or(0) {
                return Err(still_processing(budget));
            }
            if status.disruptions_allowed < 0 {
                return Err(budget_forbidden(budget, "pdb disruptions allowed is negative"));
            }
            if status.disrupted_pods.as_ref().map_or(0, |d| d.len()) > MAX_DISRUPTED_POD_SIZE {
                return Err(budget_forbidden(
                    budget,
                    "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
                ));
            }
            if status.disruptions_allowed == 0 {
                return Err(RegistryError::TooManyRequests {
                    message: VIOLATION.to_string(),
                    retry_after_seconds: 0,
                    causes: vec![(
                        DISRUPTION_BUDGET_CAUSE.to_string(),
                        format!(
                            "The disruption budget {budget} needs {} healthy pods and has {} currently",
                            status.desired_healthy, status.current_healthy
                        ),
                    )],
                });
            }
            let now = meta::now_rfc3339();
            let mut next = cur.clone();
            let st = next.as_object_mut().map(|o| o.entry("status").or_insert_with(|| json!({})));
            let Some(st) = st else { return Err(RegistryError::internal("budget is not an object")) };
            st["disruptionsAllowed"] = json!(status.disruptions_allowed - 1);
            if status.disruptions_allowed - 1 == 0 {
                set_disruption_allowed_condition(st, &now);
            }
            if !st.get("disruptedPods").is_some_and(Value::is_object) {
                st["disruptedPods"] = json!({});
            }
            st["disruptedPods"][pod_name] = json!(now);
            Ok(next)
        })
        .await?;
    Ok(())
}

/// What the Eviction's `deleteOptions` ask for.
pub fn delete_options(eviction: &Value, dry_run: bool) -> DeleteOptions {
    let opts = eviction.get("deleteOptions");
    let dry = dry_run
        || opts
            .and_then(|o| o.get("dryRun"))
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    DeleteOptions {
        dry_run: dry,
        grace_period_seconds: opts
            .and_then(|o| o.get("gracePeriodSeconds"))
            .and_then(Value::as_i64),
        propagation_policy: opts
            .and_then(|o| o.get("propagationPolicy"))
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_uid: opts
            .and_then(|o| o.pointer("/preconditions/uid"))
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_resource_version: opts
            .and_then(|o| o.pointer("/preconditions/resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

/// Evicts `namespace/name` (POST `pods/{name}/eviction`).
pub async fn evict(
    registry: &Registry,
    pods: &Served,
    namespace: &str,
    name: &str,
    opts: DeleteOptions,
) -> Result<()> {
    let rv_given = opts.precondition_resource_version.is_some();
    // Pods that need no budget are deleted at once; retried on conflicts unless the
    // caller pinned a resourceVersion.
    let mut pod = Value::Null;
    for attempt in 0..RETRIES {
        pod = pods.store.get(namespace, name).await?;
        if !can_ignore_budget(&pod) {
            break;
        }
        let mut o = opts.clone();
        if should_enforce_resource_version(&pod) && !rv_given {
            o.precondition_resource_version = Some(meta::resource_version(&pod).to_string());
        }
        match registry.delete(pods, namespace, name, &o).await {
            Err(RegistryError::Conflict { .. }) if !rv_given && attempt + 1 < RETRIES => continue,
            other => return other.map(|_| ()),
        }
    }
    let budgets = budgets_for(registry, namespace, &pod);
    if budgets.len() > 1 {
        return Err(RegistryError::Internal(
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
        ));
    }
    let mut opts = opts;
    let mut pinned = false;
    let budget_name = budgets
        .first()
        .and_then(|b| b.metadata.name.clone())
        .unwrap_or_default();
    if let Some(pdb) = budgets.first() {
        let status = pdb.status.clone().unwrap_or_default();
        let always_allow_unhealthy = pdb
            .spec
            .as_ref()
            .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref())
            == Some("AlwaysAllow");
        let unready = !is_ready(&pod);
        if unready
            && (always_allow_unhealthy
                || (status.current_healthy >= status.desired_healthy && status.desired_healthy > 0))
        {
            // Not counted as healthy: no budget is spent, but the pod must not become
            // ready in between.
            pinned = true;
        } else {
            check_and_decrement(registry, namespace, &budget_name, name, opts.dry_run).await?;
        }
    }
    if pinned && opts.precondition_resource_version.is_none() {
        opts.precondition_resource_version = Some(meta::resource_version(&pod).to_string());
    }
    match registry.delete(pods, namespace, name, &opts).await {
        Err(RegistryError::Conflict { .. }) if pinned && !rv_given => {
            Err(still_processing(&budget_name))
        }
        other => other.map(|_| ()),
    }
}

/// The condition as typed (for tests and the controller's reading of it).
pub fn condition_of(status: &Value) -> Option<metav1::Condition> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "DisruptionAllowed")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_condition_follows_disruptions_allowed() {
        let mut status = json!({"disruptionsAllowed": 0, "observedGeneration": 2});
        set_disruption_allowed_condition(&mut status, "2024-01-01T00:00:00Z");
        let c = condition_of(&status).expect("condition");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.observed_generation),
            ("False", "InsufficientPods", Some(2))
        );
        status["disruptionsAllowed"] = json!(1);
        set_disruption_allowed_condition(&mut status, "2024-01-01T00:01:00Z");
        let c = condition_of(&status).expect("condition");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "SufficientPods")
        );
        assert_eq!(c.last_transition_time.0.to_string(), "2024-01-01T00:01:00Z");
    }

    #[test]
    fn only_running_pods_consult_budgets() {
        assert!(can_ignore_budget(&json!({"status": {"phase": "Pending"}})));
        assert!(can_ignore_budget(
            &json!({"status": {"phase": "Succeeded"}})
        ));
        assert!(can_ignore_budget(
            &json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}})
        ));
        assert!(!can_ignore_budget(&json!({"status": {"phase": "Running"}})));
        let opts = delete_options(
            &json!({"deleteOptions": {"gracePeriodSeconds": 5, "dryRun": ["All"]}}),
            false,
        );
        assert_eq!((opts.grace_period_seconds, opts.dry_run), (Some(5), true));
    }
}
