//! The Endpoints controller (upstream `pkg/controller/endpoint`): for every Service
//! with a selector, an Endpoints object of the same name listing the matching pods —
//! ready ones under `addresses`, the others under `notReadyAddresses` (all of them
//! ready with `publishNotReadyAddresses`), each with the pod IP, node name and a
//! reference to the pod — and the Service's ports resolved per pod (a named
//! `targetPort` is looked up in the pod's container ports).
//!
//! Services without a selector are left alone (their Endpoints are written by whoever
//! owns them, e.g. the API server for `default/kubernetes`). Deleting a Service deletes
//! its Endpoints; at start, Endpoints whose Service is gone are cleaned up as upstream
//! does. Subsets are packed as upstream's `RepackSubsets` (addresses grouped by the
//! ports they serve) and sorted, so an unchanged set of pods never causes a write.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::events::EventType;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_utils::{
    is_namespace_terminating, is_not_found, is_pod_ready, EventRecorder,
};
use crate::endpointslice::util::{
    find_port, format_trigger_time, is_headless, pod_ipv4, pod_service_keys, run_workers,
    selector_matches, service_key, service_selector, services_to_update_on_pod_change,
    should_pod_be_in_endpoints, should_set_hostname, wants_endpoints, TriggerTimeTracker,
    HEADLESS_LABEL, LAST_CHANGE_TRIGGER_TIME,
};
use crate::expectations::rv_at_least;
use crate::informer::{Cache, Change, InformerFactory};
use crate::workqueue::WorkQueue;

const CONTROLLER_NAME: &str = "endpoint-controller";
/// Upstream `--concurrent-endpoint-syncs`.
const WORKERS: usize = 5;
/// Addresses kept in one Endpoints object (upstream `maxCapacity`).
pub const MAX_CAPACITY: usize = 1000;
/// Set when addresses past [`MAX_CAPACITY`] were left out.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Endpoints carrying this annotation are leader-election records, not a Service's.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("endpoints informer cache is out of date, resource version {0} already processed for endpoints {1}")]
    Stale(String, String),
}

struct Ctx {
    client: Client,
    services: Cache<Service>,
    pods: Cache<Pod>,
    endpoints: Cache<Endpoints>,
    queue: Arc<WorkQueue<String>>,
    triggers: TriggerTimeTracker,
    /// Resource versions this controller replaced: a cache still showing one is stale.
    stale: Mutex<HashMap<String, String>>,
    recorder: EventRecorder,
}

/// The Endpoints controller, wired to shared informers.
pub struct EndpointsController {
    ctx: Arc<Ctx>,
}

impl EndpointsController {
    /// Registers handlers on `informers`; run with [`Self::run`] after `informers.start`.
    pub fn new(
        client: Client,
        informers: &mut InformerFactory,
        cancel: &CancellationToken,
    ) -> Self {
        let queue = WorkQueue::new(cancel.clone());
        let services = informers.informer::<Service>().cache();
        {
            let queue = queue.clone();
            informers.informer::<Service>().add_handler(move |change| {
                let svc = match change {
                    Change::Added(s) | Change::Deleted(s) => *s,
                    Change::Updated { new, .. } => *new,
                };
                queue.add(service_key(svc));
            });
        }
        let pods = informers.informer::<Pod>().cache();
        {
            let (queue, services) = (queue.clone(), services.clone());
            informers.informer::<Pod>().add_handler(move |change| {
                let keys = match change {
                    Change::Added(p) | Change::Deleted(p) => pod_service_keys(&services, p),
                    Change::Updated { old, new } => {
                        services_to_update_on_pod_change(&services, old, new)
                    }
                };
                for k in keys {
                    queue.add(k);
                }
            });
        }
        let endpoints = informers.informer::<Endpoints>().cache();
        {
            // Someone deleted Endpoints a Service still wants: write them again.
            let queue = queue.clone();
            informers
                .informer::<Endpoints>()
                .add_handler(move |change| {
                    if let Change::Deleted(ep) = change {
                        queue.add(crate::controller_utils::meta_key(&ep.metadata));
                    }
                });
        }
        let ctx = Arc::new(Ctx {
            recorder: EventRecorder::new(client.clone(), CONTROLLER_NAME),
            client,
            services,
            pods,
            endpoints,
            queue,
            triggers: TriggerTimeTracker::default(),
            stale: Mutex::new(HashMap::new()),
        });
        EndpointsController { ctx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = async {
                ctx.services.wait_until_ready().await;
                ctx.pods.wait_until_ready().await;
                ctx.endpoints.wait_until_ready().await;
            } => {}
        }
        check_leftover_endpoints(&ctx);
        tracing::info!(controller = CONTROLLER_NAME, "started");
        let worker_ctx = ctx.clone();
        run_workers(CONTROLLER_NAME, ctx.queue.clone(), WORKERS, move |key| {
            let ctx = worker_ctx.clone();
            async move { sync_service(&ctx, &key).await }
        })
        .await;
    }
}

