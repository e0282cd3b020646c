//! The StatefulSet controller (upstream `pkg/controller/statefulset`): pods with stable
//! names `<set>-<ordinal>`, stable storage (one PVC per claim template and ordinal, made
//! before the pod and kept after it), and ordered changes.
//!
//! One sync claims the set's ControllerRevisions and pods (adoption/release as for
//! ReplicaSets, restricted to pods whose name says they belong to the set), then runs
//! [`control`]: find or create the revision of the current template, walk the ordinals
//! (create missing pods, replace failed ones, fix identity and storage), remove pods
//! beyond `replicas` from the highest ordinal down, and roll pods onto the new revision
//! from the highest ordinal down to the partition. With `OrderedReady` every step waits
//! for the pods before it to be Running and Ready; `Parallel` does not wait. Status and
//! the revision history limit are written last.
//!
//! Upstream relies on deterministic names alone to avoid acting twice; this controller
//! also records its pod creations and deletions as expectations and waits for its cache
//! to show them, so a lagging cache costs an idle sync instead of failed requests.

mod control;
mod pod_control;
pub mod utils;

use std::sync::Arc;
use std::time::Duration;

use apis::selectors::LabelSelector;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_ref_manager::{claim, recheck_deletion_timestamp, ClaimError};
use crate::controller_utils::{controller_ref, meta_key, ErrorBackoff, EventRecorder};
use crate::expectations::ControllerExpectations;
use crate::informer::{controller_of, Cache, Change, InformerFactory};
use crate::queue::{self, Queue};
use crate::replicaset::group_of;

const CONTROLLER_NAME: &str = "statefulset-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// Creating, updating or deleting a pod or claim failed (already recorded as an event).
    #[error("{0}")]
    Pods(String),
}

struct Ctx {
    client: Client,
    sets: Cache<StatefulSet>,
    pods: Cache<Pod>,
    claims: Cache<PersistentVolumeClaim>,
    revisions: Cache<ControllerRevision>,
    expectations: Arc<ControllerExpectations>,
    recorder: EventRecorder,
    backoff: ErrorBackoff,
}

/// The StatefulSet controller, wired to shared informers.
pub struct StatefulSetController {
    ctx: Arc<Ctx>,
    rx: futures::channel::mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<StatefulSet>>,
}

fn is_set_ref(r: &OwnerReference) -> bool {
    r.kind == "StatefulSet" && group_of(&r.api_version) == "apps"
}

impl StatefulSetController {
    /// Registers handlers on `informers`; run with [`Self::run`] after `informers.start`.
    pub fn new(client: Client, informers: &mut InformerFactory) -> Self {
        let (queue, rx) = Queue::<StatefulSet>::new();
        let expectations = Arc::new(ControllerExpectations::new());

        let set_informer = informers.informer::<StatefulSet>();
        let sets = set_informer.cache();
        {
            let (queue, expectations) = (queue.clone(), expectations.clone());
            set_informer.add_handler(move |change| match change {
                Change::Added(s) | Change::Updated { new: s, .. } => queue.enqueue_obj(*s),
                Change::Deleted(s) => expectations.delete(&meta_key(&s.metadata)),
            });
        }

        let pod_informer = informers.informer::<Pod>();
        let pods = pod_informer.cache();
        {
            let handler = PodHandler {
                queue: queue.clone(),
                sets: sets.clone(),
                expectations: expectations.clone(),
            };
            pod_informer.add_handler(move |change| handler.handle(change));
        }

        let revisions = informers.informer::<ControllerRevision>().cache();
        let claims = informers.informer::<PersistentVolumeClaim>().cache();
        let recorder = EventRecorder::new(client.clone(), CONTROLLER_NAME);
        let ctx = Arc::new(Ctx {
            client,
            sets,
            pods,
            claims,
            revisions,
            expectations,
            recorder,
            backoff: ErrorBackoff::default(),
        });
        StatefulSetController { ctx, rx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        let (s, p, c, r) = (
            ctx.sets.clone(),
            ctx.pods.clone(),
            ctx.claims.clone(),
            ctx.revisions.clone(),
        );
        let ready = async move {
            s.wait_until_ready().await;
            p.wait_until_ready().await;
            c.wait_until_ready().await;
            r.wait_until_ready().await;
        };
        queue::run(
            CONTROLLER_NAME,
            ctx.sets.store(),
            ready,
            self.rx,
            |s, ctx| Box::pin(reconcile(s, ctx)),
            error_policy,
            ctx.clone(),
            cancel,
        )
        .await;
    }
}

/// Pod events → sets to sync (upstream `addPod`/`updatePod`/`deletePod`), lowering the
/// controller's expectations as its own creations and deletions show up.
struct PodHandler {
    queue: Queue<StatefulSet>,
    sets: Cache<StatefulSet>,
    expectations: Arc<ControllerExpectations>,
}

impl PodHandler {
    fn handle(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Added(pod) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    self.deleted(pod);
                    return;
                }
                if let Some(set) = self.owner(pod) {
                    self.expectations
                        .creation_observed(&meta_key(&set.metadata));
                    self.queue.enqueue_obj(&set);
                } else if controller_of(&pod.metadata).is_none() {
                    self.enqueue_matching(pod);
                }
            }
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                if new.metadata.deletion_timestamp.is_some()
                    && old.metadata.deletion_timestamp.is_none()
                {
                    self.deleted(new);
                    return;
                }
                let (cur_ref, old_ref) =
                    (controller_of(&new.metadata), controller_of(&old.metadata));
                if cur_ref != old_ref {
                    if let Some(set) = self.owner(old) {
                        self.queue.enqueue_obj(&set);
                    }
                }
                if let Some(set) = self.owner(new) {
                    self.queue.enqueue_obj(&set);
                } else if cur_ref.is_none()
                    && (old.metadata.labels != new.metadata.labels || cur_ref != old_ref)
                {
                    self.enqueue_matching(new);
                }
            }
            Change::Deleted(pod) => self.deleted(pod),
        }
    }

    fn deleted(&self, pod: &Pod) {
        if let Some(set) = self.owner(pod) {
            self.expectations
                .deletion_observed(&meta_key(&set.metadata), &meta_key(&pod.metadata));
            self.queue.enqueue_obj(&set);
        }
    }

    fn owner(&self, pod: &Pod) -> Option<Arc<StatefulSet>> {
        let r = controller_of(&pod.metadata).filter(|r| is_set_ref(r))?;
        let set = self
            .sets
            .get(pod.metadata.namespace.as_deref().unwrap_or(""), &r.name)?;
        (set.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(set)
    }

    fn enqueue_matching(&self, pod: &Pod) {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        for set in self
            .sets
            .in_namespace(pod.metadata.namespace.as_deref().unwrap_or(""))
        {
            let Some(spec) = set.spec.as_ref() else {
                continue;
            };
            if let Ok(sel) = LabelSelector::from_metav1(&spec.selector) {
                if !sel.is_empty() && sel.matches(&labels) && utils::is_member_of(&set, pod) {
                    self.queue.enqueue_obj(&set);
                }
            }
        }
    }
}

