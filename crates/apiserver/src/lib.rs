//! The Kubernetes API over HTTPS. The only crate that speaks HTTP: routing, discovery,
//! OpenAPI, the verbs, watch streaming, patch/apply, authentication, and the single
//! mapping of errors to `metav1.Status` ([`status::ApiError`]).

pub mod authn;
pub mod body;
pub mod discovery;
pub mod handlers;
pub mod health;
pub mod metrics;
pub mod metrics_server;
pub mod negotiate;
pub mod openapi_docs;
pub mod request;
pub mod status;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pki::UserInfo;
use registry::Registry;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::body::{full, Body};
use crate::request::Query;
use crate::status::ApiError;

/// Largest request body accepted (upstream: 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Version reported by `/version` (the Kubernetes version whose API we serve).
pub const KUBERNETES_VERSION: &str = "v1.33.0+rkube";

pub struct Config {
    pub registry: Arc<Registry>,
    pub tls: Arc<rustls::ServerConfig>,
    pub authenticator: authn::Authenticator,
    /// `host:port` advertised in `/api`.
    pub advertise_address: String,
    /// Client side towards node agents (logs, exec, attach, port-forward, node proxy).
    pub kubelet_client: Option<Arc<rustls::ClientConfig>>,
    /// How long resource metrics readings are reused (metrics-server's `--metric-resolution`).
    pub metric_resolution: std::time::Duration,
}

/// Shared state of a running API server.
pub struct ApiServer {
    pub registry: Arc<Registry>,
    pub authenticator: authn::Authenticator,
    pub advertise_address: String,
    pub kubelet_client: Option<Arc<rustls::ClientConfig>>,
    pub metrics: metrics::Metrics,
    /// The `metrics.k8s.io` pipeline (node agents' usage for `kubectl top` and the HPA).
    pub metrics_provider: metrics_server::Provider,
    pub openapi: openapi_docs::Cache,
    pub health: health::Health,
    /// Which control-plane components run in this process (for `componentstatuses`).
    pub components: parking_lot::RwLock<Components>,
    tls: Arc<rustls::ServerConfig>,
}

#[derive(Clone, Debug, Default)]
pub struct Components {
    pub controller_manager: bool,
    pub scheduler: bool,
}

impl ApiServer {
    pub fn new(config: Config) -> Arc<ApiServer> {
        Arc::new(ApiServer {
            registry: config.registry,
            authenticator: config.authenticator,
            advertise_address: config.advertise_address,
            metrics_provider: metrics_server::Provider::new(
                config.metric_resolution,
                config.kubelet_client.clone(),
            ),
            kubelet_client: config.kubelet_client,
            metrics: metrics::Metrics::new(),
            openapi: openapi_docs::Cache::default(),
            health: health::Health::default(),
            components: parking_lot::RwLock::new(Components::default()),
            tls: config.tls,
        })
    }

