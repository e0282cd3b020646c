//! Type-aware walking of built-in kinds, for patches, apply and OpenAPI.
//!
//! The schemas come from k8s-openapi's `schemars` impls: every type is a definition
//! named like upstream's OpenAPI (`io.k8s.api.core.v1.PodSpec`) and fields refer to
//! other definitions with `$ref`. They are generated once, on first use, for every
//! built-in kind; [`root`] gives a [`Node`] for a kind and nodes walk down fields, list
//! items and map values. The merge markers the schemas lack (`patchStrategy`,
//! `listType`, …) come from the table in [`markers`].
//!
//! Custom resources have no node here: callers treat them as untyped (every list atomic,
//! JSON merge patch semantics).

mod markers;

pub use markers::{
    all_markers, field_markers, is_struct_atomic, list_info, FieldMarkers, ListInfo, ListType,
    PatchStrategy,
};

use k8s_openapi::schemars::{generate::SchemaSettings, JsonSchema};
use k8s_openapi::Resource;
use once_cell::sync::Lazy;
use serde_json::{Map, Value};

/// Prefix of every `$ref` in [`definitions`] (OpenAPI v2 style).
pub const REF_PREFIX: &str = "#/definitions/";

struct Registry {
    definitions: Map<String, Value>,
    /// (group, version, kind, definition name).
    kinds: Vec<(&'static str, &'static str, &'static str, String)>,
}

macro_rules! register {
    ($gen:ident, $kinds:ident; $($t:ty),* $(,)?) => {
        $(
            $gen.subschema_for::<$t>();
            $kinds.push((
                <$t as Resource>::GROUP,
                <$t as Resource>::VERSION,
                <$t as Resource>::KIND,
                <$t as JsonSchema>::schema_name().into_owned(),
            ));
        )*
    };
}

static REGISTRY: Lazy<Registry> = Lazy::new(|| {
    use k8s_openapi::api::{
        admissionregistration::v1 as admission, apps::v1 as apps, authentication::v1 as authn,
        authorization::v1 as authz, autoscaling::v1 as autoscaling1,
        autoscaling::v2 as autoscaling2, batch::v1 as batch, certificates::v1 as certificates,
        coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
        events::v1 as events, flowcontrol::v1 as flowcontrol, networking::v1 as networking,
        node::v1 as node, policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
        storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;

    let mut generator = SchemaSettings::draft07()
        .with(|s| s.definitions_path = "/definitions".into())
        .into_generator();
    let mut kinds = Vec::new();
    register!(generator, kinds;
        core::Binding, core::ComponentStatus, core::ConfigMap, core::Endpoints, core::Event,
        core::LimitRange, core::Namespace, core::Node, core::PersistentVolume,
        core::PersistentVolumeClaim, core::Pod, core::PodTemplate, core::ReplicationController,
        core::ResourceQuota, core::Secret, core::Service, core::ServiceAccount,
        apps::ControllerRevision, apps::DaemonSet, apps::Deployment, apps::ReplicaSet, apps::StatefulSet,
        events::Event,
        autoscaling1::HorizontalPodAutoscaler, autoscaling1::Scale, autoscaling2::HorizontalPodAutoscaler,
        batch::CronJob, batch::Job,
        networking::Ingress, networking::IngressClass, networking::NetworkPolicy, networking::IPAddress,
        networking::ServiceCIDR,
        policy::PodDisruptionBudget, policy::Eviction,
        rbac::ClusterRole, rbac::ClusterRoleBinding, rbac::Role, rbac::RoleBinding,
        storage::StorageClass, storage::CSIDriver, storage::CSINode, storage::CSIStorageCapacity,
        storage::VolumeAttachment,
        apiextensions::CustomResourceDefinition,
        scheduling::PriorityClass,
        coordination::Lease,
        node::RuntimeClass,
        discovery::EndpointSlice,
        admission::MutatingWebhookConfiguration, admission::ValidatingWebhookConfiguration,
        admission::ValidatingAdmissionPolicy, admission::ValidatingAdmissionPolicyBinding,
        apiregistration::APIService,
        authn::TokenReview, authn::TokenRequest, authn::SelfSubjectReview,
        authz::SubjectAccessReview, authz::SelfSubjectAccessReview, authz::LocalSubjectAccessReview,
        authz::SelfSubjectRulesReview,
        certificates::CertificateSigningRequest,
        flowcontrol::FlowSchema, flowcontrol::PriorityLevelConfiguration,
    );
    Registry {
        definitions: generator.take_definitions(true),
        kinds,
    }
});

/// Every generated definition, keyed by upstream's OpenAPI name; `$ref`s inside point
/// at `#/definitions/<name>` (wrapped in a one-element `allOf` where the field adds a
/// description, as upstream's OpenAPI v3 does). Descriptions are k8s-openapi's (upstream's doc comments).
pub fn definitions() -> &'static Map<String, Value> {
    &REGISTRY.definitions
}

/// The definition name of a built-in kind (`io.k8s.api.apps.v1.Deployment`).
pub fn type_name_for(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    REGISTRY
        .kinds
        .iter()
        .find(|(g, v, k, _)| *g == group && *v == version && *k == kind)
        .map(|(_, _, _, name)| name.as_str())
}

/// Every registered kind as `(group, version, kind, definition name)`.
pub fn kinds() -> impl Iterator<Item = (&'static str, &'static str, &'static str, &'static str)> {
    REGISTRY
        .kinds
        .iter()
        .map(|(g, v, k, n)| (*g, *v, *k, n.as_str()))
}

/// The schema node of a built-in kind; `None` for unknown kinds (custom resources).
pub fn root(group: &str, version: &str, kind: &str) -> Option<Node> {
    root_for_type(type_name_for(group, version, kind)?)
}

/// The schema node of any definition by name (`io.k8s.api.core.v1.PodSpec`).
pub fn root_for_type(type_name: &str) -> Option<Node> {
    let (name, schema) = definitions().get_key_value(type_name)?;
    Some(Node {
        schema: schema.as_object()?,
        type_name: Some(name.as_str()),
        parent: None,
    })
}

/// What shape of JSON a node describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// An object with named fields (a Go struct).
    Struct,
    /// An object with arbitrary keys and uniformly typed values (a Go map).
    Map,
    List,
    /// string, integer, number, boolean, int-or-string, quantity.
    Scalar,
    /// Free-form JSON (`RawExtension`, `JSON`): no further schema.
    Any,
}

