//! The agent's own HTTPS endpoint (port 10250, as the kubelet's): `/healthz`,
//! `/containerLogs/{namespace}/{pod}/{container}` (follow, tailLines, timestamps,
//! sinceSeconds, sinceTime, previous, limitBytes), which the API server proxies
//! `pods/log` to, and `/exec`, `/attach`, `/portForward` (see `streaming`). Clients must present a certificate from the cluster CA when one is
//! configured.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cri::v1 as c;
use cri::CallExt;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::sync::CancellationToken;

use crate::kuberuntime::{CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL};
use crate::logs::LogOptions;
use crate::worker::Ctx;

pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

pub(crate) fn full(code: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(
            Full::new(text.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap_or_else(|_| {
            Response::new(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
            )
        })
}

/// TLS config: a self-signed serving certificate for the node; client certificates
/// verified against `client_ca_pem` when given.
pub fn tls_config(
    node_name: &str,
    node_ip: std::net::IpAddr,
    client_ca_pem: Option<&str>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ck = rcgen::generate_simple_self_signed(vec![node_name.to_string(), node_ip.to_string()])?;
    let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
                roots.add(c?)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(vec![cert], key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

pub async fn serve(
    ctx: Arc<Ctx>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cancel: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
            },
        };
        let acceptor = acceptor.clone();
        let ctx = ctx.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                let cancel = cancel.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(ctx, req, peer, cancel).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}

async fn handle(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
    _peer: SocketAddr,
    cancel: CancellationToken,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    let v = percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned();
                    Some((k.to_string(), v))
                })
                .collect()
        })
        .unwrap_or_default();
    if path == "/healthz" {
        return full(StatusCode::OK, "ok");
    }
    if path == "/stats/summary" || path == "/stats/summary/" || path == "/metrics/resource" {
        return match crate::stats::collect(&ctx).await {
            Ok((node, pods)) if path == "/metrics/resource" => {
                let mut r = full(StatusCode::OK, crate::stats::resource_metrics(&node, &pods));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                r
            }
            Ok((node, pods)) => {
                let body =
                    crate::stats::summary_json(&ctx.config.node_name, &node, &pods).to_string();
                let mut r = full(StatusCode::OK, body);
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                r
            }
            Err(e) => full(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to get stats: {e:#}"),
            ),
        };
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    use crate::streaming::{handle as stream, Stream};
    match parts.as_slice() {
        ["containerLogs", ns, pod, container] => {
            container_logs(ctx, ns, pod, container, &query, cancel).await
        }
        ["exec", ns, pod, container] | ["exec", ns, pod, _, container] => {
            stream(&ctx, req, ns, pod, Stream::Exec { container }).await
        }
        ["attach", ns, pod, container] | ["attach", ns, pod, _, container] => {
            stream(&ctx, req, ns, pod, Stream::Attach { container }).await
        }
        ["portForward", ns, pod] | ["portForward", ns, pod, _] => {
            stream(&ctx, req, ns, pod, Stream::PortForward).await
        }
        _ => full(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k)
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

async fn container_logs(
    ctx: Arc<Ctx>,
    ns: &str,
    pod: &str,
    container: &str,
    q: &HashMap<String, String>,
    cancel: CancellationToken,
) -> Response<Body> {
    let mut cri = ctx.cri.clone();
    let selector = HashMap::from([
        (POD_NAMESPACE_LABEL.to_string(), ns.to_string()),
        (POD_NAME_LABEL.to_string(), pod.to_string()),
        (CONTAINER_NAME_LABEL.to_string(), container.to_string()),
    ]);
    let list = match cri
        .runtime
        .list_containers(c::ListContainersRequest {
            filter: Some(c::ContainerFilter {
                label_selector: selector,
                ..Default::default()
            }),
        })
        .await
        .call("ListContainers")
    {
        Ok(l) => l.containers,
        Err(e) => return full(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut list = list;
    list.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let previous = truthy(q, "previous");
    let chosen = if previous { list.get(1) } else { list.first() };
    let Some(chosen) = chosen else {
        let msg = if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )
        };
        return full(StatusCode::BAD_REQUEST, msg);
    };
    let id = chosen.id.clone();
    let status = match cri
        .runtime
        .container_status(c::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .call("ContainerStatus")
    {
        Ok(s) => s.status.unwrap_or_default(),
        Err(e) => return full(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let log_path = status.log_path.clone();
    let since = q
        .get("sinceTime")
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .or_else(|| {
            q.get("sinceSeconds")
                .and_then(|s| s.parse::<i64>().ok())
                .and_then(|s| {
                    k8s_openapi::jiff::Timestamp::now()
                        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(s))
                        .ok()
                })
        });
    let opts = LogOptions {
        follow: truthy(q, "follow"),
        timestamps: truthy(q, "timestamps"),
        tail_lines: q.get("tailLines").and_then(|v| v.parse().ok()),
        since,
        limit_bytes: q.get("limitBytes").and_then(|v| v.parse().ok()),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
    tokio::spawn(stream_file(ctx.clone(), id, log_path, opts, tx, cancel));
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| full(StatusCode::INTERNAL_SERVER_ERROR, ""))
}

async fn stream_file(
    ctx: Arc<Ctx>,
    id: String,
    path: String,
    opts: LogOptions,
    tx: tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
    cancel: CancellationToken,
) {
    let mut sent = 0usize;
    // Cuts `buf` to what `limitBytes` still allows and counts it as sent.
    fn send(limit_bytes: Option<usize>, sent: &mut usize, mut buf: Vec<u8>) -> Vec<u8> {
        if let Some(limit) = limit_bytes {
            buf.truncate(limit.saturating_sub(*sent));
        }
        *sent += buf.len();
        buf
    }
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return,
    };
    let mut data = String::new();
    if file.read_to_string(&mut data).await.is_err() {
        return;
    }
    // Only complete lines are rendered; a trailing fragment waits for its newline.
    let cut = data.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let (complete, rest) = data.split_at(cut);
    let mut pending = rest.to_string();
    let shown = match opts.tail_lines {
        Some(n) => crate::logs::tail(complete, n),
        None => complete,
    };
    let mut out = Vec::new();
    crate::logs::render(shown, &opts, &mut out);
    let out = send(opts.limit_bytes, &mut sent, out);
    if !out.is_empty() && tx.send(Ok(Frame::data(Bytes::from(out)))).await.is_err() {
        return;
    }
    if !opts.follow {
        return;
    }
    let mut pos = match file.stream_position().await {
        Ok(p) => p,
        Err(_) => return,
    };
    let mut idle_checks = 0u32;
    loop {
        if opts.limit_bytes.is_some_and(|l| sent >= l) {
            return;
        }
        let mut chunk = String::new();
        let _ = file.seek(std::io::SeekFrom::Start(pos)).await;
        let n = file.read_to_string(&mut chunk).await.unwrap_or(0);
        if n > 0 {
            pos += n as u64;
            pending.push_str(&chunk);
            let cut = pending.rfind('\n').map(|i| i + 1).unwrap_or(0);
            let complete: String = pending.drain(..cut).collect();
            let mut out = Vec::new();
            crate::logs::render(&complete, &opts, &mut out);
            let out = send(opts.limit_bytes, &mut sent, out);
            if !out.is_empty() && tx.send(Ok(Frame::data(Bytes::from(out)))).await.is_err() {
                return;
            }
            continue;
        }
        // No new data: stop once the container has exited (checked every ~second).
        idle_checks += 1;
        if idle_checks % 5 == 0 {
            let mut cri = ctx.cri.clone();
            let exited = match cri
                .runtime
                .container_status(c::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await
                .call("ContainerStatus")
            {
                Ok(s) => s
                    .status
                    .is_none_or(|s| s.state == c::ContainerState::ContainerExited as i32),
                Err(_) => true,
            };
            if exited {
                return;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tx.closed() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
