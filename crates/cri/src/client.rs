//! Connecting to a CRI runtime over its unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::events::events_client::EventsClient;
use crate::v1::image_service_client::ImageServiceClient;
use crate::v1::runtime_service_client::RuntimeServiceClient;

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("unsupported container runtime endpoint {0:?} (want unix:///path/to/socket)")]
    Endpoint(String),
    #[error("connecting to the container runtime at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("container runtime call {call} failed: {status}")]
    Call {
        call: &'static str,
        #[source]
        status: tonic::Status,
    },
}

impl CriError {
    /// The gRPC status of a failed call, if this is one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            CriError::Call { status, .. } => Some(status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status()
            .map(|s| s.code() == tonic::Code::NotFound)
            .unwrap_or(false)
    }

    pub fn is_unimplemented(&self) -> bool {
        self.status()
            .map(|s| s.code() == tonic::Code::Unimplemented)
            .unwrap_or(false)
    }
}

/// The socket path of a `unix://` endpoint (a bare absolute path is accepted too).
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CriError> {
    if let Some(p) = endpoint.strip_prefix("unix://") {
        if p.starts_with('/') {
            return Ok(PathBuf::from(p));
        }
    } else if endpoint.starts_with('/') {
        return Ok(PathBuf::from(endpoint));
    }
    Err(CriError::Endpoint(endpoint.to_string()))
}

/// Clients of the runtime and image services sharing one HTTP/2 connection.
#[derive(Clone, Debug)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
    /// containerd's own event service on the same socket (not part of CRI; absent on
    /// other runtimes, where calls answer Unimplemented).
    pub events: EventsClient<Channel>,
    pub socket: PathBuf,
}

/// Connects to the runtime's unix socket. The channel reconnects by itself if the
/// runtime restarts.
pub async fn connect(socket: &Path) -> Result<CriClient, CriError> {
    let path = socket.to_path_buf();
    // The URI is required by the API but unused: the connector always dials the socket.
    let endpoint = Endpoint::from_static("http://cri.local")
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30));
    let dial = path.clone();
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let dial = dial.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(dial).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|source| CriError::Connect {
            path: path.clone(),
            source,
        })?;
    // Pod sandbox status and container lists can be large on busy nodes.
    let max = 16 * 1024 * 1024;
    Ok(CriClient {
        runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(max),
        images: ImageServiceClient::new(channel.clone()).max_decoding_message_size(max),
        events: EventsClient::new(channel),
        socket: path,
    })
}

/// Wraps a gRPC result into [`CriError::Call`] with the call's name.
pub trait CallExt<T> {
    fn call(self, name: &'static str) -> Result<T, CriError>;
}

impl<T> CallExt<T> for Result<tonic::Response<T>, tonic::Status> {
    fn call(self, name: &'static str) -> Result<T, CriError> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| CriError::Call { call: name, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///run/c.sock").ok(),
            Some(PathBuf::from("/run/c.sock"))
        );
        assert_eq!(
            socket_path("/run/c.sock").ok(),
            Some(PathBuf::from("/run/c.sock"))
        );
        assert!(socket_path("tcp://1.2.3.4:1").is_err());
        assert!(socket_path("unix://relative").is_err());
    }
}
