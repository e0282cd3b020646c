//! The EndpointSlice controller (upstream `pkg/controller/endpointslice`): for every
//! Service with a selector, IPv4 EndpointSlices labelled
//! `kubernetes.io/service-name=<svc>` and `endpointslice.kubernetes.io/managed-by:
//! endpointslice-controller.k8s.io`, owned by the Service, listing each matching pod
//! with its address, conditions (`ready`, `serving`, `terminating`), node, zone and a
//! reference to the pod, and the Service's ports resolved by name.
//!
//! Reconciling a Service: the desired endpoints are cut into slices of at most
//! [`MAX_ENDPOINTS_PER_SLICE`] (grouped by the ports they serve, as named target ports
//! may resolve differently per pod). Existing slices are reused in place (kept when
//! already equal, else updated), missing ones created with `generateName: <svc>-`,
//! extras deleted. Slices of deleted Services go with their owner through the garbage
//! collector.

pub mod util;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_utils::{
    controller_ref, is_namespace_terminating, is_not_found, is_pod_ready,
};
use crate::informer::{Cache, Change, InformerFactory};
use crate::workqueue::WorkQueue;
use util::{
    find_port, is_headless, pod_ipv4, pod_service_keys, run_workers, selector_matches, service_key,
    service_selector, services_to_update_on_pod_change, should_pod_be_in_endpoints,
    should_set_hostname, wants_endpoints, HEADLESS_LABEL,
};

const CONTROLLER_NAME: &str = "endpointslice-controller";
/// `endpointslice.kubernetes.io/managed-by` of the slices this controller owns.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Upstream `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Upstream `--concurrent-service-endpoint-syncs`.
const WORKERS: usize = 5;
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

struct Ctx {
    client: Client,
    services: Cache<Service>,
    pods: Cache<Pod>,
    nodes: Cache<Node>,
    slices: Cache<EndpointSlice>,
    queue: Arc<WorkQueue<String>>,
}

/// The EndpointSlice controller, wired to shared informers.
pub struct EndpointSliceController {
    ctx: Arc<Ctx>,
}

impl EndpointSliceController {
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
        let slices = informers.informer::<EndpointSlice>().cache();
        {
            // A slice of ours changed or vanished behind our back: reconcile its Service.
            let queue = queue.clone();
            informers
                .informer::<EndpointSlice>()
                .add_handler(move |change| {
                    let slice = match change {
                        Change::Added(s) | Change::Deleted(s) => *s,
                        Change::Updated { new, .. } => *new,
                    };
                    if let Some(key) = owning_service_key(slice) {
                        queue.add(key);
                    }
                });
        }
        let nodes = informers.informer::<Node>().cache();
        let ctx = Arc::new(Ctx {
            client,
            services,
            pods,
            nodes,
            slices,
            queue,
        });
        EndpointSliceController { ctx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = async {
                ctx.services.wait_until_ready().await;
                ctx.pods.wait_until_ready().await;
                ctx.nodes.wait_until_ready().await;
                ctx.slices.wait_until_ready().await;
            } => {}
        }
        tracing::info!(controller = CONTROLLER_NAME, "started");
        let worker_ctx = ctx.clone();
        run_workers(CONTROLLER_NAME, ctx.queue.clone(), WORKERS, move |key| {
            let ctx = worker_ctx.clone();
            async move {
                let span =
                    tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %key);
                sync_service(&ctx, &key).instrument(span).await
            }
        })
        .await;
    }
}

/// `namespace/service` of a slice this controller manages.
fn owning_service_key(slice: &EndpointSlice) -> Option<String> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    let svc = labels.get(SERVICE_NAME_LABEL)?;
    Some(format!(
        "{}/{svc}",
        slice.metadata.namespace.as_deref().unwrap_or_default()
    ))
}

