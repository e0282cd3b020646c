//! Virtual nodes: the Virtual Kubelet idea, built in. One process registers N Nodes,
//! keeps their Leases and status fresh, and acts as their pod provider, so the control
//! plane can be tested and benchmarked at thousands of nodes without containers.
//!
//! Everything goes through the Kubernetes API (`kube::Client`), like a kubelet:
//!
//! 1. **Plan** — list Nodes once: reuse a node's `spec.podCIDR` and InternalIP if it
//!    already exists, else carve a free block from `pod_cidr_base` / a free fake IP from
//!    `node_ip_base` (skipping what other nodes use).
//! 2. **Register** (bounded concurrency, retried until it works) — create the Node with
//!    labels, taints and `spec.podCIDR` (or adopt an existing one), post its status
//!    through `nodes/status`, create its Lease in `kube-node-lease`.
//! 3. **Heartbeat** ([`lease`]) — one scheduler gives node *i* the slot
//!    `i × interval / N` inside every `lease_interval`, so 5,000 renewals spread evenly;
//!    a semaphore bounds requests in flight. Status is posted every
//!    `status_update_interval`, or at once when the node watcher sees conditions that
//!    are not ours (e.g. the node lifecycle controller's `Ready=Unknown`).
//! 4. **Provide** ([`provider`]) — one watch on pods with `spec.nodeName!=`, filtered to
//!    our nodes; a keyed work queue moves them to Running, finishes their deletion, and
//!    terminates them on demand (annotations [`provider::EXIT_CODE_ANNOTATION`],
//!    [`provider::RUN_SECONDS_ANNOTATION`]).
//!
//! A paused node ([`VirtualNodesHandle::pause_heartbeat`]) behaves like a dead kubelet:
//! no Lease renewals, no status posts, its pods left as they are. Resuming renews at
//! once and resyncs its pods.

pub mod config;
pub mod ipam;
pub mod lease;
pub mod node;
pub mod provider;
pub mod queue;
pub mod stats;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::NodeCondition;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{default_taint, parse_labels, parse_taints, ConfigError, VirtualNodeConfig};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no virtual node named {0:?}")]
    UnknownNode(String),
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("no free /{mask} left in {base} for node {node}; use a larger pod CIDR base or a longer mask")]
    PodCidrExhausted {
        base: Ipv4Net,
        mask: u8,
        node: String,
    },
    #[error("no free address left in {base} for node {node}")]
    NodeIpExhausted { base: Ipv4Net, node: String },
    #[error("virtual nodes stopped before they were registered: {0}")]
    NotRegistered(String),
    #[error(transparent)]
    Stats(#[from] stats::StatsError),
}

/// Registration progress, published to handles.
#[derive(Clone, Debug)]
enum Registration {
    Pending,
    Done,
    Failed(String),
}

/// Per-node state shared by the heartbeat, the node watcher and the provider.
pub(crate) struct NodeState {
    pub name: String,
    pub paused: AtomicBool,
    /// A heartbeat for this node is running; the scheduler skips its slot.
    pub in_flight: AtomicBool,
    /// Post status with the next heartbeat even if not due.
    pub force_status: AtomicBool,
    pub last_status: Mutex<Option<Instant>>,
    pub uid: OnceLock<String>,
    pub internal_ip: OnceLock<Ipv4Addr>,
    pub pod_ips: OnceLock<Mutex<ipam::PodIpAllocator>>,
    pub lease: Mutex<Option<Lease>>,
    /// Conditions as last seen on the server, for `lastTransitionTime`.
    pub observed_conditions: Mutex<Vec<NodeCondition>>,
    pub recorder: Recorder,
    /// Running pods by UID, for the stats endpoint (kept only when it is on).
    pub running_pods: Mutex<HashMap<String, stats::RunningPod>>,
    /// The kubelet endpoint's port once bound, and its listener until served.
    pub kubelet_port: OnceLock<u16>,
    pub kubelet_listener: Mutex<Option<tokio::net::TcpListener>>,
}

