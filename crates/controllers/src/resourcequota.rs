//! The resource quota controller (upstream `pkg/controller/resourcequota`): keeps each
//! ResourceQuota's `status.hard` equal to `spec.hard` and `status.used` equal to what
//! the namespace actually holds, for every resource the quota names.
//!
//! Charging new objects is the API server's job (ResourceQuota admission raises
//! `status.used` before the object is written), so this controller does not react to
//! creations; it recalculates when a quota's `spec.hard` changes, when usage can only
//! have gone down (an object deleted, a pod finished or started terminating, a service
//! or claim changed), and every `resource_quota_sync_period` as a safety net — the same
//! replenishment rules as upstream, which keep it from overwriting fresh charges with
//! a count taken from a cache that has not seen the new object yet.
//!
//! Pods, services, claims, ReplicationControllers and quotas come from shared
//! informers; ConfigMaps, Secrets and any other `count/<resource>.<group>` are counted
//! with a metadata list through the API (the resource found by discovery), so their
//! usage goes down at the next periodic sync after a deletion.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apis::quota::{self, Evaluator, ResourceList};
use apis::resource::Quantity;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, ResourceQuotaStatus, Service,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_utils::{meta_key, ErrorBackoff};
use crate::informer::{Cache, Change, InformerFactory};
use crate::queue::{self, Queue};

const NAME: &str = "resourcequota-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Discovery(String),
}

struct Ctx {
    client: Client,
    quotas: Cache<ResourceQuota>,
    pods: Cache<Pod>,
    services: Cache<Service>,
    claims: Cache<PersistentVolumeClaim>,
    rcs: Cache<ReplicationController>,
    sync_period: Duration,
    backoff: ErrorBackoff,
}

/// The controller, wired to shared informers.
pub struct ResourceQuotaController {
    ctx: Arc<Ctx>,
    rx: futures::channel::mpsc::UnboundedReceiver<
        kube::runtime::reflector::ObjectRef<ResourceQuota>,
    >,
}

/// Enqueues every quota of a namespace (usage there may have gone down).
fn replenish(queue: &Queue<ResourceQuota>, quotas: &Cache<ResourceQuota>, namespace: &str) {
    for q in quotas.in_namespace(namespace) {
        queue.enqueue_obj(&q);
    }
}

fn ns_of<K: Resource>(o: &K) -> String {
    o.meta().namespace.clone().unwrap_or_default()
}

/// Registers `replenish` on deletions (and on updates that `changed` says may lower usage).
fn watch_replenishment<K>(
    informers: &mut InformerFactory,
    queue: &Queue<ResourceQuota>,
    quotas: &Cache<ResourceQuota>,
    changed: fn(&K, &K) -> bool,
) -> Cache<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let informer = informers.informer::<K>();
    let (queue, quotas) = (queue.clone(), quotas.clone());
    informer.add_handler(move |change| match change {
        Change::Deleted(o) => replenish(&queue, &quotas, &ns_of(*o)),
        Change::Updated { old, new } if changed(old, new) => {
            replenish(&queue, &quotas, &ns_of(*new))
        }
        _ => {}
    });
    informer.cache()
}

fn never<K>(_: &K, _: &K) -> bool {
    false
}

