//! Node IPAM (upstream `pkg/controller/nodeipam`, the range allocator): gives every
//! Node without `spec.podCIDR` the next free block of `--cluster-cidr`
//! (`--node-cidr-mask-size`, /24 by default), and frees it when the node goes.
//!
//! Nodes may bring their own podCIDR (virtual nodes carve one at registration; the
//! agent does as a fallback): those are left alone and their range counts as used, so
//! it is never handed out twice. The used set is rebuilt from the nodes at start,
//! before any allocation. The update that assigns a block carries the node's
//! resourceVersion, so a podCIDR set meanwhile by someone else wins and our block is
//! released. An exhausted range records `CIDRNotAvailable` on the node.

pub mod cidrset;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_utils::{is_conflict, is_not_found, EventRecorder};
use crate::informer::{Cache, Change, InformerFactory};
use crate::options::ControllerOptions;
use crate::workqueue::WorkQueue;
use cidrset::{CidrSet, CidrSetError};

const CONTROLLER_NAME: &str = "node-ipam-controller";
/// The event source of upstream's IPAM events.
const EVENT_COMPONENT: &str = "cidrAllocator";
const WORKERS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    CidrSet(#[from] CidrSetError),
}

/// The node's IPv4 pod CIDR, from `spec.podCIDRs` or `spec.podCIDR`.
pub fn node_pod_cidr(node: &Node) -> Option<Ipv4Net> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidrs
        .iter()
        .flatten()
        .chain(spec.pod_cidr.iter())
        .find_map(|c| c.parse::<Ipv4Net>().ok())
}

fn has_pod_cidr(node: &Node) -> bool {
    node.spec.as_ref().is_some_and(|s| {
        s.pod_cidr.as_deref().is_some_and(|c| !c.is_empty())
            || s.pod_cidrs.as_ref().is_some_and(|c| !c.is_empty())
    })
}

struct Allocations {
    set: CidrSet,
    /// Node → the block it holds in `set`.
    by_node: HashMap<String, Ipv4Net>,
}

impl Allocations {
    /// Releases `node`'s block unless another node holds the same one.
    fn release_node(&mut self, node: &str) {
        let Some(cidr) = self.by_node.remove(node) else {
            return;
        };
        if self.by_node.values().any(|c| *c == cidr) {
            return;
        }
        if let Err(e) = self.set.release(cidr) {
            tracing::debug!(node, %cidr, error = %e, "could not release CIDR");
        }
    }

    /// Records that `node` holds `cidr` (brought or assigned).
    fn occupy(&mut self, node: &str, cidr: Ipv4Net) {
        if self.by_node.get(node) == Some(&cidr) {
            return;
        }
        self.release_node(node);
        match self.set.occupy(cidr) {
            Ok(()) => {
                self.by_node.insert(node.to_string(), cidr);
            }
            // Outside the cluster CIDR: nothing of ours to keep free.
            Err(e) => tracing::debug!(node, %cidr, error = %e, "node's podCIDR not tracked"),
        }
    }
}

struct Ctx {
    client: Client,
    nodes: Cache<Node>,
    allocations: Mutex<Allocations>,
    queue: Arc<WorkQueue<String>>,
    recorder: EventRecorder,
}

pub struct NodeIpamController {
    ctx: Arc<Ctx>,
}

impl NodeIpamController {
    /// `None` when node IPAM is off (`--allocate-node-cidrs=false`) or the mask does
    /// not fit the cluster CIDR (logged).
    pub fn new(
        client: Client,
        informers: &mut InformerFactory,
        options: &ControllerOptions,
        cancel: &CancellationToken,
    ) -> Option<Self> {
        if !options.allocate_node_cidrs {
            return None;
        }
        let set = match CidrSet::new(options.cluster_cidr, options.node_cidr_mask_size) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "node IPAM disabled");
                return None;
            }
        };
        let ctx = Arc::new(Ctx {
            recorder: EventRecorder::new(client.clone(), EVENT_COMPONENT),
            client,
            nodes: informers.informer::<Node>().cache(),
            allocations: Mutex::new(Allocations {
                set,
                by_node: HashMap::new(),
            }),
            queue: WorkQueue::new(cancel.clone()),
        });
        let queue = ctx.queue.clone();
        informers.informer::<Node>().add_handler(move |change| {
            let node = match change {
                Change::Added(n) | Change::Deleted(n) => *n,
                Change::Updated { old, new } => {
                    if has_pod_cidr(new) && node_pod_cidr(old) == node_pod_cidr(new) {
                        return;
                    }
                    *new
                }
            };
            queue.add(node.metadata.name.clone().unwrap_or_default());
        });
        Some(NodeIpamController { ctx })
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ctx.nodes.wait_until_ready() => {}
        }
        // Every range in use is known before anything is handed out.
        {
            let mut a = ctx.lock();
            for node in ctx.nodes.store().state() {
                if let Some(cidr) = node_pod_cidr(&node) {
                    a.occupy(node.metadata.name.as_deref().unwrap_or(""), cidr);
                }
            }
        }
        tracing::info!(controller = CONTROLLER_NAME, cluster_cidr = %ctx.lock().set.cluster(), "starting");
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| tokio::spawn(worker(ctx.clone())))
            .collect();
        for w in workers {
            let _ = w.await;
        }
    }
}