    /// Accepts connections until `cancel` fires; each connection is served on its own task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, cancel: CancellationToken) {
        let acceptor = TlsAcceptor::from(self.tls.clone());
        loop {
            let (tcp, peer) = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let server = self.clone();
            let acceptor = acceptor.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                };
                let cert_user = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|c| pki::user_from_client_cert(c.as_ref()).ok());
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    let cert_user = cert_user.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            server.handle(req, cert_user.as_ref(), peer).await,
                        )
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection ended with error");
                        }
                    }
                    _ = cancel.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
                    }
                }
            });
        }
    }

    /// What discovery lists: the registry's resources and the built-in metrics API.
    pub fn discovery_resources(&self) -> Vec<Arc<apis::ResourceInfo>> {
        let mut resources = self.registry.resources();
        resources.extend(metrics_server::resources());
        resources
    }

    /// Serves one request.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        cert_user: Option<&UserInfo>,
        _peer: SocketAddr,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = Query::parse(req.uri().query());
        let info = request::parse(&method, &path, &query);
        let span = tracing::debug_span!("http.request", verb = %info.verb, resource = %info.resource, path = %path);
        let _enter = span.enter();

        let public = matches!(
            path.as_str(),
            "/healthz" | "/livez" | "/readyz" | "/version"
        ) || path.starts_with("/healthz/")
            || path.starts_with("/livez/")
            || path.starts_with("/readyz/");
        let credential = self.authenticator.authenticate(req.headers(), cert_user);
        let user = authn::resolve(&self.registry, credential).await;
        let response = if user.is_none() && !public {
            // Consume the body so the HTTP/2 stream is not reset under the 401.
            let _ = handlers::read_body(req.into_body()).await;
            ApiError::Unauthorized.into_response()
        } else {
            let user = user.unwrap_or_else(|| UserInfo {
                name: "system:anonymous".to_string(),
                uid: String::new(),
                groups: vec!["system:unauthenticated".to_string()],
            });
            match self.route(req, &path, query, &info, user).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            }
        };
        self.metrics
            .observe(&info, response.status().as_u16(), started.elapsed());
        response
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        path: &str,
        query: Query,
        info: &request::RequestInfo,
        user: UserInfo,
    ) -> Result<Response<Body>, ApiError> {
        if info.is_resource {
            return handlers::handle(self, req, info, query, user).await;
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(ApiError::MethodNotSupported(format!(
                "the server does not allow this method on the requested resource"
            )));
        }
        let trimmed = path.trim_end_matches('/');
        match trimmed {
            "/version" => Ok(json_response(StatusCode::OK, &health::version_info())),
            "/healthz" | "/livez" | "/readyz" => Ok(self.health.respond(trimmed, &query)),
            p if p.starts_with("/healthz/")
                || p.starts_with("/livez/")
                || p.starts_with("/readyz/") =>
            {
                Ok(self.health.respond(p, &query))
            }
            "/metrics" => Ok(self.metrics.respond()),
            "" | "/" => Ok(json_response(
                StatusCode::OK,
                &root_paths(&self.discovery_resources()),
            )),
            "/api" => {
                if let Some(v) = negotiate::aggregated_discovery(req.headers()) {
                    return Ok(aggregated_response(
                        &discovery::aggregated(&self.discovery_resources(), true, v),
                        v,
                    ));
                }
                Ok(json_response(
                    StatusCode::OK,
                    &discovery::api_versions(&self.advertise_address),
                ))
            }
            "/apis" => {
                if let Some(v) = negotiate::aggregated_discovery(req.headers()) {
                    return Ok(aggregated_response(
                        &discovery::aggregated(&self.discovery_resources(), false, v),
                        v,
                    ));
                }
                Ok(json_response(
                    StatusCode::OK,
                    &discovery::api_group_list(&self.discovery_resources()),
                ))
            }
            p if p.starts_with("/openapi/") => {
                self.openapi
                    .respond(&self.registry, p, &query, req.headers())
            }
            p => {
                let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
                let resources = self.discovery_resources();
                let doc = match parts.as_slice() {
                    ["api", v] => discovery::api_resource_list(&resources, "", v),
                    ["apis", g] => discovery::api_group_doc(&resources, g),
                    ["apis", g, v] => discovery::api_resource_list(&resources, g, v),
                    _ => None,
                };
                doc.map(|d| json_response(StatusCode::OK, &d))
                    .ok_or(ApiError::NotFoundPath)
            }
        }
    }
}

fn root_paths(resources: &[Arc<apis::ResourceInfo>]) -> serde_json::Value {
    let mut paths = vec![
        "/api".to_string(),
        "/api/v1".to_string(),
        "/apis".to_string(),
    ];
    for (g, vs) in discovery::groups(resources) {
        if g.is_empty() {
            continue;
        }
        paths.push(format!("/apis/{g}"));
        for v in vs {
            paths.push(format!("/apis/{g}/{v}"));
        }
    }
    paths.extend(
        [
            "/healthz",
            "/livez",
            "/metrics",
            "/openapi/v2",
            "/openapi/v3",
            "/readyz",
            "/version",
        ]
        .map(String::from),
    );
    serde_json::json!({"paths": paths})
}

pub fn json_response(code: StatusCode, v: &serde_json::Value) -> Response<Body> {
    bytes_response(
        code,
        "application/json",
        Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
    )
}

pub fn bytes_response(code: StatusCode, content_type: &str, body: Bytes) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

fn aggregated_response(v: &serde_json::Value, version: &str) -> Response<Body> {
    let ct = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    bytes_response(
        StatusCode::OK,
        &ct,
        Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
    )
}