impl ResourceQuotaController {
    pub fn new(
        client: Client,
        informers: &mut InformerFactory,
        options: &crate::options::ControllerOptions,
    ) -> Self {
        let (queue, rx) = Queue::<ResourceQuota>::new();
        let quota_informer = informers.informer::<ResourceQuota>();
        let quotas = quota_informer.cache();
        {
            let queue = queue.clone();
            quota_informer.add_handler(move |change| match change {
                Change::Added(q) => queue.enqueue_obj(*q),
                Change::Updated { old, new } => {
                    let spec_changed = old.spec.as_ref().and_then(|s| s.hard.as_ref())
                        != new.spec.as_ref().and_then(|s| s.hard.as_ref());
                    if spec_changed || needs_recalculation(new) {
                        queue.enqueue_obj(*new);
                    }
                }
                Change::Deleted(_) => {}
            });
        }
        let pods = watch_replenishment::<Pod>(informers, &queue, &quotas, |old, new| {
            let now = Timestamp::now();
            (quota::pod_is_charged(old, now) && !quota::pod_is_charged(new, now))
                || quota::is_terminating(old) != quota::is_terminating(new)
                || old.metadata.deletion_timestamp.is_none()
                    && new.metadata.deletion_timestamp.is_some()
        });
        let services = watch_replenishment::<Service>(informers, &queue, &quotas, |old, new| {
            quota::service_usage(old) != quota::service_usage(new)
        });
        let claims =
            watch_replenishment::<PersistentVolumeClaim>(informers, &queue, &quotas, |old, new| {
                quota::pvc_usage(old) != quota::pvc_usage(new)
            });
        let rcs = watch_replenishment::<ReplicationController>(informers, &queue, &quotas, never);
        let ctx = Arc::new(Ctx {
            client,
            quotas,
            pods,
            services,
            claims,
            rcs,
            sync_period: options.resource_quota_sync_period,
            backoff: ErrorBackoff::default(),
        });
        ResourceQuotaController { ctx, rx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        let c = ctx.clone();
        let ready = async move {
            c.quotas.wait_until_ready().await;
            c.pods.wait_until_ready().await;
            c.services.wait_until_ready().await;
            c.claims.wait_until_ready().await;
            c.rcs.wait_until_ready().await;
        };
        queue::run(
            NAME,
            ctx.quotas.store(),
            ready,
            self.rx,
            |q, ctx| Box::pin(reconcile(q, ctx)),
            error_policy,
            ctx.clone(),
            cancel,
        )
        .await;
    }
}

/// `status.hard` differs from `spec.hard`, or some hard resource has no usage yet.
fn needs_recalculation(q: &ResourceQuota) -> bool {
    let spec_hard = q
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let status = q.status.clone().unwrap_or_default();
    let status_hard = status.hard.unwrap_or_default();
    let used = status.used.unwrap_or_default();
    spec_hard != status_hard || spec_hard.keys().any(|k| !used.contains_key(k))
}

fn error_policy(q: Arc<ResourceQuota>, err: &Error, ctx: Arc<Ctx>) -> Action {
    let key = meta_key(&q.metadata);
    let delay = ctx.backoff.next_delay(&key);
    tracing::debug!(controller = NAME, object = %key, error = %err, ?delay, "sync failed");
    Action::requeue(delay)
}

async fn reconcile(q: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = meta_key(&q.metadata);
    let span = tracing::debug_span!("reconcile", controller = NAME, object = %key);
    let result = sync(&q, &ctx).instrument(span).await;
    if result.is_ok() {
        ctx.backoff.reset(&key);
    }
    result
}

fn sum_usage<'a, K: 'a>(
    items: impl IntoIterator<Item = &'a Arc<K>>,
    usage: impl Fn(&K) -> ResourceList,
    matches: impl Fn(&K) -> bool,
) -> ResourceList {
    items
        .into_iter()
        .filter(|o| matches(o))
        .fold(ResourceList::new(), |acc, o| quota::add(&acc, &usage(o)))
}

/// `status.used` for every resource named in `hard` (upstream `CalculateUsage`).
async fn calculate_usage(
    ctx: &Ctx,
    rq: &ResourceQuota,
    namespace: &str,
    hard: &ResourceList,
) -> Result<ResourceList, Error> {
    let names: Vec<String> = hard.keys().cloned().collect();
    let scoped = !quota::scope_selectors(rq).is_empty();
    let now = Timestamp::now();
    let mut used = ResourceList::new();
    let mut covered: Vec<String> = Vec::new();
    let mut account = |evaluator: Evaluator, usage: ResourceList| {
        let matched = evaluator.matching_resources(&names);
        for name in &matched {
            used.insert(
                name.clone(),
                usage.get(name).copied().unwrap_or(Quantity::ZERO),
            );
        }
        covered.extend(matched);
    };
    let pod_names = Evaluator::Pods.matching_resources(&names);
    if !pod_names.is_empty() {
        let u = sum_usage(
            &ctx.pods.in_namespace(namespace),
            |p| quota::pod_usage(p, now),
            |p| quota::matches_scopes(rq, Some(p)),
        );
        account(Evaluator::Pods, u);
    }
    // Other kinds fall under scoped quotas only for pods.
    if !scoped {
        if !Evaluator::Services.matching_resources(&names).is_empty() {
            let u = sum_usage(
                &ctx.services.in_namespace(namespace),
                quota::service_usage,
                |_| true,
            );
            account(Evaluator::Services, u);
        }
        if !Evaluator::PersistentVolumeClaims
            .matching_resources(&names)
            .is_empty()
        {
            let u = sum_usage(
                &ctx.claims.in_namespace(namespace),
                quota::pvc_usage,
                |_| true,
            );
            account(Evaluator::PersistentVolumeClaims, u);
        }
        // ConfigMaps and Secrets are counted with a metadata list when a quota asks:
        // caching every one of them would cost the controller manager as much memory
        // as the API server's own cache.
        let counts: [(&str, Option<usize>); 4] = [
            ("configmaps", None),
            ("secrets", None),
            (
                "replicationcontrollers",
                Some(ctx.rcs.in_namespace(namespace).len()),
            ),
            (
                "resourcequotas",
                Some(ctx.quotas.in_namespace(namespace).len()),
            ),
        ];
        for (resource, cached) in counts {
            let ev = Evaluator::for_resource("", resource);
            if ev.matching_resources(&names).is_empty() {
                continue;
            }
            let n = match cached {
                Some(n) => i64::try_from(n).unwrap_or(i64::MAX),
                None => count_objects(&ctx.client, "", resource, namespace)
                    .await?
                    .unwrap_or(0),
            };
            let u = quota::count_usage("", resource);
            account(ev, u.into_iter().map(|(k, v)| (k, v.mul(n))).collect());
        }
        // Any other object count: ask the API.
        for name in &names {
            if covered.contains(name) {
                continue;
            }
            let Some(gr) = name.strip_prefix("count/") else {
                continue;
            };
            let (resource, group) = gr.split_once('.').unwrap_or((gr, ""));
            let n = count_objects(&ctx.client, group, resource, namespace).await?;
            if let Some(n) = n {
                used.insert(name.clone(), Quantity::from_int(n));
            }
        }
    }
    Ok(used)
}

/// How many `group/resource` objects `namespace` holds; `None` if the API serves no
/// such namespaced resource.
async fn count_objects(
    client: &Client,
    group: &str,
    resource: &str,
    namespace: &str,
) -> Result<Option<i64>, Error> {
    let ar = if group.is_empty() {
        let resources = client.list_core_api_resources("v1").await?;
        resources
            .resources
            .iter()
            .find(|r| r.name == resource && r.namespaced)
            .map(|r| kube::discovery::ApiResource {
                group: String::new(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: r.kind.clone(),
                plural: r.name.clone(),
            })
    } else {
        match kube::discovery::group(client, group).await {
            Ok(g) => g
                .recommended_resources()
                .into_iter()
                .find(|(ar, caps)| {
                    ar.plural == resource && caps.scope == kube::discovery::Scope::Namespaced
                })
                .map(|(ar, _)| ar),
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => return Err(Error::Discovery(e.to_string())),
        }
    };
    let Some(ar) = ar else { return Ok(None) };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
    let list = api.list_metadata(&ListParams::default()).await?;
    Ok(Some(i64::try_from(list.items.len()).unwrap_or(i64::MAX)))
}

async fn sync(rq: &ResourceQuota, ctx: &Ctx) -> Result<Action, Error> {
    let namespace = rq.metadata.namespace.clone().unwrap_or_default();
    let name = rq.metadata.name.clone().unwrap_or_default();
    let hard_api = rq
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let hard = quota::hard(rq, false);
    let used = calculate_usage(ctx, rq, &namespace, &hard).await?;
    let used_api: BTreeMap<_, _> = quota::to_api(&used);
    let status = rq.status.clone().unwrap_or_default();
    let same = status.hard.as_ref() == Some(&hard_api)
        && status.used.as_ref().map(|u| {
            u.iter()
                .filter_map(|(k, v)| Quantity::parse(&v.0).ok().map(|q| (k.clone(), q)))
                .collect::<ResourceList>()
        }) == Some(used.clone());
    if !same {
        let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &namespace);
        let mut next = rq.clone();
        next.status = Some(ResourceQuotaStatus {
            hard: Some(hard_api),
            used: Some(used_api),
        });
        api.replace_status(&name, &PostParams::default(), &next)
            .await?;
        tracing::debug!(quota = %format!("{namespace}/{name}"), used = %quota::pretty_print(&used), "updated usage");
    }
    Ok(Action::requeue(ctx.sync_period))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recalculates_when_hard_changes_or_usage_is_missing() {
        let q =
            |v: serde_json::Value| -> ResourceQuota { serde_json::from_value(v).expect("quota") };
        assert!(needs_recalculation(&q(
            json!({"spec": {"hard": {"pods": "2"}}})
        )));
        assert!(!needs_recalculation(&q(
            json!({"spec": {"hard": {"pods": "2"}}, "status": {"hard": {"pods": "2"}, "used": {"pods": "1"}}})
        )));
        assert!(needs_recalculation(&q(
            json!({"spec": {"hard": {"pods": "3"}}, "status": {"hard": {"pods": "2"}, "used": {"pods": "1"}}})
        )));
    }
}
