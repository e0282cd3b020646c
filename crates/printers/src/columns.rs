//! Column definitions for every built-in printer, with upstream's names, types,
//! formats, priorities and descriptions.
//!
//! Upstream takes most descriptions from the Go types' `SwaggerDoc()`; those are the
//! same texts k8s-openapi carries in its schemas, so they are read from there once.

use std::collections::HashMap;
use std::sync::OnceLock;

use k8s_openapi::schemars::{generate::SchemaSettings, SchemaGenerator};
use serde_json::Value;

use crate::ColumnDefinition;

/// Which upstream print handler serves a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Printer {
    Pod,
    PodTemplate,
    PodDisruptionBudget,
    ReplicationController,
    ReplicaSet,
    DaemonSet,
    Job,
    CronJob,
    Service,
    Ingress,
    IngressClass,
    StatefulSet,
    Endpoints,
    Node,
    Event,
    Namespace,
    Secret,
    ServiceAccount,
    PersistentVolume,
    PersistentVolumeClaim,
    ComponentStatus,
    Deployment,
    HorizontalPodAutoscaler,
    ConfigMap,
    NetworkPolicy,
    RoleBinding,
    ClusterRoleBinding,
    CertificateSigningRequest,
    Lease,
    StorageClass,
    ControllerRevision,
    ResourceQuota,
    PriorityClass,
    RuntimeClass,
    VolumeAttachment,
    EndpointSlice,
    CsiNode,
    CsiDriver,
    CsiStorageCapacity,
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
    FlowSchema,
    PriorityLevelConfiguration,
    ApiService,
    /// Built-in kinds without a print handler: `rest.NewDefaultTableConvertor`
    /// (Name, Created At) — roles, limit ranges, CRDs, ...
    DefaultBuiltin,
    /// Custom resources without additionalPrinterColumns: Name, Age.
    Custom,
}

/// Picks the printer for a group/resource.
pub(crate) fn printer_for(group: &str, resource: &str) -> Printer {
    use Printer::*;
    match (group, resource) {
        ("", "pods") => Pod,
        ("", "podtemplates") => PodTemplate,
        ("policy", "poddisruptionbudgets") => PodDisruptionBudget,
        ("", "replicationcontrollers") => ReplicationController,
        ("apps", "replicasets") => ReplicaSet,
        ("apps", "daemonsets") => DaemonSet,
        ("batch", "jobs") => Job,
        ("batch", "cronjobs") => CronJob,
        ("", "services") => Service,
        ("networking.k8s.io", "ingresses") => Ingress,
        ("networking.k8s.io", "ingressclasses") => IngressClass,
        ("apps", "statefulsets") => StatefulSet,
        ("", "endpoints") => Endpoints,
        ("", "nodes") => Node,
        ("", "events") | ("events.k8s.io", "events") => Event,
        ("", "namespaces") => Namespace,
        ("", "secrets") => Secret,
        ("", "serviceaccounts") => ServiceAccount,
        ("", "persistentvolumes") => PersistentVolume,
        ("", "persistentvolumeclaims") => PersistentVolumeClaim,
        ("", "componentstatuses") => ComponentStatus,
        ("apps", "deployments") => Deployment,
        ("autoscaling", "horizontalpodautoscalers") => HorizontalPodAutoscaler,
        ("", "configmaps") => ConfigMap,
        ("networking.k8s.io", "networkpolicies") => NetworkPolicy,
        ("rbac.authorization.k8s.io", "rolebindings") => RoleBinding,
        ("rbac.authorization.k8s.io", "clusterrolebindings") => ClusterRoleBinding,
        ("certificates.k8s.io", "certificatesigningrequests") => CertificateSigningRequest,
        ("coordination.k8s.io", "leases") => Lease,
        ("storage.k8s.io", "storageclasses") => StorageClass,
        ("apps", "controllerrevisions") => ControllerRevision,
        ("", "resourcequotas") => ResourceQuota,
        ("scheduling.k8s.io", "priorityclasses") => PriorityClass,
        ("node.k8s.io", "runtimeclasses") => RuntimeClass,
        ("storage.k8s.io", "volumeattachments") => VolumeAttachment,
        ("discovery.k8s.io", "endpointslices") => EndpointSlice,
        ("storage.k8s.io", "csinodes") => CsiNode,
        ("storage.k8s.io", "csidrivers") => CsiDriver,
        ("storage.k8s.io", "csistoragecapacities") => CsiStorageCapacity,
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations") => {
            MutatingWebhookConfiguration
        }
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations") => {
            ValidatingWebhookConfiguration
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicies") => {
            ValidatingAdmissionPolicy
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicybindings") => {
            ValidatingAdmissionPolicyBinding
        }
        ("flowcontrol.apiserver.k8s.io", "flowschemas") => FlowSchema,
        ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations") => {
            PriorityLevelConfiguration
        }
        ("apiregistration.k8s.io", "apiservices") => ApiService,
        (g, _) if g.is_empty() || apis::resources::BUILTIN_GROUPS.iter().any(|(b, _)| *b == g) => {
            DefaultBuiltin
        }
        _ => Custom,
    }
}

