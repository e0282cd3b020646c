//! The horizontal pod autoscaler (upstream `pkg/controller/podautoscaler/horizontal.go`):
//! every `--horizontal-pod-autoscaler-sync-period` (15 s) each HPA reads its target's
//! `/scale` subresource, asks the resource metrics API for its pods' usage, computes the
//! replicas each metric wants ([`replica_calculator`]), takes the highest, stabilizes
//! and rate-limits it ([`normalize`]), writes the new count through `/scale` and posts
//! `status` (currentReplicas, desiredReplicas, currentMetrics, lastScaleTime and the
//! AbleToScale / ScalingActive / ScalingLimited conditions), with upstream's event
//! reasons and texts (`SuccessfulRescale`, `FailedGetResourceMetric`, …).
//!
//! HPAs are read as `autoscaling/v2`; `autoscaling/v1` objects are the same objects
//! converted by the API server. Targets are any kind with a scale subresource, found
//! through discovery. Only `Resource` and `ContainerResource` metrics are served (there is
//! no custom or external metrics API); other metric types report why they failed.

pub mod metrics;
pub mod normalize;
pub mod replica_calculator;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use apis::selectors::LabelSelector;
use k8s_openapi::api::autoscaling::v2::ContainerResourceMetricStatus;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricStatus, MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::Client;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::controller_utils::EventRecorder;
use crate::informer::{key_of, Cache, Change, InformerFactory, Key};
use crate::queue::{self, Queue};
use normalize::{History, Rules};
use replica_calculator::Params;

const NAME: &str = "horizontal-pod-autoscaler";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    /// Already reported through an event and a condition.
    #[error("{0}")]
    Reconcile(String),
}

/// Tuning from `--horizontal-pod-autoscaler-*`.
#[derive(Clone, Copy, Debug)]
struct Tuning {
    sync_period: Duration,
    downscale_window: Duration,
    tolerance: f64,
    cpu_initialization_period: Duration,
    initial_readiness_delay: Duration,
}

struct Ctx {
    client: Client,
    hpas: Cache<HorizontalPodAutoscaler>,
    pods: Cache<Pod>,
    recorder: EventRecorder,
    tuning: Tuning,
    /// Recommendations and scale events per HPA, for stabilization and rate limits.
    history: Arc<Mutex<HashMap<Key, History>>>,
    /// Scale targets resolved through discovery, by (apiVersion, kind).
    targets: Mutex<HashMap<(String, String), ApiResource>>,
}

/// The controller, wired to shared informers.
pub struct HorizontalController {
    ctx: Arc<Ctx>,
    rx: futures::channel::mpsc::UnboundedReceiver<
        kube::runtime::reflector::ObjectRef<HorizontalPodAutoscaler>,
    >,
}

impl HorizontalController {
    pub fn new(
        client: Client,
        informers: &mut InformerFactory,
        options: &crate::options::ControllerOptions,
    ) -> Self {
        let (queue, rx) = Queue::<HorizontalPodAutoscaler>::new();
        let history: Arc<Mutex<HashMap<Key, History>>> = Arc::default();
        let informer = informers.informer::<HorizontalPodAutoscaler>();
        let hpas = informer.cache();
        {
            let queue: Queue<HorizontalPodAutoscaler> = queue.clone();
            let history = history.clone();
            informer.add_handler(move |change| match change {
                Change::Added(h) => queue.enqueue_obj(*h),
                Change::Updated { old, new } if old.spec != new.spec => queue.enqueue_obj(*new),
                Change::Deleted(h) => {
                    history.lock().remove(&key_of(*h));
                }
                _ => {}
            });
        }
        let pods = informers.informer::<Pod>().cache();
        let ctx = Arc::new(Ctx {
            recorder: EventRecorder::new(client.clone(), NAME),
            client,
            hpas,
            pods,
            tuning: Tuning {
                sync_period: options.hpa_sync_period,
                downscale_window: options.hpa_downscale_stabilization,
                tolerance: options.hpa_tolerance,
                cpu_initialization_period: options.hpa_cpu_initialization_period,
                initial_readiness_delay: options.hpa_initial_readiness_delay,
            },
            history,
            targets: Mutex::new(HashMap::new()),
        });
        HorizontalController { ctx, rx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        let c = ctx.clone();
        let ready = async move {
            c.hpas.wait_until_ready().await;
            c.pods.wait_until_ready().await;
        };
        queue::run(
            NAME,
            ctx.hpas.store(),
            ready,
            self.rx,
            |hpa, ctx| Box::pin(reconcile(hpa, ctx)),
            |_, _: &Error, ctx: Arc<Ctx>| Action::requeue(ctx.tuning.sync_period),
            ctx.clone(),
            cancel,
        )
        .await;
    }
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = key_of(hpa.as_ref());
    let span = tracing::debug_span!("reconcile", controller = NAME, object = %format!("{}/{}", key.0, key.1));
    let result = tracing::Instrument::instrument(Sync::new(&ctx, &hpa).run(), span).await;
    match result {
        Ok(()) => Ok(Action::requeue(ctx.tuning.sync_period)),
        Err(e) => {
            tracing::debug!(error = %e, "autoscaling failed");
            Err(e)
        }
    }
}

/// One evaluation of one HPA: the status being built and what to report.
struct Sync<'a> {
    ctx: &'a Ctx,
    hpa: &'a HorizontalPodAutoscaler,
    status: HorizontalPodAutoscalerStatus,
    now: Timestamp,
}

