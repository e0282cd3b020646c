//! The resource metrics pipeline behind `metrics.k8s.io/v1beta1` (what metrics-server
//! does upstream, built into the API server): scrape every node agent's
//! `/stats/summary` on its kubelet port, keep the latest readings for one metric
//! resolution, and answer `NodeMetrics` / `PodMetrics` from them.
//!
//! Scraping is on demand: the first request after the readings are older than the
//! resolution (15 s, metrics-server's recommended `--metric-resolution`) scrapes all
//! nodes at once, concurrently, and requests arriving meanwhile wait for that scrape
//! instead of starting their own. Nothing runs while nobody asks.
//!
//! CPU usage is the agent's `usageNanoCores` (a rate between two of its readings), so a
//! node or container whose agent has read it only once has no CPU usage yet and is left
//! out, as metrics-server leaves out what it has a single point for. Only nodes that
//! report `status.daemonEndpoints.kubeletEndpoint.Port` are scraped: the fake addresses
//! of virtual nodes without a stats endpoint are never dialled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apis::ResourceInfo;
use futures::StreamExt;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use registry::{ListOptions, Registry};
use serde_json::Value;

use crate::handlers::streaming::kubelet_address_of;

/// The group and version served.
pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
/// Default `--metric-resolution`.
pub const DEFAULT_RESOLUTION: Duration = Duration::from_secs(15);
/// How long one node may take to answer a scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Nodes scraped at once.
const SCRAPE_CONCURRENCY: usize = 32;
/// Largest summary read from an agent.
const MAX_SUMMARY_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("error dialing {address}: {message}")]
    Dial { address: String, message: String },
    #[error("{address} answered {status}")]
    Status { address: String, status: StatusCode },
    #[error("reading the summary from {address}: {message}")]
    Body { address: String, message: String },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// `nodes` (NodeMetrics) and `pods` (PodMetrics) in discovery, as metrics-server
/// registers them.
pub fn resources() -> Vec<Arc<ResourceInfo>> {
    let info = |resource: &str, singular: &str, kind: &str, namespaced: bool| {
        Arc::new(ResourceInfo {
            group: GROUP.to_string(),
            version: VERSION.to_string(),
            resource: resource.to_string(),
            singular: singular.to_string(),
            kind: kind.to_string(),
            list_kind: format!("{kind}List"),
            namespaced,
            verbs: vec!["get".to_string(), "list".to_string()],
            short_names: Vec::new(),
            categories: Vec::new(),
            subresources: Vec::new(),
            storage_group: GROUP.to_string(),
            storage_resource: resource.to_string(),
        })
    };
    vec![
        info("nodes", "", "NodeMetrics", false),
        info("pods", "", "PodMetrics", true),
    ]
}

/// One reading: when, CPU in nano-cores, working set in bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Usage {
    pub timestamp: String,
    pub cpu_nano_cores: u64,
    pub memory_bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ContainerUsage {
    pub name: String,
    pub usage: Usage,
}

/// The readings of every scraped node and its pods.
#[derive(Debug)]
pub struct Snapshot {
    taken: Instant,
    pub nodes: HashMap<String, Usage>,
    /// By `(namespace, name)`; only pods whose every container has a full reading.
    pub pods: HashMap<(String, String), Vec<ContainerUsage>>,
}

/// Scrapes node agents on demand and keeps the last readings for one resolution.
pub struct Provider {
    resolution: Duration,
    kubelet_client: Option<Arc<rustls::ClientConfig>>,
    last: tokio::sync::Mutex<Option<Arc<Snapshot>>>,
}