/// Where a column's description comes from.
#[derive(Clone, Copy)]
enum Doc {
    Text(&'static str),
    /// A property description of a schema (by its OpenAPI name).
    Field(&'static str, &'static str),
}

#[derive(Clone, Copy)]
struct Col {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    priority: i32,
    doc: Doc,
}

const fn col(name: &'static str, ty: &'static str, doc: Doc) -> Col {
    Col {
        name,
        ty,
        format: "",
        priority: 0,
        doc,
    }
}

/// A `-o wide` column (priority 1).
const fn wide(name: &'static str, ty: &'static str, doc: Doc) -> Col {
    Col {
        name,
        ty,
        format: "",
        priority: 1,
        doc,
    }
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

const NAME: Col = Col {
    name: "Name",
    ty: "string",
    format: "name",
    priority: 0,
    doc: Doc::Field(META, "name"),
};
const AGE: Col = col("Age", "string", Doc::Field(META, "creationTimestamp"));
const CONTAINERS: Col = wide(
    "Containers",
    "string",
    Doc::Text("Names of each container in the template."),
);
const IMAGES: Col = wide(
    "Images",
    "string",
    Doc::Text("Images referenced by each container in the template."),
);

use Doc::{Field as F, Text as T};

macro_rules! s {
    ($name:literal) => {
        concat!("io.k8s.api.", $name)
    };
}

fn specs(printer: Printer) -> Vec<Col> {
    use Printer::*;
    match printer {
        Pod => vec![
            NAME,
            col("Ready", "string", T("The aggregate readiness state of this pod for accepting traffic.")),
            col("Status", "string", T("The aggregate status of the containers in this pod.")),
            col("Restarts", "string", T("The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.")),
            AGE,
            wide("IP", "string", F(s!("core.v1.PodStatus"), "podIP")),
            wide("Node", "string", F(s!("core.v1.PodSpec"), "nodeName")),
            wide("Nominated Node", "string", F(s!("core.v1.PodStatus"), "nominatedNodeName")),
            wide("Readiness Gates", "string", F(s!("core.v1.PodSpec"), "readinessGates")),
        ],
        PodTemplate => vec![
            NAME,
            col("Containers", "string", T("Names of each container in the template.")),
            col("Images", "string", T("Images referenced by each container in the template.")),
            col("Pod Labels", "string", T("The labels for the pod template.")),
        ],
        PodDisruptionBudget => vec![
            NAME,
            col("Min Available", "string", T("The minimum number of pods that must be available.")),
            col("Max Unavailable", "string", T("The maximum number of pods that may be unavailable.")),
            col("Allowed Disruptions", "integer", T("Calculated number of pods that may be disrupted at this time.")),
            AGE,
        ],
        ReplicationController => vec![
            NAME,
            col("Desired", "integer", F(s!("core.v1.ReplicationControllerSpec"), "replicas")),
            col("Current", "integer", F(s!("core.v1.ReplicationControllerStatus"), "replicas")),
            col("Ready", "integer", F(s!("core.v1.ReplicationControllerStatus"), "readyReplicas")),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", F(s!("core.v1.ReplicationControllerSpec"), "selector")),
        ],
        ReplicaSet => vec![
            NAME,
            col("Desired", "integer", F(s!("apps.v1.ReplicaSetSpec"), "replicas")),
            col("Current", "integer", F(s!("apps.v1.ReplicaSetStatus"), "replicas")),
            col("Ready", "integer", F(s!("apps.v1.ReplicaSetStatus"), "readyReplicas")),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", F(s!("apps.v1.ReplicaSetSpec"), "selector")),
        ],
        DaemonSet => vec![
            NAME,
            col("Desired", "integer", F(s!("apps.v1.DaemonSetStatus"), "desiredNumberScheduled")),
            col("Current", "integer", F(s!("apps.v1.DaemonSetStatus"), "currentNumberScheduled")),
            col("Ready", "integer", F(s!("apps.v1.DaemonSetStatus"), "numberReady")),
            col("Up-to-date", "integer", F(s!("apps.v1.DaemonSetStatus"), "updatedNumberScheduled")),
            col("Available", "integer", F(s!("apps.v1.DaemonSetStatus"), "numberAvailable")),
            col("Node Selector", "string", F(s!("core.v1.PodSpec"), "nodeSelector")),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", F(s!("apps.v1.DaemonSetSpec"), "selector")),
        ],
        Job => vec![
            NAME,
            col("Status", "string", T("Status of the job.")),
            col("Completions", "string", F(s!("batch.v1.JobStatus"), "succeeded")),
            col("Duration", "string", T("Time required to complete the job.")),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", F(s!("batch.v1.JobSpec"), "selector")),
        ],
        CronJob => vec![
            NAME,
            col("Schedule", "string", F(s!("batch.v1.CronJobSpec"), "schedule")),
            col("Timezone", "string", F(s!("batch.v1.CronJobSpec"), "timeZone")),
            col("Suspend", "boolean", F(s!("batch.v1.CronJobSpec"), "suspend")),
            col("Active", "integer", F(s!("batch.v1.CronJobStatus"), "active")),
            col("Last Schedule", "string", F(s!("batch.v1.CronJobStatus"), "lastScheduleTime")),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", F(s!("batch.v1.JobSpec"), "selector")),
        ],
        Service => vec![
            NAME,
            col("Type", "string", F(s!("core.v1.ServiceSpec"), "type")),
            col("Cluster-IP", "string", F(s!("core.v1.ServiceSpec"), "clusterIP")),
            col("External-IP", "string", F(s!("core.v1.ServiceSpec"), "externalIPs")),
            col("Port(s)", "string", F(s!("core.v1.ServiceSpec"), "ports")),
            AGE,
            wide("Selector", "string", F(s!("core.v1.ServiceSpec"), "selector")),
        ],
        Ingress => vec![
            NAME,
            col("Class", "string", T("The name of the IngressClass resource that should be used for additional configuration")),
            col("Hosts", "string", T("Hosts that incoming requests are matched against before the ingress rule")),
            col("Address", "string", T("Address is a list containing ingress points for the load-balancer")),
            col("Ports", "string", T("Ports of TLS configurations that open")),
            AGE,
        ],
        IngressClass => vec![
            NAME,
            col("Controller", "string", T("Controller that is responsible for handling this class")),
            col("Parameters", "string", T("A reference to a resource with additional parameters")),
            AGE,
        ],
        StatefulSet => vec![
            NAME,
            col("Ready", "string", T("Number of the pod with ready state")),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        Endpoints => vec![NAME, col("Endpoints", "string", F(s!("core.v1.Endpoints"), "subsets")), AGE],
        Node => vec![
            NAME,
            col("Status", "string", T("The status of the node")),
            col("Roles", "string", T("The roles of the node")),
            AGE,
            col("Version", "string", F(s!("core.v1.NodeSystemInfo"), "kubeletVersion")),
            wide("Internal-IP", "string", F(s!("core.v1.NodeStatus"), "addresses")),
            wide("External-IP", "string", F(s!("core.v1.NodeStatus"), "addresses")),
            wide("OS-Image", "string", F(s!("core.v1.NodeSystemInfo"), "osImage")),
            wide("Kernel-Version", "string", F(s!("core.v1.NodeSystemInfo"), "kernelVersion")),
            wide("Container-Runtime", "string", F(s!("core.v1.NodeSystemInfo"), "containerRuntimeVersion")),
        ],
        Event => vec![
            col("Last Seen", "string", F(s!("core.v1.Event"), "lastTimestamp")),
            col("Type", "string", F(s!("core.v1.Event"), "type")),
            col("Reason", "string", F(s!("core.v1.Event"), "reason")),
            col("Object", "string", F(s!("core.v1.Event"), "involvedObject")),
            wide("Subobject", "string", F(s!("core.v1.ObjectReference"), "fieldPath")),
            wide("Source", "string", F(s!("core.v1.Event"), "source")),
            col("Message", "string", F(s!("core.v1.Event"), "message")),
            wide("First Seen", "string", F(s!("core.v1.Event"), "firstTimestamp")),
            wide("Count", "string", F(s!("core.v1.Event"), "count")),
            Col { format: "name", ..wide("Name", "string", F(META, "name")) },
        ],
        Namespace => vec![NAME, col("Status", "string", T("The status of the namespace")), AGE],
        Secret => vec![
            NAME,
            col("Type", "string", F(s!("core.v1.Secret"), "type")),
            col("Data", "string", F(s!("core.v1.Secret"), "data")),
            AGE,
        ],
        ServiceAccount => vec![NAME, col("Secrets", "string", F(s!("core.v1.ServiceAccount"), "secrets")), AGE],
        PersistentVolume => vec![
            NAME,
            col("Capacity", "string", F(s!("core.v1.PersistentVolumeSpec"), "capacity")),
            col("Access Modes", "string", F(s!("core.v1.PersistentVolumeSpec"), "accessModes")),
            col("Reclaim Policy", "string", F(s!("core.v1.PersistentVolumeSpec"), "persistentVolumeReclaimPolicy")),
            col("Status", "string", F(s!("core.v1.PersistentVolumeStatus"), "phase")),
            col("Claim", "string", F(s!("core.v1.PersistentVolumeSpec"), "claimRef")),
            col("StorageClass", "string", T("StorageClass of the pv")),
            col("VolumeAttributesClass", "string", T("VolumeAttributesClass of the pv")),
            col("Reason", "string", F(s!("core.v1.PersistentVolumeStatus"), "reason")),
            AGE,
            wide("VolumeMode", "string", F(s!("core.v1.PersistentVolumeSpec"), "volumeMode")),
        ],
        PersistentVolumeClaim => vec![
            NAME,
            col("Status", "string", F(s!("core.v1.PersistentVolumeClaimStatus"), "phase")),
            col("Volume", "string", F(s!("core.v1.PersistentVolumeClaimSpec"), "volumeName")),
            col("Capacity", "string", F(s!("core.v1.PersistentVolumeClaimStatus"), "capacity")),
            col("Access Modes", "string", F(s!("core.v1.PersistentVolumeClaimStatus"), "accessModes")),
            col("StorageClass", "string", T("StorageClass of the pvc")),
            col("VolumeAttributesClass", "string", T("VolumeAttributesClass of the pvc")),
            AGE,
            wide("VolumeMode", "string", F(s!("core.v1.PersistentVolumeClaimSpec"), "volumeMode")),
        ],
        ComponentStatus => vec![
            NAME,
            col("Status", "string", T("Status of the component conditions")),
            col("Message", "string", T("Message of the component conditions")),
            col("Error", "string", T("Error of the component conditions")),
        ],
        Deployment => vec![
            NAME,
            col("Ready", "string", T("Number of the pod with ready state")),
            col("Up-to-date", "string", F(s!("apps.v1.DeploymentStatus"), "updatedReplicas")),
            col("Available", "string", F(s!("apps.v1.DeploymentStatus"), "availableReplicas")),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", F(s!("apps.v1.DeploymentSpec"), "selector")),
        ],
        HorizontalPodAutoscaler => vec![
            NAME,
            col("Reference", "string", F(s!("autoscaling.v2.HorizontalPodAutoscalerSpec"), "scaleTargetRef")),
            col("Targets", "string", F(s!("autoscaling.v2.HorizontalPodAutoscalerSpec"), "metrics")),
            col("MinPods", "string", F(s!("autoscaling.v2.HorizontalPodAutoscalerSpec"), "minReplicas")),
            col("MaxPods", "string", F(s!("autoscaling.v2.HorizontalPodAutoscalerSpec"), "maxReplicas")),
            col("Replicas", "string", F(s!("autoscaling.v2.HorizontalPodAutoscalerStatus"), "currentReplicas")),
            AGE,
        ],
        ConfigMap => vec![NAME, col("Data", "string", F(s!("core.v1.ConfigMap"), "data")), AGE],
        NetworkPolicy => {
            vec![NAME, col("Pod-Selector", "string", F(s!("networking.v1.NetworkPolicySpec"), "podSelector")), AGE]
        }
        RoleBinding => vec![
            NAME,
            col("Role", "string", F(s!("rbac.v1.RoleBinding"), "roleRef")),
            AGE,
            wide("Users", "string", T("Users in the roleBinding")),
            wide("Groups", "string", T("Groups in the roleBinding")),
            wide("ServiceAccounts", "string", T("ServiceAccounts in the roleBinding")),
        ],
        ClusterRoleBinding => vec![
            NAME,
            col("Role", "string", F(s!("rbac.v1.ClusterRoleBinding"), "roleRef")),
            AGE,
            wide("Users", "string", T("Users in the clusterRoleBinding")),
            wide("Groups", "string", T("Groups in the clusterRoleBinding")),
            wide("ServiceAccounts", "string", T("ServiceAccounts in the clusterRoleBinding")),
        ],
        CertificateSigningRequest => vec![
            NAME,
            AGE,
            col("SignerName", "string", F(s!("certificates.v1.CertificateSigningRequestSpec"), "signerName")),
            col("Requestor", "string", F(s!("certificates.v1.CertificateSigningRequestSpec"), "request")),
            col("RequestedDuration", "string", F(s!("certificates.v1.CertificateSigningRequestSpec"), "expirationSeconds")),
            col("Condition", "string", F(s!("certificates.v1.CertificateSigningRequestStatus"), "conditions")),
        ],
        Lease => vec![NAME, col("Holder", "string", F(s!("coordination.v1.LeaseSpec"), "holderIdentity")), AGE],
        StorageClass => vec![
            NAME,
            col("Provisioner", "string", F(s!("storage.v1.StorageClass"), "provisioner")),
            col("ReclaimPolicy", "string", F(s!("storage.v1.StorageClass"), "reclaimPolicy")),
            col("VolumeBindingMode", "string", F(s!("storage.v1.StorageClass"), "volumeBindingMode")),
            col("AllowVolumeExpansion", "string", F(s!("storage.v1.StorageClass"), "allowVolumeExpansion")),
            AGE,
        ],
        ControllerRevision => vec![
            NAME,
            col("Controller", "string", T("Controller of the object")),
            col("Revision", "string", F(s!("apps.v1.ControllerRevision"), "revision")),
            AGE,
        ],
        ResourceQuota => vec![
            NAME,
            col("Request", "string", T("Request represents a minimum amount of cpu/memory that a container may consume.")),
            col("Limit", "string", T("Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.")),
            AGE,
        ],
        PriorityClass => vec![
            NAME,
            col("Value", "integer", F(s!("scheduling.v1.PriorityClass"), "value")),
            col("Global-Default", "boolean", F(s!("scheduling.v1.PriorityClass"), "globalDefault")),
            AGE,
            col("PreemptionPolicy", "string", F(s!("scheduling.v1.PriorityClass"), "preemptionPolicy")),
        ],
        // Upstream reads the Handler doc from ObjectMeta, which has none.
        RuntimeClass => vec![NAME, col("Handler", "string", F(META, "handler")), AGE],
        VolumeAttachment => vec![
            NAME,
            Col { format: "name", ..col("Attacher", "string", F(s!("storage.v1.VolumeAttachmentSpec"), "attacher")) },
            col("PV", "string", F(s!("storage.v1.VolumeAttachmentSource"), "persistentVolumeName")),
            col("Node", "string", F(s!("storage.v1.VolumeAttachmentSpec"), "nodeName")),
            col("Attached", "boolean", F(s!("storage.v1.VolumeAttachmentStatus"), "attached")),
            AGE,
        ],
        EndpointSlice => vec![
            NAME,
            col("AddressType", "string", F(s!("discovery.v1.EndpointSlice"), "addressType")),
            col("Ports", "string", F(s!("discovery.v1.EndpointSlice"), "ports")),
            col("Endpoints", "string", F(s!("discovery.v1.EndpointSlice"), "endpoints")),
            AGE,
        ],
        CsiNode => vec![
            NAME,
            col("Drivers", "integer", T("Drivers indicates the number of CSI drivers registered on the node")),
            AGE,
        ],
        CsiDriver => vec![
            NAME,
            col("AttachRequired", "boolean", F(s!("storage.v1.CSIDriverSpec"), "attachRequired")),
            col("PodInfoOnMount", "boolean", F(s!("storage.v1.CSIDriverSpec"), "podInfoOnMount")),
            col("StorageCapacity", "boolean", F(s!("storage.v1.CSIDriverSpec"), "storageCapacity")),
            col("TokenRequests", "string", F(s!("storage.v1.CSIDriverSpec"), "tokenRequests")),
            col("RequiresRepublish", "boolean", F(s!("storage.v1.CSIDriverSpec"), "requiresRepublish")),
            col("Modes", "string", F(s!("storage.v1.CSIDriverSpec"), "volumeLifecycleModes")),
            AGE,
        ],
        CsiStorageCapacity => vec![
            NAME,
            col("StorageClassName", "string", F(s!("storage.v1.CSIStorageCapacity"), "storageClassName")),
            col("Capacity", "string", F(s!("storage.v1.CSIStorageCapacity"), "capacity")),
        ],
        MutatingWebhookConfiguration | ValidatingWebhookConfiguration => vec![
            NAME,
            col("Webhooks", "integer", T("Webhooks indicates the number of webhooks registered in this configuration")),
            AGE,
        ],
        ValidatingAdmissionPolicy => vec![
            NAME,
            col("Validations", "integer", T("Validations indicates the number of validation rules defined in this configuration")),
            col("ParamKind", "string", T("ParamKind specifies the kind of resources used to parameterize this policy")),
            AGE,
        ],
        ValidatingAdmissionPolicyBinding => vec![
            NAME,
            col("PolicyName", "string", T("PolicyName indicates the policy definition which the policy binding binded to")),
            col("ParamRef", "string", T("ParamRef indicates the param resource which sets the configration param")),
            AGE,
        ],
        FlowSchema => vec![
            NAME,
            col("PriorityLevel", "string", F(s!("flowcontrol.v1.PriorityLevelConfigurationReference"), "name")),
            col("MatchingPrecedence", "string", F(s!("flowcontrol.v1.FlowSchemaSpec"), "matchingPrecedence")),
            col("DistinguisherMethod", "string", F(s!("flowcontrol.v1.FlowSchemaSpec"), "distinguisherMethod")),
            AGE,
            col("MissingPL", "string", T("references a broken or non-existent PriorityLevelConfiguration")),
        ],
        PriorityLevelConfiguration => vec![
            NAME,
            col("Type", "string", F(s!("flowcontrol.v1.PriorityLevelConfigurationSpec"), "type")),
            col(
                "NominalConcurrencyShares",
                "string",
                F(s!("flowcontrol.v1.LimitedPriorityLevelConfiguration"), "nominalConcurrencyShares"),
            ),
            col("Queues", "string", F(s!("flowcontrol.v1.QueuingConfiguration"), "queues")),
            col("HandSize", "string", F(s!("flowcontrol.v1.QueuingConfiguration"), "handSize")),
            col("QueueLengthLimit", "string", F(s!("flowcontrol.v1.QueuingConfiguration"), "queueLengthLimit")),
            AGE,
        ],
        ApiService => vec![
            NAME,
            col("Service", "string", T("The reference to the service that hosts this API endpoint.")),
            col("Available", "string", T("Whether this service is available.")),
            AGE,
        ],
        DefaultBuiltin => vec![NAME, col("Created At", "date", F(META, "creationTimestamp"))],
        Custom => vec![NAME, col("Age", "date", F(META, "creationTimestamp"))],
    }
}

/// Column definitions for a printer, cached after the first call.
pub(crate) fn definitions(printer: Printer) -> Vec<ColumnDefinition> {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<Printer, Vec<ColumnDefinition>>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    // A poisoned lock only means another thread panicked mid-insert; the map is still usable.
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(printer)
        .or_insert_with(|| {
            specs(printer)
                .into_iter()
                .map(|c| ColumnDefinition {
                    name: c.name.to_string(),
                    column_type: c.ty.to_string(),
                    format: c.format.to_string(),
                    description: match c.doc {
                        Doc::Text(t) => t.to_string(),
                        Doc::Field(schema, field) => field_doc(schema, field),
                    },
                    priority: c.priority,
                })
                .collect()
        })
        .clone()
}

/// The description of `field` in the named schema, or "" (as `SwaggerDoc()[missing]`).
pub(crate) fn field_doc(schema: &str, field: &str) -> String {
    schema_docs()
        .get(schema)
        .and_then(|s| s.get("properties"))
        .and_then(|p| p.get(field))
        .and_then(|f| f.get("description"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Schemas of every type a column description is taken from (and all they reference).
fn schema_docs() -> &'static serde_json::Map<String, Value> {
    static DOCS: OnceLock<serde_json::Map<String, Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        use k8s_openapi::api::{
            apps, autoscaling, batch, certificates, coordination, core, discovery, flowcontrol,
            networking, rbac, scheduling, storage,
        };
        let mut gen: SchemaGenerator = SchemaSettings::openapi3().into_generator();
        gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
        gen.subschema_for::<core::v1::Pod>();
        gen.subschema_for::<core::v1::ReplicationController>();
        gen.subschema_for::<core::v1::Service>();
        gen.subschema_for::<core::v1::Endpoints>();
        gen.subschema_for::<core::v1::Node>();
        gen.subschema_for::<core::v1::Event>();
        gen.subschema_for::<core::v1::Secret>();
        gen.subschema_for::<core::v1::ServiceAccount>();
        gen.subschema_for::<core::v1::PersistentVolume>();
        gen.subschema_for::<core::v1::PersistentVolumeClaim>();
        gen.subschema_for::<core::v1::ConfigMap>();
        gen.subschema_for::<apps::v1::ReplicaSet>();
        gen.subschema_for::<apps::v1::DaemonSet>();
        gen.subschema_for::<apps::v1::Deployment>();
        gen.subschema_for::<apps::v1::ControllerRevision>();
        gen.subschema_for::<batch::v1::Job>();
        gen.subschema_for::<batch::v1::CronJob>();
        gen.subschema_for::<autoscaling::v2::HorizontalPodAutoscaler>();
        gen.subschema_for::<networking::v1::NetworkPolicy>();
        gen.subschema_for::<rbac::v1::RoleBinding>();
        gen.subschema_for::<rbac::v1::ClusterRoleBinding>();
        gen.subschema_for::<certificates::v1::CertificateSigningRequest>();
        gen.subschema_for::<coordination::v1::Lease>();
        gen.subschema_for::<storage::v1::StorageClass>();
        gen.subschema_for::<storage::v1::VolumeAttachment>();
        gen.subschema_for::<storage::v1::CSIDriver>();
        gen.subschema_for::<storage::v1::CSIStorageCapacity>();
        gen.subschema_for::<scheduling::v1::PriorityClass>();
        gen.subschema_for::<discovery::v1::EndpointSlice>();
        gen.subschema_for::<flowcontrol::v1::FlowSchema>();
        gen.subschema_for::<flowcontrol::v1::PriorityLevelConfiguration>();
        gen.take_definitions(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_and_age_columns_carry_object_meta_docs() {
        let cols = definitions(Printer::ConfigMap);
        assert_eq!(cols[0].name, "Name");
        assert_eq!(cols[0].format, "name");
        assert!(
            cols[0]
                .description
                .starts_with("Name must be unique within a namespace."),
            "{}",
            cols[0].description
        );
        assert!(
            cols[2]
                .description
                .starts_with("CreationTimestamp is a timestamp"),
            "{}",
            cols[2].description
        );
        assert!(
            !definitions(Printer::Pod)[5].description.is_empty(),
            "podIP doc"
        );
    }

    #[test]
    fn every_field_doc_resolves() {
        use Printer::*;
        let all = [
            Pod,
            PodTemplate,
            PodDisruptionBudget,
            ReplicationController,
            ReplicaSet,
            DaemonSet,
            Job,
            CronJob,
            Service,
            Ingress,
            IngressClass,
            StatefulSet,
            Endpoints,
            Node,
            Event,
            Namespace,
            Secret,
            ServiceAccount,
            PersistentVolume,
            PersistentVolumeClaim,
            ComponentStatus,
            Deployment,
            HorizontalPodAutoscaler,
            ConfigMap,
            NetworkPolicy,
            RoleBinding,
            ClusterRoleBinding,
            CertificateSigningRequest,
            Lease,
            StorageClass,
            ControllerRevision,
            ResourceQuota,
            PriorityClass,
            VolumeAttachment,
            EndpointSlice,
            CsiNode,
            CsiDriver,
            CsiStorageCapacity,
            FlowSchema,
            PriorityLevelConfiguration,
            DefaultBuiltin,
            Custom,
        ];
        for p in all {
            for c in specs(p) {
                if let Doc::Field(schema, field) = c.doc {
                    assert!(
                        !field_doc(schema, field).is_empty(),
                        "{p:?} column {} ({schema}.{field})",
                        c.name
                    );
                }
            }
        }
    }

    #[test]
    fn groups_map_to_printers() {
        assert_eq!(printer_for("apps", "deployments"), Printer::Deployment);
        assert_eq!(printer_for("events.k8s.io", "events"), Printer::Event);
        assert_eq!(
            printer_for("rbac.authorization.k8s.io", "roles"),
            Printer::DefaultBuiltin
        );
        assert_eq!(printer_for("", "limitranges"), Printer::DefaultBuiltin);
        assert_eq!(printer_for("example.com", "widgets"), Printer::Custom);
    }
}
