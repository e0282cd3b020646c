//! Strict decoding of built-in kinds: unknown and duplicate fields (for
//! `fieldValidation=Strict|Warn`) and JSON type errors (a 400 BadRequest upstream).
//!
//! Unknown fields are found by decoding into the k8s-openapi type, encoding again and
//! listing the keys of the input that did not survive. Maps (labels, data, …) come back
//! with every key, and free-form JSON fields come back whole, so only fields the type
//! does not declare go missing. A known field given as `null` decodes to "absent" and
//! is therefore skipped rather than reported.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::Value;

/// A decode failure of a typed object: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TypeError {
    /// Dotted path of the offending field (`spec.containers`), empty for the root.
    pub path: String,
    pub message: String,
}

type Codec = fn(&Value) -> Result<Value, TypeError>;

fn codec_for<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, TypeError> {
    let mut input = v.clone();
    if let Some(o) = input.as_object_mut() {
        // Routing already decided the kind; the typed decoder would reject other versions.
        o.remove("apiVersion");
        o.remove("kind");
    }
    let typed: T = serde_path_to_error::deserialize(input).map_err(|e| {
        let path = e.path().to_string();
        TypeError {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }
    })?;
    serde_json::to_value(&typed).map_err(|e| TypeError {
        path: String::new(),
        message: e.to_string(),
    })
}

macro_rules! codecs {
    ($g:expr, $v:expr, $k:expr; $( ($group:literal, $version:literal, $kind:literal) => $ty:ty ),* $(,)?) => {
        match ($g, $v, $k) {
            $( ($group, $version, $kind) => Some(codec_for::<$ty> as Codec), )*
            _ => None,
        }
    };
}

fn codec(group: &str, version: &str, kind: &str) -> Option<Codec> {
    use k8s_openapi::api::*;
    codecs!(group, version, kind;
        ("", "v1", "Binding") => core::v1::Binding,
        ("", "v1", "ComponentStatus") => core::v1::ComponentStatus,
        ("", "v1", "ConfigMap") => core::v1::ConfigMap,
        ("", "v1", "Endpoints") => core::v1::Endpoints,
        ("", "v1", "Event") => core::v1::Event,
        ("", "v1", "LimitRange") => core::v1::LimitRange,
        ("", "v1", "Namespace") => core::v1::Namespace,
        ("", "v1", "Node") => core::v1::Node,
        ("", "v1", "PersistentVolume") => core::v1::PersistentVolume,
        ("", "v1", "PersistentVolumeClaim") => core::v1::PersistentVolumeClaim,
        ("", "v1", "Pod") => core::v1::Pod,
        ("", "v1", "PodTemplate") => core::v1::PodTemplate,
        ("", "v1", "ReplicationController") => core::v1::ReplicationController,
        ("", "v1", "ResourceQuota") => core::v1::ResourceQuota,
        ("", "v1", "Secret") => core::v1::Secret,
        ("", "v1", "Service") => core::v1::Service,
        ("", "v1", "ServiceAccount") => core::v1::ServiceAccount,
        ("apps", "v1", "ControllerRevision") => apps::v1::ControllerRevision,
        ("apps", "v1", "DaemonSet") => apps::v1::DaemonSet,
        ("apps", "v1", "Deployment") => apps::v1::Deployment,
        ("apps", "v1", "ReplicaSet") => apps::v1::ReplicaSet,
        ("apps", "v1", "StatefulSet") => apps::v1::StatefulSet,
        ("events.k8s.io", "v1", "Event") => events::v1::Event,
        ("authentication.k8s.io", "v1", "TokenReview") => authentication::v1::TokenReview,
        ("authentication.k8s.io", "v1", "TokenRequest") => authentication::v1::TokenRequest,
        ("authentication.k8s.io", "v1", "SelfSubjectReview") => authentication::v1::SelfSubjectReview,
        ("authorization.k8s.io", "v1", "SubjectAccessReview") => authorization::v1::SubjectAccessReview,
        ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => authorization::v1::SelfSubjectAccessReview,
        ("authorization.k8s.io", "v1", "LocalSubjectAccessReview") => authorization::v1::LocalSubjectAccessReview,
        ("authorization.k8s.io", "v1", "SelfSubjectRulesReview") => authorization::v1::SelfSubjectRulesReview,
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => autoscaling::v1::HorizontalPodAutoscaler,
        ("autoscaling", "v1", "Scale") => autoscaling::v1::Scale,
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => autoscaling::v2::HorizontalPodAutoscaler,
        ("batch", "v1", "CronJob") => batch::v1::CronJob,
        ("batch", "v1", "Job") => batch::v1::Job,
        ("certificates.k8s.io", "v1", "CertificateSigningRequest") => certificates::v1::CertificateSigningRequest,
        ("networking.k8s.io", "v1", "Ingress") => networking::v1::Ingress,
        ("networking.k8s.io", "v1", "IngressClass") => networking::v1::IngressClass,
        ("networking.k8s.io", "v1", "NetworkPolicy") => networking::v1::NetworkPolicy,
        ("networking.k8s.io", "v1", "IPAddress") => networking::v1::IPAddress,
        ("networking.k8s.io", "v1", "ServiceCIDR") => networking::v1::ServiceCIDR,
        ("policy", "v1", "PodDisruptionBudget") => policy::v1::PodDisruptionBudget,
        ("policy", "v1", "Eviction") => policy::v1::Eviction,
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => rbac::v1::ClusterRole,
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => rbac::v1::ClusterRoleBinding,
        ("rbac.authorization.k8s.io", "v1", "Role") => rbac::v1::Role,
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => rbac::v1::RoleBinding,
        ("storage.k8s.io", "v1", "CSIDriver") => storage::v1::CSIDriver,
        ("storage.k8s.io", "v1", "CSINode") => storage::v1::CSINode,
        ("storage.k8s.io", "v1", "CSIStorageCapacity") => storage::v1::CSIStorageCapacity,
        ("storage.k8s.io", "v1", "StorageClass") => storage::v1::StorageClass,
        ("storage.k8s.io", "v1", "VolumeAttachment") => storage::v1::VolumeAttachment,
        ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration") => admissionregistration::v1::MutatingWebhookConfiguration,
        ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration") => admissionregistration::v1::ValidatingWebhookConfiguration,
        ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy") => admissionregistration::v1::ValidatingAdmissionPolicy,
        ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding") => admissionregistration::v1::ValidatingAdmissionPolicyBinding,
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        ("apiregistration.k8s.io", "v1", "APIService") => k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
        ("scheduling.k8s.io", "v1", "PriorityClass") => scheduling::v1::PriorityClass,
        ("coordination.k8s.io", "v1", "Lease") => coordination::v1::Lease,
        ("node.k8s.io", "v1", "RuntimeClass") => node::v1::RuntimeClass,
        ("discovery.k8s.io", "v1", "EndpointSlice") => discovery::v1::EndpointSlice,
        ("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema") => flowcontrol::v1::FlowSchema,
        ("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration") => flowcontrol::v1::PriorityLevelConfiguration,
    )
}

