//! The map from a served (group, version, kind) to the k8s-openapi type whose
//! schemars impl describes it. Adding a kind to the resource table only needs a
//! line here if k8s-openapi has the type; unknown kinds get a permissive schema.

use schemars::{JsonSchema, SchemaGenerator};

use k8s_openapi::{api, apiextensions_apiserver, kube_aggregator};

/// Adds `T` (and everything it references) to the generator; returns its schema name.
fn add<T: JsonSchema>(gen: &mut SchemaGenerator) -> String {
    gen.subschema_for::<T>();
    T::schema_name().into_owned()
}

macro_rules! kinds {
    ($( ($group:literal, $version:literal, $kind:literal) => $ty:path, )*) => {
        /// Generates the schema of a known kind into `gen`, returning its schema name.
        pub(crate) fn add_kind(gen: &mut SchemaGenerator, group: &str, version: &str, kind: &str) -> Option<String> {
            match (group, version, kind) {
                $( ($group, $version, $kind) => Some(add::<$ty>(gen)), )*
                _ => None,
            }
        }

        /// Every (group, version, kind) with a known schema.
        #[cfg(test)]
        pub(crate) const KNOWN_KINDS: &[(&str, &str, &str)] = &[ $( ($group, $version, $kind), )* ];
    };
}

