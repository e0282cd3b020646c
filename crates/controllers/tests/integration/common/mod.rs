//! Shared helpers for the controller integration tests: an in-process server (whose
//! controller manager runs these controllers), fixtures, and a stand-in for the
//! kubelet that marks pods Running and Ready.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde::de::DeserializeOwned;
use serde_json::json;

pub use test_support::server::TestServer;

/// How long any single wait in these tests may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Logs to stderr when `RKUBE_TEST_LOG` is set (an `EnvFilter` directive).
pub fn init_tracing() {
    if let Ok(filter) = std::env::var("RKUBE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

/// Parses a fixture from `tests/fixtures`.
pub fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

/// Creates a namespace for one test.
pub async fn namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    api.create(&PostParams::default(), &ns)
        .await
        .context("creating namespace")?;
    Ok(())
}

/// Polls `check` every 20 ms until it returns `Some`, failing after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + DEADLINE;
    init_tracing();
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Active (not terminating) pods in `ns` matching `selector`.
pub async fn active_pods(client: &Client, ns: &str, selector: &str) -> anyhow::Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default().labels(selector)).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// Does what a kubelet would: phase Running, condition Ready=True.
pub async fn mark_ready(client: &Client, ns: &str, name: &str) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let patch = json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
    }});
    // Strategic: conditions merge by type, so a scheduler's PodScheduled stays.
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .with_context(|| format!("marking pod {name} ready"))?;
    Ok(())
}

pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The controller owner reference's name, if any.
pub fn controller_name(p: &Pod) -> Option<String> {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.name.clone())
}

/// A stand-in kubelet: marks every pod in `ns` Running and Ready as soon as it shows
/// up, until the returned handle is aborted.
pub fn auto_ready(client: &Client, ns: &str) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    use kube::runtime::{watcher, WatchStreamExt};
    let (client, ns) = (client.clone(), ns.to_string());
    tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        futures::pin_mut!(stream);
        while let Some(Ok(p)) = stream.next().await {
            if !is_ready(&p) && p.metadata.deletion_timestamp.is_none() {
                // The pod may be gone already; the next event decides.
                let _ = mark_ready(&client, &ns, p.metadata.name.as_deref().unwrap_or("")).await;
            }
        }
    })
}

/// One change to a pod as a single watch saw it, in resourceVersion order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodChange {
    Created(String),
    /// First seen with `Ready=True`.
    Ready(String),
    /// Marked for deletion, or gone (whichever was seen first).
    Deleted(String),
}

/// Records every pod change in a namespace from one watch, so a test can prove in which
/// order things happened (one watch delivers events in resourceVersion order).
pub struct PodLog {
    changes: std::sync::Arc<std::sync::Mutex<Vec<PodChange>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodLog {
    /// Starts watching `ns`; returns once the watch is established.
    pub async fn start(client: &Client, ns: &str) -> anyhow::Result<Self> {
        use futures::StreamExt;
        use kube::api::{WatchEvent, WatchParams};
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        let rv = api
            .list(&ListParams::default())
            .await?
            .metadata
            .resource_version
            .unwrap_or_default();
        let stream = api.watch(&WatchParams::default(), &rv).await?;
        let changes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = changes.clone();
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            let (mut seen, mut ready, mut gone) = (
                std::collections::HashSet::new(),
                std::collections::HashSet::new(),
                std::collections::HashSet::new(),
            );
            while let Some(Ok(event)) = stream.next().await {
                let (p, deleted) = match event {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => (p, false),
                    WatchEvent::Deleted(p) => (p, true),
                    _ => continue,
                };
                let name = p.metadata.name.clone().unwrap_or_default();
                let uid = p.metadata.uid.clone().unwrap_or_default();
                let mut out = log.lock().expect("log lock");
                if seen.insert(uid.clone()) {
                    out.push(PodChange::Created(name.clone()));
                }
                if is_ready(&p) && ready.insert(uid.clone()) {
                    out.push(PodChange::Ready(name.clone()));
                }
                if (deleted || p.metadata.deletion_timestamp.is_some()) && gone.insert(uid) {
                    out.push(PodChange::Deleted(name));
                }
            }
        });
        Ok(PodLog { changes, task })
    }

    pub fn changes(&self) -> Vec<PodChange> {
        self.changes.lock().expect("log lock").clone()
    }

    /// Position of the first `change`, if seen.
    pub fn position(&self, change: &PodChange) -> Option<usize> {
        self.changes().iter().position(|c| c == change)
    }
}

impl Drop for PodLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}
