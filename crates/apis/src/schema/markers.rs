//! The hand-written table of upstream's per-field merge markers for built-in types.
//!
//! Upstream keeps these as Go struct tags and comment markers in `types.go`
//! (`patchStrategy`/`patchMergeKey` for strategic merge patch, `+listType`/`+listMapKey`/
//! `+mapType`/`+structType` for server-side apply) and publishes them in OpenAPI as
//! `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`, `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`. k8s-openapi's schemas drop them,
//! so they live here, keyed by the schemars type name and the JSON field name.
//!
//! Only fields with a non-default marker are listed: an unlisted list is atomic for
//! server-side apply and replaced by strategic merge patch; an unlisted map is granular.

/// How strategic merge patch treats a field (`patchStrategy` tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchStrategy {
    /// The patch value replaces the live value (the default for lists).
    Replace,
    /// Lists are merged: by merge key for lists of objects, as a union for primitives.
    Merge,
    /// `merge,retainKeys`: merged, and `$retainKeys` clears fields not listed.
    MergeRetainKeys,
    /// `retainKeys` on an object field (e.g. a Deployment's `strategy`).
    RetainKeys,
}

impl PatchStrategy {
    /// The tag value as upstream writes it (`merge`, `merge,retainKeys`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PatchStrategy::Replace => "replace",
            PatchStrategy::Merge => "merge",
            PatchStrategy::MergeRetainKeys => "merge,retainKeys",
            PatchStrategy::RetainKeys => "retainKeys",
        }
    }

    /// Whether lists with this strategy are merged rather than replaced.
    pub fn merges_lists(self) -> bool {
        matches!(self, PatchStrategy::Merge | PatchStrategy::MergeRetainKeys)
    }

    /// The `x-kubernetes-patch-strategy` value, `None` for the implicit default.
    pub fn extension_value(self) -> Option<&'static str> {
        match self {
            PatchStrategy::Replace => None,
            other => Some(other.as_str()),
        }
    }
}

/// Server-side apply list semantics (`+listType`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListType {
    Atomic,
    Set,
    Map { keys: Vec<String> },
}

impl ListType {
    /// The `x-kubernetes-list-type` value.
    pub fn as_str(&self) -> &'static str {
        match self {
            ListType::Atomic => "atomic",
            ListType::Set => "set",
            ListType::Map { .. } => "map",
        }
    }

    /// The `x-kubernetes-list-map-keys` value (empty unless `Map`).
    pub fn map_keys(&self) -> &[String] {
        match self {
            ListType::Map { keys } => keys,
            _ => &[],
        }
    }
}

/// Everything a caller needs to merge one list field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListInfo {
    /// `patchMergeKey`; set only for lists of objects merged by strategic merge patch.
    pub merge_key: Option<String>,
    pub strategy: PatchStrategy,
    pub list_type: ListType,
}

impl ListInfo {
    /// What an unmarked list gets: replaced by strategic merge patch, atomic for apply.
    pub fn unmarked() -> Self {
        ListInfo {
            merge_key: None,
            strategy: PatchStrategy::Replace,
            list_type: ListType::Atomic,
        }
    }
}

/// The markers of one field, as listed in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldMarkers {
    pub strategy: PatchStrategy,
    pub merge_key: Option<&'static str>,
    /// `None` when the field is not a list (or the list carries no `+listType`).
    pub list_type: Option<ListType>,
    /// `+mapType=atomic` on a map field.
    pub map_atomic: bool,
}

#[derive(Clone, Copy)]
enum L {
    No,
    Atomic,
    Set,
    Map(&'static [&'static str]),
}

#[derive(Clone, Copy)]
struct Row {
    ty: &'static str,
    field: &'static str,
    strategy: PatchStrategy,
    merge_key: Option<&'static str>,
    list: L,
    map_atomic: bool,
}

use PatchStrategy::{Merge as M, MergeRetainKeys as MR, Replace as R, RetainKeys as RK};

const fn row(
    ty: &'static str,
    field: &'static str,
    strategy: PatchStrategy,
    merge_key: Option<&'static str>,
    list: L,
) -> Row {
    Row {
        ty,
        field,
        strategy,
        merge_key,
        list,
        map_atomic: false,
    }
}

