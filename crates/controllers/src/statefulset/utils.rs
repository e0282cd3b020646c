//! StatefulSet helpers (upstream `stateful_set_utils.go`): ordinals and names, pod
//! identity and storage, the pod predicates the ordering rules use, and which owner
//! references a claim needs under the PVC retention policy.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

use crate::controller_utils::{controller_ref, is_pod_available, is_pod_ready, pod_from_template};
use crate::history;

/// Label with the pod's own name, so a Service can select one member.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal (upstream `PodIndexLabel`).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Label with the name of the ControllerRevision a pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

pub fn set_name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or("")
}

pub fn set_namespace(set: &StatefulSet) -> &str {
    set.metadata.namespace.as_deref().unwrap_or("")
}

/// `(parent, ordinal)` from a name `<parent>-<digits>` (upstream `getParentNameAndOrdinal`);
/// `None` for a name without that shape.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, digits) = name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse().ok()?))
}

/// The pod's ordinal, or -1 when its name has none.
pub fn ordinal(pod: &Pod) -> i32 {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or("")).map_or(-1, |(_, o)| o)
}

/// Whether the pod's name says it belongs to `set`.
pub fn is_member_of(set: &StatefulSet, pod: &Pod) -> bool {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or(""))
        .is_some_and(|(parent, _)| parent == set_name(set))
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// `spec.ordinals.start`, 0 by default.
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// The last ordinal the set should have (inclusive).
pub fn end_ordinal(set: &StatefulSet) -> i32 {
    start_ordinal(set) + replicas(set) - 1
}

pub fn in_ordinal_range(pod: &Pod, set: &StatefulSet) -> bool {
    let o = ordinal(pod);
    o >= start_ordinal(set) && o <= end_ordinal(set)
}

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set_name(set))
}

/// `<claim>-<set>-<ordinal>`.
pub fn claim_name(set: &StatefulSet, template: &PersistentVolumeClaim, ordinal: i32) -> String {
    format!(
        "{}-{}-{ordinal}",
        template.metadata.name.as_deref().unwrap_or(""),
        set_name(set)
    )
}

pub fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or(&[])
}

pub fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// `Parallel` pod management lets pods be created and deleted in any order.
pub fn allows_burst(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

pub fn update_strategy_type(set: &StatefulSet) -> &str {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// The RollingUpdate partition, if the strategy has a rollingUpdate block.
pub fn partition(set: &StatefulSet) -> Option<i32> {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .map(|r| r.partition.unwrap_or(0))
}

/// `(whenDeleted, whenScaled)`, each `Retain` unless set to `Delete`.
pub fn retention_policy(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    (
        delete(p.and_then(|p| p.when_deleted.as_ref())),
        delete(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Created by the API server (a pod this controller only planned has no phase).
pub fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

pub fn is_pending(pod: &Pod) -> bool {
    phase(pod) == "Pending"
}

pub fn is_failed(pod: &Pod) -> bool {
    phase(pod) == "Failed"
}

pub fn is_succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_pod_ready(pod)
}

pub fn is_running_and_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    phase(pod) == "Running" && is_pod_available(pod, min_ready_seconds, now)
}

pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map_or("", String::as_str)
}

/// Name, namespace and the identity labels match what the set gives this ordinal.
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let Some((parent, ord)) = parent_and_ordinal(name) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    parent == set_name(set)
        && name == pod_name(set, ord)
        && pod.metadata.namespace.as_deref() == set.metadata.namespace.as_deref()
        && label(POD_NAME_LABEL) == Some(name)
        && label(POD_INDEX_LABEL) == Some(ord.to_string().as_str())
}

/// Every claim template is mounted from this ordinal's claim.
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let ord = ordinal(pod);
    if ord < 0 {
        return false;
    }
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[]);
    claim_templates(set).iter().all(|t| {
        let want = claim_name(set, t, ord);
        volumes
            .iter()
            .find(|v| Some(v.name.as_str()) == t.metadata.name.as_deref())
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .is_some_and(|c| c.claim_name == want)
    })
}

/// The claims this pod needs, by template name (upstream `getPersistentVolumeClaims`):
/// each is the template renamed for the ordinal and labelled with the set's selector.
pub fn claims_for(set: &StatefulSet, pod: &Pod) -> Vec<(String, PersistentVolumeClaim)> {
    let ord = ordinal(pod);
    let selector_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    claim_templates(set)
        .iter()
        .map(|t| {
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(set, t, ord)),
                    namespace: set.metadata.namespace.clone(),
                    labels: (!labels.is_empty()).then_some(labels),
                    annotations: t.metadata.annotations.clone(),
                    finalizers: t.metadata.finalizers.clone(),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            };
            (t.metadata.name.clone().unwrap_or_default(), claim)
        })
        .collect()
}