/// Queues every Endpoints object, so those whose Service is gone get deleted.
fn check_leftover_endpoints(ctx: &Ctx) {
    for ep in ctx.endpoints.store().state() {
        let leader = ep
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
        if !leader {
            ctx.queue
                .add(crate::controller_utils::meta_key(&ep.metadata));
        }
    }
}

async fn sync_service(ctx: &Ctx, key: &str) -> Result<(), Error> {
    let span = tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %key);
    sync_service_inner(ctx, key).instrument(span).await
}

async fn sync_service_inner(ctx: &Ctx, key: &str) -> Result<(), Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let Some(svc) = ctx.services.get(ns, name) else {
        let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => tracing::debug!("service gone; endpoints deleted"),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        ctx.triggers.delete(key);
        lock(&ctx.stale).remove(key);
        return Ok(());
    };
    if !wants_endpoints(&svc) {
        return Ok(());
    }
    let selector = service_selector(&svc).cloned().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .in_namespace(ns)
        .into_iter()
        .filter(|p| selector_matches(&selector, &p.metadata.labels.clone().unwrap_or_default()))
        .collect();
    // Computed on every sync so the tracker's state stays current even when no write follows.
    let trigger = ctx.triggers.compute(&svc, &pods);
    let subsets = desired_subsets(&svc, &pods);

    let current = ctx.endpoints.get(ns, name);
    if let Some(cur) = &current {
        let rv = cur.metadata.resource_version.clone().unwrap_or_default();
        if lock(&ctx.stale)
            .get(key)
            .is_some_and(|replaced| rv_at_least(replaced, &rv))
        {
            return Err(Error::Stale(rv, key.to_string()));
        }
    }
    let service_labels = svc.metadata.labels.clone().unwrap_or_default();
    if let Some(cur) = &current {
        let mut compare_labels = cur.metadata.labels.clone().unwrap_or_default();
        compare_labels.remove(HEADLESS_LABEL);
        let over = cur
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(OVER_CAPACITY));
        let capacity_ok = count_addresses(&subsets) <= MAX_CAPACITY && !over;
        if subsets_equal(cur.subsets.as_deref().unwrap_or(&[]), &subsets)
            && compare_labels == service_labels
            && capacity_ok
        {
            return Ok(());
        }
    }

    let mut new = current.as_deref().cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            ..Default::default()
        },
        subsets: None,
    });
    let mut labels = service_labels;
    if is_headless(&svc) {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    }
    new.metadata.labels = Some(labels);
    let annotations = new.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match trigger {
        Some(t) => {
            annotations.insert(LAST_CHANGE_TRIGGER_TIME.to_string(), format_trigger_time(t));
        }
        None => {
            annotations.remove(LAST_CHANGE_TRIGGER_TIME);
        }
    }
    let mut subsets = subsets;
    if truncate(&mut subsets) {
        annotations.insert(OVER_CAPACITY.to_string(), "truncated".to_string());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    new.subsets = (!subsets.is_empty()).then_some(subsets);

    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    let creating = current.is_none();
    let result = if creating {
        api.create(&PostParams::default(), &new).await
    } else {
        api.replace(name, &PostParams::default(), &new).await
    };
    match result {
        Ok(written) => {
            if !creating && written.metadata.resource_version != new.metadata.resource_version {
                if let Some(old_rv) = new.metadata.resource_version.clone() {
                    lock(&ctx.stale).insert(key.to_string(), old_rv);
                }
            }
            tracing::debug!(created = creating, "endpoints written");
            Ok(())
        }
        Err(e) if creating && is_namespace_terminating(&e) => Ok(()),
        Err(e) => {
            let (reason, note) = if creating {
                (
                    "FailedToCreateEndpoint",
                    format!("Failed to create endpoint for service {ns}/{name}: {e}"),
                )
            } else {
                (
                    "FailedToUpdateEndpoint",
                    format!("Failed to update endpoint {ns}/{name}: {e}"),
                )
            };
            let regarding = ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Endpoints".to_string()),
                namespace: Some(ns.to_string()),
                name: Some(name.to_string()),
                uid: new.metadata.uid.clone(),
                ..Default::default()
            };
            ctx.recorder
                .publish(&regarding, EventType::Warning, reason, "Update", note)
                .await;
            Err(e.into())
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock()
        .expect("invariant: endpoints controller lock is never poisoned")
}

/// The subsets the Service should have for `pods`, packed and sorted.
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let ports = spec.ports.unwrap_or_default();
    // (address, ready) → ports it serves.
    let mut entries: Vec<(EndpointAddress, bool, Vec<EndpointPort>)> = Vec::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, publish_not_ready) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let mut addr = EndpointAddress {
            ip,
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".to_string()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
            hostname: None,
        };
        if should_set_hostname(pod, svc) {
            addr.hostname = pod.spec.as_ref().and_then(|s| s.hostname.clone());
        }
        let ready = publish_not_ready || is_pod_ready(pod);
        if ports.is_empty() {
            // Headless services may have no ports at all.
            if is_headless(svc) {
                entries.push((addr, ready, Vec::new()));
            }
            continue;
        }
        let served: Vec<EndpointPort> = ports
            .iter()
            .filter_map(|sp| {
                let port = find_port(pod, sp)?;
                Some(EndpointPort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".to_string())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        if !served.is_empty() {
            entries.push((addr, ready, served));
        }
    }
    repack(entries)
}

