//! Pods: created `Pending` with a QoS class; deleted gracefully once bound to a node
//! (the node's agent finishes the deletion), at once otherwise.

use std::sync::Arc;

use apis::{FieldErrors, ResourceInfo};
use serde_json::{json, Value};

use crate::cacher::ObjectAttrs;
use crate::strategy::{BuiltinStrategy, Strategy};

pub struct PodStrategy {
    inner: BuiltinStrategy,
}

impl PodStrategy {
    pub fn new(info: Arc<ResourceInfo>) -> Self {
        PodStrategy {
            inner: BuiltinStrategy::new(info),
        }
    }
}

/// Upstream's QoS classification: Guaranteed when every container has equal cpu and
/// memory requests and limits, BestEffort when none sets any, else Burstable.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(res));
            let r = req.and_then(|r| r.get(res)).or(l);
            if l.is_none() || r != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed && !containers.is_empty() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

impl Strategy for PodStrategy {
    fn info(&self) -> &Arc<ResourceInfo> {
        &self.inner.info
    }
    fn default(&self, obj: &mut Value) {
        self.inner.default(obj);
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        let qos = qos_class(obj);
        if let Some(m) = obj.as_object_mut() {
            m.insert(
                "status".to_string(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
        }
    }
    fn validate(&self, obj: &Value) -> FieldErrors {
        self.inner.validate(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors {
        self.inner.validate_update(new, old)
    }
    fn attrs(&self, obj: &Value) -> ObjectAttrs {
        self.inner.attrs(obj)
    }
    fn graceful_delete_period(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        let bound = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let phase = obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !bound || matches!(phase, "Succeeded" | "Failed") {
            return None;
        }
        let period = requested
            .or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30);
        if period <= 0 {
            None
        } else {
            Some(period)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes_follow_upstream_rules() {
        let besteffort = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(qos_class(&besteffort), "BestEffort");
        let guaranteed = json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
        let burstable = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(qos_class(&burstable), "Burstable");
    }

    #[test]
    fn unbound_pods_are_deleted_at_once() {
        let s = PodStrategy::new(
            apis::builtin_resources()
                .into_iter()
                .find(|r| r.resource == "pods")
                .expect("pods"),
        );
        assert_eq!(s.graceful_delete_period(&json!({"spec": {}}), None), None);
        let bound = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 10}, "status": {"phase": "Running"}});
        assert_eq!(s.graceful_delete_period(&bound, None), Some(10));
        assert_eq!(s.graceful_delete_period(&bound, Some(0)), None);
    }
}
