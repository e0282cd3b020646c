//! The disruption controller (upstream `pkg/controller/disruption`): computes each
//! PodDisruptionBudget's status, which the eviction API spends.
//!
//! For a budget over the pods its selector matches: `expectedPods` is the number of
//! pods for an integer `minAvailable`, otherwise the summed scale of the pods'
//! controllers (Deployment through its ReplicaSet, ReplicaSet, ReplicationController,
//! StatefulSet, or anything with a `/scale` subresource); `desiredHealthy` is
//! `minAvailable` (percentages of the expected count rounded up) or expected minus
//! `maxUnavailable`; `currentHealthy` counts ready pods that are neither terminating nor
//! recently evicted (`disruptedPods`, entries the eviction API adds and this controller
//! drops once the pod is gone or after two minutes); `disruptionsAllowed` is the
//! difference, never below zero, and zero while no pods are expected. The
//! `DisruptionAllowed` condition mirrors it (`SufficientPods`/`InsufficientPods`);
//! when the status cannot be computed the budget fails safe to no disruptions with
//! reason `SyncFailed`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use apis::selectors::LabelSelector;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Client, Resource};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_utils::{is_conflict, is_pod_ready, meta_key, ErrorBackoff, EventRecorder};
use crate::informer::{controller_of, Cache, Change, InformerFactory};
use crate::queue::{self, Queue};

const NAME: &str = "disruption-controller";

/// How long an evicted pod may take to disappear before it counts again (upstream
/// `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Sync(String),
}

struct Ctx {
    client: Client,
    budgets: Cache<PodDisruptionBudget>,
    pods: Cache<Pod>,
    replica_sets: Cache<ReplicaSet>,
    deployments: Cache<Deployment>,
    rcs: Cache<ReplicationController>,
    statefulsets: Cache<StatefulSet>,
    recorder: EventRecorder,
    backoff: ErrorBackoff,
}

pub struct DisruptionController {
    ctx: Arc<Ctx>,
    rx: futures::channel::mpsc::UnboundedReceiver<
        kube::runtime::reflector::ObjectRef<PodDisruptionBudget>,
    >,
}

fn selector(pdb: &PodDisruptionBudget) -> LabelSelector {
    LabelSelector::from_metav1_opt(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()))
        .unwrap_or_else(|_| LabelSelector::nothing())
}

