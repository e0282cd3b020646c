//! How many replicas a resource metric asks for (upstream
//! `pkg/controller/podautoscaler/replica_calculator.go`): `ceil(ready pods × usage /
//! target)`, nothing inside the tolerance, and the careful part — pods without
//! metrics, unready pods and CPU samples taken while a pod was starting must neither
//! cause a scale in the wrong direction nor exaggerate one.
//!
//! Values are milli-units (`500m` CPU is 500, `1Mi` of memory is 1048576000), as
//! upstream's `MilliValue()`. Pure: the pods, metrics and clock come in as arguments.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoReadyMetrics,
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest {
        resource: String,
        container: String,
        pod: String,
    },
    #[error("no metrics returned matched known pods")]
    NoMatchingMetrics,
}

/// One pod's usage of the resource, summed over its containers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PodMetric {
    pub timestamp: Timestamp,
    pub window: Duration,
    pub value: i64,
}

/// By pod name.
pub type PodMetrics = HashMap<String, PodMetric>;

/// The controller's tuning (`--horizontal-pod-autoscaler-*` flags) and the clock.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub tolerance: f64,
    pub cpu_initialization_period: Duration,
    pub delay_of_initial_readiness_status: Duration,
    pub now: Timestamp,
}

impl Params {
    fn within_tolerance(&self, ratio: f64) -> bool {
        (1.0 - ratio).abs() <= self.tolerance
    }
}

/// What `ceil(ratio × pods)` came to, with the usage seen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Proposal {
    pub replicas: i32,
    /// Percentage of requests (utilization targets only).
    pub utilization: i32,
    /// Average usage per pod, in milli-units.
    pub average: i64,
}

