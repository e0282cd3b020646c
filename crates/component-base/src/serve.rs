//! A component's own HTTPS endpoint: `/metrics`, `/healthz`, `/livez`, `/readyz`.
//!
//! Like kube-controller-manager and kube-scheduler started without certificates, it
//! serves a self-signed certificate generated at start.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("generating the self-signed serving certificate: {0}")]
    Certificate(String),
}

/// Starts serving on `addr` until `cancel` fires; returns the bound address (`addr` may
/// have port 0).
pub async fn serve(
    addr: SocketAddr,
    component: &str,
    cancel: CancellationToken,
) -> Result<SocketAddr, ServeError> {
    let tls = self_signed(component)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    tracing::info!(address = %local, component, "serving /metrics and /healthz");
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = cancel.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(respond(req.uri().path()))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(local)
}

fn respond(path: &str) -> Response<Full<Bytes>> {
    let (code, content_type, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            crate::metrics::encode(),
        ),
        "/healthz" | "/livez" | "/readyz" => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
}

fn self_signed(component: &str) -> Result<rustls::ServerConfig, ServeError> {
    let err = |e: &dyn std::fmt::Display| ServeError::Certificate(e.to_string());
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        format!("{component}.local"),
    ];
    let cert = rcgen::generate_simple_self_signed(names).map_err(|e| err(&e))?;
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())
        .map_err(|e| err(&e))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .map_err(|e| err(&e))
}