impl NodeState {
    fn new(client: &Client, name: String) -> Self {
        let reporter = Reporter {
            controller: "kubelet".to_string(),
            instance: Some(name.clone()),
        };
        NodeState {
            recorder: Recorder::new(client.clone(), reporter),
            name,
            paused: AtomicBool::new(false),
            in_flight: AtomicBool::new(false),
            force_status: AtomicBool::new(false),
            last_status: Mutex::new(None),
            uid: OnceLock::new(),
            internal_ip: OnceLock::new(),
            pod_ips: OnceLock::new(),
            lease: Mutex::new(None),
            observed_conditions: Mutex::new(Vec::new()),
            running_pods: Mutex::new(HashMap::new()),
            kubelet_port: OnceLock::new(),
            kubelet_listener: Mutex::new(None),
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    pub fn pod_cidr(&self) -> Option<Ipv4Net> {
        self.pod_ips.get().map(|p| p.lock().cidr())
    }
}

pub(crate) struct Shared {
    pub config: VirtualNodeConfig,
    pub nodes: Vec<NodeState>,
    pub by_name: HashMap<String, usize>,
    registration: watch::Sender<Registration>,
    /// Node indexes to heartbeat now (resume, foreign status change).
    pub heartbeat_wake: mpsc::UnboundedSender<usize>,
    /// Node indexes whose pods to resync (resume).
    pub provider_wake: mpsc::UnboundedSender<usize>,
}

impl Shared {
    pub fn node(&self, name: &str) -> Option<(usize, &NodeState)> {
        self.by_name.get(name).map(|i| (*i, &self.nodes[*i]))
    }
}

/// A set of virtual nodes; [`VirtualNodes::run`] registers and serves them.
pub struct VirtualNodes {
    client: Client,
    shared: Arc<Shared>,
    heartbeat_rx: mpsc::UnboundedReceiver<usize>,
    provider_rx: mpsc::UnboundedReceiver<usize>,
}

/// Controls a running [`VirtualNodes`] (cheap to clone).
#[derive(Clone)]
pub struct VirtualNodesHandle {
    shared: Arc<Shared>,
}

impl VirtualNodes {
    pub fn new(client: Client, config: VirtualNodeConfig) -> Result<Self, Error> {
        config.validate()?;
        let nodes: Vec<NodeState> = (0..config.count)
            .map(|i| NodeState::new(&client, config.node_name(i)))
            .collect();
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let (heartbeat_wake, heartbeat_rx) = mpsc::unbounded_channel();
        let (provider_wake, provider_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            config,
            nodes,
            by_name,
            registration: watch::Sender::new(Registration::Pending),
            heartbeat_wake,
            provider_wake,
        });
        Ok(VirtualNodes {
            client,
            shared,
            heartbeat_rx,
            provider_rx,
        })
    }

    pub fn handle(&self) -> VirtualNodesHandle {
        VirtualNodesHandle {
            shared: self.shared.clone(),
        }
    }

    /// Registers the nodes, then heartbeats them and provides their pods until `cancel`
    /// fires. Registration retries until the API answers; only a plan that cannot fit
    /// (no free pod CIDR or node IP) ends it with an error.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), Error> {
        let VirtualNodes {
            client,
            shared,
            heartbeat_rx,
            provider_rx,
        } = self;
        let registered = register_all(&client, &shared, &cancel).await;
        match registered {
            Ok(true) => {}
            Ok(false) => {
                shared
                    .registration
                    .send_replace(Registration::Failed("cancelled".to_string()));
                return Ok(());
            }
            Err(e) => {
                shared
                    .registration
                    .send_replace(Registration::Failed(e.to_string()));
                return Err(e);
            }
        }
        tracing::info!(count = shared.nodes.len(), prefix = %shared.config.prefix, "virtual nodes registered");
        shared.registration.send_replace(Registration::Done);
        tokio::join!(
            lease::run_heartbeats(client.clone(), shared.clone(), heartbeat_rx, cancel.clone()),
            node::watch_nodes(client.clone(), shared.clone(), cancel.clone()),
            provider::run(client.clone(), shared.clone(), provider_rx, cancel.clone()),
            stats::serve(shared.clone(), cancel.clone()),
        );
        shared
            .registration
            .send_replace(Registration::Failed("stopped".to_string()));
        Ok(())
    }
}

