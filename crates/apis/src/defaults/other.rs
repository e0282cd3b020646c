//! Defaults for the smaller API groups: autoscaling, networking, rbac, storage,
//! scheduling, discovery, admissionregistration, apiregistration and
//! flowcontrol (each group's `v1/defaults.go`).

use serde_json::{json, Value};

use super::{child, default_ptr, default_str, each, ensure_obj, Obj};

/// autoscaling/v1 only defaults `minReplicas`; autoscaling/v2 also defaults the CPU
/// metric and fills in a partially given `behavior`.
pub(crate) fn horizontal_pod_autoscaler(version: &str, o: &mut Obj) {
    let Some(spec) = ensure_obj(o, "spec") else {
        return;
    };
    default_ptr(spec, "minReplicas", json!(1));
    if version == "v1" {
        return;
    }
    let no_metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(|m| m.is_empty());
    if no_metrics {
        spec.insert(
            "metrics".to_string(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    if let Some(behavior) = child(spec, "behavior") {
        let up = json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15}]});
        // The scale-down window stays unset: the controller's
        // `--horizontal-pod-autoscaler-downscale-stabilization` applies (upstream leaves it nil).
        let down = json!({"selectPolicy": "Max", "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 15}]});
        scaling_rules(behavior, "scaleUp", up);
        scaling_rules(behavior, "scaleDown", down);
    }
}

/// Given fields win; missing ones come from the defaults (upstream `copyHPAScalingRules`).
fn scaling_rules(behavior: &mut Obj, key: &str, defaults: Value) {
    let Value::Object(mut rules) = defaults else {
        return;
    };
    if let Some(Value::Object(given)) = behavior.get(key) {
        for (k, v) in given {
            if !v.is_null() {
                rules.insert(k.clone(), v.clone());
            }
        }
    }
    behavior.insert(key.to_string(), Value::Object(rules));
}

pub(crate) fn network_policy(o: &mut Obj) {
    let Some(spec) = ensure_obj(o, "spec") else {
        return;
    };
    let port_protocol =
        |rule: &mut Obj| each(rule, "ports", |p| default_ptr(p, "protocol", json!("TCP")));
    each(spec, "ingress", port_protocol);
    each(spec, "egress", port_protocol);
    let no_types = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(|t| t.is_empty());
    if no_types {
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        let types = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        spec.insert("policyTypes".to_string(), types);
    }
}

pub(crate) fn ingress_class(o: &mut Obj) {
    if let Some(params) = child(o, "spec").and_then(|s| child(s, "parameters")) {
        default_ptr(params, "scope", json!("Cluster"));
    }
}

/// `SetDefaults_RoleBinding` / `ClusterRoleBinding` and `SetDefaults_Subject`.
pub(crate) fn role_binding(o: &mut Obj) {
    if let Some(role_ref) = child(o, "roleRef") {
        default_str(role_ref, "apiGroup", "rbac.authorization.k8s.io");
    }
    each(o, "subjects", |s| {
        let kind = s.get("kind").and_then(Value::as_str).unwrap_or("");
        if matches!(kind, "User" | "Group") {
            default_str(s, "apiGroup", "rbac.authorization.k8s.io");
        }
    });
}

pub(crate) fn storage_class(o: &mut Obj) {
    default_ptr(o, "reclaimPolicy", json!("Delete"));
    default_ptr(o, "volumeBindingMode", json!("Immediate"));
}

pub(crate) fn csi_driver(o: &mut Obj) {
    let Some(spec) = ensure_obj(o, "spec") else {
        return;
    };
    default_ptr(spec, "attachRequired", json!(true));
    default_ptr(spec, "podInfoOnMount", json!(false));
    default_ptr(spec, "storageCapacity", json!(false));
    default_ptr(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
    let no_modes = spec
        .get("volumeLifecycleModes")
        .and_then(Value::as_array)
        .is_none_or(|m| m.is_empty());
    if no_modes {
        spec.insert("volumeLifecycleModes".to_string(), json!(["Persistent"]));
    }
    default_ptr(spec, "requiresRepublish", json!(false));
    default_ptr(spec, "seLinuxMount", json!(false));
}

pub(crate) fn priority_class(o: &mut Obj) {
    default_ptr(o, "preemptionPolicy", json!("PreemptLowerPriority"));
}

pub(crate) fn endpoint_slice(o: &mut Obj) {
    each(o, "ports", |p| {
        default_ptr(p, "name", json!(""));
        default_ptr(p, "protocol", json!("TCP"));
    });
}

pub(crate) fn webhook_configuration(o: &mut Obj, mutating: bool) {
    each(o, "webhooks", |w| {
        default_ptr(w, "failurePolicy", json!("Fail"));
        default_ptr(w, "matchPolicy", json!("Equivalent"));
        default_ptr(w, "namespaceSelector", json!({}));
        default_ptr(w, "objectSelector", json!({}));
        default_ptr(w, "timeoutSeconds", json!(10));
        if mutating {
            default_ptr(w, "reinvocationPolicy", json!("Never"));
        }
        each(w, "rules", |r| default_ptr(r, "scope", json!("*")));
        if let Some(service) = child(w, "clientConfig").and_then(|c| child(c, "service")) {
            default_ptr(service, "port", json!(443));
        }
    });
}

pub(crate) fn api_service(o: &mut Obj) {
    if let Some(service) = child(o, "spec").and_then(|s| child(s, "service")) {
        default_ptr(service, "port", json!(443));
    }
}

pub(crate) fn flow_schema(o: &mut Obj) {
    if let Some(spec) = child(o, "spec") {
        default_ptr(spec, "matchingPrecedence", json!(1000));
    }
}

pub(crate) fn priority_level_configuration(o: &mut Obj) {
    let Some(limited) = child(o, "spec").and_then(|s| child(s, "limited")) else {
        return;
    };
    default_ptr(limited, "nominalConcurrencyShares", json!(30));
    default_ptr(limited, "lendablePercent", json!(0));
    if let Some(queuing) = child(limited, "limitResponse").and_then(|r| child(r, "queuing")) {
        super::default_int(queuing, "queues", 64);
        super::default_int(queuing, "handSize", 8);
        super::default_int(queuing, "queueLengthLimit", 50);
    }
}

#[cfg(test)]
mod tests {
    use crate::defaults::apply;
    use serde_json::{json, Value};

    #[test]
    fn small_group_defaults() {
        // (group, version, kind, input, JSON pointer, expected)
        let cases: Vec<(&str, &str, &str, Value, &str, Value)> = vec![
            (
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                json!({"spec": {"maxReplicas": 3}}),
                "/spec/minReplicas",
                json!(1),
            ),
            (
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                json!({"spec": {}}),
                "/spec/metrics/0/resource/target/averageUtilization",
                json!(80),
            ),
            (
                "autoscaling",
                "v1",
                "HorizontalPodAutoscaler",
                json!({"spec": {}}),
                "/spec/metrics",
                Value::Null,
            ),
            (
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                json!({"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
                "/spec/behavior/scaleDown",
                json!({"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}),
            ),
            (
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                json!({"spec": {}}),
                "/spec/policyTypes",
                json!(["Ingress"]),
            ),
            (
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}}),
                "/spec/policyTypes",
                json!(["Ingress", "Egress"]),
            ),
            (
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}}),
                "/spec/egress/0/ports/0/protocol",
                json!("TCP"),
            ),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]}),
                "/subjects",
                json!([{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"}, {"kind": "ServiceAccount", "name": "s"}]),
            ),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRoleBinding",
                json!({"roleRef": {"kind": "ClusterRole", "name": "r"}}),
                "/roleRef/apiGroup",
                json!("rbac.authorization.k8s.io"),
            ),
            (
                "storage.k8s.io",
                "v1",
                "StorageClass",
                json!({"provisioner": "p"}),
                "/reclaimPolicy",
                json!("Delete"),
            ),
            (
                "storage.k8s.io",
                "v1",
                "StorageClass",
                json!({"provisioner": "p"}),
                "/volumeBindingMode",
                json!("Immediate"),
            ),
            (
                "scheduling.k8s.io",
                "v1",
                "PriorityClass",
                json!({"value": 1}),
                "/preemptionPolicy",
                json!("PreemptLowerPriority"),
            ),
            (
                "discovery.k8s.io",
                "v1",
                "EndpointSlice",
                json!({"ports": [{"port": 80}]}),
                "/ports/0",
                json!({"port": 80, "name": "", "protocol": "TCP"}),
            ),
            (
                "admissionregistration.k8s.io",
                "v1",
                "MutatingWebhookConfiguration",
                json!({"webhooks": [{"name": "w"}]}),
                "/webhooks/0/reinvocationPolicy",
                json!("Never"),
            ),
            (
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingWebhookConfiguration",
                json!({"webhooks": [{"name": "w"}]}),
                "/webhooks/0/timeoutSeconds",
                json!(10),
            ),
        ];
        for (group, version, kind, input, ptr, want) in cases {
            let mut v = input.clone();
            apply(group, version, kind, &mut v);
            let once = v.clone();
            apply(group, version, kind, &mut v);
            assert_eq!(v, once, "idempotent {kind}");
            assert_eq!(
                v.pointer(ptr).cloned().unwrap_or(Value::Null),
                want,
                "{kind} {input} {ptr}"
            );
        }
    }
}