const fn atomic_map(ty: &'static str, field: &'static str) -> Row {
    Row {
        ty,
        field,
        strategy: R,
        merge_key: None,
        list: L::No,
        map_atomic: true,
    }
}

macro_rules! core {
    ($t:literal) => {
        concat!("io.k8s.api.core.v1.", $t)
    };
}
macro_rules! api {
    ($g:literal, $t:literal) => {
        concat!("io.k8s.api.", $g, ".", $t)
    };
}
const META_OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const CRD_STATUS: &str =
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus";
const JSON_SCHEMA_PROPS: &str =
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";
const API_SERVICE_STATUS: &str =
    "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus";

const NAME: Option<&str> = Some("name");
const TYPE: Option<&str> = Some("type");
const BY_NAME: L = L::Map(&["name"]);
const BY_TYPE: L = L::Map(&["type"]);

/// Fields whose markers differ from the defaults, from upstream `types.go` (v1.33).
static ROWS: &[Row] = &[
    // core/v1 PodSpec
    row(core!("PodSpec"), "volumes", MR, NAME, BY_NAME),
    row(core!("PodSpec"), "initContainers", M, NAME, BY_NAME),
    row(core!("PodSpec"), "containers", M, NAME, BY_NAME),
    row(core!("PodSpec"), "ephemeralContainers", M, NAME, BY_NAME),
    row(core!("PodSpec"), "imagePullSecrets", M, NAME, BY_NAME),
    row(
        core!("PodSpec"),
        "hostAliases",
        M,
        Some("ip"),
        L::Map(&["ip"]),
    ),
    row(
        core!("PodSpec"),
        "topologySpreadConstraints",
        M,
        Some("topologyKey"),
        L::Map(&["topologyKey", "whenUnsatisfiable"]),
    ),
    row(core!("PodSpec"), "schedulingGates", M, NAME, BY_NAME),
    row(core!("PodSpec"), "resourceClaims", MR, NAME, BY_NAME),
    row(core!("PodSpec"), "tolerations", R, None, L::Atomic),
    row(core!("PodSpec"), "readinessGates", R, None, L::Atomic),
    atomic_map(core!("PodSpec"), "nodeSelector"),
    // core/v1 Container and EphemeralContainer share their markers.
    row(
        core!("Container"),
        "ports",
        M,
        Some("containerPort"),
        L::Map(&["containerPort", "protocol"]),
    ),
    row(core!("Container"), "env", M, NAME, BY_NAME),
    row(
        core!("Container"),
        "volumeMounts",
        M,
        Some("mountPath"),
        L::Map(&["mountPath"]),
    ),
    row(
        core!("Container"),
        "volumeDevices",
        M,
        Some("devicePath"),
        L::Map(&["devicePath"]),
    ),
    row(core!("Container"), "args", R, None, L::Atomic),
    row(core!("Container"), "command", R, None, L::Atomic),
    row(core!("Container"), "envFrom", R, None, L::Atomic),
    row(core!("Container"), "resizePolicy", R, None, L::Atomic),
    row(
        core!("EphemeralContainer"),
        "ports",
        M,
        Some("containerPort"),
        L::Map(&["containerPort", "protocol"]),
    ),
    row(core!("EphemeralContainer"), "env", M, NAME, BY_NAME),
    row(
        core!("EphemeralContainer"),
        "volumeMounts",
        M,
        Some("mountPath"),
        L::Map(&["mountPath"]),
    ),
    row(
        core!("EphemeralContainer"),
        "volumeDevices",
        M,
        Some("devicePath"),
        L::Map(&["devicePath"]),
    ),
    row(core!("EphemeralContainer"), "args", R, None, L::Atomic),
    row(core!("EphemeralContainer"), "command", R, None, L::Atomic),
    row(core!("EphemeralContainer"), "envFrom", R, None, L::Atomic),
    row(
        core!("EphemeralContainer"),
        "resizePolicy",
        R,
        None,
        L::Atomic,
    ),
    row(
        core!("ContainerStatus"),
        "volumeMounts",
        M,
        Some("mountPath"),
        L::Map(&["mountPath"]),
    ),
    row(
        core!("ContainerStatus"),
        "allocatedResourcesStatus",
        M,
        NAME,
        BY_NAME,
    ),
    row(
        core!("ResourceStatus"),
        "resources",
        R,
        None,
        L::Map(&["resourceID"]),
    ),
    row(core!("ResourceRequirements"), "claims", R, None, BY_NAME),
    // core/v1 PodStatus
    row(core!("PodStatus"), "conditions", M, TYPE, BY_TYPE),
    row(core!("PodStatus"), "podIPs", M, Some("ip"), L::Map(&["ip"])),
    row(core!("PodStatus"), "hostIPs", M, Some("ip"), L::Atomic),
    row(
        core!("PodStatus"),
        "resourceClaimStatuses",
        MR,
        NAME,
        BY_NAME,
    ),
    // core/v1 other kinds
    row(core!("NodeSpec"), "podCIDRs", M, None, L::Set),
    row(core!("NodeStatus"), "addresses", M, TYPE, BY_TYPE),
    row(core!("NodeStatus"), "conditions", M, TYPE, BY_TYPE),
    row(
        core!("ServiceSpec"),
        "ports",
        M,
        Some("port"),
        L::Map(&["port", "protocol"]),
    ),
    atomic_map(core!("ServiceSpec"), "selector"),
    row(core!("ServiceStatus"), "conditions", M, TYPE, BY_TYPE),
    row(core!("ServiceAccount"), "secrets", M, NAME, BY_NAME),
    row(core!("NamespaceStatus"), "conditions", M, TYPE, BY_TYPE),
    row(
        core!("PersistentVolumeClaimStatus"),
        "conditions",
        M,
        TYPE,
        BY_TYPE,
    ),
    row(
        core!("ReplicationControllerStatus"),
        "conditions",
        M,
        TYPE,
        BY_TYPE,
    ),
    atomic_map(core!("ReplicationControllerSpec"), "selector"),
    row(core!("ComponentStatus"), "conditions", M, TYPE, BY_TYPE),
    // meta/v1
    row(META_OBJECT_META, "finalizers", M, None, L::Set),
    row(
        META_OBJECT_META,
        "ownerReferences",
        M,
        Some("uid"),
        L::Map(&["uid"]),
    ),
    row(META_OBJECT_META, "managedFields", R, None, L::Atomic),
    // apps/v1
    row(
        api!("apps.v1", "DeploymentSpec"),
        "strategy",
        RK,
        None,
        L::No,
    ),
    row(
        api!("apps.v1", "DeploymentStatus"),
        "conditions",
        M,
        TYPE,
        BY_TYPE,
    ),
    row(
        api!("apps.v1", "ReplicaSetStatus"),
        "conditions",
        M,
        TYPE,
        BY_TYPE,
    ),
    row(
        api!("apps.v1", "DaemonSetStatus"),
        "conditions",
        M,
        TYPE,
        BY_TYPE,
    ),
    row(
        api!("apps.v1", "StatefulSetStatus"),
        "conditions",
        M,
        TYPE,
        BY_TYPE,
    ),
    row(
        api!("apps.v1", "StatefulSetSpec"),
        "volumeClaimTemplates",
        R,
        None,
        L::Atomic,
    ),
    // batch/v1
    row(
        api!("batch.v1", "JobStatus"),
        "conditions",
        M,
        TYPE,
        L::Atomic,
    ),
    row(
        api!("batch.v1", "UncountedTerminatedPods"),
        "succeeded",
        R,
        None,
        L::Set,
    ),
    row(
        api!("batch.v1", "UncountedTerminatedPods"),
        "failed",
        R,
        None,
        L::Set,
    ),
    row(
        api!("batch.v1", "PodFailurePolicyOnExitCodesRequirement"),
        "values",
        R,
        None,
        L::Set,
    ),
    // autoscaling, policy, certificates, networking, discovery
    row(
        api!("autoscaling.v2", "HorizontalPodAutoscalerStatus"),
        "conditions",
        M,
        TYPE,
        BY_TYPE,
    ),
    row(
        api!("policy.v1", "PodDisruptionBudgetStatus"),
        "conditions",
        M,
        TYPE,
        BY_TYPE,
    ),
    row(
        api!("certificates.v1", "CertificateSigningRequestStatus"),
        "conditions",
        R,
        None,
        BY_TYPE,
    ),
    row(
        api!("networking.v1", "ServiceCIDRStatus"),
        "conditions",
        M,
        TYPE,
        BY_TYPE,
    ),
    row(
        api!("discovery.v1", "Endpoint"),
        "addresses",
        R,
        None,
        L::Set,
    ),
    // flowcontrol/v1
    row(
        api!("flowcontrol.v1", "FlowSchemaStatus"),
        "conditions",
        M,
        TYPE,
        BY_TYPE,
    ),
    row(
        api!("flowcontrol.v1", "PriorityLevelConfigurationStatus"),
        "conditions",
        M,
        TYPE,
        BY_TYPE,
    ),
    row(
        api!("flowcontrol.v1", "NonResourcePolicyRule"),
        "nonResourceURLs",
        R,
        None,
        L::Set,
    ),
    row(
        api!("flowcontrol.v1", "NonResourcePolicyRule"),
        "verbs",
        R,
        None,
        L::Set,
    ),
    row(
        api!("flowcontrol.v1", "ResourcePolicyRule"),
        "apiGroups",
        R,
        None,
        L::Set,
    ),
    row(
        api!("flowcontrol.v1", "ResourcePolicyRule"),
        "namespaces",
        R,
        None,
        L::Set,
    ),
    row(
        api!("flowcontrol.v1", "ResourcePolicyRule"),
        "resources",
        R,
        None,
        L::Set,
    ),
    row(
        api!("flowcontrol.v1", "ResourcePolicyRule"),
        "verbs",
        R,
        None,
        L::Set,
    ),
    // storage/v1
    row(
        api!("storage.v1", "CSIDriverSpec"),
        "volumeLifecycleModes",
        R,
        None,
        L::Set,
    ),
    row(
        api!("storage.v1", "CSINodeSpec"),
        "drivers",
        M,
        NAME,
        BY_NAME,
    ),
    // admissionregistration/v1
    row(
        api!("admissionregistration.v1", "MutatingWebhookConfiguration"),
        "webhooks",
        M,
        NAME,
        BY_NAME,
    ),
    row(
        api!("admissionregistration.v1", "ValidatingWebhookConfiguration"),
        "webhooks",
        M,
        NAME,
        BY_NAME,
    ),
    row(
        api!("admissionregistration.v1", "MutatingWebhook"),
        "matchConditions",
        M,
        NAME,
        BY_NAME,
    ),
    row(
        api!("admissionregistration.v1", "ValidatingWebhook"),
        "matchConditions",
        M,
        NAME,
        BY_NAME,
    ),
    row(
        api!("admissionregistration.v1", "ValidatingAdmissionPolicySpec"),
        "matchConditions",
        M,
        NAME,
        BY_NAME,
    ),
    row(
        api!("admissionregistration.v1", "ValidatingAdmissionPolicySpec"),
        "variables",
        R,
        None,
        BY_NAME,
    ),
    row(
        api!(
            "admissionregistration.v1",
            "ValidatingAdmissionPolicyStatus"
        ),
        "conditions",
        R,
        None,
        BY_TYPE,
    ),
    row(
        api!(
            "admissionregistration.v1",
            "ValidatingAdmissionPolicyBindingSpec"
        ),
        "validationActions",
        R,
        None,
        L::Set,
    ),
    // apiextensions, apiregistration, node
    row(CRD_STATUS, "conditions", R, None, BY_TYPE),
    row(
        JSON_SCHEMA_PROPS,
        "x-kubernetes-validations",
        M,
        Some("rule"),
        L::Map(&["rule"]),
    ),
    row(API_SERVICE_STATUS, "conditions", M, TYPE, BY_TYPE),
    atomic_map(api!("node.v1", "Scheduling"), "nodeSelector"),
];