/// A position in a built-in kind's schema.
///
/// Carries the definition it resolved to (if any) and the (type, field) it was reached
/// through, which is what the marker table is keyed by.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    schema: &'static Map<String, Value>,
    type_name: Option<&'static str>,
    parent: Option<(&'static str, &'static str)>,
}

impl Node {
    fn resolve(
        schema: &'static Value,
        parent: Option<(&'static str, &'static str)>,
    ) -> Option<Node> {
        let obj = schema.as_object()?;
        // A described reference is emitted as `{"description": …, "allOf": [{"$ref": …}]}`.
        let reference =
            obj.get("$ref")
                .or_else(|| match obj.get("allOf").and_then(Value::as_array) {
                    Some(all) if all.len() == 1 => all[0].get("$ref"),
                    _ => None,
                });
        if let Some(name) = reference
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(REF_PREFIX))
        {
            let (name, def) = definitions().get_key_value(name)?;
            return Some(Node {
                schema: def.as_object()?,
                type_name: Some(name.as_str()),
                parent,
            });
        }
        Some(Node {
            schema: obj,
            type_name: None,
            parent,
        })
    }

    /// The definition this node resolved to, for named types.
    pub fn type_name(&self) -> Option<&'static str> {
        self.type_name
    }

    /// `(type name, field name)` this node was reached through, for struct fields.
    pub fn parent_field(&self) -> Option<(&'static str, &'static str)> {
        self.parent
    }

    /// The raw JSON schema of this node (after following `$ref`).
    pub fn schema(&self) -> &'static Map<String, Value> {
        self.schema
    }

    pub fn kind(&self) -> NodeKind {
        match self.schema.get("type").and_then(Value::as_str) {
            Some("array") => NodeKind::List,
            Some("object") if self.schema.contains_key("properties") => NodeKind::Struct,
            Some("object")
                if self
                    .schema
                    .get("additionalProperties")
                    .is_some_and(Value::is_object) =>
            {
                NodeKind::Map
            }
            Some("object") => NodeKind::Any,
            Some(_) => NodeKind::Scalar,
            None if self.schema.contains_key("x-kubernetes-int-or-string") => NodeKind::Scalar,
            None => NodeKind::Any,
        }
    }

    /// A named field of a struct.
    pub fn field(&self, name: &str) -> Option<Node> {
        let props = self.schema.get("properties")?.as_object()?;
        let (key, schema) = props.get_key_value(name)?;
        Node::resolve(schema, self.type_name.map(|t| (t, key.as_str())))
    }

    /// The element schema of a list.
    pub fn items(&self) -> Option<Node> {
        Node::resolve(self.schema.get("items")?, None)
    }

    /// The value schema of a map.
    pub fn additional(&self) -> Option<Node> {
        Node::resolve(self.schema.get("additionalProperties")?, None)
    }

    /// The schema under key `key` of an object: a struct field, or a map value.
    pub fn child(&self, key: &str) -> Option<Node> {
        match self.kind() {
            NodeKind::Struct => self.field(key),
            NodeKind::Map => self.additional(),
            _ => None,
        }
    }

    /// Markers of the field this node was reached through, if the table lists it.
    pub fn markers(&self) -> Option<FieldMarkers> {
        let (ty, field) = self.parent?;
        field_markers(ty, field)
    }

    /// The strategic merge patch strategy of this field (`Replace` when unmarked).
    pub fn patch_strategy(&self) -> PatchStrategy {
        self.markers()
            .map(|m| m.strategy)
            .unwrap_or(PatchStrategy::Replace)
    }

    /// List semantics, for list nodes; unmarked lists are atomic and replaced.
    pub fn list(&self) -> Option<ListInfo> {
        if self.kind() != NodeKind::List {
            return None;
        }
        let Some(m) = self.markers() else {
            return Some(ListInfo::unmarked());
        };
        Some(ListInfo {
            merge_key: m.merge_key.map(str::to_string),
            strategy: m.strategy,
            list_type: m.list_type.unwrap_or(ListType::Atomic),
        })
    }

    /// Whether server-side apply treats this object as one value (`+mapType=atomic`
    /// on the field, or `+structType=atomic` on its type).
    pub fn is_map_atomic(&self) -> bool {
        self.markers().is_some_and(|m| m.map_atomic) || self.type_name.is_some_and(is_struct_atomic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin_resources;

    #[test]
    fn every_builtin_resource_has_a_root() {
        for r in builtin_resources() {
            assert!(
                root(&r.group, &r.version, &r.kind).is_some(),
                "no schema for {}/{} {}",
                r.group,
                r.version,
                r.kind
            );
        }
        assert!(root("example.com", "v1", "Widget").is_none());
    }

    #[test]
    fn walks_deployment_down_to_container_ports() {
        let deploy = root("apps", "v1", "Deployment").expect("deployment");
        assert_eq!(deploy.type_name(), Some("io.k8s.api.apps.v1.Deployment"));
        let pod_spec = deploy
            .field("spec")
            .and_then(|s| s.field("template"))
            .and_then(|t| t.field("spec"))
            .expect("spec");
        assert_eq!(pod_spec.type_name(), Some("io.k8s.api.core.v1.PodSpec"));
        let containers = pod_spec.field("containers").expect("containers");
        assert_eq!(containers.kind(), NodeKind::List);
        let info = containers.list().expect("list");
        assert_eq!(info.merge_key.as_deref(), Some("name"));
        assert_eq!(info.strategy, PatchStrategy::Merge);
        let container = containers.items().expect("items");
        assert_eq!(container.type_name(), Some("io.k8s.api.core.v1.Container"));
        let ports = container
            .field("ports")
            .and_then(|p| p.list())
            .expect("ports");
        assert_eq!(
            ports.list_type,
            ListType::Map {
                keys: vec!["containerPort".into(), "protocol".into()]
            }
        );
        let args = container
            .field("args")
            .and_then(|a| a.list())
            .expect("args");
        assert_eq!(
            (args.strategy, args.list_type),
            (PatchStrategy::Replace, ListType::Atomic)
        );
        assert!(pod_spec
            .field("nodeSelector")
            .expect("nodeSelector")
            .is_map_atomic());
        assert_eq!(
            pod_spec.field("nodeSelector").expect("ns").kind(),
            NodeKind::Map
        );
        assert!(deploy
            .field("spec")
            .and_then(|s| s.field("selector"))
            .expect("selector")
            .is_map_atomic());
        assert_eq!(
            deploy
                .field("spec")
                .and_then(|s| s.field("strategy"))
                .map(|s| s.patch_strategy()),
            Some(PatchStrategy::RetainKeys)
        );
        let labels = deploy
            .field("metadata")
            .and_then(|m| m.field("labels"))
            .expect("labels");
        assert_eq!(labels.kind(), NodeKind::Map);
        assert_eq!(
            labels.child("app").map(|n| n.kind()),
            Some(NodeKind::Scalar)
        );
        assert!(!labels.is_map_atomic());
        let tolerations = pod_spec
            .field("tolerations")
            .and_then(|t| t.list())
            .expect("tolerations");
        assert_eq!(tolerations.strategy, PatchStrategy::Replace);
    }

    #[test]
    fn every_marked_field_exists_in_the_schemas() {
        for (ty, field, _) in all_markers() {
            let node = root_for_type(ty).unwrap_or_else(|| panic!("no definition {ty}"));
            assert!(node.field(field).is_some(), "{ty} has no field {field}");
        }
    }

    #[test]
    fn definitions_use_upstream_names_and_refs() {
        let defs = definitions();
        let pod_spec = defs.get("io.k8s.api.core.v1.PodSpec").expect("PodSpec");
        let items_ref = pod_spec
            .pointer("/properties/containers/items/$ref")
            .and_then(Value::as_str);
        assert_eq!(
            items_ref,
            Some("#/definitions/io.k8s.api.core.v1.Container")
        );
        assert!(defs.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        let q = root_for_type("io.k8s.apimachinery.pkg.api.resource.Quantity").expect("quantity");
        assert_eq!(q.kind(), NodeKind::Scalar);
    }
}
