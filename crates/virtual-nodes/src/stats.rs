//! A kubelet endpoint for virtual nodes (on when [`VirtualNodeConfig::kubelet_port`] is
//! set): `/stats/summary` in the kubelet's `stats/v1alpha1` shape, so the API server's
//! metrics pipeline (`kubectl top`, the HorizontalPodAutoscaler) reaches virtual nodes
//! the way it reaches real agents — the Node's InternalIP and `daemonEndpoints` port,
//! over TLS.
//!
//! Usage is deterministic, set per pod: every container of a Running pod uses
//! [`CPU_USAGE_ANNOTATION`] cores (default [`DEFAULT_CPU_USAGE`]) and
//! [`MEMORY_USAGE_ANNOTATION`] bytes of working set (default [`DEFAULT_MEMORY_USAGE`]);
//! changing the annotation changes the next reading. A node uses what its pods use.
//!
//! Each node listens on its own InternalIP, so those come from a loopback range (the
//! config refuses anything else). Callers are not authenticated: the figures are made up.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::VirtualNodeConfig;
use crate::{NodeState, Shared};

/// CPU each container of the pod uses (a quantity: `250m`, `1`).
pub const CPU_USAGE_ANNOTATION: &str = "virtual-kubelet.rkube.io/cpu-usage";
/// Working set of each container of the pod (a quantity: `64Mi`).
pub const MEMORY_USAGE_ANNOTATION: &str = "virtual-kubelet.rkube.io/memory-usage";
pub const DEFAULT_CPU_USAGE: &str = "1m";
pub const DEFAULT_MEMORY_USAGE: &str = "4Mi";

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("listening on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("serving certificate: {0}")]
    Certificate(String),
}

/// A Running pod as its node's stats report it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub started: Timestamp,
    pub containers: Vec<String>,
    /// Per container.
    pub cpu_nano_cores: u64,
    pub memory_bytes: u64,
}

fn quantity(pod: &Pod, key: &str, default: &str, scale: f64) -> u64 {
    let parse = |s: &str| {
        apis::resource::Quantity::parse(s)
            .ok()
            .map(|q| q.as_f64() * scale)
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| parse(v.trim()))
        .or_else(|| parse(default))
        .unwrap_or(0.0) as u64
}

/// What a pod reports, if it is Running and not being deleted.
pub fn running_pod(pod: &Pod) -> Option<RunningPod> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let containers = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    Some(RunningPod {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        started: status
            .start_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(Timestamp::now),
        containers,
        cpu_nano_cores: quantity(pod, CPU_USAGE_ANNOTATION, DEFAULT_CPU_USAGE, 1e9),
        memory_bytes: quantity(pod, MEMORY_USAGE_ANNOTATION, DEFAULT_MEMORY_USAGE, 1.0),
    })
}

/// Records (or drops) a pod of `node` seen by the provider's watch.
pub(crate) fn observe(config: &VirtualNodeConfig, node: &NodeState, pod: &Pod) {
    if config.kubelet_port.is_none() {
        return;
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut running = node.running_pods.lock();
    match running_pod(pod) {
        Some(p) => {
            running.insert(uid, p);
        }
        None => {
            running.remove(&uid);
        }
    }
}

/// The Summary of a node running `pods` at `now`.
pub fn summary(node_name: &str, pods: &[RunningPod], now: Timestamp) -> Value {
    let time = now.to_string();
    let reading = |nano_cores: u64, cumulative: u64, bytes: u64| {
        json!({
            "cpu": {"time": time, "usageNanoCores": nano_cores, "usageCoreNanoSeconds": cumulative},
            "memory": {"time": time, "workingSetBytes": bytes, "usageBytes": bytes, "rssBytes": bytes},
        })
    };
    let (mut node_cpu, mut node_cumulative, mut node_memory) = (0u64, 0u64, 0u64);
    let mut items = Vec::new();
    for p in pods {
        let seconds = now.duration_since(p.started).as_secs_f64().max(0.0);
        let cumulative = (p.cpu_nano_cores as f64 * seconds) as u64;
        let n = p.containers.len() as u64;
        node_cpu += p.cpu_nano_cores * n;
        node_cumulative += cumulative * n;
        node_memory += p.memory_bytes * n;
        let containers: Vec<Value> = p
            .containers
            .iter()
            .map(|c| {
                let mut v = reading(p.cpu_nano_cores, cumulative, p.memory_bytes);
                v["name"] = json!(c);
                v["startTime"] = json!(p.started.to_string());
                v
            })
            .collect();
        let mut item = reading(p.cpu_nano_cores * n, cumulative * n, p.memory_bytes * n);
        item["podRef"] = json!({"name": p.name, "namespace": p.namespace, "uid": p.uid});
        item["startTime"] = json!(p.started.to_string());
        item["containers"] = json!(containers);
        items.push(item);
    }
    let mut node = reading(node_cpu, node_cumulative, node_memory);
    node["nodeName"] = json!(node_name);
    json!({"node": node, "pods": items})
}

/// Binds `node`'s kubelet listener on its InternalIP; returns the port.
pub(crate) async fn listen(
    config: &VirtualNodeConfig,
    node: &NodeState,
) -> Result<Option<u16>, StatsError> {
    let (Some(port), Some(ip)) = (config.kubelet_port, node.internal_ip.get()) else {
        return Ok(None);
    };
    if let Some(bound) = node.kubelet_port.get() {
        return Ok(Some(*bound));
    }
    let address = format!("{ip}:{port}");
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|source| StatsError::Listen {
            address: address.clone(),
            source,
        })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StatsError::Listen { address, source })?
        .port();
    *node.kubelet_listener.lock() = Some(listener);
    let _ = node.kubelet_port.set(bound);
    Ok(Some(bound))
}