/// Types marked `+structType=atomic`: server-side apply replaces them as a whole.
static ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
    core!("ObjectReference"),
    core!("LocalObjectReference"),
    core!("TypedLocalObjectReference"),
    core!("SecretReference"),
    core!("ConfigMapKeySelector"),
    core!("SecretKeySelector"),
    core!("ObjectFieldSelector"),
    core!("ResourceFieldSelector"),
    core!("NodeSelector"),
    core!("NodeSelectorTerm"),
    core!("TopologySelectorTerm"),
];

fn to_markers(r: &Row) -> FieldMarkers {
    let list_type = match r.list {
        L::No => None,
        L::Atomic => Some(ListType::Atomic),
        L::Set => Some(ListType::Set),
        L::Map(keys) => Some(ListType::Map {
            keys: keys.iter().map(|k| k.to_string()).collect(),
        }),
    };
    FieldMarkers {
        strategy: r.strategy,
        merge_key: r.merge_key,
        list_type,
        map_atomic: r.map_atomic,
    }
}

/// The markers upstream puts on `type_name`'s field `field`, if any differ from the defaults.
pub fn field_markers(type_name: &str, field: &str) -> Option<FieldMarkers> {
    ROWS.iter()
        .find(|r| r.ty == type_name && r.field == field)
        .map(to_markers)
}