/// Mounts the ordinal's claims, replacing template volumes of the same name.
pub fn update_storage(set: &StatefulSet, pod: &mut Pod) {
    let claims = claims_for(set, pod);
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    let current = spec.volumes.take().unwrap_or_default();
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(name, claim)| Volume {
            name: name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(
        current
            .into_iter()
            .filter(|v| !claims.iter().any(|(name, _)| *name == v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
}

/// Name, namespace and identity labels for the pod's ordinal.
pub fn update_identity(set: &StatefulSet, pod: &mut Pod) {
    let ord = ordinal(pod);
    let name = pod_name(set, ord);
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = set.metadata.namespace.clone();
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.to_string(), name);
    labels.insert(POD_INDEX_LABEL.to_string(), ord.to_string());
}

/// Identity plus the fields that are only set when the pod is made: its hostname is its
/// name and its subdomain the set's governing Service.
fn init_identity(set: &StatefulSet, pod: &mut Pod) {
    update_identity(set, pod);
    let service = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.hostname = pod.metadata.name.clone();
    spec.subdomain = service;
}

/// The pod for `ordinal` from `set`'s template (upstream `newStatefulSetPod`).
pub fn new_pod(set: &StatefulSet, ordinal: i32) -> Pod {
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let owner = controller_ref(&set.metadata, "apps/v1", "StatefulSet");
    let mut pod = pod_from_template(
        &template,
        set_namespace(set),
        &format!("{}-", set_name(set)),
        owner,
    );
    pod.metadata.name = Some(pod_name(set, ordinal));
    init_identity(set, &mut pod);
    update_storage(set, &mut pod);
    pod
}

/// Upstream `newVersionedStatefulSetPod`: ordinals below the partition (or, without a
/// rollingUpdate block, below the current replica count) keep the current revision.
pub fn new_versioned_pod(
    current_set: &StatefulSet,
    update_set: &StatefulSet,
    current_revision: &str,
    update_revision: &str,
    ordinal: i32,
) -> Pod {
    let rolling = update_strategy_type(current_set) == "RollingUpdate";
    let current_replicas = current_set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let keep_current = match partition(current_set) {
        None => rolling && ordinal < start_ordinal(current_set) + current_replicas,
        Some(p) => ordinal < start_ordinal(current_set) + p,
    };
    let (set, revision) = if keep_current {
        (current_set, current_revision)
    } else {
        (update_set, update_revision)
    };
    let mut pod = new_pod(set, ordinal);
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION_LABEL.to_string(), revision.to_string());
    pod
}

/// `set` with the pod template a revision holds (upstream `ApplyRevision`).
pub fn apply_revision(set: &StatefulSet, revision: &ControllerRevision) -> StatefulSet {
    let mut out = set.clone();
    if let (Some(spec), Some(t)) = (out.spec.as_mut(), history::template_of(revision)) {
        spec.template = t;
    }
    out
}

fn is_ref_to(r: &OwnerReference, kind: &str, api_version: &str, meta: &ObjectMeta) -> bool {
    r.kind == kind && r.api_version == api_version && Some(&r.name) == meta.name.as_ref()
}

/// The claim's owner references as the retention policy wants them (upstream
/// `updateClaimOwnerRefForSetAndPod`), or `None` when they already are — or when the
/// claim is managed by something else (a stale reference to an older set or pod, or
/// another controller), which this controller then leaves alone.
pub fn claim_owner_refs_for_policy(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
) -> Option<Vec<OwnerReference>> {
    let refs = claim.metadata.owner_references.clone().unwrap_or_default();
    let set_uid = set.metadata.uid.as_deref().unwrap_or("");
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or("");
    let is_set = |r: &OwnerReference| is_ref_to(r, "StatefulSet", "apps/v1", &set.metadata);
    let is_pod = |r: &OwnerReference| is_ref_to(r, "Pod", "v1", &pod.metadata);
    let stale = refs
        .iter()
        .any(|r| (is_set(r) && r.uid != set_uid) || (is_pod(r) && r.uid != pod_uid));
    let foreign_controller = refs
        .iter()
        .any(|r| !is_set(r) && !is_pod(r) && r.controller == Some(true));
    let (when_deleted, when_scaled) = retention_policy(set);
    if stale || pod_uid.is_empty() || ((when_deleted || when_scaled) && foreign_controller) {
        return None;
    }
    let scaled_down = !in_ordinal_range(pod, set);
    let want_set = when_deleted && !(when_scaled && scaled_down);
    let want_pod = when_scaled && scaled_down;
    let mut out: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| !is_set(r) && !is_pod(r))
        .cloned()
        .collect();
    if want_set {
        out.push(controller_ref(&set.metadata, "apps/v1", "StatefulSet"));
    }
    if want_pod {
        out.push(controller_ref(&pod.metadata, "v1", "Pod"));
    }
    let has = |pred: &dyn Fn(&OwnerReference) -> bool| {
        refs.iter().any(|r| pred(r) && r.controller == Some(true))
    };
    let up_to_date = has(&is_set) == want_set
        && has(&is_pod) == want_pod
        && refs.iter().filter(|r| is_set(r) || is_pod(r)).count()
            == usize::from(want_set) + usize::from(want_pod);
    (!up_to_date).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::RollingUpdateStatefulSetStrategy;
    use k8s_openapi::api::apps::v1::{
        StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::PodTemplateSpec;

    fn set(replicas: i32) -> StatefulSet {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("www".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("set-uid".into()),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some("nginx".into()),
                selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some([("app".to_string(), "nginx".to_string())].into()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "nginx".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        volumes: Some(vec![Volume {
                            name: "www".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                },
                volume_claim_templates: Some(vec![claim]),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn names_parse_into_parent_and_ordinal() {
        let cases = [
            ("web-0", Some(("web", 0))),
            ("my-web-12", Some(("my-web", 12))),
            ("web", None),
            ("web-", None),
            ("web-x1", None),
        ];
        for (name, want) in cases {
            assert_eq!(parent_and_ordinal(name), want, "{name}");
        }
    }

    #[test]
    fn new_pods_carry_identity_storage_and_hostname() {
        let s = set(3);
        let pod = new_pod(&s, 2);
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        let labels = pod.metadata.labels.clone().expect("labels");
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels["app"], "nginx");
        let spec = pod.spec.clone().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        // The template's own `www` volume is replaced by the claim.
        let volumes = spec.volumes.expect("volumes");
        assert_eq!(volumes.len(), 1);
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("www-web-2")
        );
        assert!(identity_matches(&s, &pod) && storage_matches(&s, &pod));
        let claims = claims_for(&s, &pod);
        assert_eq!(claims[0].1.metadata.name.as_deref(), Some("www-web-2"));
        assert_eq!(
            claims[0].1.metadata.labels.as_ref().expect("labels")["app"],
            "nginx"
        );
        let mut other = pod.clone();
        other.metadata.labels = None;
        assert!(!identity_matches(&s, &other));
    }

    #[test]
    fn partition_decides_the_revision_of_new_pods() {
        let mut s = set(3);
        if let Some(spec) = s.spec.as_mut() {
            spec.update_strategy = Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(2),
                    max_unavailable: None,
                }),
            });
        }
        let revs: Vec<String> = (0..3)
            .map(|o| pod_revision(&new_versioned_pod(&s, &s, "cur", "upd", o)).to_string())
            .collect();
        assert_eq!(revs, vec!["cur", "cur", "upd"]);
    }

    #[test]
    fn claim_owners_follow_the_retention_policy() {
        let mut s = set(1);
        let mut pod = new_pod(&s, 0);
        pod.metadata.uid = Some("pod-uid".into());
        let claim = claims_for(&s, &pod).remove(0).1;
        // Retain/Retain: nothing to own the claim.
        assert!(claim_owner_refs_for_policy(&claim, &s, &pod).is_none());
        if let Some(spec) = s.spec.as_mut() {
            spec.persistent_volume_claim_retention_policy =
                Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Delete".into()),
                    when_scaled: Some("Delete".into()),
                });
        }
        let refs = claim_owner_refs_for_policy(&claim, &s, &pod).expect("set owns it");
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].uid, "set-uid");
        // Scaled away: the pod owns it instead, so deleting the pod deletes the claim.
        let scaled = {
            let mut s0 = s.clone();
            if let Some(spec) = s0.spec.as_mut() {
                spec.replicas = Some(0);
            }
            s0
        };
        let owned = PersistentVolumeClaim {
            metadata: ObjectMeta {
                owner_references: Some(refs),
                ..claim.metadata.clone()
            },
            ..claim.clone()
        };
        assert!(claim_owner_refs_for_policy(&owned, &s, &pod).is_none());
        let refs = claim_owner_refs_for_policy(&owned, &scaled, &pod).expect("pod owns it");
        assert_eq!(
            refs.iter().map(|r| r.uid.as_str()).collect::<Vec<_>>(),
            vec!["pod-uid"]
        );
    }
}
