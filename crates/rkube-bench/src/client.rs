//! A thin HTTPS client for the benchmarks: TLS with the admin client certificate from
//! the written kubeconfig, HTTP/1.1 or HTTP/2 connections made by hand with hyper so
//! the client spends as little CPU per request as possible (the machine's two cores
//! are shared with the server under test).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Which HTTP version a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

impl std::str::FromStr for Proto {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "h1" | "http1" => Ok(Proto::H1),
            "h2" | "http2" => Ok(Proto::H2),
            other => bail!("unknown protocol {other:?} (h1 or h2)"),
        }
    }
}

/// Where the server is and how to authenticate to it, read from a kubeconfig.
#[derive(Clone)]
pub struct Endpoint {
    pub address: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    tls_h2: Arc<rustls::ClientConfig>,
}

impl Endpoint {
    /// Reads the server URL, CA and client certificate from a kubeconfig written by the server.
    pub fn from_kubeconfig(path: &std::path::Path) -> anyhow::Result<Endpoint> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).context("parsing kubeconfig")?;
        let cluster = &doc["clusters"][0]["cluster"];
        let user = &doc["users"][0]["user"];
        let server = cluster["server"]
            .as_str()
            .context("kubeconfig without a server URL")?;
        let authority = server
            .strip_prefix("https://")
            .context("server URL is not https")?;
        let address: SocketAddr = authority
            .trim_end_matches('/')
            .parse()
            .context("server URL is not ip:port")?;
        if !address.ip().is_loopback() {
            bail!("refusing a non-loopback server address {address}");
        }
        let ca = decode_field(cluster, "certificate-authority-data")?;
        let cert = decode_field(user, "client-certificate-data")?;
        let key = decode_field(user, "client-key-data")?;

        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.context("CA PEM")?).context("adding CA")?;
        }
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<_, _>>()
            .context("client certificate PEM")?;
        let key = PrivateKeyDer::from_pem_slice(&key).context("client key PEM")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let base = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .context("client TLS config")?;
        let mut h1 = base.clone();
        h1.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut h2 = base;
        h2.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Endpoint {
            address,
            tls: Arc::new(h1),
            tls_h2: Arc::new(h2),
        })
    }

    /// Opens one TLS connection speaking `proto`.
    pub async fn connect(&self, proto: Proto) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(self.address)
            .await
            .with_context(|| format!("connecting {}", self.address))?;
        tcp.set_nodelay(true)?;
        let config = match proto {
            Proto::H1 => self.tls.clone(),
            Proto::H2 => self.tls_h2.clone(),
        };
        let name = ServerName::IpAddress(self.address.ip().into());
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let io = TokioIo::new(tls);
        let sender = match proto {
            Proto::H1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .context("HTTP/1.1 handshake")?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Sender::H1(sender)
            }
            Proto::H2 => {
                let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .handshake(io)
                    .await
                    .context("HTTP/2 handshake")?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Sender::H2(sender)
            }
        };
        Ok(Conn {
            sender,
            authority: self.address.to_string(),
        })
    }
}

fn decode_field(map: &serde_yaml::Value, field: &str) -> anyhow::Result<Vec<u8>> {
    let b64 = map[field]
        .as_str()
        .with_context(|| format!("kubeconfig without {field}"))?;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .with_context(|| format!("decoding {field}"))
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One connection (HTTP/1.1), or one stream handle on a shared HTTP/2 connection.
pub struct Conn {
    sender: Sender,
    authority: String,
}

/// A fully read response.
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Conn {
    /// Another handle on the same HTTP/2 connection (None for HTTP/1.1, which cannot share).
    pub fn share(&self) -> Option<Conn> {
        match &self.sender {
            Sender::H1(_) => None,
            Sender::H2(s) => Some(Conn {
                sender: Sender::H2(s.clone()),
                authority: self.authority.clone(),
            }),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let builder = match self.sender {
            // HTTP/2 wants the authority in the URI (`:authority`); HTTP/1.1 the origin form plus Host.
            Sender::H2(_) => Request::builder().uri(format!("https://{}{path}", self.authority)),
            Sender::H1(_) => Request::builder()
                .uri(path)
                .header(header::HOST, self.authority.as_str()),
        };
        let mut builder = builder
            .method(method)
            .header(header::ACCEPT, "application/json");
        if !body.is_empty() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        Ok(builder.body(Full::new(body))?)
    }

    /// Sends a request and returns the response with its body unread.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<http::Response<Incoming>> {
        let req = self.request(method, path, body)?;
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await.context("connection not ready")?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await.context("connection not ready")?;
                s.send_request(req).await?
            }
        };
        Ok(resp)
    }

    /// Sends a request and reads the whole response.
    pub async fn call(&mut self, method: Method, path: &str, body: Bytes) -> anyhow::Result<Reply> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading response body")?
            .to_bytes();
        Ok(Reply { status, body })
    }

    pub async fn post(&mut self, path: &str, body: Bytes) -> anyhow::Result<Reply> {
        self.call(Method::POST, path, body).await
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Reply> {
        self.call(Method::GET, path, Bytes::new()).await
    }
}

/// Opens `clients` handles: one connection each for HTTP/1.1; for HTTP/2,
/// `h2_connections` connections shared round-robin.
pub async fn connect_many(
    endpoint: &Endpoint,
    proto: Proto,
    clients: usize,
    h2_connections: usize,
) -> anyhow::Result<Vec<Conn>> {
    let mut out = Vec::with_capacity(clients);
    match proto {
        Proto::H1 => {
            for _ in 0..clients {
                out.push(endpoint.connect(Proto::H1).await?);
            }
        }
        Proto::H2 => {
            let mut conns = Vec::new();
            for _ in 0..h2_connections.clamp(1, clients.max(1)) {
                conns.push(endpoint.connect(Proto::H2).await?);
            }
            for i in 0..clients {
                out.push(
                    conns[i % conns.len()]
                        .share()
                        .context("invariant: HTTP/2 handles share")?,
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_parses_both_spellings() {
        for (text, want) in [
            ("h1", Proto::H1),
            ("http1", Proto::H1),
            ("h2", Proto::H2),
            ("http2", Proto::H2),
        ] {
            assert_eq!(text.parse::<Proto>().expect("parses"), want);
        }
        assert!("h3".parse::<Proto>().is_err());
    }
}