/// List semantics of a marked list field; `None` when the table has nothing for it
/// (callers then use [`ListInfo::unmarked`]). This is what the OpenAPI document turns
/// into `x-kubernetes-patch-*` and `x-kubernetes-list-*` extensions.
pub fn list_info(type_name: &str, field: &str) -> Option<ListInfo> {
    let m = field_markers(type_name, field)?;
    let list_type = m.list_type?;
    Some(ListInfo {
        merge_key: m.merge_key.map(str::to_string),
        strategy: m.strategy,
        list_type,
    })
}

/// Every marked field as `(type name, field, markers)`, for whole-document passes.
pub fn all_markers() -> impl Iterator<Item = (&'static str, &'static str, FieldMarkers)> {
    ROWS.iter().map(|r| (r.ty, r.field, to_markers(r)))
}

/// Whether the type is `+structType=atomic`.
pub fn is_struct_atomic(type_name: &str) -> bool {
    ATOMIC_STRUCTS.contains(&type_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicate_rows() {
        for (i, a) in ROWS.iter().enumerate() {
            for b in &ROWS[i + 1..] {
                assert!(
                    !(a.ty == b.ty && a.field == b.field),
                    "duplicate row {}.{}",
                    a.ty,
                    a.field
                );
            }
        }
    }

    #[test]
    fn merged_lists_of_objects_have_a_merge_key() {
        for r in ROWS {
            if let L::Map(keys) = r.list {
                if r.strategy.merges_lists() {
                    let mk = r.merge_key.expect("merge key");
                    assert_eq!(keys[0], mk, "{}.{}", r.ty, r.field);
                }
            }
        }
    }

    #[test]
    fn container_ports_are_keyed_by_port_and_protocol() {
        let info = list_info("io.k8s.api.core.v1.Container", "ports").expect("ports");
        assert_eq!(info.merge_key.as_deref(), Some("containerPort"));
        assert_eq!(info.strategy, PatchStrategy::Merge);
        assert_eq!(info.list_type.map_keys(), ["containerPort", "protocol"]);
        assert_eq!(info.list_type.as_str(), "map");
        let fin = list_info(META_OBJECT_META, "finalizers").expect("finalizers");
        assert_eq!(
            (fin.strategy, fin.list_type, fin.merge_key),
            (PatchStrategy::Merge, ListType::Set, None)
        );
        assert!(list_info("io.k8s.api.apps.v1.DeploymentSpec", "strategy").is_none());
        assert_eq!(
            field_markers("io.k8s.api.apps.v1.DeploymentSpec", "strategy").map(|m| m.strategy),
            Some(PatchStrategy::RetainKeys)
        );
        assert_eq!(
            PatchStrategy::MergeRetainKeys.extension_value(),
            Some("merge,retainKeys")
        );
        assert_eq!(PatchStrategy::Replace.extension_value(), None);
    }
}
