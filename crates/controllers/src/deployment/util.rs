//! Deployment arithmetic and bookkeeping without IO (upstream
//! `pkg/controller/deployment/util`): template hashes, revision annotations, surge and
//! unavailability fenceposts, proportional scaling, conditions and completeness.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::controller_utils::{fnv32a, safe_encode};

pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
pub const ROLLBACK_TO_ANNOTATION: &str = "deprecated.deployment.rollback.to";
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The label that keeps each ReplicaSet's pods apart (upstream `DefaultDeploymentUniqueLabelKey`).
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Longest `revision-history` annotation kept (upstream `maxRevHistoryLengthInChars`).
pub const MAX_REV_HISTORY_LENGTH_IN_CHARS: usize = 2000;

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const NEW_RS_REASON: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
pub const RS_UPDATED_REASON: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
pub const FAILED_RS_CREATE_REASON: &str = "ReplicaSetCreateError";
pub const PAUSED_REASON: &str = "DeploymentPaused";
pub const RESUMED_REASON: &str = "DeploymentResumed";
pub const MIN_AVAILABLE_REASON: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE_REASON: &str = "MinimumReplicasUnavailable";

/// `spec.replicas` (defaulted to 1 by the server).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

pub fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

pub fn is_rolling_update(d: &Deployment) -> bool {
    strategy_type(d) == "RollingUpdate"
}

pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

pub fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

/// The progress deadline, if the deployment has one (upstream `HasProgressDeadline`).
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// Upstream `ComputeHash`: FNV-32a over the template (here its canonical JSON) and the
/// collision count (4 bytes, little-endian), in the safe alphabet.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut data = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        data.extend_from_slice(&(c as u32).to_le_bytes());
    }
    safe_encode(&fnv32a(&data).to_string())
}

fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(m) = t.metadata.as_mut() {
        if let Some(labels) = m.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
            if labels.is_empty() {
                m.labels = None;
            }
        }
    }
    if t.metadata
        .as_ref()
        .is_some_and(|m| *m == ObjectMeta::default())
    {
        t.metadata = None;
    }
    t
}

/// Templates equal apart from the `pod-template-hash` label (upstream `EqualIgnoreHash`).
///
/// Upstream compares decoded Go structs, where an absent `resources` and `resources: {}`
/// are the same value; `kubectl rollout undo` sends the latter. So the comparison here
/// ignores empty objects, empty lists and nulls.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let norm = |t: &PodTemplateSpec| {
        let mut v = serde_json::to_value(without_hash(t)).unwrap_or_default();
        prune_empty(&mut v);
        v
    };
    norm(a) == norm(b)
}

/// Removes nulls, `{}` and `[]` (recursively); true if `v` itself ends up empty.
fn prune_empty(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => true,
        Value::Object(m) => {
            m.retain(|_, x| !prune_empty(x));
            m.is_empty()
        }
        Value::Array(a) => {
            // Elements stay (positions matter); only their insides are pruned.
            for x in a.iter_mut() {
                prune_empty(x);
            }
            a.is_empty()
        }
        _ => false,
    }
}

/// The template of a ReplicaSet.
pub fn rs_template(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default()
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs.metadata.annotations.as_ref(), REVISION_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn annotation<'a>(a: Option<&'a BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    a.and_then(|a| a.get(key)).map(String::as_str)
}

pub fn max_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rss.into_iter().map(revision).max().unwrap_or(0)
}

/// Oldest first; ties by name (upstream `ReplicaSetsByCreationTimestamp`).
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let ts = |r: &ReplicaSet| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ts(a)
        .cmp(&ts(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Lowest revision first (upstream `ReplicaSetsByRevision`).
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    revision(a)
        .cmp(&revision(b))
        .then_with(|| by_creation(a, b))
}

/// Bigger first; ties newer first (upstream `ReplicaSetsBySizeNewer`).
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(b, a))
}

/// Bigger first; ties older first (upstream `ReplicaSetsBySizeOlder`).
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(a, b))
}

/// Upstream `GetScaledValueFromIntOrPercent`.
pub fn scaled_value(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
                Some(p) => {
                    let x = i64::from(total) * p;
                    let v = if round_up {
                        (x + 99).div_euclid(100)
                    } else {
                        x.div_euclid(100)
                    };
                    i32::try_from(v).unwrap_or(i32::MAX)
                }
                // Validation rejects anything else; an int written as a string still counts.
                None => s.parse().unwrap_or(0),
            }
        }
    }
}