/// JSON paths of fields in `obj` that the kind's type does not declare, in document
/// order (`spec.foo`, `spec.containers[0].bar`). Empty for unknown kinds and for
/// objects that do not decode (those fail [`type_check`] instead).
pub fn strict_unknown_fields(group: &str, version: &str, kind: &str, obj: &Value) -> Vec<String> {
    let Some(codec) = codec(group, version, kind) else {
        return Vec::new();
    };
    let Ok(round_trip) = codec(obj) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let (Value::Object(input), Value::Object(output)) = (obj, &round_trip) {
        for (k, v) in input {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            diff(k, v, output.get(k), &mut out);
        }
    }
    out
}

fn diff(path: &str, input: &Value, output: Option<&Value>, out: &mut Vec<String>) {
    let Some(output) = output else {
        if !input.is_null() {
            out.push(path.to_string());
        }
        return;
    };
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                diff(&format!("{path}.{k}"), v, o.get(k), out);
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (idx, v) in i.iter().enumerate() {
                diff(&format!("{path}[{idx}]"), v, o.get(idx), out);
            }
        }
        _ => {}
    }
}

/// Upstream's strict-decoding message for a list of unknown or duplicate field errors.
pub fn strict_error_message(unknown: &[String], duplicates: &[String]) -> String {
    let mut parts: Vec<String> = duplicates
        .iter()
        .map(|d| format!("duplicate field \"{d}\""))
        .collect();
    parts.extend(unknown.iter().map(|u| format!("unknown field \"{u}\"")));
    format!("strict decoding error: {}", parts.join(", "))
}

/// JSON paths of object keys that appear more than once in `raw_json` (the last
/// occurrence wins when decoding, as upstream). Invalid JSON yields no entries.
pub fn duplicate_fields(raw_json: &[u8]) -> Vec<String> {
    let found = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(raw_json);
    let _ = DupSeed {
        path: String::new(),
        found: &found,
    }
    .deserialize(&mut de);
    found.into_inner()
}

struct DupSeed<'a> {
    path: String,
    found: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for DupSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DupSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(DupSeed {
                path: format!("{}[{i}]", self.path),
                found: self.found,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) {
                self.found.borrow_mut().push(path.clone());
            }
            map.next_value_seed(DupSeed {
                path,
                found: self.found,
            })?;
        }
        Ok(())
    }
}

