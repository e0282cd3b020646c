//! Subresources the node agent answers, proxied to its HTTPS port (10250) as
//! kube-apiserver does: `pods/log` (a streamed GET), `pods/exec`, `pods/attach` and
//! `pods/portforward` (HTTP upgrades to SPDY or WebSocket, spliced both ways once the
//! agent answers 101), and `nodes/proxy` (any path on the agent).
//!
//! The API server resolves the pod's node and container, then talks to the agent with its
//! own client certificate. The streaming protocols themselves are the agent's business;
//! this side only copies bytes.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::body::{empty, Body};
use crate::request::RequestInfo;
use crate::status::ApiError;
use crate::ApiServer;

/// Default kubelet port when a Node does not report `daemonEndpoints`.
const KUBELET_PORT: u16 = 10250;

/// Whether `info` addresses a subresource served by the node agent.
pub fn is_streaming(info: &RequestInfo) -> bool {
    info.group.is_empty()
        && match info.resource.as_str() {
            "pods" => matches!(
                info.subresource.as_str(),
                "log" | "exec" | "attach" | "portforward"
            ),
            "nodes" => info.subresource == "proxy",
            _ => false,
        }
}

pub async fn handle(
    server: &ApiServer,
    req: Request<Incoming>,
    info: &RequestInfo,
) -> Result<Response<Body>, ApiError> {
    let (node, path) = if info.resource == "nodes" {
        (info.name.clone(), format!("/{}", info.rest.join("/")))
    } else {
        pod_target(server, req.uri().query(), info).await?
    };
    let address = kubelet_address(server, &node).await?;
    let config = server.kubelet_client.clone().ok_or_else(|| {
        ApiError::internal("the API server has no client credentials for node agents")
    })?;
    proxy(req, &path, info, address, config).await
}

/// The node and agent path for a pod subresource.
async fn pod_target(
    server: &ApiServer,
    query: Option<&str>,
    info: &RequestInfo,
) -> Result<(String, String), ApiError> {
    let pods = server
        .registry
        .lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods not served"))?;
    let pod = pods.store.get(&info.namespace, &info.name).await?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {} does not have a host assigned",
            info.name
        )));
    }
    let (ns, name) = (&info.namespace, &info.name);
    let path = if info.subresource == "portforward" {
        format!("/portForward/{ns}/{name}")
    } else {
        let container = container_of(&pod, query)?;
        let prefix = match info.subresource.as_str() {
            "log" => "containerLogs",
            other => other,
        };
        format!("/{prefix}/{ns}/{name}/{container}")
    };
    Ok((node.to_string(), path))
}

