//! Cluster-level helpers for the `scheduler` and `controllers` suites: a `kube::Client`
//! for the server under test, waiting for components to lead, and the pod shape the
//! suites schedule onto virtual nodes.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::{json, Value};

/// A client of the server under test, from the kubeconfig it wrote.
pub async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// Waits until the `kube-system/<name>` Lease has a holder: the component leading
/// under it (scheduler, controller manager) has started its work.
pub async fn wait_for_leader(
    client: &kube::Client,
    name: &str,
    deadline: Duration,
) -> anyhow::Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let until = Instant::now() + deadline;
    loop {
        let lease = api.get_opt(name).await?;
        let holder = lease
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty());
        if holder.is_some() {
            return Ok(());
        }
        if Instant::now() >= until {
            bail!("nobody holds the {name} Lease after {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pod spec the suites use: one container requesting 100m CPU and 128Mi, tolerating
/// the virtual nodes' taint (as ../shared/scenarios/virtual-node-podspec-fragment.yaml).
pub fn virtual_pod_spec() -> Value {
    json!({
        "containers": [{
            "name": "c",
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        }],
        "tolerations": [{
            "key": virtual_nodes::config::PROVIDER_TAINT_KEY,
            "operator": "Exists",
            "effect": "NoSchedule",
        }],
    })
}

/// Prints a progress line on stderr (stdout carries only results).
pub fn progress(metric: &str, what: std::fmt::Arguments<'_>) {
    eprintln!("[{metric}] {what}");
}
