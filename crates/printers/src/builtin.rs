//! Row cells for every built-in printer except pods (see `pod.rs`), following the
//! `print*` functions of upstream `pkg/printers/internalversion/printers.go`.
//!
//! The API server always prints with `Wide: true`, so every row carries the
//! priority-1 cells too; kubectl hides them unless `-o wide`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::{
    admissionregistration, apps, autoscaling, batch, certificates, coordination, core, discovery,
    events, flowcontrol, networking, policy, rbac, scheduling, storage,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::columns::Printer;
use crate::duration::{from_jiff, human_duration, human_duration_seconds, translate_timestamp};
use crate::format::{
    access_modes, bool_ptr, format_label_selector, format_labels, int_or_string, layout_containers,
    list_with_more, selector_string, sorted_set_join,
};

/// Decodes a stored object; a malformed one prints as its zero value rather than failing the list.
fn parse<T: DeserializeOwned + Default>(obj: &Value) -> T {
    T::deserialize(obj).unwrap_or_default()
}

fn time(t: Option<&Time>) -> Option<DateTime<Utc>> {
    t.and_then(|t| from_jiff(&t.0))
}

fn name(meta: &ObjectMeta) -> Value {
    json!(meta.name.clone().unwrap_or_default())
}

fn age(meta: &ObjectMeta, now: DateTime<Utc>) -> Value {
    json!(translate_timestamp(
        time(meta.creation_timestamp.as_ref()),
        now
    ))
}

fn or_none(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("<none>").to_string()
}