kinds! {
    ("", "v1", "Binding") => api::core::v1::Binding,
    ("", "v1", "ComponentStatus") => api::core::v1::ComponentStatus,
    ("", "v1", "ConfigMap") => api::core::v1::ConfigMap,
    ("", "v1", "Endpoints") => api::core::v1::Endpoints,
    ("", "v1", "Event") => api::core::v1::Event,
    ("", "v1", "LimitRange") => api::core::v1::LimitRange,
    ("", "v1", "Namespace") => api::core::v1::Namespace,
    ("", "v1", "Node") => api::core::v1::Node,
    ("", "v1", "PersistentVolume") => api::core::v1::PersistentVolume,
    ("", "v1", "PersistentVolumeClaim") => api::core::v1::PersistentVolumeClaim,
    ("", "v1", "Pod") => api::core::v1::Pod,
    ("", "v1", "PodTemplate") => api::core::v1::PodTemplate,
    ("", "v1", "ReplicationController") => api::core::v1::ReplicationController,
    ("", "v1", "ResourceQuota") => api::core::v1::ResourceQuota,
    ("", "v1", "Secret") => api::core::v1::Secret,
    ("", "v1", "Service") => api::core::v1::Service,
    ("", "v1", "ServiceAccount") => api::core::v1::ServiceAccount,
    ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration") => api::admissionregistration::v1::MutatingWebhookConfiguration,
    ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy") => api::admissionregistration::v1::ValidatingAdmissionPolicy,
    ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding") => api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
    ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration") => api::admissionregistration::v1::ValidatingWebhookConfiguration,
    ("admissionregistration.k8s.io", "v1alpha1", "MutatingAdmissionPolicy") => api::admissionregistration::v1alpha1::MutatingAdmissionPolicy,
    ("admissionregistration.k8s.io", "v1alpha1", "MutatingAdmissionPolicyBinding") => api::admissionregistration::v1alpha1::MutatingAdmissionPolicyBinding,
    ("admissionregistration.k8s.io", "v1beta1", "ValidatingAdmissionPolicy") => api::admissionregistration::v1beta1::ValidatingAdmissionPolicy,
    ("admissionregistration.k8s.io", "v1beta1", "ValidatingAdmissionPolicyBinding") => api::admissionregistration::v1beta1::ValidatingAdmissionPolicyBinding,
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    ("apiregistration.k8s.io", "v1", "APIService") => kube_aggregator::pkg::apis::apiregistration::v1::APIService,
    ("apps", "v1", "ControllerRevision") => api::apps::v1::ControllerRevision,
    ("apps", "v1", "DaemonSet") => api::apps::v1::DaemonSet,
    ("apps", "v1", "Deployment") => api::apps::v1::Deployment,
    ("apps", "v1", "ReplicaSet") => api::apps::v1::ReplicaSet,
    ("apps", "v1", "StatefulSet") => api::apps::v1::StatefulSet,
    ("authentication.k8s.io", "v1", "SelfSubjectReview") => api::authentication::v1::SelfSubjectReview,
    ("authentication.k8s.io", "v1", "TokenRequest") => api::authentication::v1::TokenRequest,
    ("authentication.k8s.io", "v1", "TokenReview") => api::authentication::v1::TokenReview,
    ("authorization.k8s.io", "v1", "LocalSubjectAccessReview") => api::authorization::v1::LocalSubjectAccessReview,
    ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => api::authorization::v1::SelfSubjectAccessReview,
    ("authorization.k8s.io", "v1", "SelfSubjectRulesReview") => api::authorization::v1::SelfSubjectRulesReview,
    ("authorization.k8s.io", "v1", "SubjectAccessReview") => api::authorization::v1::SubjectAccessReview,
    ("autoscaling", "v1", "HorizontalPodAutoscaler") => api::autoscaling::v1::HorizontalPodAutoscaler,
    ("autoscaling", "v1", "Scale") => api::autoscaling::v1::Scale,
    ("autoscaling", "v2", "HorizontalPodAutoscaler") => api::autoscaling::v2::HorizontalPodAutoscaler,
    ("batch", "v1", "CronJob") => api::batch::v1::CronJob,
    ("batch", "v1", "Job") => api::batch::v1::Job,
    ("certificates.k8s.io", "v1", "CertificateSigningRequest") => api::certificates::v1::CertificateSigningRequest,
    ("certificates.k8s.io", "v1alpha1", "ClusterTrustBundle") => api::certificates::v1alpha1::ClusterTrustBundle,
    ("certificates.k8s.io", "v1beta1", "ClusterTrustBundle") => api::certificates::v1beta1::ClusterTrustBundle,
    ("coordination.k8s.io", "v1", "Lease") => api::coordination::v1::Lease,
    ("coordination.k8s.io", "v1alpha2", "LeaseCandidate") => api::coordination::v1alpha2::LeaseCandidate,
    ("coordination.k8s.io", "v1beta1", "LeaseCandidate") => api::coordination::v1beta1::LeaseCandidate,
    ("discovery.k8s.io", "v1", "EndpointSlice") => api::discovery::v1::EndpointSlice,
    ("events.k8s.io", "v1", "Event") => api::events::v1::Event,
    ("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema") => api::flowcontrol::v1::FlowSchema,
    ("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration") => api::flowcontrol::v1::PriorityLevelConfiguration,
    ("internal.apiserver.k8s.io", "v1alpha1", "StorageVersion") => api::apiserverinternal::v1alpha1::StorageVersion,
    ("networking.k8s.io", "v1", "IPAddress") => api::networking::v1::IPAddress,
    ("networking.k8s.io", "v1", "Ingress") => api::networking::v1::Ingress,
    ("networking.k8s.io", "v1", "IngressClass") => api::networking::v1::IngressClass,
    ("networking.k8s.io", "v1", "NetworkPolicy") => api::networking::v1::NetworkPolicy,
    ("networking.k8s.io", "v1", "ServiceCIDR") => api::networking::v1::ServiceCIDR,
    ("networking.k8s.io", "v1beta1", "IPAddress") => api::networking::v1beta1::IPAddress,
    ("networking.k8s.io", "v1beta1", "ServiceCIDR") => api::networking::v1beta1::ServiceCIDR,
    ("node.k8s.io", "v1", "RuntimeClass") => api::node::v1::RuntimeClass,
    ("policy", "v1", "Eviction") => api::policy::v1::Eviction,
    ("policy", "v1", "PodDisruptionBudget") => api::policy::v1::PodDisruptionBudget,
    ("rbac.authorization.k8s.io", "v1", "ClusterRole") => api::rbac::v1::ClusterRole,
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => api::rbac::v1::ClusterRoleBinding,
    ("rbac.authorization.k8s.io", "v1", "Role") => api::rbac::v1::Role,
    ("rbac.authorization.k8s.io", "v1", "RoleBinding") => api::rbac::v1::RoleBinding,
    ("resource.k8s.io", "v1alpha3", "DeviceClass") => api::resource::v1alpha3::DeviceClass,
    ("resource.k8s.io", "v1alpha3", "DeviceTaintRule") => api::resource::v1alpha3::DeviceTaintRule,
    ("resource.k8s.io", "v1alpha3", "ResourceClaim") => api::resource::v1alpha3::ResourceClaim,
    ("resource.k8s.io", "v1alpha3", "ResourceClaimTemplate") => api::resource::v1alpha3::ResourceClaimTemplate,
    ("resource.k8s.io", "v1alpha3", "ResourceSlice") => api::resource::v1alpha3::ResourceSlice,
    ("resource.k8s.io", "v1beta1", "DeviceClass") => api::resource::v1beta1::DeviceClass,
    ("resource.k8s.io", "v1beta1", "ResourceClaim") => api::resource::v1beta1::ResourceClaim,
    ("resource.k8s.io", "v1beta1", "ResourceClaimTemplate") => api::resource::v1beta1::ResourceClaimTemplate,
    ("resource.k8s.io", "v1beta1", "ResourceSlice") => api::resource::v1beta1::ResourceSlice,
    ("resource.k8s.io", "v1beta2", "DeviceClass") => api::resource::v1beta2::DeviceClass,
    ("resource.k8s.io", "v1beta2", "ResourceClaim") => api::resource::v1beta2::ResourceClaim,
    ("resource.k8s.io", "v1beta2", "ResourceClaimTemplate") => api::resource::v1beta2::ResourceClaimTemplate,
    ("resource.k8s.io", "v1beta2", "ResourceSlice") => api::resource::v1beta2::ResourceSlice,
    ("scheduling.k8s.io", "v1", "PriorityClass") => api::scheduling::v1::PriorityClass,
    ("storage.k8s.io", "v1", "CSIDriver") => api::storage::v1::CSIDriver,
    ("storage.k8s.io", "v1", "CSINode") => api::storage::v1::CSINode,
    ("storage.k8s.io", "v1", "CSIStorageCapacity") => api::storage::v1::CSIStorageCapacity,
    ("storage.k8s.io", "v1", "StorageClass") => api::storage::v1::StorageClass,
    ("storage.k8s.io", "v1", "VolumeAttachment") => api::storage::v1::VolumeAttachment,
    ("storage.k8s.io", "v1alpha1", "VolumeAttributesClass") => api::storage::v1alpha1::VolumeAttributesClass,
    ("storage.k8s.io", "v1beta1", "VolumeAttributesClass") => api::storage::v1beta1::VolumeAttributesClass,
    ("storagemigration.k8s.io", "v1alpha1", "StorageVersionMigration") => api::storagemigration::v1alpha1::StorageVersionMigration,
}
