//! `exec`, `attach` and `portForward` on the agent's port, as the kubelet serves them.
//!
//! The API server proxies `pods/exec|attach|portforward` here with the client's upgrade
//! request untouched (SPDY/3.1 with `X-Stream-Protocol-Version`, or WebSocket). The agent
//! resolves the container (or the pod's sandbox), asks the runtime for a streaming URL
//! (CRI `Exec`/`Attach`/`PortForward`), then replays the same request against
//! containerd's streaming server (loopback only) and splices the two upgraded
//! connections — the kubelet's "redirect-container-streaming=false" mode. The
//! runtime's streaming server speaks the channel protocols (v1–v4, SPDY and WebSocket)
//! itself; a client that offers only protocols it lacks (kubectl ≥ 1.30 first tries
//! WebSocket `v5.channel.k8s.io`) gets the runtime's refusal of the handshake, which is
//! the signal for kubectl to fall back to SPDY.

use std::collections::HashMap;

use bytes::Bytes;
use cri::v1 as c;
use cri::CallExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::kuberuntime::{
    CONTAINER_NAME_LABEL, MANAGED_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL,
};
use crate::server::{full, Body};
use crate::worker::Ctx;

/// Which streaming call a request is.
pub enum Stream<'a> {
    Exec { container: &'a str },
    Attach { container: &'a str },
    PortForward,
}

/// Query flags as kubectl sends them (`stdin=true`) or as upstream's API server
/// rewrites them for the kubelet (`input=1`).
fn flag(q: &[(String, String)], names: &[&str]) -> bool {
    q.iter().any(|(k, v)| {
        names.contains(&k.as_str()) && (v.is_empty() || v == "1" || v.eq_ignore_ascii_case("true"))
    })
}

fn parse_query(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| form_urlencoded_pairs(q))
        .unwrap_or_default()
}

fn form_urlencoded_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// Serves one streaming request for pod `ns/pod`.
pub async fn handle(
    ctx: &Ctx,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
    kind: Stream<'_>,
) -> Response<Body> {
    let q = parse_query(req.uri());
    let mut cri = ctx.cri.clone();
    let url = match kind {
        Stream::Exec { container } => {
            let id = match running_container(ctx, ns, pod, container).await {
                Ok(id) => id,
                Err(resp) => return resp,
            };
            let cmd: Vec<String> = q
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect();
            if cmd.is_empty() {
                return full(
                    StatusCode::BAD_REQUEST,
                    "you must specify at least one command for the container",
                );
            }
            let tty = flag(&q, &["tty"]);
            let r = c::ExecRequest {
                container_id: id,
                cmd,
                tty,
                stdin: flag(&q, &["stdin", "input"]),
                stdout: flag(&q, &["stdout", "output"]),
                // With a TTY stderr is merged into stdout.
                stderr: !tty && flag(&q, &["stderr", "error"]),
            };
            cri.runtime.exec(r).await.call("Exec").map(|r| r.url)
        }
        Stream::Attach { container } => {
            let id = match running_container(ctx, ns, pod, container).await {
                Ok(id) => id,
                Err(resp) => return resp,
            };
            let tty = flag(&q, &["tty"]);
            let r = c::AttachRequest {
                container_id: id,
                tty,
                stdin: flag(&q, &["stdin", "input"]),
                stdout: flag(&q, &["stdout", "output"]),
                stderr: !tty && flag(&q, &["stderr", "error"]),
            };
            cri.runtime.attach(r).await.call("Attach").map(|r| r.url)
        }
        Stream::PortForward => {
            let sandbox = match ready_sandbox(ctx, ns, pod).await {
                Ok(id) => id,
                Err(resp) => return resp,
            };
            let ports = q
                .iter()
                .filter(|(k, _)| k == "port")
                .filter_map(|(_, v)| v.parse().ok())
                .collect();
            cri.runtime
                .port_forward(c::PortForwardRequest {
                    pod_sandbox_id: sandbox,
                    port: ports,
                })
                .await
                .call("PortForward")
                .map(|r| r.url)
        }
    };
    let url = match url {
        Ok(u) => u,
        Err(e) => {
            let msg = e
                .status()
                .map(|s| s.message().to_string())
                .unwrap_or_else(|| e.to_string());
            return full(StatusCode::INTERNAL_SERVER_ERROR, msg);
        }
    };
    match splice(req, &url).await {
        Ok(r) => r,
        Err(e) => full(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("error proxying to the container runtime's streaming server: {e}"),
        ),
    }
}