fn labels(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

impl DisruptionController {
    pub fn new(client: Client, informers: &mut InformerFactory) -> Self {
        let (queue, rx) = Queue::<PodDisruptionBudget>::new();
        let budget_informer = informers.informer::<PodDisruptionBudget>();
        let budgets = budget_informer.cache();
        {
            let queue = queue.clone();
            budget_informer.add_handler(move |change| match change {
                Change::Added(b) | Change::Updated { new: b, .. } | Change::Deleted(b) => {
                    queue.enqueue_obj(*b)
                }
            });
        }
        let pod_informer = informers.informer::<Pod>();
        let pods = pod_informer.cache();
        {
            let (queue, budgets) = (queue.clone(), budgets.clone());
            pod_informer.add_handler(move |change| {
                let pod = match change {
                    Change::Added(p) | Change::Updated { new: p, .. } | Change::Deleted(p) => *p,
                };
                let ns = pod.metadata.namespace.as_deref().unwrap_or("");
                let l = labels(pod);
                for b in budgets.in_namespace(ns) {
                    if selector(&b).matches(&l) {
                        queue.enqueue_obj(&b);
                    }
                }
            });
        }
        let ctx = Arc::new(Ctx {
            recorder: EventRecorder::new(client.clone(), NAME),
            client,
            budgets,
            pods,
            replica_sets: informers.informer::<ReplicaSet>().cache(),
            deployments: informers.informer::<Deployment>().cache(),
            rcs: informers.informer::<ReplicationController>().cache(),
            statefulsets: informers.informer::<StatefulSet>().cache(),
            backoff: ErrorBackoff::default(),
        });
        DisruptionController { ctx, rx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        let c = ctx.clone();
        let ready = async move {
            c.budgets.wait_until_ready().await;
            c.pods.wait_until_ready().await;
            c.replica_sets.wait_until_ready().await;
            c.deployments.wait_until_ready().await;
            c.rcs.wait_until_ready().await;
            c.statefulsets.wait_until_ready().await;
        };
        queue::run(
            NAME,
            ctx.budgets.store(),
            ready,
            self.rx,
            |b, ctx| Box::pin(reconcile(b, ctx)),
            error_policy,
            ctx.clone(),
            cancel,
        )
        .await;
    }
}

fn error_policy(b: Arc<PodDisruptionBudget>, err: &Error, ctx: Arc<Ctx>) -> Action {
    let key = meta_key(&b.metadata);
    let delay = ctx.backoff.next_delay(&key);
    tracing::debug!(controller = NAME, object = %key, error = %err, ?delay, "sync failed");
    Action::requeue(delay)
}

async fn reconcile(b: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = meta_key(&b.metadata);
    let span = tracing::debug_span!("reconcile", controller = NAME, object = %key);
    let result = async {
        match try_sync(&b, &ctx).await {
            Ok(a) => Ok(a),
            Err(Error::Api(e)) if is_conflict(&e) => Err(Error::Api(e)),
            Err(e) => {
                fail_safe(&b, &ctx, &e.to_string()).await?;
                Err(e)
            }
        }
    }
    .instrument(span)
    .await;
    if result.is_ok() {
        ctx.backoff.reset(&key);
    }
    result
}

/// Upstream `intstr.GetScaledValueFromIntOrPercent` with rounding up.
pub fn scaled_value(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    format!(
                        "invalid value for IntOrString: invalid type: string is not a percentage"
                    )
                })?;
            let scaled = (pct * i64::from(total) + 99).div_euclid(100);
            Ok(i32::try_from(scaled).unwrap_or(i32::MAX))
        }
    }
}

fn refers(r: &OwnerReference, kind: &str, group: &str) -> bool {
    r.kind == kind && r.api_version.rsplit_once('/').map_or("", |(g, _)| g) == group
}

/// The controller of `r` and its scale, if this controller knows it.
async fn controller_scale(
    ctx: &Ctx,
    r: &OwnerReference,
    ns: &str,
) -> Result<Option<(String, i32)>, Error> {
    if refers(r, "ReplicaSet", "apps") {
        let Some(rs) = ctx
            .replica_sets
            .get(ns, &r.name)
            .filter(|rs| rs.metadata.uid.as_deref() == Some(&r.uid))
        else {
            return Ok(None);
        };
        if let Some(owner) = controller_of(&rs.metadata).filter(|o| refers(o, "Deployment", "apps"))
        {
            let d = ctx
                .deployments
                .get(ns, &owner.name)
                .filter(|d| d.metadata.uid.as_deref() == Some(&owner.uid));
            return Ok(d.map(|d| {
                (
                    owner.uid.clone(),
                    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                )
            }));
        }
        return Ok(Some((
            r.uid.clone(),
            rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        )));
    }
    if refers(r, "ReplicationController", "") {
        let rc = ctx
            .rcs
            .get(ns, &r.name)
            .filter(|rc| rc.metadata.uid.as_deref() == Some(&r.uid));
        return Ok(rc.map(|rc| {
            (
                r.uid.clone(),
                rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            )
        }));
    }
    if refers(r, "StatefulSet", "apps") {
        let ss = ctx
            .statefulsets
            .get(ns, &r.name)
            .filter(|s| s.metadata.uid.as_deref() == Some(&r.uid));
        return Ok(ss.map(|s| {
            (
                r.uid.clone(),
                s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            )
        }));
    }
    generic_scale(ctx, r, ns).await
}