/// Cells for one object of a built-in printer (pods, custom and default printers excluded).
pub(crate) fn cells(printer: Printer, group: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    use Printer::*;
    match printer {
        PodTemplate => {
            let o: core::v1::PodTemplate = parse(obj);
            let template = o.template.unwrap_or_default();
            let containers = template.spec.map(|s| s.containers).unwrap_or_default();
            let (names, images) = layout_containers(&containers);
            let labels = template.metadata.and_then(|m| m.labels);
            vec![
                name(&o.metadata),
                json!(names),
                json!(images),
                json!(format_labels(labels.as_ref())),
            ]
        }
        PodDisruptionBudget => {
            let o: policy::v1::PodDisruptionBudget = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let min = spec
                .min_available
                .as_ref()
                .map_or_else(|| "N/A".to_string(), int_or_string);
            let max = spec
                .max_unavailable
                .as_ref()
                .map_or_else(|| "N/A".to_string(), int_or_string);
            let allowed = o.status.map_or(0, |s| s.disruptions_allowed);
            vec![
                name(&o.metadata),
                json!(min),
                json!(max),
                json!(allowed),
                age(&o.metadata, now),
            ]
        }
        ReplicationController => {
            let o: core::v1::ReplicationController = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let status = o.status.unwrap_or_default();
            let containers = spec
                .template
                .and_then(|t| t.spec)
                .map(|s| s.containers)
                .unwrap_or_default();
            let (names, images) = layout_containers(&containers);
            vec![
                name(&o.metadata),
                json!(spec.replicas.unwrap_or(1)),
                json!(status.replicas),
                json!(status.ready_replicas.unwrap_or(0)),
                age(&o.metadata, now),
                json!(names),
                json!(images),
                json!(format_labels(spec.selector.as_ref())),
            ]
        }
        ReplicaSet => {
            let o: apps::v1::ReplicaSet = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let status = o.status.unwrap_or_default();
            let containers = spec
                .template
                .and_then(|t| t.spec)
                .map(|s| s.containers)
                .unwrap_or_default();
            let (names, images) = layout_containers(&containers);
            vec![
                name(&o.metadata),
                json!(spec.replicas.unwrap_or(1)),
                json!(status.replicas),
                json!(status.ready_replicas.unwrap_or(0)),
                age(&o.metadata, now),
                json!(names),
                json!(images),
                json!(format_label_selector(Some(&spec.selector))),
            ]
        }
        DaemonSet => {
            let o: apps::v1::DaemonSet = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let status = o.status.unwrap_or_default();
            let pod_spec = spec.template.spec.unwrap_or_default();
            let (names, images) = layout_containers(&pod_spec.containers);
            vec![
                name(&o.metadata),
                json!(status.desired_number_scheduled),
                json!(status.current_number_scheduled),
                json!(status.number_ready),
                json!(status.updated_number_scheduled.unwrap_or(0)),
                json!(status.number_available.unwrap_or(0)),
                json!(format_labels(pod_spec.node_selector.as_ref())),
                age(&o.metadata, now),
                json!(names),
                json!(images),
                json!(format_label_selector(Some(&spec.selector))),
            ]
        }
        Job => job_cells(obj, now),
        CronJob => {
            let o: batch::v1::CronJob = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let status = o.status.unwrap_or_default();
            let last = status.last_schedule_time.as_ref().map_or_else(
                || "<none>".to_string(),
                |t| translate_timestamp(time(Some(t)), now),
            );
            let job_spec = spec.job_template.spec.unwrap_or_default();
            let containers = job_spec
                .template
                .spec
                .map(|s| s.containers)
                .unwrap_or_default();
            let (names, images) = layout_containers(&containers);
            vec![
                name(&o.metadata),
                json!(spec.schedule),
                json!(spec.time_zone.unwrap_or_else(|| "<none>".to_string())),
                json!(bool_ptr(spec.suspend)),
                json!(status.active.map_or(0, |a| a.len())),
                json!(last),
                age(&o.metadata, now),
                json!(names),
                json!(images),
                json!(format_label_selector(job_spec.selector.as_ref())),
            ]
        }
        Service => service_cells(obj, now),
        Ingress => {
            let o: networking::v1::Ingress = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let class = spec
                .ingress_class_name
                .clone()
                .unwrap_or_else(|| "<none>".to_string());
            let rules = spec.rules.unwrap_or_default();
            let hosts = format_hosts(
                rules
                    .iter()
                    .map(|r| r.host.clone().unwrap_or_default())
                    .collect(),
            );
            let address = sorted_set_join(
                o.status
                    .and_then(|s| s.load_balancer)
                    .and_then(|lb| lb.ingress)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|i| {
                        i.ip.filter(|s| !s.is_empty())
                            .or(i.hostname.filter(|s| !s.is_empty()))
                    }),
                ",",
            );
            let ports = if spec.tls.is_some_and(|t| !t.is_empty()) {
                "80, 443"
            } else {
                "80"
            };
            vec![
                name(&o.metadata),
                json!(class),
                json!(hosts),
                json!(address),
                json!(ports),
                age(&o.metadata, now),
            ]
        }
        IngressClass => {
            let o: networking::v1::IngressClass = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let parameters = spec.parameters.map_or_else(
                || "<none>".to_string(),
                |p| match p.api_group {
                    Some(g) => format!("{}.{}/{}", p.kind, g, p.name),
                    None => format!("{}/{}", p.kind, p.name),
                },
            );
            vec![
                name(&o.metadata),
                json!(spec.controller.unwrap_or_default()),
                json!(parameters),
                age(&o.metadata, now),
            ]
        }
        StatefulSet => {
            let o: apps::v1::StatefulSet = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let ready = o.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            let containers = spec.template.spec.map(|s| s.containers).unwrap_or_default();
            let (names, images) = layout_containers(&containers);
            vec![
                name(&o.metadata),
                json!(format!("{ready}/{}", spec.replicas.unwrap_or(1))),
                age(&o.metadata, now),
                json!(names),
                json!(images),
            ]
        }
        Endpoints => {
            let o: core::v1::Endpoints = parse(obj);
            vec![
                name(&o.metadata),
                json!(format_endpoints(&o)),
                age(&o.metadata, now),
            ]
        }
        Node => node_cells(obj, now),
        Event => event_cells(group, obj, now),
        Namespace => {
            let o: core::v1::Namespace = parse(obj);
            let phase = o.status.and_then(|s| s.phase).unwrap_or_default();
            vec![name(&o.metadata), json!(phase), age(&o.metadata, now)]
        }
        Secret => {
            let o: core::v1::Secret = parse(obj);
            vec![
                name(&o.metadata),
                json!(o.type_.unwrap_or_default()),
                json!(o.data.map_or(0, |d| d.len())),
                age(&o.metadata, now),
            ]
        }
        ServiceAccount => {
            let o: core::v1::ServiceAccount = parse(obj);
            vec![
                name(&o.metadata),
                json!(o.secrets.map_or(0, |s| s.len())),
                age(&o.metadata, now),
            ]
        }
        PersistentVolume => {
            let o: core::v1::PersistentVolume = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let status = o.status.unwrap_or_default();
            let claim = spec.claim_ref.as_ref().map_or_else(String::new, |c| {
                format!(
                    "{}/{}",
                    c.namespace.clone().unwrap_or_default(),
                    c.name.clone().unwrap_or_default()
                )
            });
            let size = quantity(spec.capacity.as_ref(), "storage");
            let phase = if o.metadata.deletion_timestamp.is_some() {
                "Terminating".to_string()
            } else {
                status.phase.unwrap_or_default()
            };
            let class = o
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class").cloned())
                .or(spec.storage_class_name.clone())
                .unwrap_or_default();
            vec![
                name(&o.metadata),
                json!(size),
                json!(access_modes(spec.access_modes.as_ref())),
                json!(spec.persistent_volume_reclaim_policy.unwrap_or_default()),
                json!(phase),
                json!(claim),
                json!(class),
                json!(spec
                    .volume_attributes_class_name
                    .unwrap_or_else(|| "<unset>".to_string())),
                json!(status.reason.unwrap_or_default()),
                age(&o.metadata, now),
                json!(spec.volume_mode.unwrap_or_else(|| "<unset>".to_string())),
            ]
        }
        PersistentVolumeClaim => {
            let o: core::v1::PersistentVolumeClaim = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let status = o.status.unwrap_or_default();
            let phase = if o.metadata.deletion_timestamp.is_some() {
                "Terminating".to_string()
            } else {
                status.phase.clone().unwrap_or_default()
            };
            let volume = spec.volume_name.clone().unwrap_or_default();
            // Capacity and modes only mean something once bound.
            let (capacity, modes) = if volume.is_empty() {
                (String::new(), String::new())
            } else {
                (
                    quantity(status.capacity.as_ref(), "storage"),
                    access_modes(status.access_modes.as_ref()),
                )
            };
            let class = o
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class").cloned())
                .or(spec.storage_class_name.clone())
                .unwrap_or_default();
            vec![
                name(&o.metadata),
                json!(phase),
                json!(volume),
                json!(capacity),
                json!(modes),
                json!(class),
                json!(spec
                    .volume_attributes_class_name
                    .unwrap_or_else(|| "<unset>".to_string())),
                age(&o.metadata, now),
                json!(spec.volume_mode.unwrap_or_else(|| "<unset>".to_string())),
            ]
        }
        ComponentStatus => {
            let o: core::v1::ComponentStatus = parse(obj);
            let (mut status, mut message, mut error) =
                ("Unknown".to_string(), String::new(), String::new());
            if let Some(c) = o
                .conditions
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Healthy")
            {
                status = if c.status == "True" {
                    "Healthy"
                } else {
                    "Unhealthy"
                }
                .to_string();
                message = c.message.unwrap_or_default();
                error = c.error.unwrap_or_default();
            }
            vec![
                name(&o.metadata),
                json!(status),
                json!(message),
                json!(error),
            ]
        }
        Deployment => {
            let o: apps::v1::Deployment = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let status = o.status.unwrap_or_default();
            let containers = spec
                .template
                .spec
                .clone()
                .map(|s| s.containers)
                .unwrap_or_default();
            let (names, images) = layout_containers(&containers);
            let selector =
                selector_string(Some(&spec.selector)).unwrap_or_else(|()| "<invalid>".to_string());
            vec![
                name(&o.metadata),
                json!(format!(
                    "{}/{}",
                    status.ready_replicas.unwrap_or(0),
                    spec.replicas.unwrap_or(1)
                )),
                json!(status.updated_replicas.unwrap_or(0)),
                json!(status.available_replicas.unwrap_or(0)),
                age(&o.metadata, now),
                json!(names),
                json!(images),
                json!(selector),
            ]
        }
        HorizontalPodAutoscaler => hpa_cells(obj, now),
        ConfigMap => {
            let o: core::v1::ConfigMap = parse(obj);
            let n = o.data.map_or(0, |d| d.len()) + o.binary_data.map_or(0, |d| d.len());
            vec![name(&o.metadata), json!(n), age(&o.metadata, now)]
        }
        NetworkPolicy => {
            let o: networking::v1::NetworkPolicy = parse(obj);
            let selector = o.spec.and_then(|s| s.pod_selector).unwrap_or_default();
            vec![
                name(&o.metadata),
                json!(format_label_selector(Some(&selector))),
                age(&o.metadata, now),
            ]
        }
        RoleBinding => {
            let o: rbac::v1::RoleBinding = parse(obj);
            binding_cells(&o.metadata, &o.role_ref, o.subjects.as_deref(), now)
        }
        ClusterRoleBinding => {
            let o: rbac::v1::ClusterRoleBinding = parse(obj);
            binding_cells(&o.metadata, &o.role_ref, o.subjects.as_deref(), now)
        }
        CertificateSigningRequest => {
            let o: certificates::v1::CertificateSigningRequest = parse(obj);
            let status = o.status.unwrap_or_default();
            let conditions = status.conditions.unwrap_or_default();
            let has = |t: &str| conditions.iter().any(|c| c.type_ == t);
            let mut cond = if has("Denied") {
                "Denied"
            } else if has("Approved") {
                "Approved"
            } else {
                "Pending"
            }
            .to_string();
            if has("Failed") {
                cond.push_str(",Failed");
            }
            if status.certificate.is_some_and(|c| !c.0.is_empty()) {
                cond.push_str(",Issued");
            }
            let duration = o.spec.expiration_seconds.map_or_else(
                || "<none>".to_string(),
                |s| human_duration_seconds(i64::from(s)),
            );
            vec![
                name(&o.metadata),
                age(&o.metadata, now),
                json!(or_none(Some(&o.spec.signer_name))),
                json!(o.spec.username.unwrap_or_default()),
                json!(duration),
                json!(cond),
            ]
        }
        Lease => {
            let o: coordination::v1::Lease = parse(obj);
            let holder = o.spec.and_then(|s| s.holder_identity).unwrap_or_default();
            vec![name(&o.metadata), json!(holder), age(&o.metadata, now)]
        }
        StorageClass => {
            let o: storage::v1::StorageClass = parse(obj);
            let mut n = o.metadata.name.clone().unwrap_or_default();
            let annotations = o.metadata.annotations.clone().unwrap_or_default();
            let is_default = [
                "storageclass.kubernetes.io/is-default-class",
                "storageclass.beta.kubernetes.io/is-default-class",
            ]
            .iter()
            .any(|k| annotations.get(*k).map(String::as_str) == Some("true"));
            if is_default {
                n.push_str(" (default)");
            }
            vec![
                json!(n),
                json!(o.provisioner),
                json!(o.reclaim_policy.unwrap_or_else(|| "Delete".to_string())),
                json!(o
                    .volume_binding_mode
                    .unwrap_or_else(|| "Immediate".to_string())),
                json!(o.allow_volume_expansion.unwrap_or(false)),
                age(&o.metadata, now),
            ]
        }
        ControllerRevision => {
            let o: apps::v1::ControllerRevision = parse(obj);
            let controller = o
                .metadata
                .owner_references
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|r| r.controller == Some(true))
                .map_or_else(
                    || "<none>".to_string(),
                    |r| {
                        let group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g);
                        let kind = if group.is_empty() {
                            r.kind.clone()
                        } else {
                            format!("{}.{group}", r.kind)
                        };
                        if kind.is_empty() {
                            r.name.clone()
                        } else {
                            format!("{}/{}", kind.to_lowercase(), r.name)
                        }
                    },
                );
            vec![
                name(&o.metadata),
                json!(controller),
                json!(o.revision),
                age(&o.metadata, now),
            ]
        }
        ResourceQuota => {
            let o: core::v1::ResourceQuota = parse(obj);
            let status = o.status.unwrap_or_default();
            let hard = status.hard.unwrap_or_default();
            let used = status.used.unwrap_or_default();
            let (mut request, mut limit) = (Vec::new(), Vec::new());
            for (resource, h) in &hard {
                let u = used.get(resource).map_or("0", |q| q.0.as_str());
                let text = format!("{resource}: {u}/{}", h.0);
                if resource.starts_with("limits.") {
                    limit.push(text);
                } else {
                    request.push(text);
                }
            }
            vec![
                name(&o.metadata),
                json!(request.join(", ")),
                json!(limit.join(", ")),
                age(&o.metadata, now),
            ]
        }
        PriorityClass => {
            let o: scheduling::v1::PriorityClass = parse(obj);
            vec![
                name(&o.metadata),
                json!(o.value),
                json!(o.global_default.unwrap_or(false)),
                age(&o.metadata, now),
                json!(o.preemption_policy.unwrap_or_default()),
            ]
        }
        RuntimeClass => {
            let o: k8s_openapi::api::node::v1::RuntimeClass = parse(obj);
            vec![name(&o.metadata), json!(o.handler), age(&o.metadata, now)]
        }
        VolumeAttachment => {
            let o: storage::v1::VolumeAttachment = parse(obj);
            vec![
                name(&o.metadata),
                json!(o.spec.attacher),
                json!(o.spec.source.persistent_volume_name.unwrap_or_default()),
                json!(o.spec.node_name),
                json!(o.status.is_some_and(|s| s.attached)),
                age(&o.metadata, now),
            ]
        }
        EndpointSlice => {
            let o: discovery::v1::EndpointSlice = parse(obj);
            let max = 3;
            let ports = o.ports.unwrap_or_default();
            let port_list: Vec<String> = ports
                .iter()
                .take(max)
                .map(|p| {
                    p.port
                        .map(|n| n.to_string())
                        .or(p.name.clone())
                        .unwrap_or_else(|| "*".to_string())
                })
                .collect();
            let ports_cell = list_with_more(&port_list, ports.len() > max, ports.len(), max);
            let addresses: Vec<String> = o
                .endpoints
                .iter()
                .flat_map(|e| e.addresses.iter().cloned())
                .collect();
            let shown: Vec<String> = addresses.iter().take(max).cloned().collect();
            let endpoints_cell =
                list_with_more(&shown, addresses.len() > max, addresses.len(), max);
            vec![
                name(&o.metadata),
                json!(o.address_type),
                json!(ports_cell),
                json!(endpoints_cell),
                age(&o.metadata, now),
            ]
        }
        CsiNode => {
            let o: storage::v1::CSINode = parse(obj);
            vec![
                name(&o.metadata),
                json!(o.spec.drivers.len()),
                age(&o.metadata, now),
            ]
        }
        CsiDriver => {
            let o: storage::v1::CSIDriver = parse(obj);
            let spec = o.spec;
            let modes = spec.volume_lifecycle_modes.unwrap_or_default().join(",");
            let token_requests = spec.token_requests.map_or_else(
                || "<unset>".to_string(),
                |t| {
                    t.into_iter()
                        .map(|t| t.audience)
                        .collect::<Vec<_>>()
                        .join(",")
                },
            );
            vec![
                name(&o.metadata),
                json!(spec.attach_required.unwrap_or(true)),
                json!(spec.pod_info_on_mount.unwrap_or(false)),
                json!(spec.storage_capacity.unwrap_or(false)),
                json!(token_requests),
                json!(spec.requires_republish.unwrap_or(false)),
                json!(if modes.is_empty() {
                    "<none>".to_string()
                } else {
                    modes
                }),
                age(&o.metadata, now),
            ]
        }
        CsiStorageCapacity => {
            let o: storage::v1::CSIStorageCapacity = parse(obj);
            let capacity = o.capacity.map_or_else(|| "<unset>".to_string(), |q| q.0);
            vec![
                name(&o.metadata),
                json!(o.storage_class_name),
                json!(capacity),
            ]
        }
        MutatingWebhookConfiguration => {
            let o: admissionregistration::v1::MutatingWebhookConfiguration = parse(obj);
            vec![
                name(&o.metadata),
                json!(o.webhooks.map_or(0, |w| w.len())),
                age(&o.metadata, now),
            ]
        }
        ValidatingWebhookConfiguration => {
            let o: admissionregistration::v1::ValidatingWebhookConfiguration = parse(obj);
            vec![
                name(&o.metadata),
                json!(o.webhooks.map_or(0, |w| w.len())),
                age(&o.metadata, now),
            ]
        }
        ValidatingAdmissionPolicy => {
            let o: admissionregistration::v1::ValidatingAdmissionPolicy = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let param_kind = spec.param_kind.map_or_else(
                || "<unset>".to_string(),
                |p| {
                    format!(
                        "{}/{}",
                        p.api_version.unwrap_or_default(),
                        p.kind.unwrap_or_default()
                    )
                },
            );
            vec![
                name(&o.metadata),
                json!(spec.validations.map_or(0, |v| v.len())),
                json!(param_kind),
                age(&o.metadata, now),
            ]
        }
        ValidatingAdmissionPolicyBinding => {
            let o: admissionregistration::v1::ValidatingAdmissionPolicyBinding = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let param = match spec.param_ref {
                Some(p) if p.name.as_deref().is_some_and(|n| !n.is_empty()) => {
                    let n = p.name.unwrap_or_default();
                    match p.namespace.filter(|ns| !ns.is_empty()) {
                        Some(ns) => format!("{ns}/{n}"),
                        None => format!("*/{n}"),
                    }
                }
                Some(p) if p.selector.is_some() => {
                    selector_string(p.selector.as_ref()).unwrap_or_default()
                }
                _ => "<unset>".to_string(),
            };
            vec![
                name(&o.metadata),
                json!(spec.policy_name.unwrap_or_default()),
                json!(param),
                age(&o.metadata, now),
            ]
        }
        FlowSchema => {
            let o: flowcontrol::v1::FlowSchema = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let method = spec
                .distinguisher_method
                .map_or_else(|| "<none>".to_string(), |d| d.type_);
            let missing = o
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_.as_deref() == Some("Dangling"))
                .and_then(|c| c.status)
                .unwrap_or_else(|| "?".to_string());
            vec![
                name(&o.metadata),
                json!(spec.priority_level_configuration.name),
                json!(spec.matching_precedence.unwrap_or(0)),
                json!(method),
                age(&o.metadata, now),
                json!(missing),
            ]
        }
        PriorityLevelConfiguration => {
            let o: flowcontrol::v1::PriorityLevelConfiguration = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let none = || json!("<none>");
            let (mut ncs, mut queues, mut hand, mut qll) = (none(), none(), none(), none());
            if let Some(l) = spec.limited {
                ncs = json!(l.nominal_concurrency_shares.unwrap_or(0));
                if let Some(q) = l.limit_response.and_then(|r| r.queuing) {
                    queues = json!(q.queues.unwrap_or(0));
                    hand = json!(q.hand_size.unwrap_or(0));
                    qll = json!(q.queue_length_limit.unwrap_or(0));
                }
            }
            vec![
                name(&o.metadata),
                json!(spec.type_),
                ncs,
                queues,
                hand,
                qll,
                age(&o.metadata, now),
            ]
        }
        ApiService => {
            let o: apiregistration::APIService = parse(obj);
            let spec = o.spec.unwrap_or_default();
            let service = spec.service.map_or_else(
                || "Local".to_string(),
                |s| {
                    format!(
                        "{}/{}",
                        s.namespace.unwrap_or_default(),
                        s.name.unwrap_or_default()
                    )
                },
            );
            let available = o
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Available")
                .map_or_else(
                    || "Unknown".to_string(),
                    |c| match c.reason.filter(|r| !r.is_empty()) {
                        Some(r) if c.status != "True" => format!("{} ({r})", c.status),
                        _ => c.status,
                    },
                );
            vec![
                name(&o.metadata),
                json!(service),
                json!(available),
                age(&o.metadata, now),
            ]
        }
        DefaultBuiltin => {
            let meta: ObjectMeta = obj.get("metadata").map(parse).unwrap_or_default();
            // Upstream formats the zero time for a missing timestamp.
            let created = time(meta.creation_timestamp.as_ref()).map_or_else(
                || "0001-01-01T00:00:00Z".to_string(),
                |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            );
            vec![name(&meta), json!(created)]
        }
        Pod | Custom => {
            // Dispatched elsewhere; keep a sensible row anyway.
            let meta: ObjectMeta = obj.get("metadata").map(parse).unwrap_or_default();
            vec![name(&meta), age(&meta, now)]
        }
    }
}