/// Checks that `obj` decodes into the kind's type; the error reads like Go's
/// `json: cannot unmarshal string into Go struct field Pod.spec.containers of type array`.
/// Missing required fields are not type errors (Go decodes them as zero values) and
/// are left to validation. Unknown kinds always pass.
pub fn type_check(group: &str, version: &str, kind: &str, obj: &Value) -> Result<(), String> {
    if !obj.is_object() {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type {kind}",
            json_kind(obj)
        ));
    }
    let Some(codec) = codec(group, version, kind) else {
        return Ok(());
    };
    match codec(obj) {
        Ok(_) => Ok(()),
        Err(e) if e.message.starts_with("missing field") => Ok(()),
        Err(e) => Err(go_message(kind, &e)),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Turns serde's `invalid type: string "x", expected a sequence` into Go's wording.
fn go_message(kind: &str, e: &TypeError) -> String {
    let msg = &e.message;
    let Some(rest) = msg.strip_prefix("invalid type: ") else {
        return if e.path.is_empty() {
            msg.clone()
        } else {
            format!("{}: {msg}", e.path)
        };
    };
    let (got, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
    let got = match got.split_whitespace().next().unwrap_or("") {
        "string" => "string",
        "integer" | "floating" => "number",
        "boolean" => "bool",
        "map" => "object",
        "sequence" => "array",
        "null" | "unit" => "null",
        other => other,
    };
    let expected = expected.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    let go_type = match expected {
        "a sequence" => "array".to_string(),
        "a string" | "string" => "string".to_string(),
        "a boolean" | "bool" => "bool".to_string(),
        e if e.starts_with("i32") => "int32".to_string(),
        e if e.starts_with("i64") => "int64".to_string(),
        e if e.starts_with("u") && e.len() <= 3 => "uint".to_string(),
        "f64" | "f32" => "float64".to_string(),
        e if e.starts_with("a map") || e.starts_with("struct") => "object".to_string(),
        other => other
            .trim_start_matches("a ")
            .trim_start_matches("an ")
            .to_string(),
    };
    if e.path.is_empty() {
        format!("json: cannot unmarshal {got} into Go value of type {kind}")
    } else {
        format!(
            "json: cannot unmarshal {got} into Go struct field {kind}.{} of type {go_type}",
            e.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_listed_with_paths() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"any-key": "v"}, "bogusMeta": 1},
            "spec": {
                "containers": [{"name": "c", "image": "x", "imagePullPolicy": "Always", "foo": true}],
                "nodeSelector": {"disk": "ssd"},
                "restartPolicy": null,
                "bar": {"baz": 1}
            },
            "status": {}
        });
        assert_eq!(
            strict_unknown_fields("", "v1", "Pod", &pod),
            vec!["metadata.bogusMeta", "spec.containers[0].foo", "spec.bar"]
        );
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"weird key": "v"}});
        assert!(strict_unknown_fields("", "v1", "ConfigMap", &cm).is_empty());
        let crd_schema = json!({"metadata": {"name": "w.example.com"}, "spec": {"group": "example.com", "names": {"plural": "w", "kind": "W"},
            "scope": "Namespaced", "versions": [{"name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "default": {"a": 1}}}}]}});
        assert!(strict_unknown_fields(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            &crd_schema
        )
        .is_empty());
        assert!(
            strict_unknown_fields("example.com", "v1", "Widget", &json!({"spec": {"x": 1}}))
                .is_empty()
        );
        assert_eq!(
            strict_error_message(&["spec.foo".into(), "spec.bar".into()], &[]),
            "strict decoding error: unknown field \"spec.foo\", unknown field \"spec.bar\""
        );
    }

    #[test]
    fn duplicate_fields_are_found_at_any_depth() {
        let raw = br#"{"metadata": {"name": "a", "name": "b"}, "spec": {"containers": [{"image": "x", "image": "y"}]}, "spec": {}}"#;
        assert_eq!(
            duplicate_fields(raw),
            vec!["metadata.name", "spec.containers[0].image", "spec"]
        );
        assert!(duplicate_fields(br#"{"a": 1, "b": [1, 2]}"#).is_empty());
    }

    #[test]
    fn type_errors_read_like_go() {
        let cases = [
            (json!({"spec": {"containers": "nginx"}}), Err("json: cannot unmarshal string into Go struct field Pod.spec.containers of type array".to_string())),
            (json!({"spec": {"containers": [{"name": 5}]}}), Err("json: cannot unmarshal number into Go struct field Pod.spec.containers[0].name of type string".to_string())),
            (json!({"spec": {"terminationGracePeriodSeconds": "30"}}), Err("json: cannot unmarshal string into Go struct field Pod.spec.terminationGracePeriodSeconds of type int64".to_string())),
            (json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1}}}]}}), Ok(())),
            (json!({"spec": {"containers": null}}), Ok(())),
        ];
        for (obj, want) in cases {
            assert_eq!(type_check("", "v1", "Pod", &obj), want, "{obj}");
        }
        assert!(type_check("", "v1", "Pod", &json!([1])).is_err());
        assert_eq!(
            type_check("example.com", "v1", "Widget", &json!({"spec": 1})),
            Ok(())
        );
    }
}
