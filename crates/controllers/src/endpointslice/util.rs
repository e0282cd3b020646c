//! What the Endpoints and EndpointSlice controllers share (upstream
//! `staging/src/k8s.io/endpointslice/util` and `pkg/api/v1/pod`): which pods belong in
//! endpoints, named-port lookup, which Services a pod change touches, the
//! `endpoints.kubernetes.io/last-change-trigger-time` tracker, and a small worker loop
//! over a keyed [`WorkQueue`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::controller_utils::is_pod_ready;
use crate::informer::Cache;
use crate::workqueue::WorkQueue;

/// Annotation with the time of the change that caused the last write (upstream
/// `v1.EndpointsLastChangeTriggerTime`).
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Label on Endpoints and EndpointSlices of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// `Succeeded` or `Failed`.
pub fn is_pod_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The pod's IPs: `status.podIPs`, else `status.podIP`.
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    status
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
        .into_iter()
        .collect()
}

/// The pod's first IPv4 address, the one an IPv4 Service publishes.
pub fn pod_ipv4(pod: &Pod) -> Option<String> {
    pod_ips(pod)
        .into_iter()
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
}

/// Upstream `ShouldPodBeInEndpoints`: not terminal, has an IP, and (unless
/// `include_terminating`) not being deleted.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if is_pod_terminal(pod) || pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Upstream `ShouldSetHostname`: the pod names this Service as its subdomain.
pub fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let spec = pod.spec.as_ref();
    let hostname = spec.and_then(|s| s.hostname.as_deref()).unwrap_or("");
    let subdomain = spec.and_then(|s| s.subdomain.as_deref()).unwrap_or("");
    !hostname.is_empty()
        && Some(subdomain) == svc.metadata.name.as_deref()
        && svc.metadata.namespace == pod.metadata.namespace
}

/// A Service without a cluster IP (`clusterIP: None`).
pub fn is_headless(svc: &Service) -> bool {
    matches!(
        svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()),
        None | Some("None") | Some("")
    )
}

/// The Service's selector, if it has a non-empty one (services without one get their
/// endpoints from someone else).
pub fn service_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
}

/// Whether the controllers manage this Service's endpoints at all.
pub fn wants_endpoints(svc: &Service) -> bool {
    let external = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    !external && service_selector(svc).is_some()
}

/// Upstream `podutil.FindPort`: a named `targetPort` is looked up among the pod's
/// container ports (same protocol; restartable init containers count too), a number is
/// used as is.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match port.target_port.as_ref() {
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
        Some(IntOrString::Int(n)) if *n > 0 => Some(*n),
        // Defaulting makes targetPort = port; an object that skipped it means the same.
        _ => Some(port.port),
    }
}

/// A Service's equality selector against `labels`.
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Services in the pod's namespace whose selector matches `labels`.
pub fn services_matching(
    services: &Cache<Service>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<Arc<Service>> {
    services
        .in_namespace(namespace)
        .into_iter()
        .filter(|svc| service_selector(svc).is_some_and(|sel| selector_matches(sel, labels)))
        .collect()
}

/// Keys (`ns/name`) of the Services a pod belongs to.
pub fn pod_service_keys(services: &Cache<Service>, pod: &Pod) -> Vec<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    services_matching(services, ns, &labels)
        .iter()
        .map(|s| service_key(s))
        .collect()
}

pub fn service_key(svc: &Service) -> String {
    format!(
        "{}/{}",
        svc.metadata.namespace.as_deref().unwrap_or(""),
        svc.metadata.name.as_deref().unwrap_or("")
    )
}

/// Upstream `podEndpointsChanged`: (the pod's endpoint changed, its memberships may
/// have changed).
pub fn pod_endpoints_changed(old: &Pod, new: &Pod) -> (bool, bool) {
    let host = |p: &Pod| {
        p.spec
            .as_ref()
            .map(|s| (s.hostname.clone(), s.subdomain.clone()))
    };
    let labels_changed = old.metadata.labels != new.metadata.labels || host(old) != host(new);
    let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone());
    let changed = old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || is_pod_ready(old) != is_pod_ready(new)
        || pod_ips(old) != pod_ips(new)
        || phase(old) != phase(new)
        || old.spec.as_ref().and_then(|s| s.node_name.as_ref())
            != new.spec.as_ref().and_then(|s| s.node_name.as_ref());
    (changed, labels_changed)
}

/// Keys of the Services to sync after a pod update (upstream
/// `GetServicesToUpdateOnPodChange`).
pub fn services_to_update_on_pod_change(
    services: &Cache<Service>,
    old: &Pod,
    new: &Pod,
) -> Vec<String> {
    if old.metadata.resource_version == new.metadata.resource_version {
        return Vec::new();
    }
    let (pod_changed, labels_changed) = pod_endpoints_changed(old, new);
    if !pod_changed && !labels_changed {
        return Vec::new();
    }
    let now = pod_service_keys(services, new);
    if !labels_changed {
        return now;
    }
    let before = pod_service_keys(services, old);
    if pod_changed {
        // Every service the pod is or was in.
        let mut all = now;
        for k in before {
            if !all.contains(&k) {
                all.push(k);
            }
        }
        all
    } else {
        // Only the memberships that changed.
        let mut diff: Vec<String> = now
            .iter()
            .filter(|k| !before.contains(k))
            .cloned()
            .collect();
        diff.extend(before.into_iter().filter(|k| !now.contains(k)));
        diff
    }
}

/// `2006-01-02T15:04:05.999999999Z07:00` in UTC, as Go's `time.RFC3339Nano`.
pub fn format_trigger_time(t: Timestamp) -> String {
    t.to_string()
}