/// A quantity from a resource list, "0" when absent (upstream prints a zero Quantity).
fn quantity(
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    key: &str,
) -> String {
    list.and_then(|l| l.get(key))
        .map_or_else(|| "0".to_string(), |q| q.0.clone())
}

fn job_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let o: batch::v1::Job = parse(obj);
    let spec = o.spec.unwrap_or_default();
    let status = o.status.unwrap_or_default();
    let succeeded = status.succeeded.unwrap_or(0);
    let completions = match spec.completions {
        Some(c) => format!("{succeeded}/{c}"),
        None => match spec.parallelism.unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = time(status.start_time.as_ref());
    let duration = match (start, time(status.completion_time.as_ref())) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(s, now),
        (Some(s), Some(c)) => human_duration(s, c),
    };
    let conditions = status.conditions.unwrap_or_default();
    // The first condition of a type decides, as upstream's hasJobCondition.
    let has = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t)
            .is_some_and(|c| c.status == "True")
    };
    let state = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if o.metadata.deletion_timestamp.is_some() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let containers = spec.template.spec.map(|s| s.containers).unwrap_or_default();
    let (names, images) = layout_containers(&containers);
    vec![
        name(&o.metadata),
        json!(state),
        json!(completions),
        json!(duration),
        age(&o.metadata, now),
        json!(names),
        json!(images),
        json!(format_label_selector(spec.selector.as_ref())),
    ]
}