impl VirtualNodesHandle {
    /// Names of the nodes, by index.
    pub fn node_names(&self) -> Vec<String> {
        self.shared.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Stops the node's Lease renewals, status posts and pod handling (a dead kubelet).
    pub fn pause_heartbeat(&self, name: &str) -> Result<(), Error> {
        let (_, node) = self
            .shared
            .node(name)
            .ok_or_else(|| Error::UnknownNode(name.to_string()))?;
        node.paused.store(true, Ordering::Release);
        tracing::info!(node = name, "heartbeat paused");
        Ok(())
    }

    /// Resumes a paused node: renews its Lease and posts status at once, resyncs its pods.
    pub fn resume_heartbeat(&self, name: &str) -> Result<(), Error> {
        let (index, node) = self
            .shared
            .node(name)
            .ok_or_else(|| Error::UnknownNode(name.to_string()))?;
        if node.paused.swap(false, Ordering::AcqRel) {
            node.force_status.store(true, Ordering::Release);
            // The receivers live as long as `run`; after it there is nothing to wake.
            let _ = self.shared.heartbeat_wake.send(index);
            let _ = self.shared.provider_wake.send(index);
            tracing::info!(node = name, "heartbeat resumed");
        }
        Ok(())
    }

    /// Whether the node's heartbeat is paused; `None` for an unknown node.
    pub fn is_heartbeat_paused(&self, name: &str) -> Option<bool> {
        self.shared.node(name).map(|(_, n)| n.is_paused())
    }

    /// The node's podCIDR, once registered.
    pub fn pod_cidr(&self, name: &str) -> Option<Ipv4Net> {
        self.shared.node(name).and_then(|(_, n)| n.pod_cidr())
    }

    /// Resolves once every node is registered (Node, status and Lease written).
    pub async fn wait_registered(&self) -> Result<(), Error> {
        let mut rx = self.shared.registration.subscribe();
        let state = rx
            .wait_for(|r| !matches!(r, Registration::Pending))
            .await
            .map_err(|_| Error::NotRegistered("dropped".to_string()))?
            .clone();
        match state {
            Registration::Done => Ok(()),
            Registration::Failed(why) => Err(Error::NotRegistered(why)),
            Registration::Pending => Err(Error::NotRegistered("still pending".to_string())),
        }
    }
}

/// Plans addresses and registers every node; `Ok(false)` when cancelled first.
async fn register_all(
    client: &Client,
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
) -> Result<bool, Error> {
    let Some(plan) = retry(cancel, "listing nodes", || {
        node::plan(client, &shared.config)
    })
    .await
    else {
        return Ok(false);
    };
    let plan = plan?;
    let concurrency = shared.config.concurrency;
    let results: Vec<Result<bool, Error>> = futures::stream::iter(plan.into_iter().enumerate())
        .map(|(i, planned)| {
            let (client, shared) = (client.clone(), shared.clone());
            async move {
                let node = &shared.nodes[i];
                let _ = node.internal_ip.set(planned.internal_ip);
                if let Err(e) = stats::listen(&shared.config, node).await {
                    return Err(Error::from(e));
                }
                Ok(retry(cancel, "registering node", || {
                    node::register(&client, &shared.config, node, planned.pod_cidr)
                })
                .await
                .is_some())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut all = true;
    for r in results {
        all &= r?;
    }
    Ok(all && !cancel.is_cancelled())
}

/// Retries `op` with backoff (100 ms doubling to 5 s) until it succeeds; `None` if
/// cancelled first. Errors that retrying cannot fix come back inside `Some(Err)`.
pub(crate) async fn retry<T, F, Fut>(
    cancel: &CancellationToken,
    what: &str,
    mut op: F,
) -> Option<Result<T, Error>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        let result = tokio::select! {
            r = op() => r,
            _ = cancel.cancelled() => return None,
        };
        match result {
            Ok(v) => return Some(Ok(v)),
            Err(
                e @ (Error::PodCidrExhausted { .. }
                | Error::NodeIpExhausted { .. }
                | Error::Config(_)),
            ) => return Some(Err(e)),
            Err(e) => tracing::warn!(error = %e, "{what} failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The HTTP status code of an API error.
pub(crate) fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}