impl Provider {
    pub fn new(resolution: Duration, kubelet_client: Option<Arc<rustls::ClientConfig>>) -> Self {
        Provider {
            resolution,
            kubelet_client,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The window every metric covers (reported as `window`).
    pub fn resolution(&self) -> Duration {
        self.resolution
    }

    /// Readings no older than the resolution, scraping all nodes if needed.
    pub async fn snapshot(&self, registry: &Registry) -> Arc<Snapshot> {
        let mut last = self.last.lock().await;
        if let Some(s) = last.as_ref() {
            if s.taken.elapsed() < self.resolution {
                return s.clone();
            }
        }
        let fresh = Arc::new(self.scrape_all(registry).await);
        *last = Some(fresh.clone());
        fresh
    }

    async fn scrape_all(&self, registry: &Registry) -> Snapshot {
        let mut snapshot = Snapshot {
            taken: Instant::now(),
            nodes: HashMap::new(),
            pods: HashMap::new(),
        };
        let Some(config) = self.kubelet_client.clone() else {
            return snapshot;
        };
        let Some(nodes) = registry.lookup("", "v1", "nodes") else {
            return snapshot;
        };
        let list = match nodes.store.list("", &ListOptions::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "listing nodes to scrape failed");
                return snapshot;
            }
        };
        let targets: Vec<(String, String)> = list
            .items
            .iter()
            .filter_map(|b| serde_json::from_slice::<Value>(b).ok())
            .filter_map(|node| {
                let name = node.pointer("/metadata/name")?.as_str()?.to_string();
                let port = node
                    .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
                    .and_then(Value::as_u64)
                    .filter(|p| *p != 0);
                port?;
                let address = kubelet_address_of(&name, &node).ok()?;
                Some((name, address))
            })
            .collect();
        let results: Vec<(String, Result<Value, ScrapeError>)> = futures::stream::iter(targets)
            .map(|(name, address)| {
                let config = config.clone();
                async move {
                    let r = tokio::time::timeout(
                        SCRAPE_TIMEOUT,
                        get_json(&address, "/stats/summary", config),
                    )
                    .await
                    .unwrap_or(Err(ScrapeError::Timeout(SCRAPE_TIMEOUT)));
                    (name, r)
                }
            })
            .buffer_unordered(SCRAPE_CONCURRENCY)
            .collect()
            .await;
        for (node, result) in results {
            match result {
                Ok(summary) => merge_summary(&mut snapshot, &node, &summary),
                Err(e) => tracing::debug!(%node, error = %e, "scraping the node agent failed"),
            }
        }
        snapshot
    }
}

/// Adds one agent's Summary (`stats/v1alpha1`) to the snapshot.
pub fn merge_summary(snapshot: &mut Snapshot, node: &str, summary: &Value) {
    if let Some(u) = summary.get("node").and_then(usage_of) {
        snapshot.nodes.insert(node.to_string(), u);
    }
    for pod in summary
        .get("pods")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(ns), Some(name)) = (
            pod.pointer("/podRef/namespace").and_then(Value::as_str),
            pod.pointer("/podRef/name").and_then(Value::as_str),
        ) else {
            continue;
        };
        let containers: Option<Vec<ContainerUsage>> = pod
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                Some(ContainerUsage {
                    name: c.get("name")?.as_str()?.to_string(),
                    usage: usage_of(c)?,
                })
            })
            .collect();
        match containers {
            Some(mut cs) if !cs.is_empty() => {
                cs.sort_by(|a, b| a.name.cmp(&b.name));
                snapshot.pods.insert((ns.to_string(), name.to_string()), cs);
            }
            _ => {}
        }
    }
}

/// CPU rate and working set of a Summary entry (node or container); `None` until both
/// are known.
fn usage_of(v: &Value) -> Option<Usage> {
    let cpu = v.get("cpu")?;
    let memory = v.get("memory")?;
    Some(Usage {
        timestamp: cpu
            .get("time")
            .or_else(|| memory.get("time"))
            .and_then(Value::as_str)?
            .to_string(),
        cpu_nano_cores: cpu.get("usageNanoCores")?.as_u64()?,
        memory_bytes: memory.get("workingSetBytes")?.as_u64()?,
    })
}