/// (maxSurge, maxUnavailable) as absolute numbers; never both zero (upstream `ResolveFenceposts`).
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let surge = scaled_value(max_surge, desired, true);
    let mut unavailable = scaled_value(max_unavailable, desired, false);
    if surge == 0 && unavailable == 0 {
        // Validation forbids both zero; stay safe by allowing one unavailable pod.
        unavailable = 1;
    }
    (surge, unavailable)
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
}

pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    fenceposts(d).0
}

pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling_update(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// Pods a ReplicaSet may still have: its spec, or more while a scale-down is not yet
/// reflected in its status. Counting the larger keeps the surge limit true for the
/// pods that actually exist, not only for the specs (upstream counts specs only).
pub fn pods_bound(rs: &ReplicaSet) -> i32 {
    rs_replicas(rs).max(rs_status_replicas(rs))
}

/// Replicas for the new ReplicaSet in this step (upstream `NewRSNewReplicas`).
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    let want = replicas(d);
    if !is_rolling_update(d) {
        return want;
    }
    let current: i32 = all.iter().map(|r| pods_bound(r)).sum();
    let max_total = want + max_surge(d);
    let new_spec = rs_replicas(new_rs);
    if current >= max_total {
        return new_spec;
    }
    let up = (max_total - current).min(want - new_spec);
    new_spec + up.max(0)
}

/// Sets revision, copied annotations and (for a new ReplicaSet) the replicas
/// annotations; true if anything changed (upstream `SetNewReplicaSetAnnotations`).
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = copy_deployment_annotations(d, rs);
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old = annotations.get(REVISION_ANNOTATION).cloned();
    let old_int = match old.as_deref() {
        None | Some("") => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(v) => v,
            Err(_) => return false,
        },
    };
    if old_int < new_revision {
        annotations.insert(REVISION_ANNOTATION.to_string(), new_revision.to_string());
        changed = true;
        // Reusing an older ReplicaSet (a rollback): remember the revisions it had.
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = annotations
                .get(REVISION_HISTORY_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            let updated = if history.is_empty() {
                old
            } else {
                let mut parts: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REV_HISTORY_LENGTH_IN_CHARS && start < parts.len() {
                    total -= parts[start].len() + 1;
                    start += 1;
                }
                parts.drain(..start);
                parts.push(&old);
                parts.join(",")
            };
            annotations.insert(REVISION_HISTORY_ANNOTATION.to_string(), updated);
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED_ANNOTATION
            | REVISION_ANNOTATION
            | REVISION_HISTORY_ANNOTATION
            | DESIRED_REPLICAS_ANNOTATION
            | MAX_REPLICAS_ANNOTATION
            | ROLLBACK_TO_ANNOTATION
    )
}

/// Copies the deployment's annotations (e.g. `kubernetes.io/change-cause`, which
/// `rollout history` shows) to the ReplicaSet.
pub fn copy_deployment_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.as_ref();
    annotation(a, DESIRED_REPLICAS_ANNOTATION) != Some(desired.to_string().as_str())
        || annotation(a, MAX_REPLICAS_ANNOTATION) != Some(max.to_string().as_str())
}

pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    if !replicas_annotations_need_update(rs, desired, max) {
        return false;
    }
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    a.insert(DESIRED_REPLICAS_ANNOTATION.to_string(), desired.to_string());
    a.insert(MAX_REPLICAS_ANNOTATION.to_string(), max.to_string());
    true
}

pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(
        rs.metadata.annotations.as_ref(),
        DESIRED_REPLICAS_ANNOTATION,
    )
    .and_then(|v| v.parse().ok())
}

fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs.metadata.annotations.as_ref(), MAX_REPLICAS_ANNOTATION)
        .and_then(|v| v.parse().ok())
}