#[derive(Default, Clone)]
struct ServiceState {
    service_trigger: Option<Timestamp>,
    pod_triggers: HashMap<String, Timestamp>,
}

/// Computes the last-change-trigger-time annotation (upstream `TriggerTimeTracker`):
/// the earliest change (pod readiness transition, Service creation) seen since the
/// previous sync of the Service, or its creation time on its first sync.
#[derive(Default)]
pub struct TriggerTimeTracker {
    states: Mutex<HashMap<String, ServiceState>>,
}

impl TriggerTimeTracker {
    pub fn compute(&self, svc: &Service, pods: &[Arc<Pod>]) -> Option<Timestamp> {
        let key = service_key(svc);
        let previous = self.lock().get(&key).cloned();
        let known = previous.is_some();
        let previous = previous.unwrap_or_default();
        let mut min_changed: Option<Timestamp> = None;
        let mut pod_triggers = HashMap::new();
        for pod in pods {
            let Some(t) = pod_trigger_time(pod) else {
                continue;
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if previous.pod_triggers.get(&name).is_none_or(|p| t > *p) {
                min_changed = Some(min_changed.map_or(t, |m| m.min(t)));
            }
            pod_triggers.insert(name, t);
        }
        let created = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(c) = created {
            if previous.service_trigger.is_none_or(|p| c > p) {
                min_changed = Some(min_changed.map_or(c, |m| m.min(c)));
            }
        }
        self.lock().insert(
            key,
            ServiceState {
                service_trigger: created,
                pod_triggers,
            },
        );
        if known {
            min_changed
        } else {
            created
        }
    }

    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ServiceState>> {
        self.states
            .lock()
            .expect("invariant: trigger time lock is never poisoned")
    }
}

/// When the pod's Ready condition last changed.
fn pod_trigger_time(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// Drains `queue` with `workers` concurrent workers calling `sync(key)`; a failed
/// sync is retried with the queue's per-key backoff. Returns when the queue's
/// cancellation fires.
pub async fn run_workers<F, Fut, E>(
    controller: &'static str,
    queue: Arc<WorkQueue<String>>,
    workers: usize,
    sync: F,
) where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    let sync = Arc::new(sync);
    let handles: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (queue, sync) = (queue.clone(), sync.clone());
            tokio::spawn(async move {
                while let Some(key) = queue.get().await {
                    match sync(key.clone()).await {
                        Ok(()) => queue.forget(&key),
                        Err(e) => {
                            tracing::debug!(controller, object = %key, error = %e, "sync failed; requeued");
                            queue.add_rate_limited(key.clone());
                        }
                    }
                    queue.done(&key);
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, ready_at: Option<i64>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![
                        ContainerPort {
                            name: Some("http".into()),
                            container_port: 8080,
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        },
                        ContainerPort {
                            name: Some("dns".into()),
                            container_port: 5353,
                            protocol: Some("UDP".into()),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some("10.42.0.5".into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(t).expect("ts"))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    fn port(target: IntOrString, protocol: &str) -> ServicePort {
        ServicePort {
            port: 80,
            target_port: Some(target),
            protocol: Some(protocol.into()),
            ..Default::default()
        }
    }

    #[test]
    fn named_ports_resolve_by_name_and_protocol() {
        let p = pod("a", None);
        assert_eq!(
            find_port(&p, &port(IntOrString::String("http".into()), "TCP")),
            Some(8080)
        );
        assert_eq!(
            find_port(&p, &port(IntOrString::String("dns".into()), "UDP")),
            Some(5353)
        );
        assert_eq!(
            find_port(&p, &port(IntOrString::String("dns".into()), "TCP")),
            None
        );
        assert_eq!(
            find_port(&p, &port(IntOrString::String("nope".into()), "TCP")),
            None
        );
        assert_eq!(
            find_port(&p, &port(IntOrString::Int(9000), "TCP")),
            Some(9000)
        );
    }

    #[test]
    fn terminal_ipless_and_terminating_pods_are_left_out() {
        let p = pod("a", None);
        assert!(should_pod_be_in_endpoints(&p, false));
        let mut gone = (*p).clone();
        gone.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert!(!should_pod_be_in_endpoints(&gone, false));
        assert!(should_pod_be_in_endpoints(&gone, true));
        let mut done = (*p).clone();
        if let Some(s) = done.status.as_mut() {
            s.phase = Some("Succeeded".into());
        }
        assert!(!should_pod_be_in_endpoints(&done, true));
        let mut no_ip = (*p).clone();
        if let Some(s) = no_ip.status.as_mut() {
            s.pod_ip = None;
        }
        assert!(!should_pod_be_in_endpoints(&no_ip, true));
    }

    #[test]
    fn trigger_time_is_creation_first_then_earliest_change() {
        let t = TriggerTimeTracker::default();
        let svc = Service {
            metadata: ObjectMeta {
                name: Some("s".into()),
                namespace: Some("ns".into()),
                creation_timestamp: Some(Time(Timestamp::from_second(100).expect("ts"))),
                ..Default::default()
            },
            ..Default::default()
        };
        let at = |s| Timestamp::from_second(s).expect("ts");
        assert_eq!(t.compute(&svc, &[pod("a", Some(150))]), Some(at(100)));
        // Nothing changed since.
        assert_eq!(t.compute(&svc, &[pod("a", Some(150))]), None);
        // Two pods changed: the earlier one wins.
        assert_eq!(
            t.compute(&svc, &[pod("a", Some(300)), pod("b", Some(200))]),
            Some(at(200))
        );
        t.delete("ns/s");
        assert_eq!(t.compute(&svc, &[]), Some(at(100)));
    }
}