async fn sync_service(ctx: &Ctx, key: &str) -> Result<(), Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let mut existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .in_namespace(ns)
        .into_iter()
        .filter(|s| owning_service_key(s).as_deref() == Some(key))
        .collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let svc = match ctx.services.get(ns, name) {
        Some(svc) if wants_endpoints(&svc) => svc,
        // Gone, or no selector: the slices we made have no reason to exist.
        _ => {
            for s in existing {
                delete_slice(&api, &s).await?;
            }
            return Ok(());
        }
    };
    let desired = desired_slices(ctx, &svc);
    let mut existing = existing.into_iter();
    for (ports, endpoints) in desired {
        let labels = slice_labels(&svc);
        match existing.next() {
            Some(current) => {
                let same = current.endpoints == endpoints
                    && current.ports.as_ref() == Some(&ports)
                    && current.metadata.labels.as_ref() == Some(&labels);
                if same {
                    continue;
                }
                let mut updated = (*current).clone();
                updated.endpoints = endpoints;
                updated.ports = Some(ports);
                updated.metadata.labels = Some(labels);
                let slice_name = updated.metadata.name.clone().unwrap_or_default();
                match api
                    .replace(&slice_name, &PostParams::default(), &updated)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => ctx.queue.add(key.to_string()),
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                let slice = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: Some(ns.to_string()),
                        labels: Some(labels),
                        owner_references: Some(vec![controller_ref(
                            &svc.metadata,
                            "v1",
                            "Service",
                        )]),
                        ..Default::default()
                    },
                    address_type: "IPv4".to_string(),
                    endpoints,
                    ports: Some(ports),
                };
                match api.create(&PostParams::default(), &slice).await {
                    Ok(_) => {}
                    Err(e) if is_namespace_terminating(&e) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    for extra in existing {
        delete_slice(&api, &extra).await?;
    }
    Ok(())
}

async fn delete_slice(api: &Api<EndpointSlice>, slice: &EndpointSlice) -> Result<(), Error> {
    let name = slice.metadata.name.clone().unwrap_or_default();
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        SERVICE_NAME_LABEL.to_string(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    }
    labels
}

/// The slices a Service should have: endpoints grouped by the ports they serve, each
/// group cut into slices of at most [`MAX_ENDPOINTS_PER_SLICE`], in a stable order.
fn desired_slices(ctx: &Ctx, svc: &Service) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    let selector = service_selector(svc).cloned().unwrap_or_default();
    let mut pods: Vec<Arc<Pod>> = ctx
        .pods
        .in_namespace(ns)
        .into_iter()
        .filter(|p| selector_matches(&selector, &p.metadata.labels.clone().unwrap_or_default()))
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let mut groups: BTreeMap<Vec<(String, i32, String)>, (Vec<EndpointPort>, Vec<Endpoint>)> =
        BTreeMap::new();
    for pod in pods {
        // Terminating pods stay listed (with `terminating: true`) as upstream does.
        if !should_pod_be_in_endpoints(&pod, true) {
            continue;
        }
        let Some(ip) = pod_ipv4(&pod) else { continue };
        let ports = endpoint_ports(svc, &pod);
        let group_key = ports
            .iter()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port.unwrap_or(0),
                    p.protocol.clone().unwrap_or_default(),
                )
            })
            .collect();
        let endpoint = endpoint_for(ctx, svc, &pod, ip, publish_not_ready);
        groups
            .entry(group_key)
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(endpoint);
    }
    let mut slices = Vec::new();
    for (_, (ports, endpoints)) in groups {
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            slices.push((ports.clone(), chunk.to_vec()));
        }
    }
    slices
}

fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            let port = find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".to_string())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

fn endpoint_for(
    ctx: &Ctx,
    svc: &Service,
    pod: &Pod,
    ip: String,
    publish_not_ready: bool,
) -> Endpoint {
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let serving = is_pod_ready(pod);
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    let zone = node_name
        .as_deref()
        .and_then(|n| ctx.nodes.get("", n))
        .and_then(|n| {
            n.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ZONE_LABEL).cloned())
        });
    let hostname = should_set_hostname(pod, svc)
        .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
        .flatten();
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(publish_not_ready || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname,
        node_name,
        zone,
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_string()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