/// GET `path` on a node agent over TLS with the API server's client certificate.
async fn get_json(
    address: &str,
    path: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Value, ScrapeError> {
    let dial = |e: &dyn std::fmt::Display| ScrapeError::Dial {
        address: address.to_string(),
        message: e.to_string(),
    };
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| dial(&e))?;
    let host = address
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']'))
        .unwrap_or(address);
    let server_name =
        rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| dial(&e))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| dial(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| dial(&e))?;
    let connection = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(path)
        .header(http::header::HOST, address)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| dial(&e))?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| dial(&e))?;
        if resp.status() != StatusCode::OK {
            return Err(ScrapeError::Status {
                address: address.to_string(),
                status: resp.status(),
            });
        }
        let body = Limited::new(resp.into_body(), MAX_SUMMARY_BYTES)
            .collect()
            .await
            .map_err(|e| ScrapeError::Body {
                address: address.to_string(),
                message: e.to_string(),
            })?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| ScrapeError::Body {
            address: address.to_string(),
            message: e.to_string(),
        })
    }
    .await;
    connection.abort();
    result
}

/// Go's `time.Duration.String()` for whole milliseconds (`15s`, `1m0s`, `1.5s`).
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let secs = if rest % 1000 == 0 {
        format!("{}s", rest / 1000)
    } else {
        let frac = format!("{:03}", rest % 1000);
        format!("{}.{}s", rest / 1000, frac.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// CPU as metrics-server encodes it (a nano-scaled quantity, canonical form).
pub fn cpu_quantity(nano_cores: u64) -> String {
    apis::resource::Quantity::parse(&format!("{nano_cores}n"))
        .map(|q| q.canonical())
        .unwrap_or_else(|_| format!("{nano_cores}n"))
}

/// Memory as metrics-server encodes it (a binary-SI quantity, canonical form).
pub fn memory_quantity(bytes: u64) -> String {
    apis::resource::Quantity::from_bytes(i64::try_from(bytes).unwrap_or(i64::MAX)).canonical()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_and_durations_print_as_upstream() {
        assert_eq!(cpu_quantity(80_000_000), "80m");
        assert_eq!(cpu_quantity(1_000_000_000), "1");
        assert_eq!(cpu_quantity(1_234_567), "1234567n");
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(memory_quantity(64 * 1024 * 1024), "64Mi");
        assert_eq!(memory_quantity(1500), "1500");
        assert_eq!(go_duration(Duration::from_secs(15)), "15s");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn summaries_without_a_cpu_rate_are_left_out() {
        let mut s = Snapshot {
            taken: Instant::now(),
            nodes: HashMap::new(),
            pods: HashMap::new(),
        };
        let reading = |cpu: Option<u64>| {
            let mut c = json!({"time": "2025-01-01T00:00:00Z", "usageCoreNanoSeconds": 5});
            if let Some(n) = cpu {
                c["usageNanoCores"] = json!(n);
            }
            json!({"cpu": c, "memory": {"time": "2025-01-01T00:00:00Z", "workingSetBytes": 4096}})
        };
        let mut node = reading(Some(7));
        node["nodeName"] = json!("n1");
        let mut a = reading(Some(1000));
        a["name"] = json!("a");
        let mut b = reading(None);
        b["name"] = json!("b");
        let summary = json!({
            "node": node,
            "pods": [
                {"podRef": {"namespace": "ns", "name": "full"}, "containers": [a.clone()]},
                {"podRef": {"namespace": "ns", "name": "partial"}, "containers": [a, b]},
                {"podRef": {"namespace": "ns", "name": "empty"}, "containers": []},
            ],
        });
        merge_summary(&mut s, "n1", &summary);
        assert_eq!(s.nodes["n1"].cpu_nano_cores, 7);
        assert_eq!(s.nodes["n1"].memory_bytes, 4096);
        assert_eq!(s.pods.len(), 1);
        let full = &s.pods[&("ns".to_string(), "full".to_string())];
        assert_eq!(full[0].name, "a");
        assert_eq!(full[0].usage.cpu_nano_cores, 1000);
    }
}