#[derive(Debug, Default, PartialEq)]
struct Groups {
    ready: usize,
    unready: HashSet<String>,
    missing: HashSet<String>,
    ignored: HashSet<String>,
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn plus(t: Timestamp, d: Duration) -> i128 {
    t.as_nanosecond() + d.as_nanos() as i128
}

/// Sorts pods into ready (counted), unready, missing metrics and ignored (deleted or
/// failed), as upstream's `groupPods`.
fn group_pods(pods: &[Pod], metrics: &PodMetrics, resource: &str, p: &Params) -> Groups {
    let mut g = Groups::default();
    for pod in pods {
        let status = pod.status.clone().unwrap_or_default();
        let phase = status.phase.as_deref().unwrap_or("");
        if pod.metadata.deletion_timestamp.is_some() || phase == "Failed" {
            g.ignored.insert(name(pod));
            continue;
        }
        if phase == "Pending" {
            g.unready.insert(name(pod));
            continue;
        }
        let Some(metric) = metrics.get(&name(pod)) else {
            g.missing.insert(name(pod));
            continue;
        };
        if resource == "cpu" {
            let ready = status
                .conditions
                .as_ref()
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            let unready = match (ready, status.start_time.as_ref()) {
                (Some(cond), Some(start)) => {
                    let transition = cond
                        .last_transition_time
                        .as_ref()
                        .map(|t| t.0)
                        .unwrap_or(start.0);
                    if plus(start.0, p.cpu_initialization_period) > p.now.as_nanosecond() {
                        // Still starting: only a full window of samples since it became
                        // ready counts.
                        cond.status == "False"
                            || metric.timestamp.as_nanosecond() < plus(transition, metric.window)
                    } else {
                        // Unready and never ready since it started.
                        cond.status == "False"
                            && plus(start.0, p.delay_of_initial_readiness_status)
                                > transition.as_nanosecond()
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.insert(name(pod));
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

/// Requests of the resource per pod (all containers and sidecars, or `container`).
fn pod_requests(
    pods: &[Pod],
    resource: &str,
    container: Option<&str>,
) -> Result<HashMap<String, i64>, CalcError> {
    let mut out = HashMap::new();
    for pod in pods {
        let Some(spec) = pod.spec.as_ref() else {
            continue;
        };
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut sum = 0i64;
        for c in spec.containers.iter().chain(sidecars) {
            if container.is_some_and(|want| want != c.name) {
                continue;
            }
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| apis::resource::Quantity::try_from(q).ok());
            match request {
                Some(q) => sum += q.milli_value(),
                None => {
                    return Err(CalcError::MissingRequest {
                        resource: resource.to_string(),
                        container: c.name.clone(),
                        pod: name(pod),
                    })
                }
            }
        }
        out.insert(name(pod), sum);
    }
    Ok(out)
}

/// `(usage / target utilization, utilization %, average usage)` over pods with requests.
fn utilization_ratio(
    metrics: &PodMetrics,
    requests: &HashMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), CalcError> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (pod, m) in metrics {
        if let Some(r) = requests.get(pod) {
            used += m.value;
            requested += r;
            n += 1;
        }
    }
    if requested == 0 {
        return Err(CalcError::NoMatchingMetrics);
    }
    let utilization = (used * 100 / requested) as i32;
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        used / n,
    ))
}

fn average_ratio(metrics: &PodMetrics, target: i64) -> (f64, i64) {
    let total: i64 = metrics.values().map(|m| m.value).sum();
    let average = total / metrics.len().max(1) as i64;
    (average as f64 / target as f64, average)
}

fn ceil(x: f64) -> i32 {
    x.ceil() as i32
}

/// Replicas for an `averageUtilization` target (percent of requests), upstream
/// `GetResourceReplicas`.
pub fn resource_replicas(
    current: i32,
    target_utilization: i32,
    resource: &str,
    container: Option<&str>,
    pods: &[Pod],
    mut metrics: PodMetrics,
    p: &Params,
) -> Result<Proposal, CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let g = group_pods(pods, &metrics, resource, p);
    metrics.retain(|pod, _| !g.ignored.contains(pod) && !g.unready.contains(pod));
    if metrics.is_empty() {
        return Err(CalcError::NoReadyMetrics);
    }
    let requests = pod_requests(pods, resource, container)?;
    let (ratio, utilization, average) = utilization_ratio(&metrics, &requests, target_utilization)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        average,
    };
    let up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !up_with_unready && g.missing.is_empty() {
        if p.within_tolerance(ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal(ceil(ratio * g.ready as f64)));
    }
    if !g.missing.is_empty() {
        // Scaling down: missing pods count as using their request (or the target, if
        // above 100%); scaling up: as using nothing.
        let fallback = i64::from(target_utilization.max(100));
        for pod in &g.missing {
            let value = if ratio < 1.0 {
                requests.get(pod).copied().unwrap_or(0) * fallback / 100
            } else {
                0
            };
            metrics.insert(pod.clone(), zero_metric(p.now, value));
        }
    }
    if up_with_unready {
        for pod in &g.unready {
            metrics.insert(pod.clone(), zero_metric(p.now, 0));
        }
    }
    let (new_ratio, _, _) = utilization_ratio(&metrics, &requests, target_utilization)?;
    if p.within_tolerance(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = ceil(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

fn zero_metric(now: Timestamp, value: i64) -> PodMetric {
    PodMetric {
        timestamp: now,
        window: Duration::ZERO,
        value,
    }
}

/// Replicas for an `averageValue` target (milli-units per pod), upstream
/// `GetRawResourceReplicas` / `calcPlainMetricReplicas`.
pub fn raw_resource_replicas(
    current: i32,
    target: i64,
    resource: &str,
    pods: &[Pod],
    mut metrics: PodMetrics,
    p: &Params,
) -> Result<Proposal, CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let g = group_pods(pods, &metrics, resource, p);
    metrics.retain(|pod, _| !g.ignored.contains(pod) && !g.unready.contains(pod));
    if metrics.is_empty() {
        return Err(CalcError::NoReadyMetrics);
    }
    let (ratio, average) = average_ratio(&metrics, target);
    let proposal = |replicas| Proposal {
        replicas,
        utilization: 0,
        average,
    };
    let up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !up_with_unready && g.missing.is_empty() {
        if p.within_tolerance(ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal(ceil(ratio * g.ready as f64)));
    }
    for pod in &g.missing {
        let value = if ratio < 1.0 { target } else { 0 };
        metrics.insert(pod.clone(), zero_metric(p.now, value));
    }
    if up_with_unready {
        for pod in &g.unready {
            metrics.insert(pod.clone(), zero_metric(p.now, 0));
        }
    }
    let (new_ratio, _) = average_ratio(&metrics, target);
    if p.within_tolerance(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = ceil(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        Container, PodCondition, PodSpec, PodStatus, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("ts")
    }

    /// A pod started at `started`, Ready since `ready_at` (or not ready), requesting
    /// `cpu_milli` of CPU.
    fn pod(name: &str, phase: &str, ready: Option<bool>, started: i64, cpu_milli: i64) -> Pod {
        let conditions = ready.map(|r| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: if r { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(ts(started))),
                ..Default::default()
            }]
        });
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "cpu".to_string(),
                            Quantity(format!("{cpu_milli}m")),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                start_time: Some(Time(ts(started))),
                conditions,
                ..Default::default()
            }),
        }
    }

    fn running(name: &str) -> Pod {
        // Started long before the CPU initialization period.
        pod(name, "Running", Some(true), -3600, 100)
    }

    fn metrics(values: &[(&str, i64)]) -> PodMetrics {
        values
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    PodMetric {
                        timestamp: ts(0),
                        window: Duration::from_secs(15),
                        value: *v,
                    },
                )
            })
            .collect()
    }

    fn params() -> Params {
        Params {
            tolerance: 0.1,
            cpu_initialization_period: Duration::from_secs(300),
            delay_of_initial_readiness_status: Duration::from_secs(30),
            now: ts(0),
        }
    }

    fn cpu(current: i32, target: i32, pods: &[Pod], m: PodMetrics) -> Result<Proposal, CalcError> {
        resource_replicas(current, target, "cpu", None, pods, m, &params())
    }

    #[test]
    fn utilization_above_target_scales_up_by_the_ratio() {
        let pods = [running("a"), running("b")];
        let got = cpu(2, 50, &pods, metrics(&[("a", 80), ("b", 80)])).expect("calc");
        // 80% of requests against 50%: ceil(2 × 1.6) = 4.
        assert_eq!(
            got,
            Proposal {
                replicas: 4,
                utilization: 80,
                average: 80
            }
        );
    }

    #[test]
    fn utilization_below_target_scales_down_and_tolerance_holds() {
        let pods = [running("a"), running("b"), running("c")];
        let got = cpu(3, 50, &pods, metrics(&[("a", 10), ("b", 10), ("c", 10)])).expect("calc");
        assert_eq!(got.replicas, 1);
        // 54% against 50% is inside the 10% tolerance.
        let got = cpu(3, 50, &pods, metrics(&[("a", 54), ("b", 54), ("c", 54)])).expect("calc");
        assert_eq!((got.replicas, got.utilization), (3, 54));
    }

    #[test]
    fn missing_metrics_damp_both_directions() {
        let pods = [running("a"), running("b")];
        // Scale up: the pod without metrics counts as 0%: (90 + 0) / 2 = 45% of 30%.
        let got = cpu(2, 30, &pods, metrics(&[("a", 90)])).expect("calc");
        assert_eq!(got.replicas, 3);
        assert_eq!(got.utilization, 90);
        // Scale down: it counts as 100% of its request, which turns the ratio around.
        let got = cpu(2, 50, &pods, metrics(&[("a", 10)])).expect("calc");
        assert_eq!(got.replicas, 2);
    }

    #[test]
    fn unready_and_starting_pods_do_not_count() {
        // `b` became ready 5 s ago: less than one 15 s window of samples.
        let pods = [running("a"), pod("b", "Running", Some(true), -5, 100)];
        let got = cpu(2, 50, &pods, metrics(&[("a", 100), ("b", 100)])).expect("calc");
        // a: 100% of 50%; b counts as 0 on a scale-up: (100 + 0) / 2 = 50% → stay.
        assert_eq!(got.replicas, 2);
        // Only unready pods: nothing to go on.
        let pods = [pod("a", "Running", Some(false), -5, 100)];
        assert_eq!(
            cpu(1, 50, &pods, metrics(&[("a", 100)])),
            Err(CalcError::NoReadyMetrics)
        );
        // Pending pods are unready; deleted and failed pods are ignored.
        let mut deleted = running("d");
        deleted.metadata.deletion_timestamp = Some(Time(ts(0)));
        let pods = [
            running("a"),
            pod("p", "Pending", None, 0, 100),
            pod("f", "Failed", None, -3600, 100),
            deleted,
        ];
        let got = cpu(4, 50, &pods, metrics(&[("a", 25), ("d", 500)])).expect("calc");
        assert_eq!(got.replicas, 1);
    }

    #[test]
    fn requests_are_required_and_pods_too() {
        let mut p = running("a");
        if let Some(spec) = p.spec.as_mut() {
            spec.containers[0].resources = None;
        }
        assert_eq!(
            cpu(1, 50, &[p], metrics(&[("a", 10)])),
            Err(CalcError::MissingRequest {
                resource: "cpu".into(),
                container: "c".into(),
                pod: "a".into()
            })
        );
        assert_eq!(cpu(1, 50, &[], metrics(&[])), Err(CalcError::NoPods));
    }

    #[test]
    fn average_value_targets_divide_usage_per_pod() {
        let pods = [running("a"), running("b")];
        // 300m average against 100m: 6 pods.
        let got = raw_resource_replicas(
            2,
            100,
            "cpu",
            &pods,
            metrics(&[("a", 200), ("b", 400)]),
            &params(),
        )
        .expect("calc");
        assert_eq!(
            got,
            Proposal {
                replicas: 6,
                utilization: 0,
                average: 300
            }
        );
        let got = raw_resource_replicas(
            2,
            300,
            "memory",
            &pods,
            metrics(&[("a", 290), ("b", 310)]),
            &params(),
        )
        .expect("calc");
        assert_eq!(got.replicas, 2);
    }
}
