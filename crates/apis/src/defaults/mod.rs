//! Defaulting of built-in kinds, as upstream's `pkg/apis/*/v1/defaults.go` plus the
//! generated `zz_generated.defaults.go` walk that applies them to every nested struct.
//!
//! Defaulting works on the `serde_json::Value` the API server holds so that fields it
//! does not know survive untouched. Go's "unset" differs by field kind, and the helpers
//! below mirror that: a string field is unset when absent, null or `""`; a pointer field
//! when absent or null; a plain integer field when absent, null or `0`.
//!
//! Every function is idempotent: applying defaults to a defaulted object changes nothing.
//! Things upstream does elsewhere (registry `PrepareForCreate`, admission plugins such as
//! `DefaultTolerationSeconds` or `Priority`, cluster IP allocation) are not done here.

mod apps;
mod core;
mod other;

pub use self::core::namespace_prepare_for_create;

use serde_json::{Map, Value};

pub(crate) type Obj = Map<String, Value>;

/// Applies upstream defaults for `group/version, Kind=kind` to `obj` in place.
/// Unknown kinds are left alone.
pub fn apply(group: &str, version: &str, kind: &str, obj: &mut Value) {
    if (group, kind) == ("apiextensions.k8s.io", "CustomResourceDefinition") {
        // CRDs have their own module (names, conversion, stored versions).
        crate::crd::default_crd(obj);
        return;
    }
    let Some(o) = obj.as_object_mut() else { return };
    match (group, kind) {
        ("", "Pod") => core::pod(o),
        ("", "PodTemplate") => {
            if let Some(t) = ensure_obj(o, "template") {
                core::pod_template_spec(t)
            }
        }
        ("", "ReplicationController") => core::replication_controller(o),
        ("", "Service") => core::service(o),
        ("", "Namespace") => core::namespace(o),
        ("", "Secret") => core::secret(o),
        ("", "ConfigMap") => {}
        ("", "PersistentVolumeClaim") => core::persistent_volume_claim(o),
        ("", "PersistentVolume") => core::persistent_volume(o),
        ("", "Endpoints") => core::endpoints(o),
        ("", "Node") => core::node(o),
        ("", "LimitRange") => core::limit_range(o),
        ("apps", "Deployment") => apps::deployment(o),
        ("apps", "ReplicaSet") => apps::replica_set(o),
        ("apps", "StatefulSet") => apps::stateful_set(o),
        ("apps", "DaemonSet") => apps::daemon_set(o),
        ("batch", "Job") => apps::job(o),
        ("batch", "CronJob") => apps::cron_job(o),
        ("autoscaling", "HorizontalPodAutoscaler") => other::horizontal_pod_autoscaler(version, o),
        ("networking.k8s.io", "NetworkPolicy") => other::network_policy(o),
        ("networking.k8s.io", "IngressClass") => other::ingress_class(o),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            other::role_binding(o)
        }
        ("storage.k8s.io", "StorageClass") => other::storage_class(o),
        ("storage.k8s.io", "CSIDriver") => other::csi_driver(o),
        ("scheduling.k8s.io", "PriorityClass") => other::priority_class(o),
        ("discovery.k8s.io", "EndpointSlice") => other::endpoint_slice(o),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            other::webhook_configuration(o, false)
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            other::webhook_configuration(o, true)
        }
        ("apiregistration.k8s.io", "APIService") => other::api_service(o),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => other::flow_schema(o),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => {
            other::priority_level_configuration(o)
        }
        _ => {}
    }
}

/// Is this JSON value what Go would decode as the zero value of a string field?
fn is_unset_str(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null)) || v.and_then(Value::as_str) == Some("")
}

/// Sets a string field when it is absent, null or empty (Go `if x == ""`).
pub(crate) fn default_str(m: &mut Obj, key: &str, val: &str) {
    if is_unset_str(m.get(key)) {
        m.insert(key.to_string(), Value::String(val.to_string()));
    }
}

/// Sets a pointer field when it is absent or null (Go `if x == nil`).
pub(crate) fn default_ptr(m: &mut Obj, key: &str, val: Value) {
    if matches!(m.get(key), None | Some(Value::Null)) {
        m.insert(key.to_string(), val);
    }
}

/// Sets a plain integer field when it is absent, null or zero (Go `if x == 0`).
pub(crate) fn default_int(m: &mut Obj, key: &str, val: i64) {
    let unset = match m.get(key) {
        None | Some(Value::Null) => true,
        Some(v) => v.as_f64() == Some(0.0),
    };
    if unset {
        m.insert(key.to_string(), Value::from(val));
    }
}

/// The child object at `key`, created (or replacing a null) when missing, as Go's
/// non-pointer struct fields always exist. `None` when the value is of another JSON
/// type: defaulting never rewrites a value the decoder is going to reject anyway.
pub(crate) fn ensure_obj<'a>(m: &'a mut Obj, key: &str) -> Option<&'a mut Obj> {
    if matches!(m.get(key), None | Some(Value::Null)) {
        m.insert(key.to_string(), Value::Object(Map::new()));
    }
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// The existing child object at `key`, if it is one.
pub(crate) fn child<'a>(m: &'a mut Obj, key: &str) -> Option<&'a mut Obj> {
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// Calls `f` on every object element of the array at `key`.
pub(crate) fn each(m: &mut Obj, key: &str, mut f: impl FnMut(&mut Obj)) {
    if let Some(Value::Array(items)) = m.get_mut(key) {
        for item in items.iter_mut() {
            if let Some(o) = item.as_object_mut() {
                f(o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn helpers_follow_go_zero_value_rules() {
        let mut m = json!({"a": "", "b": null, "c": 0, "d": "x", "e": 5})
            .as_object()
            .cloned()
            .expect("obj");
        default_str(&mut m, "a", "A");
        default_ptr(&mut m, "b", json!(1));
        default_int(&mut m, "c", 3);
        default_str(&mut m, "d", "D");
        default_int(&mut m, "e", 9);
        default_ptr(&mut m, "f", json!(false));
        assert_eq!(
            Value::Object(m),
            json!({"a": "A", "b": 1, "c": 3, "d": "x", "e": 5, "f": false})
        );
    }

    #[test]
    fn malformed_children_are_not_rewritten() {
        let mut v = json!({"kind": "Deployment", "spec": "oops"});
        apply("apps", "v1", "Deployment", &mut v);
        assert_eq!(v, json!({"kind": "Deployment", "spec": "oops"}));
    }

    #[test]
    fn unknown_kinds_are_untouched() {
        let mut v = json!({"spec": {}});
        apply("example.com", "v1", "Widget", &mut v);
        assert_eq!(v, json!({"spec": {}}));
    }
}