/// The container a request names, or the pod's only (or default) one; upstream's
/// errors otherwise.
fn container_of(pod: &Value, query: Option<&str>) -> Result<String, ApiError> {
    let requested = query
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "container")
                .map(|(_, v)| v.into_owned())
        })
        .filter(|c| !c.is_empty());
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let containers = names("containers");
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match requested {
        Some(c) => {
            let known = containers.contains(&c)
                || names("initContainers").contains(&c)
                || names("ephemeralContainers").contains(&c);
            if !known {
                return Err(ApiError::BadRequest(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            Ok(c)
        }
        None => {
            let default = pod
                .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
                .and_then(Value::as_str)
                .filter(|c| containers.iter().any(|x| x == c));
            match (default, containers.as_slice()) {
                (Some(c), _) => Ok(c.to_string()),
                (None, [only]) => Ok(only.clone()),
                _ => Err(ApiError::BadRequest(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                ))),
            }
        }
    }
}

/// `host:port` of a node's agent: its InternalIP (else any address) and kubelet port.
async fn kubelet_address(server: &ApiServer, node: &str) -> Result<String, ApiError> {
    let nodes = server
        .registry
        .lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes not served"))?;
    let obj = nodes.store.get("", node).await?;
    kubelet_address_of(node, &obj)
}

/// [`kubelet_address`] of a Node object already at hand.
pub(crate) fn kubelet_address_of(node: &str, obj: &Value) -> Result<String, ApiError> {
    let addresses: Vec<(String, String)> = obj
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some((
                a.get("type")?.as_str()?.to_string(),
                a.get("address")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let ip = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|t| {
            addresses
                .iter()
                .find(|(kind, _)| kind == t)
                .map(|(_, a)| a.clone())
        })
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "node {node} does not report an address for its agent"
            ))
        })?;
    let port = obj
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(KUBELET_PORT);
    Ok(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

async fn proxy(
    req: Request<Incoming>,
    path: &str,
    info: &RequestInfo,
    address: String,
    config: Arc<rustls::ClientConfig>,
) -> Result<Response<Body>, ApiError> {
    let unavailable =
        |e: &dyn std::fmt::Display| ApiError::internal(format!("error dialing backend: {e}"));
    let tcp = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| unavailable(&e))?;
    let _ = tcp.set_nodelay(true);
    let host = address
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']'))
        .unwrap_or(&address);
    let server_name =
        rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| unavailable(&e))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| unavailable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unavailable(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "agent connection ended");
        }
    });

    let (mut parts, body) = req.into_parts();
    let upgrade = parts.headers.get(http::header::UPGRADE).is_some();
    let client_upgrade = if upgrade {
        parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
    } else {
        None
    };
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri: http::Uri = format!("{path}{query}")
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("invalid proxy path: {e}")))?;
    let mut out = Request::builder().method(parts.method.clone()).uri(uri);
    for (k, v) in &parts.headers {
        // The agent authenticates the API server, not the end user's credentials.
        if k != http::header::AUTHORIZATION && k != http::header::HOST {
            out = out.header(k, v);
        }
    }
    out = out.header(http::header::HOST, address.as_str());
    let out = out.body(body).map_err(ApiError::internal)?;
    let mut response = sender
        .send_request(out)
        .await
        .map_err(|e| unavailable(&e))?;
    tracing::debug!(subresource = %info.subresource, status = %response.status(), "proxied to the node agent");

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::internal(
                "the agent switched protocols on a request that did not ask to",
            ));
        };
        let agent_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, agent_upgrade) {
                Ok((client, agent)) => {
                    let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
                    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut agent).await {
                        tracing::debug!(error = %e, "stream ended");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
        let mut switched = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in response.headers() {
            switched = switched.header(k, v);
        }
        return switched.body(empty()).map_err(ApiError::internal);
    }

    let (parts, body) = response.into_parts();
    let mut proxied = Response::from_parts(parts, body.map_err(std::io::Error::other).boxed());
    // Plain-text log streams must not be buffered by intermediaries.
    if info.subresource == "log" {
        proxied.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
    }
    Ok(proxied)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(containers: &[&str], default: Option<&str>) -> Value {
        let mut pod = json!({
            "metadata": {"name": "web"},
            "spec": {"containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>(),
                     "initContainers": [{"name": "setup"}]},
        });
        if let Some(d) = default {
            pod["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/default-container": d});
        }
        pod
    }

    fn message(r: Result<String, ApiError>) -> String {
        match r {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected BadRequest, got {other:?}"),
        }
    }

    #[test]
    fn containers_resolve_as_upstream() {
        assert_eq!(
            container_of(&pod(&["a"], None), None).ok().as_deref(),
            Some("a")
        );
        assert_eq!(
            container_of(&pod(&["a", "b"], None), Some("container=b&follow=true"))
                .ok()
                .as_deref(),
            Some("b")
        );
        assert_eq!(
            container_of(&pod(&["a", "b"], None), Some("container=setup"))
                .ok()
                .as_deref(),
            Some("setup")
        );
        assert_eq!(
            container_of(&pod(&["a", "b"], Some("b")), None)
                .ok()
                .as_deref(),
            Some("b")
        );
        assert_eq!(
            message(container_of(&pod(&["a", "b"], None), None)),
            "a container name must be specified for pod web, choose one of: [a b]"
        );
        assert_eq!(
            message(container_of(&pod(&["a"], None), Some("container=x"))),
            "container x is not valid for pod web"
        );
    }
}