fn error_policy(set: Arc<StatefulSet>, err: &Error, ctx: Arc<Ctx>) -> Action {
    let key = meta_key(&set.metadata);
    let delay = ctx.backoff.next_delay(&key);
    tracing::debug!(controller = CONTROLLER_NAME, object = %key, error = %err, ?delay, "sync failed");
    Action::requeue(delay)
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = meta_key(&set.metadata);
    let span = tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %key);
    let result = sync(&set, &ctx, &key).instrument(span).await;
    if result.is_ok() {
        ctx.backoff.reset(&key);
    }
    result
}

async fn sync(set: &StatefulSet, ctx: &Ctx, key: &str) -> Result<Action, Error> {
    if !ctx.expectations.satisfied(key) {
        // The cache has not shown this controller's last pod writes yet; their events
        // bring the set back (the requeue only guards against a lost event).
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let Some(spec) = set.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let selector = match LabelSelector::from_metav1(&spec.selector) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(object = %key, error = %e, "invalid selector");
            return Ok(Action::await_change());
        }
    };
    let revisions = claim_revisions(set, ctx, &selector).await?;
    let pods = claim_pods(set, ctx, &selector).await?;
    let status = ctx.update_stateful_set(set, key, revisions, &pods).await?;
    let min_ready = utils::min_ready_seconds(set);
    if min_ready > 0
        && status.is_some_and(|s| s.available_replicas.unwrap_or(0) != utils::replicas(set))
    {
        // Ready pods turn available with time alone; look again then.
        return Ok(Action::requeue(Duration::from_secs(
            u64::try_from(min_ready).unwrap_or(0),
        )));
    }
    Ok(Action::await_change())
}

async fn fresh_check(
    client: Client,
    cached: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<(), ClaimError> {
    let api: Api<StatefulSet> = Api::namespaced(client, cached.namespace.as_deref().unwrap_or(""));
    let fresh = api
        .get(cached.name.as_deref().unwrap_or(""))
        .await
        .map_err(ClaimError::Api)?;
    recheck_deletion_timestamp(&cached, &fresh.metadata, "StatefulSet")
}

/// The set's revisions, adopting orphans that match its selector.
async fn claim_revisions(
    set: &StatefulSet,
    ctx: &Ctx,
    selector: &LabelSelector,
) -> Result<Vec<ControllerRevision>, Error> {
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let mut candidates = ctx.revisions.controlled_by(&uid);
    candidates.extend(ctx.revisions.orphans_in(utils::set_namespace(set)));
    let owner_ref = controller_ref(&set.metadata, "apps/v1", "StatefulSet");
    let (client, cached) = (ctx.client.clone(), set.metadata.clone());
    let claimed = claim(
        &ctx.client,
        &set.metadata,
        &owner_ref,
        selector,
        candidates,
        || fresh_check(client, cached),
    )
    .await?;
    Ok(claimed.iter().map(|r| (**r).clone()).collect())
}

/// The set's pods: those it controls plus orphans that match its selector and whose
/// names say they are its members (upstream `getPodsForStatefulSet`).
async fn claim_pods(
    set: &StatefulSet,
    ctx: &Ctx,
    selector: &LabelSelector,
) -> Result<Vec<Pod>, Error> {
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let mut candidates = ctx.pods.controlled_by(&uid);
    candidates.extend(
        ctx.pods
            .orphans_in(utils::set_namespace(set))
            .into_iter()
            .filter(|p| utils::is_member_of(set, p)),
    );
    let owner_ref = controller_ref(&set.metadata, "apps/v1", "StatefulSet");
    let (client, cached) = (ctx.client.clone(), set.metadata.clone());
    let claimed = claim(
        &ctx.client,
        &set.metadata,
        &owner_ref,
        selector,
        candidates,
        || fresh_check(client, cached),
    )
    .await?;
    Ok(claimed
        .iter()
        .filter(|p| utils::is_member_of(set, p))
        .map(|p| (**p).clone())
        .collect())
}