/// A metric that could not be evaluated: the ScalingActive=False condition it sets.
struct Invalid {
    reason: &'static str,
    message: String,
}

impl<'a> Sync<'a> {
    fn new(ctx: &'a Ctx, hpa: &'a HorizontalPodAutoscaler) -> Self {
        Sync {
            ctx,
            hpa,
            status: hpa.status.clone().unwrap_or_default(),
            now: Timestamp::now(),
        }
    }

    fn namespace(&self) -> String {
        self.hpa.metadata.namespace.clone().unwrap_or_default()
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        let reference = ObjectReference {
            api_version: Some("autoscaling/v2".to_string()),
            kind: Some("HorizontalPodAutoscaler".to_string()),
            namespace: self.hpa.metadata.namespace.clone(),
            name: self.hpa.metadata.name.clone(),
            uid: self.hpa.metadata.uid.clone(),
            resource_version: self.hpa.metadata.resource_version.clone(),
            ..Default::default()
        };
        self.ctx
            .recorder
            .publish(&reference, type_, reason, reason, note)
            .await;
    }

    /// Upstream `setCondition`: the transition time moves only when the status does.
    fn condition(&mut self, type_: &str, status: bool, reason: &str, message: String) {
        let status = if status { "True" } else { "False" };
        let now = Time(self.now);
        let conditions = self.status.conditions.get_or_insert_with(Vec::new);
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = Some(now);
                }
                c.status = status.to_string();
                c.reason = Some(reason.to_string());
                c.message = Some(message);
            }
            None => conditions.push(HorizontalPodAutoscalerCondition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: Some(reason.to_string()),
                message: Some(message),
                last_transition_time: Some(now),
            }),
        }
    }

    async fn run(mut self) -> Result<(), Error> {
        let spec = self.hpa.spec.clone().unwrap_or_default();
        let target = &spec.scale_target_ref;
        let ns = self.namespace();
        let reference = format!("{}/{}/{}", target.kind, ns, target.name);
        let api_version = target.api_version.clone().unwrap_or_default();
        let scale_api = match self.target_api(&api_version, &target.kind).await {
            Ok(api) => api,
            Err(e) => return Err(self.failed_get_scale(&reference, e).await),
        };
        let scale = match scale_api.get_scale(&target.name).await {
            Ok(s) => s,
            Err(e) => return Err(self.failed_get_scale(&reference, kube_message(&e)).await),
        };
        self.condition(
            "AbleToScale",
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale".to_string(),
        );
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let selector = scale.status.as_ref().and_then(|s| s.selector.clone());
        let key = key_of(self.hpa);
        self.ctx
            .history
            .lock()
            .entry(key.clone())
            .or_default()
            .seed(current, self.now);
        let min = spec.min_replicas.unwrap_or(1);
        let mut metric_statuses = self.status.current_metrics.clone().unwrap_or_default();
        let (desired, reason) = if current == 0 && min != 0 {
            self.condition(
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero".to_string(),
            );
            (0, String::new())
        } else if current > spec.max_replicas {
            (
                spec.max_replicas,
                "Current number of replicas above Spec.MaxReplicas".to_string(),
            )
        } else if current < min {
            (
                min,
                "Current number of replicas below Spec.MinReplicas".to_string(),
            )
        } else {
            let metrics = spec.metrics.clone().unwrap_or_default();
            let computed = self
                .replicas_for_metrics(current, &metrics, selector.as_deref())
                .await;
            let (proposal, metric_name, statuses) = match computed {
                Ok(c) => c,
                Err((statuses, message)) => {
                    self.status.current_replicas = Some(current);
                    self.status.current_metrics = Some(statuses);
                    self.update_status().await?;
                    self.event(
                        EventType::Warning,
                        "FailedComputeMetricsReplicas",
                        message.clone(),
                    )
                    .await;
                    return Err(Error::Reconcile(format!(
                        "failed to compute desired number of replicas based on listed metrics for {reference}: {message}"
                    )));
                }
            };
            metric_statuses = statuses;
            let normalized = self.normalize(&key, current, proposal, min, spec.max_replicas);
            let reason = if normalized > current {
                format!("{metric_name} above target")
            } else {
                "All metrics below target".to_string()
            };
            (normalized, reason)
        };
        let rescale = desired != current;
        if rescale {
            let patch = serde_json::json!({"spec": {"replicas": desired}});
            if let Err(e) = scale_api
                .patch_scale(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                let message = kube_message(&e);
                self.condition(
                    "AbleToScale",
                    false,
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {message}"),
                );
                self.status.current_replicas = Some(current);
                self.status.current_metrics = Some(metric_statuses);
                self.update_status().await?;
                self.event(
                    EventType::Warning,
                    "FailedRescale",
                    format!("New size: {desired}; reason: {reason}; error: {message}"),
                )
                .await;
                return Err(Error::Reconcile(format!(
                    "failed to rescale {reference}: {message}"
                )));
            }
            self.condition(
                "AbleToScale",
                true,
                "SucceededRescale",
                format!("the HPA controller was able to update the target scale to {desired}"),
            );
            self.event(
                EventType::Normal,
                "SuccessfulRescale",
                format!("New size: {desired}; reason: {reason}"),
            )
            .await;
            normalize::record_scale(
                self.ctx.history.lock().entry(key).or_default(),
                spec.behavior.as_ref(),
                self.ctx.tuning.downscale_window,
                current,
                desired,
                self.now,
            );
            tracing::info!(
                hpa = %self.hpa.metadata.name.as_deref().unwrap_or(""),
                %reference, from = current, to = desired, %reason, "rescaled"
            );
            self.status.last_scale_time = Some(Time(self.now));
        }
        self.status.current_replicas = Some(current);
        self.status.desired_replicas = desired;
        self.status.current_metrics = (!metric_statuses.is_empty()).then_some(metric_statuses);
        self.status.observed_generation = self.hpa.metadata.generation;
        self.update_status().await
    }

    async fn failed_get_scale(&mut self, reference: &str, message: String) -> Error {
        self.event(EventType::Warning, "FailedGetScale", message.clone())
            .await;
        self.condition(
            "AbleToScale",
            false,
            "FailedGetScale",
            format!("the HPA controller was unable to get the target's current scale: {message}"),
        );
        if let Err(e) = self.update_status().await {
            return e;
        }
        Error::Reconcile(format!(
            "failed to query scale subresource for {reference}: {message}"
        ))
    }

    /// The target's API (by discovery, remembered), for its `/scale` subresource.
    async fn target_api(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Api<DynamicObject>, String> {
        let cache_key = (api_version.to_string(), kind.to_string());
        let known = self.ctx.targets.lock().get(&cache_key).cloned();
        let resource = match known {
            Some(r) => r,
            None => {
                let (group, version) = match api_version.split_once('/') {
                    Some((g, v)) => (g, v),
                    None => ("", api_version),
                };
                let gvk = GroupVersionKind::gvk(group, version, kind);
                let (resource, _) = kube::discovery::pinned_kind(&self.ctx.client, &gvk)
                    .await
                    .map_err(|e| {
                        format!(
                            "unable to determine resource for scale target reference: {}",
                            kube_message(&e)
                        )
                    })?;
                self.ctx.targets.lock().insert(cache_key, resource.clone());
                resource
            }
        };
        Ok(Api::namespaced_with(
            self.ctx.client.clone(),
            &self.namespace(),
            &resource,
        ))
    }

    /// Upstream `computeReplicasForMetrics`: the highest proposal of the valid metrics,
    /// or (statuses, error) when none is valid or an invalid one could veto a scale-down.
    async fn replicas_for_metrics(
        &mut self,
        current: i32,
        metrics: &[MetricSpec],
        selector: Option<&str>,
    ) -> Result<(i32, String, Vec<MetricStatus>), (Vec<MetricStatus>, String)> {
        let selector = match selector.filter(|s| !s.is_empty()) {
            None => {
                let message = "selector is required".to_string();
                self.event(EventType::Warning, "SelectorRequired", message.clone())
                    .await;
                self.condition(
                    "ScalingActive",
                    false,
                    "InvalidSelector",
                    "the HPA target's scale is missing a selector".to_string(),
                );
                return Err((Vec::new(), message));
            }
            Some(s) => match LabelSelector::parse(s) {
                Ok(parsed) => (s.to_string(), parsed),
                Err(e) => {
                    let message = format!(
                        "couldn't convert selector into a corresponding internal selector object: {e}"
                    );
                    self.event(EventType::Warning, "InvalidSelector", message.clone())
                        .await;
                    self.condition("ScalingActive", false, "InvalidSelector", message.clone());
                    return Err((Vec::new(), message));
                }
            },
        };
        let ns = self.namespace();
        let pods: Vec<Pod> = self
            .ctx
            .pods
            .in_namespace(&ns)
            .into_iter()
            .filter(|p| {
                selector
                    .1
                    .matches(&p.metadata.labels.clone().unwrap_or_default())
            })
            .map(|p| (*p).clone())
            .collect();
        let mut statuses = Vec::with_capacity(metrics.len());
        let mut best: Option<(i32, String)> = None;
        let mut first_invalid: Option<Invalid> = None;
        let mut invalid = 0;
        for spec in metrics {
            match self.metric(current, spec, &selector.0, &pods).await {
                Ok((replicas, name, status)) => {
                    statuses.push(status);
                    if best.as_ref().is_none_or(|(r, _)| replicas > *r) {
                        best = Some((replicas, name));
                    }
                }
                Err(e) => {
                    self.event(EventType::Warning, e.reason, e.message.clone())
                        .await;
                    statuses.push(MetricStatus {
                        type_: String::new(),
                        ..Default::default()
                    });
                    invalid += 1;
                    first_invalid.get_or_insert(e);
                }
            }
        }
        let (replicas, name) = best.unwrap_or((0, String::new()));
        if invalid >= metrics.len() || (invalid > 0 && replicas < current) {
            let e = first_invalid.unwrap_or(Invalid {
                reason: "InvalidMetricSourceType",
                message: "no metrics to compute a replica count from".to_string(),
            });
            self.condition(
                "ScalingActive",
                false,
                e.reason,
                format!(
                    "the HPA was unable to compute the replica count: {}",
                    e.message
                ),
            );
            return Err((
                statuses,
                format!(
                    "invalid metrics ({invalid} invalid out of {}), first error is: {}",
                    metrics.len(),
                    e.message
                ),
            ));
        }
        self.condition(
            "ScalingActive",
            true,
            "ValidMetricFound",
            format!("the HPA was able to successfully calculate a replica count from {name}"),
        );
        Ok((replicas, name, statuses))
    }

    /// One metric's proposal, its display name and its status.
    async fn metric(
        &self,
        current: i32,
        spec: &MetricSpec,
        selector: &str,
        pods: &[Pod],
    ) -> Result<(i32, String, MetricStatus), Invalid> {
        let (resource, container, target) = match spec.type_.as_str() {
            "Resource" => match &spec.resource {
                Some(r) => (r.name.clone(), None, r.target.clone()),
                None => return Err(invalid_source(&spec.type_)),
            },
            "ContainerResource" => match &spec.container_resource {
                Some(r) => (r.name.clone(), Some(r.container.clone()), r.target.clone()),
                None => return Err(invalid_source(&spec.type_)),
            },
            "Pods" | "Object" | "External" => {
                let (reason, name) = match spec.type_.as_str() {
                    "Pods" => (
                        "FailedGetPodsMetric",
                        spec.pods.as_ref().map(|p| p.metric.name.clone()),
                    ),
                    "Object" => (
                        "FailedGetObjectMetric",
                        spec.object.as_ref().map(|o| o.metric.name.clone()),
                    ),
                    _ => (
                        "FailedGetExternalMetric",
                        spec.external.as_ref().map(|e| e.metric.name.clone()),
                    ),
                };
                let api = if spec.type_ == "External" {
                    "external.metrics.k8s.io"
                } else {
                    "custom.metrics.k8s.io"
                };
                return Err(Invalid {
                    reason,
                    message: format!(
                        "unable to get metric {}: no {api} API is served",
                        name.unwrap_or_default()
                    ),
                });
            }
            other => return Err(invalid_source(other)),
        };
        let failed = if container.is_some() {
            "FailedGetContainerResourceMetric"
        } else {
            "FailedGetResourceMetric"
        };
        let err = |message: String| Invalid {
            reason: failed,
            message,
        };
        let by_value = target.average_value.is_some();
        let what = if by_value { "usage" } else { "utilization" };
        let (metrics, _timestamp) = metrics::resource_metric(
            &self.ctx.client,
            &self.namespace(),
            selector,
            &resource,
            container.as_deref(),
        )
        .await
        .map_err(|e| {
            err(format!(
                "failed to get {resource} {what}: unable to get metrics for resource {resource}: {e}"
            ))
        })?;
        let params = Params {
            tolerance: self.ctx.tuning.tolerance,
            cpu_initialization_period: self.ctx.tuning.cpu_initialization_period,
            delay_of_initial_readiness_status: self.ctx.tuning.initial_readiness_delay,
            now: self.now,
        };
        let milli = |v: i64| Quantity(apis::resource::Quantity::from_milli(v).canonical());
        let (replicas, name, current_value) = if let Some(avg) = &target.average_value {
            let target_milli = apis::resource::Quantity::try_from(avg)
                .map(|q| q.milli_value())
                .unwrap_or(0);
            let p = replica_calculator::raw_resource_replicas(
                current,
                target_milli,
                &resource,
                pods,
                metrics,
                &params,
            )
            .map_err(|e| err(format!("failed to get {resource} usage: {e}")))?;
            (
                p.replicas,
                format!("{resource} resource"),
                MetricValueStatus {
                    average_value: Some(milli(p.average)),
                    ..Default::default()
                },
            )
        } else if let Some(utilization) = target.average_utilization {
            let p = replica_calculator::resource_replicas(
                current,
                utilization,
                &resource,
                container.as_deref(),
                pods,
                metrics,
                &params,
            )
            .map_err(|e| err(format!("failed to get {resource} utilization: {e}")))?;
            (
                p.replicas,
                format!("{resource} resource utilization (percentage of request)"),
                MetricValueStatus {
                    average_utilization: Some(p.utilization),
                    average_value: Some(milli(p.average)),
                    ..Default::default()
                },
            )
        } else {
            return Err(err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".to_string()));
        };
        let status = match container {
            Some(container) => MetricStatus {
                type_: "ContainerResource".to_string(),
                container_resource: Some(ContainerResourceMetricStatus {
                    name: resource,
                    container,
                    current: current_value,
                }),
                ..Default::default()
            },
            None => MetricStatus {
                type_: "Resource".to_string(),
                resource: Some(ResourceMetricStatus {
                    name: resource,
                    current: current_value,
                }),
                ..Default::default()
            },
        };
        Ok((replicas, name, status))
    }

    /// Stabilization and rate limits, with the AbleToScale / ScalingLimited conditions.
    fn normalize(&mut self, key: &Key, current: i32, proposal: i32, min: i32, max: i32) -> i32 {
        let tuning = self.ctx.tuning;
        let behavior = self.hpa.spec.as_ref().and_then(|s| s.behavior.as_ref());
        let n = {
            let mut all = self.ctx.history.lock();
            let history = all.entry(key.clone()).or_default();
            match behavior {
                None => normalize::without_behavior(
                    history,
                    current,
                    proposal,
                    min,
                    max,
                    tuning.downscale_window,
                    self.now,
                ),
                Some(b) => normalize::with_behavior(
                    history,
                    current,
                    proposal,
                    min,
                    max,
                    &Rules::resolve(b.scale_up.as_ref(), true, tuning.downscale_window),
                    &Rules::resolve(b.scale_down.as_ref(), false, tuning.downscale_window),
                    self.now,
                ),
            }
        };
        self.condition(
            "AbleToScale",
            true,
            n.able_reason,
            n.able_message.to_string(),
        );
        self.condition(
            "ScalingLimited",
            n.limited,
            n.limited_reason,
            n.limited_message.to_string(),
        );
        n.replicas
    }

    /// Writes the status if it changed (PUT on `status`; a conflict retries next sync).
    async fn update_status(&self) -> Result<(), Error> {
        if self.hpa.status.as_ref() == Some(&self.status) {
            return Ok(());
        }
        let mut updated = self.hpa.clone();
        updated.status = Some(self.status.clone());
        let api: Api<HorizontalPodAutoscaler> =
            Api::namespaced(self.ctx.client.clone(), &self.namespace());
        api.replace_status(
            self.hpa.metadata.name.as_deref().unwrap_or_default(),
            &PostParams::default(),
            &updated,
        )
        .await?;
        Ok(())
    }
}

fn invalid_source(type_: &str) -> Invalid {
    Invalid {
        reason: "InvalidMetricSourceType",
        message: format!("unknown metric source type {type_:?}"),
    }
}

fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}