impl Ctx {
    fn lock(&self) -> std::sync::MutexGuard<'_, Allocations> {
        self.allocations
            .lock()
            .expect("invariant: IPAM lock is never poisoned")
    }
}

async fn worker(ctx: Arc<Ctx>) {
    while let Some(name) = ctx.queue.get().await {
        let span = tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %name);
        match sync_node(&ctx, &name).instrument(span).await {
            Ok(()) => ctx.queue.forget(&name),
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "could not allocate a pod CIDR; will retry");
                ctx.queue.add_rate_limited(name.clone());
            }
        }
        ctx.queue.done(&name);
    }
}

fn node_ref(node: &Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: node.metadata.name.clone(),
        uid: node.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Upstream `RecordNodeStatusChange`.
async fn node_status_event(ctx: &Ctx, node: &Node, status: &str) {
    let name = node.metadata.name.as_deref().unwrap_or("");
    ctx.recorder
        .publish(
            &node_ref(node),
            EventType::Normal,
            status,
            status,
            format!("Node {name} status is now: {status}"),
        )
        .await;
}

/// Upstream `AllocateOrOccupyCIDR` / `ReleaseCIDR`.
async fn sync_node(ctx: &Ctx, name: &str) -> Result<(), Error> {
    let Some(node) = ctx.nodes.get("", name) else {
        ctx.lock().release_node(name);
        return Ok(());
    };
    if node.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    if has_pod_cidr(&node) {
        if let Some(cidr) = node_pod_cidr(&node) {
            ctx.lock().occupy(name, cidr);
        }
        return Ok(());
    }
    let allocated = ctx.lock().set.allocate_next();
    let cidr = match allocated {
        Ok(c) => c,
        Err(e) => {
            node_status_event(ctx, &node, "CIDRNotAvailable").await;
            return Err(e.into());
        }
    };
    ctx.lock().by_node.insert(name.to_string(), cidr);
    match assign(ctx, &node, cidr).await {
        Ok(()) => {
            tracing::info!(node = name, pod_cidr = %cidr, "set node podCIDR");
            Ok(())
        }
        Err(e) => {
            ctx.lock().release_node(name);
            if !matches!(e, Error::Api(ref k) if is_conflict(k) || is_not_found(k)) {
                node_status_event(ctx, &node, "CIDRAssignmentFailed").await;
            }
            Err(e)
        }
    }
}

/// Writes `spec.podCIDR(s)` onto the cached node with its resourceVersion, so a node
/// changed meanwhile (perhaps given a podCIDR elsewhere) is a conflict, retried from
/// the cache.
async fn assign(ctx: &Ctx, node: &Node, cidr: Ipv4Net) -> Result<(), Error> {
    let name = node.metadata.name.as_deref().unwrap_or("");
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut updated = node.clone();
    let spec = updated.spec.get_or_insert_with(Default::default);
    spec.pod_cidr = Some(cidr.to_string());
    spec.pod_cidrs = Some(vec![cidr.to_string()]);
    api.replace(name, &PostParams::default(), &updated).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;

    #[test]
    fn pod_cidr_prefers_the_list_and_skips_ipv6() {
        let mut n = Node::default();
        assert_eq!(node_pod_cidr(&n), None);
        n.spec = Some(NodeSpec {
            pod_cidr: Some("10.42.7.0/24".into()),
            pod_cidrs: Some(vec!["fd00::/64".into(), "10.42.3.0/24".into()]),
            ..Default::default()
        });
        assert_eq!(node_pod_cidr(&n), "10.42.3.0/24".parse().ok());
        assert!(has_pod_cidr(&n));
    }

    #[test]
    fn a_shared_block_stays_used_until_its_last_node_goes() {
        let mut a = Allocations {
            set: CidrSet::new("10.42.0.0/23".parse().expect("cidr"), 24).expect("set"),
            by_node: HashMap::new(),
        };
        let b0: Ipv4Net = "10.42.0.0/24".parse().expect("cidr");
        a.occupy("n1", b0);
        a.occupy("n2", b0);
        a.release_node("n1");
        assert_eq!(
            a.set.allocate_next(),
            "10.42.1.0/24".parse().map_err(|_| CidrSetError::Full)
        );
        assert_eq!(a.set.allocate_next(), Err(CidrSetError::Full));
        a.release_node("n2");
        assert_eq!(a.set.allocate_next(), Ok(b0));
    }
}