fn service_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let o: core::v1::Service = parse(obj);
    let spec = o.spec.unwrap_or_default();
    let svc_type = spec.type_.clone().unwrap_or_default();
    let cluster_ip = spec
        .cluster_ips
        .as_ref()
        .and_then(|ips| ips.first().cloned())
        .unwrap_or_else(|| "<none>".to_string());
    let external_ips = spec.external_ips.clone().unwrap_or_default();
    let external = match svc_type.as_str() {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = sorted_set_join(
                o.status
                    .and_then(|s| s.load_balancer)
                    .and_then(|lb| lb.ingress)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|i| {
                        i.ip.filter(|s| !s.is_empty())
                            .or(i.hostname.filter(|s| !s.is_empty()))
                    }),
                ",",
            );
            if !external_ips.is_empty() {
                let mut all: Vec<String> = if lb.is_empty() {
                    Vec::new()
                } else {
                    lb.split(',').map(String::from).collect()
                };
                all.extend(external_ips);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => spec.external_name.clone().unwrap_or_default(),
        _ => "<unknown>".to_string(),
    };
    let ports = spec
        .ports
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let protocol = p.protocol.as_deref().unwrap_or("TCP");
            match p.node_port {
                Some(np) if np > 0 => format!("{}:{np}/{protocol}", p.port),
                _ => format!("{}/{protocol}", p.port),
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    vec![
        name(&o.metadata),
        json!(svc_type),
        json!(cluster_ip),
        json!(external),
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports
        }),
        age(&o.metadata, now),
        json!(format_labels(spec.selector.as_ref())),
    ]
}