async fn running_container(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<String, Response<Body>> {
    let mut cri = ctx.cri.clone();
    let selector = HashMap::from([
        (POD_NAMESPACE_LABEL.to_string(), ns.to_string()),
        (POD_NAME_LABEL.to_string(), pod.to_string()),
        (CONTAINER_NAME_LABEL.to_string(), container.to_string()),
        (MANAGED_LABEL.to_string(), "true".to_string()),
    ]);
    let list = cri
        .runtime
        .list_containers(c::ListContainersRequest {
            filter: Some(c::ContainerFilter {
                label_selector: selector,
                ..Default::default()
            }),
        })
        .await
        .call("ListContainers")
        .map_err(|e| full(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    list.containers
        .into_iter()
        .filter(|c| c.state == c::ContainerState::ContainerRunning as i32)
        .max_by_key(|c| c.created_at)
        .map(|c| c.id)
        .ok_or_else(|| {
            full(
                StatusCode::BAD_REQUEST,
                format!("unable to upgrade connection: container not found (\"{container}\")"),
            )
        })
}

async fn ready_sandbox(ctx: &Ctx, ns: &str, pod: &str) -> Result<String, Response<Body>> {
    let mut cri = ctx.cri.clone();
    let selector = HashMap::from([
        (POD_NAMESPACE_LABEL.to_string(), ns.to_string()),
        (POD_NAME_LABEL.to_string(), pod.to_string()),
        (MANAGED_LABEL.to_string(), "true".to_string()),
    ]);
    let list = cri
        .runtime
        .list_pod_sandbox(c::ListPodSandboxRequest {
            filter: Some(c::PodSandboxFilter {
                label_selector: selector,
                ..Default::default()
            }),
        })
        .await
        .call("ListPodSandbox")
        .map_err(|e| full(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    list.items
        .into_iter()
        .filter(|s| s.state == c::PodSandboxState::SandboxReady as i32)
        .max_by_key(|s| s.created_at)
        .map(|s| s.id)
        .ok_or_else(|| {
            full(
                StatusCode::BAD_REQUEST,
                format!("unable to upgrade connection: pod {pod} has no running sandbox"),
            )
        })
}

/// Replays `req` against the runtime's streaming `url` and joins the two connections
/// once both sides switched protocols; any other answer is passed back as it is.
async fn splice(req: Request<Incoming>, url: &str) -> anyhow::Result<Response<Body>> {
    let target: http::Uri = url.parse()?;
    let authority = target
        .authority()
        .ok_or_else(|| anyhow::anyhow!("streaming URL {url} has no host"))?
        .to_string();
    let tcp = tokio::net::TcpStream::connect(&authority).await?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "streaming server connection ended");
        }
    });
    let (mut parts, _body) = req.into_parts();
    let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let path = target.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut out = Request::builder().method(parts.method.clone()).uri(path);
    for (k, v) in &parts.headers {
        if k != http::header::HOST
            && k != http::header::AUTHORIZATION
            && k != http::header::CONTENT_LENGTH
        {
            out = out.header(k, v);
        }
    }
    out = out.header(http::header::HOST, authority.as_str());
    let mut response = sender
        .send_request(out.body(Empty::<Bytes>::new())?)
        .await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        tracing::debug!(status = %parts.status, body = %String::from_utf8_lossy(&body), "streaming server refused the upgrade");
        let mut r = full(parts.status, body);
        for (k, v) in &parts.headers {
            if k != http::header::CONTENT_LENGTH && k != http::header::TRANSFER_ENCODING {
                r.headers_mut().insert(k.clone(), v.clone());
            }
        }
        return Ok(r);
    }
    let Some(client_upgrade) = client_upgrade else {
        anyhow::bail!("the streaming server switched protocols on a request that did not ask to");
    };
    let runtime_upgrade = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        match tokio::try_join!(client_upgrade, runtime_upgrade) {
            Ok((client, runtime)) => {
                let (mut client, mut runtime) = (TokioIo::new(client), TokioIo::new(runtime));
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut runtime).await {
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
    Ok(switched.body(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_in_both_spellings() {
        let q = form_urlencoded_pairs(
            "command=sh&command=-c&command=echo+a%20b&stdin=true&output=1&tty=false",
        );
        assert!(flag(&q, &["stdin", "input"]));
        assert!(flag(&q, &["stdout", "output"]));
        assert!(!flag(&q, &["tty"]));
        assert!(!flag(&q, &["stderr", "error"]));
        let cmd: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(cmd, ["sh", "-c", "echo a b"]);
    }
}
