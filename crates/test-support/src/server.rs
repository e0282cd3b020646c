//! An in-process `rkube server` for integration tests: 127.0.0.1 on a free port, data
//! in a temp dir, and a ready `kube::Client`. `restart` keeps the data dir and port, so
//! resourceVersions and clients' kubeconfigs stay valid across it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use server::{RunningServer, ServerConfig};

/// How long a started server gets to answer its first request.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// How long a restart keeps retrying to re-bind its port (the old listener is closed
/// by then, but another process could briefly hold the port).
const REBIND_DEADLINE: Duration = Duration::from_secs(5);

/// A running server plus a client for it. Stopped on [`TestServer::shutdown`]; on drop
/// it is only cancelled (drop cannot await), which is enough at the end of a test.
pub struct TestServer {
    client: kube::Client,
    config: ServerConfig,
    running: Option<RunningServer>,
    // Declared last: the server's files must outlive the server.
    dir: tempfile::TempDir,
}

impl TestServer {
    /// A server over the embedded SQLite store.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_config(None, |_| {}).await
    }

    /// A server without its in-process controller manager, for tests that run
    /// `controllers::run_all_with` themselves (short periods, a test clock).
    pub async fn start_without_controllers() -> anyhow::Result<Self> {
        Self::start_config(None, |c| c.disable_controller_manager = true).await
    }

    /// A server over etcd at `endpoint` (e.g. `EtcdServer::endpoint`).
    pub async fn start_with_etcd(endpoint: &str) -> anyhow::Result<Self> {
        Self::start_config(Some(endpoint.to_string()), |_| {}).await
    }

    /// A server over SQLite with `configure` applied to its config first (e.g. a short
    /// `metric_resolution`, or `disable_controller_manager`).
    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<Self> {
        Self::start_config(None, configure).await
    }

    async fn start_config(
        datastore_endpoint: Option<String>,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rkube-test-server-")
            .tempdir()
            .context("creating server temp dir")?;
        let mut config = ServerConfig::with_data_dir(dir.path().join("data"));
        config.bind_address = IpAddr::from([127, 0, 0, 1]);
        config.https_listen_port = 0;
        config.write_kubeconfig = dir.path().join("kubeconfig.yaml");
        config.datastore_endpoint = datastore_endpoint;
        configure(&mut config);
        let running = server::start(config.clone())
            .await
            .context("starting server")?;
        // Restarts come back on the same port, so the kubeconfig stays valid.
        config.https_listen_port = running.address.port();
        let client = ready_client(&running.kubeconfig).await?;
        Ok(TestServer {
            client,
            config,
            running: Some(running),
            dir,
        })
    }

    /// A client of the server (cheap to clone; rebuilt by [`TestServer::restart`]).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Where the server listens.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::new(self.config.bind_address, self.config.https_listen_port)
    }

    /// The admin kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> &Path {
        &self.config.write_kubeconfig
    }

    /// The server's data dir (store, TLS material).
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The temp dir holding everything; deleted on drop.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The running server, e.g. for its registry. `None` only inside a failed restart.
    pub fn running(&self) -> Option<&RunningServer> {
        self.running.as_ref()
    }

    /// Stops the server and starts it again on the same data dir and port, then
    /// replaces the client (its pooled connections died with the old server).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        let deadline = Instant::now() + REBIND_DEADLINE;
        let running = loop {
            match server::start(self.config.clone()).await {
                Ok(r) => break r,
                Err(e) if Instant::now() < deadline && is_addr_in_use(&e) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.context("restarting server")),
            }
        };
        self.client = ready_client(&running.kubeconfig).await?;
        self.running = Some(running);
        Ok(())
    }

    /// Stops the server and waits for its components.
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.cancel_token().cancel();
        }
    }
}

fn is_addr_in_use(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
    })
}

/// A client from `kubeconfig`, returned once the server answers `/version`.
pub async fn ready_client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("kubeconfig to client config")?;
    let client = kube::Client::try_from(config).context("building client")?;
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        match client.apiserver_version().await {
            Ok(_) => return Ok(client),
            Err(e) if Instant::now() > deadline => {
                bail!("server not ready after {READY_DEADLINE:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn starts_serves_and_restarts_on_the_same_port() {
        let mut server = TestServer::start().await.expect("start");
        let before = server.address();
        assert_eq!(before.ip(), IpAddr::from([127, 0, 0, 1]));
        assert_ne!(before.port(), 0);
        server.restart().await.expect("restart");
        assert_eq!(server.address(), before);
        server
            .client()
            .apiserver_version()
            .await
            .expect("version after restart");
        server.shutdown().await;
    }
}