/// Any other controller with a `/scale` subresource (upstream `getScaleController`).
async fn generic_scale(
    ctx: &Ctx,
    r: &OwnerReference,
    ns: &str,
) -> Result<Option<(String, i32)>, Error> {
    let gv: kube::core::GroupVersion = r
        .api_version
        .parse()
        .map_err(|e| Error::Sync(format!("{e}")))?;
    let group = match kube::discovery::pinned_group(&ctx.client, &gv).await {
        Ok(g) => g,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some((ar, caps)) = group
        .resources_by_stability()
        .into_iter()
        .find(|(ar, _)| ar.kind == r.kind)
    else {
        return Ok(None);
    };
    if !caps
        .subresources
        .iter()
        .any(|(s, _)| s.plural == format!("{}/scale", ar.plural) || s.plural == "scale")
    {
        return Err(Error::Sync(format!(
            "{}.{} does not implement the scale subresource",
            ar.plural, ar.group
        )));
    }
    let url = format!(
        "{}/{}/scale",
        kube::api::Api::<kube::api::DynamicObject>::namespaced_with(ctx.client.clone(), ns, &ar)
            .resource_url(),
        r.name
    );
    let req = http::Request::get(url)
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    let scale: k8s_openapi::api::autoscaling::v1::Scale = match ctx.client.request(req).await {
        Ok(s) => s,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if scale.metadata.uid.as_deref() != Some(&r.uid) {
        return Ok(None);
    }
    Ok(Some((
        r.uid.clone(),
        scale.spec.and_then(|s| s.replicas).unwrap_or(0),
    )))
}

/// Sum of the scales of the pods' controllers; pods without one are reported.
async fn expected_scale(
    ctx: &Ctx,
    pods: &[Arc<Pod>],
    ns: &str,
) -> Result<(i32, Vec<String>), Error> {
    let mut scales: HashMap<String, i32> = HashMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let Some(r) = controller_of(&pod.metadata) else {
            unmanaged.push(pod.metadata.name.clone().unwrap_or_default());
            continue;
        };
        if scales.contains_key(&r.uid) {
            continue;
        }
        match controller_scale(ctx, r, ns).await? {
            Some((uid, scale)) => {
                scales.insert(uid, scale);
            }
            None => {
                return Err(Error::Sync(format!(
                    "found no controllers for pod {:?}",
                    pod.metadata.name.as_deref().unwrap_or("")
                )))
            }
        }
    }
    Ok((scales.values().sum(), unmanaged))
}

/// (expectedPods, desiredHealthy, unmanaged pods) (upstream `getExpectedPodCount`).
async fn expected_pod_count(
    ctx: &Ctx,
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    ns: &str,
) -> Result<(i32, i32, Vec<String>), Error> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max_unavailable) = &spec.max_unavailable {
        let (expected, unmanaged) = expected_scale(ctx, pods, ns).await?;
        let mu = scaled_value(max_unavailable, expected).map_err(Error::Sync)?;
        return Ok((expected, (expected - mu).max(0), unmanaged));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((
            i32::try_from(pods.len()).unwrap_or(i32::MAX),
            *n,
            Vec::new(),
        )),
        Some(v @ IntOrString::String(_)) => {
            let (expected, unmanaged) = expected_scale(ctx, pods, ns).await?;
            Ok((
                expected,
                scaled_value(v, expected).map_err(Error::Sync)?,
                unmanaged,
            ))
        }
        None => Ok((0, 0, Vec::new())),
    }
}

fn at(t: &Time, d: Duration) -> Timestamp {
    t.0.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// Evictions still pending (pod present, not terminating, within [`DELETION_TIMEOUT`])
/// and when to look again (upstream `buildDisruptedPodMap`).
fn disrupted_pods(
    pods: &[Arc<Pod>],
    recorded: &BTreeMap<String, Time>,
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let mut expired = Vec::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(t) = recorded.get(&name) else {
            continue;
        };
        let expected_deletion = at(t, DELETION_TIMEOUT);
        if expected_deletion < now {
            expired.push(name);
        } else {
            recheck = Some(recheck.map_or(expected_deletion, |r| r.min(expected_deletion)));
            out.insert(name, t.clone());
        }
    }
    (out, recheck, expired)
}

fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    let n = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let name = p.metadata.name.as_deref().unwrap_or("");
            !disrupted
                .get(name)
                .is_some_and(|t| at(t, DELETION_TIMEOUT) > now)
        })
        .filter(|p| is_pod_ready(p))
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Sets the `DisruptionAllowed` condition (upstream `SetStatusCondition` semantics:
/// the transition time moves only when the status does).
fn set_condition(status: &mut PodDisruptionBudgetStatus, state: &str, reason: &str, message: &str) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let now = Time(Timestamp::now());
    let generation = status.observed_generation;
    match conditions
        .iter_mut()
        .find(|c| c.type_ == "DisruptionAllowed")
    {
        Some(c) => {
            if c.status != state {
                c.last_transition_time = now;
            }
            c.status = state.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: "DisruptionAllowed".into(),
            status: state.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
}

fn conditions_up_to_date(status: &PodDisruptionBudgetStatus) -> bool {
    let want = if status.disruptions_allowed > 0 {
        "True"
    } else {
        "False"
    };
    status.conditions.iter().flatten().any(|c| {
        c.type_ == "DisruptionAllowed"
            && c.status == want
            && c.observed_generation == status.observed_generation
    })
}

async fn write_status(
    ctx: &Ctx,
    pdb: &PodDisruptionBudget,
    status: PodDisruptionBudgetStatus,
) -> Result<(), Error> {
    let ns = pdb.metadata.namespace.clone().unwrap_or_default();
    let name = pdb.metadata.name.clone().unwrap_or_default();
    let mut next = pdb.clone();
    next.status = Some(status);
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
    api.replace_status(&name, &PostParams::default(), &next)
        .await?;
    Ok(())
}

async fn try_sync(pdb: &PodDisruptionBudget, ctx: &Ctx) -> Result<Action, Error> {
    let ns = pdb.metadata.namespace.clone().unwrap_or_default();
    let reference = pdb.object_ref(&());
    let sel = selector(pdb);
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .in_namespace(&ns)
        .into_iter()
        .filter(|p| sel.matches(&labels(p)))
        .collect();
    if pods.is_empty() {
        ctx.recorder
            .publish(
                &reference,
                EventType::Normal,
                "NoPods",
                "Sync",
                "No matching pods found".to_string(),
            )
            .await;
    }
    let (expected, desired, unmanaged) = match expected_pod_count(ctx, pdb, &pods, &ns).await {
        Ok(v) => v,
        Err(e) => {
            let note = format!("Failed to calculate the number of expected pods: {e}");
            ctx.recorder
                .publish(
                    &reference,
                    EventType::Warning,
                    "CalculateExpectedPodCountFailed",
                    "Sync",
                    note,
                )
                .await;
            return Err(e);
        }
    };
    if !unmanaged.is_empty() {
        let sel_text = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .map(|s| format!("{s:?}"))
            .unwrap_or_default();
        let note = format!(
            "Pods selected by this PodDisruptionBudget (selector: {sel_text}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
        );
        ctx.recorder
            .publish(
                &reference,
                EventType::Warning,
                "UnmanagedPods",
                "Sync",
                note,
            )
            .await;
    }
    let now = Timestamp::now();
    let old = pdb.status.clone().unwrap_or_default();
    let (disrupted, recheck, expired) =
        disrupted_pods(&pods, &old.disrupted_pods.clone().unwrap_or_default(), now);
    for name in expired {
        if let Some(p) = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(&name))
        {
            let note = format!("Pod was expected by PDB {ns}/{ns} to be deleted but it wasn't");
            ctx.recorder
                .publish(
                    &p.object_ref(&()),
                    EventType::Warning,
                    "NotDeleted",
                    "Sync",
                    note,
                )
                .await;
        }
    }
    let healthy = count_healthy(&pods, &disrupted, now);
    let allowed = if expected <= 0 {
        0
    } else {
        (healthy - desired).max(0)
    };
    let generation = pdb.metadata.generation;
    let disrupted_opt = (!disrupted.is_empty()).then_some(disrupted.clone());
    let unchanged = old.current_healthy == healthy
        && old.desired_healthy == desired
        && old.expected_pods == expected
        && old.disruptions_allowed == allowed
        && old.disrupted_pods.clone().unwrap_or_default() == disrupted
        && old.observed_generation == generation
        && conditions_up_to_date(&old);
    if !unchanged {
        let mut status = PodDisruptionBudgetStatus {
            current_healthy: healthy,
            desired_healthy: desired,
            expected_pods: expected,
            disruptions_allowed: allowed,
            disrupted_pods: disrupted_opt,
            observed_generation: generation,
            conditions: old.conditions.clone(),
        };
        if allowed > 0 {
            set_condition(&mut status, "True", "SufficientPods", "");
        } else {
            set_condition(&mut status, "False", "InsufficientPods", "");
        }
        write_status(ctx, pdb, status).await?;
        tracing::debug!(budget = %meta_key(&pdb.metadata), healthy, desired, expected, allowed, "updated budget");
    }
    Ok(match recheck {
        Some(t) => Action::requeue(
            Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO)
                + Duration::from_millis(10),
        ),
        None => Action::await_change(),
    })
}