fn port_key(p: &EndpointPort) -> (String, i32, String) {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
    )
}

fn address_key(a: &EndpointAddress) -> (String, String) {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

/// Upstream `RepackSubsets` + `SortSubsets`: one subset per distinct set of ports,
/// holding every address that serves exactly those ports.
fn repack(entries: Vec<(EndpointAddress, bool, Vec<EndpointPort>)>) -> Vec<EndpointSubset> {
    // Port → addresses serving it.
    let mut by_port: BTreeMap<(String, i32, String), (EndpointPort, Vec<usize>)> = BTreeMap::new();
    let mut portless: Vec<usize> = Vec::new();
    for (i, (_, _, ports)) in entries.iter().enumerate() {
        if ports.is_empty() {
            portless.push(i);
        }
        for p in ports {
            by_port
                .entry(port_key(p))
                .or_insert_with(|| (p.clone(), Vec::new()))
                .1
                .push(i);
        }
    }
    // Address set → ports offered by exactly that set.
    let mut groups: BTreeMap<Vec<(String, String)>, (Vec<usize>, Vec<EndpointPort>)> =
        BTreeMap::new();
    let key_of = |idx: &[usize]| {
        let mut k: Vec<(String, String)> =
            idx.iter().map(|i| address_key(&entries[*i].0)).collect();
        k.sort();
        k.dedup();
        k
    };
    for (_, (port, idx)) in by_port {
        let g = groups
            .entry(key_of(&idx))
            .or_insert_with(|| (idx.clone(), Vec::new()));
        g.1.push(port);
    }
    if !portless.is_empty() {
        groups
            .entry(key_of(&portless))
            .or_insert_with(|| (portless.clone(), Vec::new()));
    }
    let mut subsets: Vec<EndpointSubset> = groups
        .into_values()
        .map(|(idx, mut ports)| {
            let mut ready = Vec::new();
            let mut not_ready = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for i in idx {
                let (addr, is_ready, _) = &entries[i];
                if !seen.insert(address_key(addr)) {
                    continue;
                }
                if *is_ready {
                    ready.push(addr.clone());
                } else {
                    not_ready.push(addr.clone());
                }
            }
            ready.sort_by_key(address_key);
            not_ready.sort_by_key(address_key);
            ports.sort_by_key(port_key);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    subsets.sort_by_key(|s| {
        s.addresses
            .iter()
            .chain(s.not_ready_addresses.iter())
            .flatten()
            .map(address_key)
            .min()
    });
    subsets
}

fn count_addresses(subsets: &[EndpointSubset]) -> usize {
    subsets
        .iter()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len)
                + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum()
}

/// Whether two subset lists say the same (pod resource versions ignored, empty lists
/// and missing ones alike).
fn subsets_equal(a: &[EndpointSubset], b: &[EndpointSubset]) -> bool {
    fn norm(s: &[EndpointSubset]) -> Vec<EndpointSubset> {
        s.iter()
            .map(|s| {
                let clean = |v: &Option<Vec<EndpointAddress>>| {
                    let v: Vec<EndpointAddress> = v
                        .iter()
                        .flatten()
                        .map(|a| {
                            let mut a = a.clone();
                            if let Some(r) = a.target_ref.as_mut() {
                                r.resource_version = None;
                            }
                            a
                        })
                        .collect();
                    (!v.is_empty()).then_some(v)
                };
                EndpointSubset {
                    addresses: clean(&s.addresses),
                    not_ready_addresses: clean(&s.not_ready_addresses),
                    ports: s.ports.clone().filter(|p| !p.is_empty()),
                }
            })
            .collect()
    }
    norm(a) == norm(b)
}

/// Upstream `truncateEndpoints`: over [`MAX_CAPACITY`] addresses, keep ready ones
/// first, spread over the subsets in proportion to their size.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let total_ready: usize = subsets
        .iter()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
        .sum();
    let total_not_ready: usize = subsets
        .iter()
        .map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len))
        .sum();
    if total_ready + total_not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = total_ready > MAX_CAPACITY;
    let (max, num_total) = if truncate_ready {
        (MAX_CAPACITY, total_ready)
    } else {
        (MAX_CAPACITY - total_ready, total_not_ready)
    };
    let mut can_add = max;
    for s in subsets.iter_mut() {
        let in_subset = if truncate_ready {
            s.addresses.as_ref().map_or(0, Vec::len)
        } else {
            s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        };
        let share = (in_subset * max).div_ceil(num_total.max(1)).min(can_add);
        if truncate_ready {
            if let Some(a) = s.addresses.as_mut() {
                a.truncate(share);
                can_add -= a.len();
            }
            s.not_ready_addresses = None;
        } else if let Some(a) = s.not_ready_addresses.as_mut() {
            a.truncate(share);
            can_add -= a.len();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str, port: i32) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some(port_name.into()),
                        container_port: port,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn svc(publish_not_ready: bool) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.43.0.10".into()),
                selector: Some([("app".to_string(), "web".to_string())].into()),
                publish_not_ready_addresses: Some(publish_not_ready),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::String("web".into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn ips(v: &Option<Vec<EndpointAddress>>) -> Vec<String> {
        v.iter().flatten().map(|a| a.ip.clone()).collect()
    }

    #[test]
    fn ready_and_not_ready_pods_split_and_named_ports_resolve_per_pod() {
        let pods = vec![
            pod("b", "10.42.0.3", true, "web", 8080),
            pod("a", "10.42.0.2", false, "web", 8080),
            pod("c", "10.42.0.4", true, "web", 9090),
            pod("d", "10.42.0.5", true, "other", 8080),
        ];
        let subsets = desired_subsets(&svc(false), &pods);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let first = &subsets[0];
        assert_eq!(ips(&first.addresses), vec!["10.42.0.3"]);
        assert_eq!(ips(&first.not_ready_addresses), vec!["10.42.0.2"]);
        let port = &first.ports.as_ref().expect("ports")[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
        assert_eq!(ips(&subsets[1].addresses), vec!["10.42.0.4"]);
        assert_eq!(subsets[1].ports.as_ref().expect("ports")[0].port, 9090);
        let target = first.addresses.as_ref().expect("addresses")[0]
            .target_ref
            .clone()
            .expect("targetRef");
        assert_eq!(
            (target.kind.as_deref(), target.name.as_deref()),
            (Some("Pod"), Some("b"))
        );

        let all_ready = desired_subsets(&svc(true), &pods);
        assert_eq!(ips(&all_ready[0].addresses), vec!["10.42.0.2", "10.42.0.3"]);
        assert!(all_ready[0].not_ready_addresses.is_none());
        assert!(subsets_equal(
            &subsets,
            &desired_subsets(&svc(false), &pods)
        ));
    }

    #[test]
    fn truncation_keeps_ready_addresses_first() {
        let addr = |i: usize| EndpointAddress {
            ip: format!("10.0.{}.{}", i / 250, i % 250),
            ..Default::default()
        };
        let mut subsets = vec![EndpointSubset {
            addresses: Some((0..900).map(addr).collect()),
            not_ready_addresses: Some((900..1200).map(addr).collect()),
            ports: None,
        }];
        assert!(truncate(&mut subsets));
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(900));
        assert_eq!(
            subsets[0].not_ready_addresses.as_ref().map(Vec::len),
            Some(100)
        );
        assert_eq!(count_addresses(&subsets), MAX_CAPACITY);
    }
}