/// Upstream `formatHosts`: the first three non-empty hosts, `*` for none.
fn format_hosts(hosts: Vec<String>) -> String {
    let max = 3;
    let mut list = Vec::new();
    let mut more = false;
    for h in &hosts {
        if list.len() == max {
            more = true;
        }
        if !more && !h.is_empty() {
            list.push(h.clone());
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", hosts.len() - max);
    }
    ret
}

/// Upstream `formatEndpoints` with all ports.
fn format_endpoints(ep: &core::v1::Endpoints) -> String {
    let subsets = ep.subsets.clone().unwrap_or_default();
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let max = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in &subsets {
        let addresses = ss.addresses.clone().unwrap_or_default();
        let ports = ss.ports.clone().unwrap_or_default();
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for a in &addresses {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(a.ip.clone());
            }
            continue;
        }
        for port in &ports {
            count += addresses.len();
            for a in &addresses {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(join_host_port(&a.ip, port.port));
            }
        }
    }
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count - max);
    }
    ret
}

/// `net.JoinHostPort`: brackets IPv6 addresses.
fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn node_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let o: core::v1::Node = parse(obj);
    let status = o.status.clone().unwrap_or_default();
    // Later entries of the same type overwrite earlier ones, as upstream's condition map.
    let ready = status
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .rev()
        .find(|c| c.type_ == "Ready");
    let mut states = Vec::new();
    match ready {
        Some(c) if c.status == "True" => states.push("Ready".to_string()),
        Some(_) => states.push("NotReady".to_string()),
        None => states.push("Unknown".to_string()),
    }
    if o.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        states.push("SchedulingDisabled".to_string());
    }
    let mut roles = std::collections::BTreeSet::new();
    for (k, v) in o.metadata.labels.iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.insert(v.clone());
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let info = status.node_info.clone().unwrap_or_default();
    let addresses = status.addresses.clone().unwrap_or_default();
    let address = |t: &str| {
        addresses
            .iter()
            .find(|a| a.type_ == t)
            .map_or_else(|| "<none>".to_string(), |a| a.address.clone())
    };
    let unknown = |s: &str| {
        if s.is_empty() {
            "<unknown>".to_string()
        } else {
            s.to_string()
        }
    };
    vec![
        name(&o.metadata),
        json!(states.join(",")),
        json!(roles),
        age(&o.metadata, now),
        json!(info.kubelet_version),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(unknown(&info.os_image)),
        json!(unknown(&info.kernel_version)),
        json!(unknown(&info.container_runtime_version)),
    ]
}