/// Upstream `failSafe`: no disruptions, condition `SyncFailed`.
async fn fail_safe(pdb: &PodDisruptionBudget, ctx: &Ctx, message: &str) -> Result<(), Error> {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    set_condition(&mut status, "False", "SyncFailed", message);
    write_status(ctx, pdb, status).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ready: bool, terminating: bool) -> Arc<Pod> {
        let mut v = json!({"metadata": {"name": name}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if terminating {
            v["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(v).expect("pod"))
    }

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled_value(&IntOrString::String("50%".into()), 3), Ok(2));
        assert_eq!(scaled_value(&IntOrString::String("34%".into()), 3), Ok(2));
        assert_eq!(scaled_value(&IntOrString::String("0%".into()), 3), Ok(0));
        assert_eq!(scaled_value(&IntOrString::Int(2), 10), Ok(2));
        assert!(scaled_value(&IntOrString::String("half".into()), 3).is_err());
    }

    #[test]
    fn healthy_pods_exclude_terminating_unready_and_recently_evicted() {
        let now = Timestamp::from_second(1_700_000_000).expect("ts");
        let pods = vec![
            pod("a", true, false),
            pod("b", true, false),
            pod("c", false, false),
            pod("d", true, true),
        ];
        let recorded: BTreeMap<String, Time> = [
            ("b".to_string(), Time(now - Duration::from_secs(10))),
            ("a".to_string(), Time(now - Duration::from_secs(300))),
        ]
        .into();
        let (disrupted, recheck, expired) = disrupted_pods(&pods, &recorded, now);
        assert_eq!(disrupted.keys().collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(expired, vec!["a"]);
        assert_eq!(recheck, Some(now + Duration::from_secs(110)));
        assert_eq!(count_healthy(&pods, &disrupted, now), 1);
    }

    #[test]
    fn condition_transitions_only_on_status_change() {
        let mut status = PodDisruptionBudgetStatus {
            observed_generation: Some(1),
            ..Default::default()
        };
        set_condition(&mut status, "False", "InsufficientPods", "");
        assert!(conditions_up_to_date(&status));
        status.disruptions_allowed = 1;
        assert!(!conditions_up_to_date(&status));
        set_condition(&mut status, "True", "SufficientPods", "");
        let c = &status.conditions.as_ref().expect("conditions")[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "SufficientPods")
        );
    }
}