/// Serves every bound node listener until `cancel`.
pub(crate) async fn serve(shared: Arc<Shared>, cancel: CancellationToken) {
    if shared.config.kubelet_port.is_none() {
        return;
    }
    let tls = match tls_config() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "virtual kubelet endpoints not served");
            return;
        }
    };
    let tasks = TaskTracker::new();
    for index in 0..shared.nodes.len() {
        let Some(listener) = shared.nodes[index].kubelet_listener.lock().take() else {
            continue;
        };
        tasks.spawn(accept_loop(
            shared.clone(),
            index,
            listener,
            tls.clone(),
            cancel.clone(),
        ));
    }
    tasks.close();
    tasks.wait().await;
}

fn tls_config() -> Result<Arc<rustls::ServerConfig>, StatsError> {
    let bad = |e: &dyn std::fmt::Display| StatsError::Certificate(e.to_string());
    let ck = rcgen::generate_simple_self_signed(vec!["rkube-virtual-kubelet".to_string()])
        .map_err(|e| bad(&e))?;
    let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der())
        .map_err(|e| bad(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| bad(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn accept_loop(
    shared: Arc<Shared>,
    index: usize,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cancel: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let connections = TaskTracker::new();
    loop {
        let tcp = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let (acceptor, shared, cancel) = (acceptor.clone(), shared.clone(), cancel.clone());
        connections.spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&shared, index, &req)) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                _ = conn => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
    connections.close();
    connections.wait().await;
}

fn handle(shared: &Shared, index: usize, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let node = &shared.nodes[index];
    let (code, body) = match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/stats/summary" | "/stats/summary/") => {
            let mut pods: Vec<RunningPod> = node.running_pods.lock().values().cloned().collect();
            pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            let body = summary(&node.name, &pods, Timestamp::now()).to_string();
            (StatusCode::OK, body)
        }
        (&http::Method::GET, "/healthz") => (StatusCode::OK, "ok".to_string()),
        _ => (StatusCode::NOT_FOUND, "404 page not found\n".to_string()),
    };
    let content_type = if code == StatusCode::OK && body.starts_with('{') {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The running pods of every node, for a relist: drops pods no longer seen.
pub(crate) fn retain(nodes: &[NodeState], seen: &HashSet<String>) {
    for n in nodes {
        n.running_pods.lock().retain(|uid, _| seen.contains(uid));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn pod(annotations: &[(&str, &str)], phase: &str) -> Pod {
        let started: Timestamp = "2025-01-01T00:00:00Z".parse().expect("ts");
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![
                    Container {
                        name: "a".into(),
                        ..Default::default()
                    },
                    Container {
                        name: "b".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                start_time: Some(Time(started)),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn usage_comes_from_annotations_with_small_defaults() {
        let p = running_pod(&pod(&[], "Running")).expect("running");
        assert_eq!(p.cpu_nano_cores, 1_000_000);
        assert_eq!(p.memory_bytes, 4 * 1024 * 1024);
        let p = running_pod(&pod(
            &[
                (CPU_USAGE_ANNOTATION, "250m"),
                (MEMORY_USAGE_ANNOTATION, "64Mi"),
            ],
            "Running",
        ))
        .expect("running");
        assert_eq!(p.cpu_nano_cores, 250_000_000);
        assert_eq!(p.memory_bytes, 64 * 1024 * 1024);
        // A malformed value falls back to the default.
        let p = running_pod(&pod(&[(CPU_USAGE_ANNOTATION, "lots")], "Running")).expect("running");
        assert_eq!(p.cpu_nano_cores, 1_000_000);
        assert_eq!(running_pod(&pod(&[], "Pending")), None);
    }

    #[test]
    fn summary_sums_containers_into_pods_and_the_node() {
        let p = running_pod(&pod(&[(CPU_USAGE_ANNOTATION, "100m")], "Running")).expect("p");
        let now: Timestamp = "2025-01-01T00:00:10Z".parse().expect("ts");
        let s = summary("vn-0", &[p], now);
        assert_eq!(s["node"]["nodeName"], "vn-0");
        assert_eq!(s["node"]["cpu"]["usageNanoCores"], 200_000_000);
        let pod = &s["pods"][0];
        assert_eq!(pod["podRef"]["name"], "web");
        assert_eq!(pod["containers"][1]["name"], "b");
        assert_eq!(pod["containers"][0]["cpu"]["usageNanoCores"], 100_000_000);
        // 0.1 core for 10 s.
        assert_eq!(
            pod["containers"][0]["cpu"]["usageCoreNanoSeconds"],
            1_000_000_000u64
        );
        assert_eq!(pod["memory"]["workingSetBytes"], 8 * 1024 * 1024);
        assert_eq!(pod["cpu"]["time"], "2025-01-01T00:00:10Z");
    }
}