/// The fields the event printer reads, whichever API group the object came from.
struct EventView {
    name: String,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    event_time: Option<DateTime<Utc>>,
    series: Option<(i32, Option<DateTime<Utc>>)>,
    count: i32,
    kind: String,
    object_name: String,
    field_path: String,
    component: String,
    host: String,
    reporting_controller: String,
    reporting_instance: String,
    type_: String,
    reason: String,
    message: String,
}

fn event_cells(group: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Objects stored through either API may reach either endpoint; detect the shape.
    let is_events_v1 = group == "events.k8s.io" && obj.get("involvedObject").is_none();
    let v = if is_events_v1 {
        let e: events::v1::Event = parse(obj);
        let regarding = e.regarding.unwrap_or_default();
        let source = e.deprecated_source.unwrap_or_default();
        EventView {
            name: e.metadata.name.unwrap_or_default(),
            first: time(e.deprecated_first_timestamp.as_ref()),
            last: time(e.deprecated_last_timestamp.as_ref()),
            event_time: e.event_time.as_ref().and_then(|t| from_jiff(&t.0)),
            series: e
                .series
                .map(|s| (s.count, from_jiff(&s.last_observed_time.0))),
            count: e.deprecated_count.unwrap_or(0),
            kind: regarding.kind.unwrap_or_default(),
            object_name: regarding.name.unwrap_or_default(),
            field_path: regarding.field_path.unwrap_or_default(),
            component: source.component.unwrap_or_default(),
            host: source.host.unwrap_or_default(),
            reporting_controller: e.reporting_controller.unwrap_or_default(),
            reporting_instance: e.reporting_instance.unwrap_or_default(),
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            message: e.note.unwrap_or_default(),
        }
    } else {
        let e: core::v1::Event = parse(obj);
        let source = e.source.unwrap_or_default();
        EventView {
            name: e.metadata.name.unwrap_or_default(),
            first: time(e.first_timestamp.as_ref()),
            last: time(e.last_timestamp.as_ref()),
            event_time: e.event_time.as_ref().and_then(|t| from_jiff(&t.0)),
            series: e.series.map(|s| {
                (
                    s.count.unwrap_or(0),
                    s.last_observed_time.as_ref().and_then(|t| from_jiff(&t.0)),
                )
            }),
            count: e.count.unwrap_or(0),
            kind: e.involved_object.kind.unwrap_or_default(),
            object_name: e.involved_object.name.unwrap_or_default(),
            field_path: e.involved_object.field_path.unwrap_or_default(),
            component: source.component.unwrap_or_default(),
            host: source.host.unwrap_or_default(),
            reporting_controller: e.reporting_component.unwrap_or_default(),
            reporting_instance: e.reporting_instance.unwrap_or_default(),
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            message: e.message.unwrap_or_default(),
        }
    };
    let first = match v.first {
        Some(_) => translate_timestamp(v.first, now),
        None => translate_timestamp(v.event_time, now),
    };
    let mut last = match v.last {
        Some(_) => translate_timestamp(v.last, now),
        None => first.clone(),
    };
    let mut count = v.count;
    if let Some((series_count, observed)) = v.series {
        last = translate_timestamp(observed, now);
        count = series_count;
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }
    let target = if v.object_name.is_empty() {
        v.kind.to_lowercase()
    } else {
        format!("{}/{}", v.kind.to_lowercase(), v.object_name)
    };
    let component = if v.component.is_empty() {
        v.reporting_controller
    } else {
        v.component
    };
    let host = if v.host.is_empty() {
        v.reporting_instance
    } else {
        v.host
    };
    let source = if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(v.type_),
        json!(v.reason),
        json!(target),
        json!(v.field_path),
        json!(source),
        json!(v.message.trim()),
        json!(first),
        json!(count),
        json!(v.name),
    ]
}

