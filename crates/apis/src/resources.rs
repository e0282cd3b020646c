//! The table of built-in resources the API server serves: group, version, kind,
//! plural/singular names, scope, verbs, short names, categories and subresources.
//!
//! Discovery, routing, OpenAPI and the registry are all driven from this one table,
//! so a resource is added in exactly one place. Custom resources get entries at run
//! time (built from their CRD) with the same shape.

use std::sync::Arc;

/// All verbs of a normal read-write resource, in the order upstream lists them.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Verbs of create-only review resources.
pub const CREATE_VERBS: &[&str] = &["create"];
/// Verbs of a read-only list/get resource (componentstatuses).
pub const READ_VERBS: &[&str] = &["get", "list"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: String,
    /// Kind served by the subresource (`Scale`, `Binding`, `Eviction`; the parent kind for `status`).
    pub kind: String,
    /// Group/version of that kind if it differs from the parent (`autoscaling/v1` for scale).
    pub group: String,
    pub version: String,
    pub verbs: Vec<String>,
}

/// One served resource in one group/version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core (legacy) group.
    pub group: String,
    pub version: String,
    /// Plural, lower-case resource name used in URLs (`deployments`).
    pub resource: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<Subresource>,
    /// Group whose storage holds the objects (resources served in several groups or
    /// versions share one store: core `events` and `events.k8s.io` events, HPA v1/v2).
    pub storage_group: String,
    /// Resource name of that storage.
    pub storage_resource: String,
}

impl ResourceInfo {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `pods` for the core group.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s.name == name)
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// Storage key prefix for this resource, as upstream lays out etcd:
    /// `/registry/<resource>/` for built-in kinds, `/registry/<group>/<resource>/` for
    /// custom resources and for the few upstream stores that carry their group.
    pub fn storage_prefix(&self) -> String {
        storage_prefix(&self.storage_group, &self.storage_resource)
    }
}

/// See [`ResourceInfo::storage_prefix`].
pub fn storage_prefix(group: &str, resource: &str) -> String {
    match (group, resource) {
        ("", "services") => "/registry/services/specs/".to_string(),
        ("", "endpoints") => "/registry/services/endpoints/".to_string(),
        ("", "nodes") => "/registry/minions/".to_string(),
        ("", "replicationcontrollers") => "/registry/controllers/".to_string(),
        ("", "persistentvolumes") => "/registry/persistentvolumes/".to_string(),
        ("apiextensions.k8s.io", r) => format!("/registry/apiextensions.k8s.io/{r}/"),
        (g, r) if is_builtin_group(g) => format!("/registry/{r}/"),
        (g, r) => format!("/registry/{g}/{r}/"),
    }
}

fn is_builtin_group(group: &str) -> bool {
    BUILTIN_GROUPS.iter().any(|(g, _)| *g == group)
}

/// Built-in groups with their served versions, preferred version first, in the
/// order `/apis` lists them.
pub const BUILTIN_GROUPS: &[(&str, &[&str])] = &[
    ("", &["v1"]),
    ("apiregistration.k8s.io", &["v1"]),
    ("apps", &["v1"]),
    ("events.k8s.io", &["v1"]),
    ("authentication.k8s.io", &["v1"]),
    ("authorization.k8s.io", &["v1"]),
    ("autoscaling", &["v2", "v1"]),
    ("batch", &["v1"]),
    ("certificates.k8s.io", &["v1"]),
    ("networking.k8s.io", &["v1"]),
    ("policy", &["v1"]),
    ("rbac.authorization.k8s.io", &["v1"]),
    ("storage.k8s.io", &["v1"]),
    ("admissionregistration.k8s.io", &["v1"]),
    ("apiextensions.k8s.io", &["v1"]),
    ("scheduling.k8s.io", &["v1"]),
    ("coordination.k8s.io", &["v1"]),
    ("node.k8s.io", &["v1"]),
    ("discovery.k8s.io", &["v1"]),
    ("flowcontrol.apiserver.k8s.io", &["v1"]),
];

struct Def {
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [&'static str],
    verbs: &'static [&'static str],
}