/// The one active ReplicaSet, or the newest if none is active; `None` when several are
/// active (upstream `FindActiveOrLatest`).
pub fn find_active_or_latest<'a>(
    new_rs: Option<&'a ReplicaSet>,
    old: &[&'a ReplicaSet],
) -> Option<&'a ReplicaSet> {
    if new_rs.is_none() && old.is_empty() {
        return None;
    }
    let mut sorted: Vec<&ReplicaSet> = old.to_vec();
    sorted.sort_by(|a, b| by_creation(b, a));
    let active: Vec<&ReplicaSet> = sorted
        .iter()
        .copied()
        .chain(new_rs)
        .filter(|r| rs_replicas(r) > 0)
        .collect();
    match active.len() {
        0 => new_rs.or_else(|| sorted.first().copied()),
        1 => Some(active[0]),
        _ => None,
    }
}

/// The new ReplicaSet runs every replica, all available (upstream `IsSaturated`).
pub fn is_saturated(d: &Deployment, new_rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = new_rs else { return false };
    let want = replicas(d);
    rs_replicas(rs) == want
        && desired_replicas_annotation(rs) == Some(want)
        && rs_available(rs) == want
}

/// This ReplicaSet's share of `to_add` (upstream `GetProportion`).
pub fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let max_now = replicas(d) + max_surge(d);
    let before = match max_replicas_annotation(rs) {
        Some(v) if v != 0 => v,
        _ => d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0),
    };
    if before == 0 {
        return 0;
    }
    let scaled = f64::from(rs_replicas(rs)) * f64::from(max_now) / f64::from(before);
    (scaled.round() as i32) - rs_replicas(rs)
}

pub fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream `SetDeploymentCondition`: same status and reason is a no-op; same status
/// keeps the transition time.
pub fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = condition(status, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|x| x.type_ != c.type_);
    conditions.push(c);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            status.conditions = None;
        }
    }
}

fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Every replica updated and available, and the status is current (upstream `DeploymentComplete`).
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = replicas(d);
    n(s.updated_replicas) == want
        && n(s.replicas) == want
        && n(s.available_replicas) == want
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// The new status shows progress over the old one (upstream `DeploymentProgressing`).
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// No progress for longer than the deadline (upstream `DeploymentTimedOut`).
pub fn deployment_timed_out(d: &Deployment, new: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = condition(new, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => false,
        Some(TIMED_OUT_REASON) => true,
        _ => match &c.last_update_time {
            Some(t) => {
                t.0 + std::time::Duration::from_secs(u64::try_from(deadline).unwrap_or(0)) < now
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, ReplicaSetStatus,
        RollingUpdateDeployment,
    };

    fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("d".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn rs(name: &str, spec: i32, status: i32, created: i64) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).expect("ts"))),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(spec),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas: status,
                available_replicas: Some(status),
                ..Default::default()
            }),
        }
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let cases = [
            (pct("25%"), pct("25%"), 10, (3, 2)),
            (pct("25%"), pct("25%"), 3, (1, 0)),
            (IntOrString::Int(1), IntOrString::Int(1), 3, (1, 1)),
            (IntOrString::Int(0), IntOrString::Int(0), 3, (0, 1)),
            (pct("100%"), pct("0%"), 4, (4, 0)),
        ];
        for (surge, unavailable, desired, want) in cases {
            assert_eq!(
                resolve_fenceposts(Some(&surge), Some(&unavailable), desired),
                want,
                "{surge:?} {unavailable:?} {desired}"
            );
        }
        let d = deployment(5, IntOrString::Int(1), IntOrString::Int(9));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (1, 5));
    }

    #[test]
    fn new_replica_set_grows_within_surge_counting_pods_not_yet_gone() {
        let d = deployment(3, IntOrString::Int(1), IntOrString::Int(1));
        let new = rs("new", 0, 0, 2);
        let old = rs("old", 3, 3, 1);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 1);
        // Old scaled to 1 but its status still shows 3 pods: no room yet.
        let old_shrinking = rs("old", 1, 3, 1);
        let new1 = rs("new", 1, 1, 2);
        assert_eq!(new_rs_new_replicas(&d, &[&old_shrinking, &new1], &new1), 1);
        let old_done = rs("old", 1, 1, 1);
        assert_eq!(new_rs_new_replicas(&d, &[&old_done, &new1], &new1), 3);
    }

    #[test]
    fn hashes_are_stable_and_collision_count_changes_them() {
        let t = PodTemplateSpec::default();
        let h = compute_hash(&t, None);
        assert_eq!(h, compute_hash(&t, None));
        assert_ne!(h, compute_hash(&t, Some(1)));
        assert!(h
            .bytes()
            .all(|b| crate::controller_utils::SAFE_ALPHABET.contains(&b)));
        let mut labelled = t.clone();
        labelled.metadata = Some(ObjectMeta {
            labels: Some([(POD_TEMPLATE_HASH_LABEL.to_string(), h.clone())].into()),
            ..Default::default()
        });
        assert!(equal_ignore_hash(&t, &labelled));
        let with_empty: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {}, "args": []}]}
        }))
        .expect("template");
        let plain: PodTemplateSpec = serde_json::from_value(
            serde_json::json!({"spec": {"containers": [{"name": "c", "image": "i"}]}}),
        )
        .expect("template");
        let other: PodTemplateSpec = serde_json::from_value(
            serde_json::json!({"spec": {"containers": [{"name": "c", "image": "j"}]}}),
        )
        .expect("template");
        assert!(equal_ignore_hash(&with_empty, &plain));
        assert!(!equal_ignore_hash(&other, &plain));
    }

    #[test]
    fn revisions_bump_and_remember_history() {
        let d = deployment(3, IntOrString::Int(1), IntOrString::Int(1));
        let mut r = rs("a", 0, 0, 1);
        assert!(set_new_replica_set_annotations(&d, &mut r, 1, false));
        let a = r.metadata.annotations.clone().expect("annotations");
        assert_eq!(a.get(REVISION_ANNOTATION).map(String::as_str), Some("1"));
        assert_eq!(
            a.get(DESIRED_REPLICAS_ANNOTATION).map(String::as_str),
            Some("3")
        );
        assert_eq!(
            a.get(MAX_REPLICAS_ANNOTATION).map(String::as_str),
            Some("4")
        );
        // Reused by a rollback as revision 3: history keeps 1.
        assert!(set_new_replica_set_annotations(&d, &mut r, 3, true));
        assert!(set_new_replica_set_annotations(&d, &mut r, 5, true));
        let a = r.metadata.annotations.clone().expect("annotations");
        assert_eq!(a.get(REVISION_ANNOTATION).map(String::as_str), Some("5"));
        assert_eq!(
            a.get(REVISION_HISTORY_ANNOTATION).map(String::as_str),
            Some("1,3")
        );
        assert!(!set_new_replica_set_annotations(&d, &mut r, 4, true));
    }

    #[test]
    fn proportional_scaling_follows_max_replicas_annotation() {
        // Scaled from 10 (max 13) to 13 (surge 4, max 17): an RS of 5 grows to 5*17/13 ≈ 7.
        let d = deployment(13, pct("25%"), pct("25%"));
        let mut r = rs("a", 5, 5, 1);
        set_replicas_annotations(&mut r, 10, 13);
        assert_eq!(max_surge(&d), 4);
        assert_eq!(proportion(&r, &d, 4, 0), 2);
        assert_eq!(proportion(&r, &d, 4, 3), 1);
        assert_eq!(proportion(&r, &d, 4, 4), 0);
    }

    #[test]
    fn conditions_keep_transition_time_on_same_status() {
        let t1 = Timestamp::from_second(10).expect("ts");
        let t2 = Timestamp::from_second(20).expect("ts");
        let mut s = DeploymentStatus::default();
        set_condition(
            &mut s,
            new_condition(PROGRESSING, "True", NEW_RS_REASON, "a".into(), t1),
        );
        set_condition(
            &mut s,
            new_condition(PROGRESSING, "True", RS_UPDATED_REASON, "b".into(), t2),
        );
        let c = condition(&s, PROGRESSING).expect("condition");
        assert_eq!(c.reason.as_deref(), Some(RS_UPDATED_REASON));
        assert_eq!(c.last_transition_time, Some(Time(t1)));
        assert_eq!(c.last_update_time, Some(Time(t2)));
        let d = Deployment {
            spec: Some(DeploymentSpec {
                progress_deadline_seconds: Some(5),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!deployment_timed_out(
            &d,
            &s,
            Timestamp::from_second(24).expect("ts")
        ));
        assert!(deployment_timed_out(
            &d,
            &s,
            Timestamp::from_second(26).expect("ts")
        ));
    }
}