fn binding_cells(
    meta: &ObjectMeta,
    role_ref: &rbac::v1::RoleRef,
    subjects: Option<&[rbac::v1::Subject]>,
    now: DateTime<Utc>,
) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for s in subjects.unwrap_or_default() {
        match s.kind.as_str() {
            "ServiceAccount" => sas.push(format!(
                "{}/{}",
                s.namespace.clone().unwrap_or_default(),
                s.name
            )),
            "User" => users.push(s.name.clone()),
            "Group" => groups.push(s.name.clone()),
            _ => {}
        }
    }
    vec![
        name(meta),
        json!(format!("{}/{}", role_ref.kind, role_ref.name)),
        age(meta, now),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

fn hpa_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // autoscaling/v1 objects carry a CPU target instead of metrics; print them the
    // way upstream does after converting to the internal (v2-shaped) type.
    let is_v1 = obj
        .pointer("/spec/targetCPUUtilizationPercentage")
        .is_some()
        || obj
            .pointer("/status/currentCPUUtilizationPercentage")
            .is_some()
        || (obj.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v1")
            && obj.pointer("/spec/metrics").is_none());
    if is_v1 {
        let o: autoscaling::v1::HorizontalPodAutoscaler = parse(obj);
        let spec = o.spec.unwrap_or_default();
        let status = o.status.unwrap_or_default();
        let current = status
            .current_cpu_utilization_percentage
            .map_or_else(|| "<unknown>".to_string(), |c| format!("{c}%"));
        let target = spec.target_cpu_utilization_percentage.unwrap_or(80);
        return vec![
            name(&o.metadata),
            json!(format!(
                "{}/{}",
                spec.scale_target_ref.kind, spec.scale_target_ref.name
            )),
            json!(format!("cpu: {current}/{target}%")),
            json!(spec
                .min_replicas
                .map_or_else(|| "<unset>".to_string(), |m| m.to_string())),
            json!(spec.max_replicas),
            json!(status.current_replicas),
            age(&o.metadata, now),
        ];
    }
    let o: autoscaling::v2::HorizontalPodAutoscaler = parse(obj);
    let spec = o.spec.unwrap_or_default();
    let status = o.status.unwrap_or_default();
    let metrics = format_hpa_metrics(
        spec.metrics.as_deref().unwrap_or_default(),
        status.current_metrics.as_deref().unwrap_or_default(),
    );
    vec![
        name(&o.metadata),
        json!(format!(
            "{}/{}",
            spec.scale_target_ref.kind, spec.scale_target_ref.name
        )),
        json!(metrics),
        json!(spec
            .min_replicas
            .map_or_else(|| "<unset>".to_string(), |m| m.to_string())),
        json!(spec.max_replicas),
        json!(status.current_replicas.unwrap_or(0)),
        age(&o.metadata, now),
    ]
}