const fn def(
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [&'static str],
) -> Def {
    Def {
        group,
        version,
        resource,
        kind,
        namespaced,
        short,
        categories,
        subresources,
        verbs: ALL_VERBS,
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

const DEFS: &[Def] = &[
    // core/v1
    def("", "v1", "bindings", "Binding", true, NONE, NONE, NONE),
    Def {
        verbs: READ_VERBS,
        ..def(
            "",
            "v1",
            "componentstatuses",
            "ComponentStatus",
            false,
            &["cs"],
            NONE,
            NONE,
        )
    },
    def(
        "",
        "v1",
        "configmaps",
        "ConfigMap",
        true,
        &["cm"],
        NONE,
        NONE,
    ),
    def(
        "",
        "v1",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        NONE,
        NONE,
    ),
    def("", "v1", "events", "Event", true, &["ev"], NONE, NONE),
    def(
        "",
        "v1",
        "limitranges",
        "LimitRange",
        true,
        &["limits"],
        NONE,
        NONE,
    ),
    def(
        "",
        "v1",
        "namespaces",
        "Namespace",
        false,
        &["ns"],
        NONE,
        &["finalize", "status"],
    ),
    def(
        "",
        "v1",
        "nodes",
        "Node",
        false,
        &["no"],
        NONE,
        &["proxy", "status"],
    ),
    def(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        NONE,
        &["status"],
    ),
    def(
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        false,
        &["pv"],
        NONE,
        &["status"],
    ),
    def(
        "",
        "v1",
        "pods",
        "Pod",
        true,
        &["po"],
        ALL,
        &[
            "attach",
            "binding",
            "ephemeralcontainers",
            "eviction",
            "exec",
            "log",
            "portforward",
            "proxy",
            "resize",
            "status",
        ],
    ),
    def(
        "",
        "v1",
        "podtemplates",
        "PodTemplate",
        true,
        NONE,
        NONE,
        NONE,
    ),
    def(
        "",
        "v1",
        "replicationcontrollers",
        "ReplicationController",
        true,
        &["rc"],
        ALL,
        &["scale", "status"],
    ),
    def(
        "",
        "v1",
        "resourcequotas",
        "ResourceQuota",
        true,
        &["quota"],
        NONE,
        &["status"],
    ),
    def("", "v1", "secrets", "Secret", true, NONE, NONE, NONE),
    def(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        &["sa"],
        NONE,
        &["token"],
    ),
    def(
        "",
        "v1",
        "services",
        "Service",
        true,
        &["svc"],
        ALL,
        &["proxy", "status"],
    ),
    // apps/v1
    def(
        "apps",
        "v1",
        "controllerrevisions",
        "ControllerRevision",
        true,
        NONE,
        NONE,
        NONE,
    ),
    def(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        true,
        &["ds"],
        ALL,
        &["status"],
    ),
    def(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        &["deploy"],
        ALL,
        &["scale", "status"],
    ),
    def(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        true,
        &["rs"],
        ALL,
        &["scale", "status"],
    ),
    def(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        true,
        &["sts"],
        ALL,
        &["scale", "status"],
    ),
    // authentication.k8s.io/v1 and authorization.k8s.io/v1: create-only reviews
    Def {
        verbs: CREATE_VERBS,
        ..def(
            "authentication.k8s.io",
            "v1",
            "selfsubjectreviews",
            "SelfSubjectReview",
            false,
            NONE,
            NONE,
            NONE,
        )
    },
    Def {
        verbs: CREATE_VERBS,
        ..def(
            "authentication.k8s.io",
            "v1",
            "tokenreviews",
            "TokenReview",
            false,
            NONE,
            NONE,
            NONE,
        )
    },
    Def {
        verbs: CREATE_VERBS,
        ..def(
            "authorization.k8s.io",
            "v1",
            "localsubjectaccessreviews",
            "LocalSubjectAccessReview",
            true,
            NONE,
            NONE,
            NONE,
        )
    },
    Def {
        verbs: CREATE_VERBS,
        ..def(
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            false,
            NONE,
            NONE,
            NONE,
        )
    },
    Def {
        verbs: CREATE_VERBS,
        ..def(
            "authorization.k8s.io",
            "v1",
            "selfsubjectrulesreviews",
            "SelfSubjectRulesReview",
            false,
            NONE,
            NONE,
            NONE,
        )
    },
    Def {
        verbs: CREATE_VERBS,
        ..def(
            "authorization.k8s.io",
            "v1",
            "subjectaccessreviews",
            "SubjectAccessReview",
            false,
            NONE,
            NONE,
            NONE,
        )
    },
    // events.k8s.io/v1
    def(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        true,
        &["ev"],
        NONE,
        NONE,
    ),
    // autoscaling
    def(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        ALL,
        &["status"],
    ),
    def(
        "autoscaling",
        "v1",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        ALL,
        &["status"],
    ),
    // batch/v1
    def(
        "batch",
        "v1",
        "cronjobs",
        "CronJob",
        true,
        &["cj"],
        ALL,
        &["status"],
    ),
    def("batch", "v1", "jobs", "Job", true, NONE, ALL, &["status"]),
    // networking.k8s.io/v1
    def(
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "IngressClass",
        false,
        NONE,
        NONE,
        NONE,
    ),
    def(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        true,
        &["ing"],
        NONE,
        &["status"],
    ),
    def(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
        &["netpol"],
        NONE,
        NONE,
    ),
    // policy/v1
    def(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        NONE,
        &["status"],
    ),
    // rbac.authorization.k8s.io/v1
    def(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        NONE,
        NONE,
        NONE,
    ),
    def(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        NONE,
        NONE,
        NONE,
    ),
    def(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        NONE,
        NONE,
        NONE,
    ),
    def(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        NONE,
        NONE,
        NONE,
    ),
    // storage.k8s.io/v1
    def(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        false,
        &["sc"],
        NONE,
        NONE,
    ),
    // apiextensions.k8s.io/v1
    def(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        NONE,
        &["status"],
    ),
    // scheduling.k8s.io/v1
    def(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "PriorityClass",
        false,
        &["pc"],
        NONE,
        NONE,
    ),
    // coordination.k8s.io/v1
    def(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        NONE,
        NONE,
        NONE,
    ),
    // node.k8s.io/v1
    def(
        "node.k8s.io",
        "v1",
        "runtimeclasses",
        "RuntimeClass",
        false,
        NONE,
        NONE,
        NONE,
    ),
    // discovery.k8s.io/v1
    def(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
        NONE,
        NONE,
        NONE,
    ),
];

fn subresource(parent_kind: &str, name: &str) -> Subresource {
    let s = |kind: &str, group: &str, version: &str, verbs: &[&str]| Subresource {
        name: name.to_string(),
        kind: kind.to_string(),
        group: group.to_string(),
        version: version.to_string(),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
    };
    match name {
        "status" => s(parent_kind, "", "", &["get", "patch", "update"]),
        "scale" => s("Scale", "autoscaling", "v1", &["get", "patch", "update"]),
        "binding" => s("Binding", "", "v1", &["create"]),
        "eviction" => s("Eviction", "policy", "v1", &["create"]),
        "log" => s("Pod", "", "v1", &["get"]),
        "exec" | "attach" | "portforward" => s("PodExecOptions", "", "v1", &["create", "get"]),
        "proxy" => s(
            &format!("{parent_kind}ProxyOptions"),
            "",
            "v1",
            &["create", "delete", "get", "patch", "update"],
        ),
        "token" => s("TokenRequest", "authentication.k8s.io", "v1", &["create"]),
        "finalize" => s("Namespace", "", "", &["update"]),
        "ephemeralcontainers" | "resize" => s("Pod", "", "", &["get", "patch", "update"]),
        _ => s(parent_kind, "", "", &["get"]),
    }
}

/// Lower-case singular name as upstream derives it (`Endpoints` → `endpoints`).
pub fn singular_of(kind: &str) -> String {
    kind.to_ascii_lowercase()
}

/// All built-in resources, in discovery order.
pub fn builtin_resources() -> Vec<Arc<ResourceInfo>> {
    DEFS.iter()
        .map(|d| {
            let (storage_group, storage_resource) = match (d.group, d.resource) {
                ("events.k8s.io", "events") => ("", "events"),
                (g, r) => (g, r),
            };
            let mut verbs: Vec<String> = d.verbs.iter().map(|v| v.to_string()).collect();
            if d.resource == "bindings" {
                verbs = vec!["create".to_string()];
            }
            Arc::new(ResourceInfo {
                group: d.group.to_string(),
                version: d.version.to_string(),
                resource: d.resource.to_string(),
                singular: singular_of(d.kind),
                kind: d.kind.to_string(),
                list_kind: format!("{}List", d.kind),
                namespaced: d.namespaced,
                verbs,
                short_names: d.short.iter().map(|s| s.to_string()).collect(),
                categories: d.categories.iter().map(|s| s.to_string()).collect(),
                subresources: d
                    .subresources
                    .iter()
                    .map(|s| subresource(d.kind, s))
                    .collect(),
                storage_group: storage_group.to_string(),
                storage_resource: storage_resource.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_the_resources_kubectl_users_name() {
        let all = builtin_resources();
        let find = |g: &str, r: &str| {
            all.iter()
                .find(|i| i.group == g && i.resource == r)
                .cloned()
        };
        let deploy = find("apps", "deployments").expect("deployments");
        assert_eq!(deploy.short_names, vec!["deploy"]);
        assert!(deploy.categories.contains(&"all".to_string()));
        assert!(deploy.has_subresource("scale"));
        assert_eq!(deploy.storage_prefix(), "/registry/deployments/");
        assert_eq!(
            find("", "services").expect("svc").storage_prefix(),
            "/registry/services/specs/"
        );
        assert_eq!(
            storage_prefix("example.com", "widgets"),
            "/registry/example.com/widgets/"
        );
        let cs = find("", "componentstatuses").expect("cs");
        assert_eq!(cs.verbs, vec!["get", "list"]);
    }
}