/// `Quantity.String()` on a pointer: "<nil>" when unset.
fn q(v: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> String {
    v.map_or_else(|| "<nil>".to_string(), |q| q.0.clone())
}

fn format_hpa_metrics(
    specs: &[autoscaling::v2::MetricSpec],
    statuses: &[autoscaling::v2::MetricStatus],
) -> String {
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let unknown = || "<unknown>".to_string();
    let mut list = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let st = statuses.get(i);
        let item = match spec.type_.as_str() {
            "External" => {
                let target = spec
                    .external
                    .as_ref()
                    .map(|e| e.target.clone())
                    .unwrap_or_default();
                let current = st
                    .and_then(|s| s.external.as_ref())
                    .map(|e| e.current.clone());
                if target.average_value.is_some() {
                    let cur = current
                        .and_then(|c| c.average_value)
                        .map_or_else(unknown, |v| v.0);
                    format!("{cur}/{} (avg)", q(target.average_value.as_ref()))
                } else {
                    let cur = current.map_or_else(unknown, |c| q(c.value.as_ref()));
                    format!("{cur}/{}", q(target.value.as_ref()))
                }
            }
            "Pods" => {
                let target = spec
                    .pods
                    .as_ref()
                    .map(|p| p.target.clone())
                    .unwrap_or_default();
                let cur = st
                    .and_then(|s| s.pods.as_ref())
                    .map_or_else(unknown, |p| q(p.current.average_value.as_ref()));
                format!("{cur}/{}", q(target.average_value.as_ref()))
            }
            "Object" => {
                let target = spec
                    .object
                    .as_ref()
                    .map(|o| o.target.clone())
                    .unwrap_or_default();
                let current = st
                    .and_then(|s| s.object.as_ref())
                    .map(|o| o.current.clone());
                if target.average_value.is_some() {
                    let cur = current
                        .and_then(|c| c.average_value)
                        .map_or_else(unknown, |v| v.0);
                    format!("{cur}/{} (avg)", q(target.average_value.as_ref()))
                } else {
                    let cur = current.map_or_else(unknown, |c| q(c.value.as_ref()));
                    format!("{cur}/{}", q(target.value.as_ref()))
                }
            }
            "Resource" | "ContainerResource" => {
                let (res_name, target) = if spec.type_ == "Resource" {
                    let r = spec.resource.clone().unwrap_or_default();
                    (r.name, r.target)
                } else {
                    let r = spec.container_resource.clone().unwrap_or_default();
                    (r.name, r.target)
                };
                let current = if spec.type_ == "Resource" {
                    st.and_then(|s| s.resource.as_ref())
                        .map(|r| r.current.clone())
                } else {
                    st.and_then(|s| s.container_resource.as_ref())
                        .map(|r| r.current.clone())
                };
                if target.average_value.is_some() {
                    let cur = current.map_or_else(unknown, |c| q(c.average_value.as_ref()));
                    format!("{res_name}: {cur}/{}", q(target.average_value.as_ref()))
                } else {
                    let cur = current
                        .and_then(|c| c.average_utilization)
                        .map_or_else(unknown, |u| format!("{u}%"));
                    let tgt = target
                        .average_utilization
                        .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                    format!("{res_name}: {cur}/{tgt}")
                }
            }
            _ => "<unknown type>".to_string(),
        };
        list.push(item);
    }
    let max = 2;
    let count = list.len();
    if count > max {
        list.truncate(max);
        return format!("{} + {} more...", list.join(", "), count - max);
    }
    list.join(", ")
}
