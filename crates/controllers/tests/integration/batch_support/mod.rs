//! Helpers for the Job, CronJob and PodGC tests: a server whose controllers run with
//! short test periods (and optionally a fast clock), virtual nodes that run each pod
//! to the exit code its annotations ask for, manifests, and a watch that records the
//! most pods ever active at once.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use controllers::options::ControllerOptions;
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use kube::Client;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use virtual_nodes::provider::{EXIT_CODE_ANNOTATION, RUN_SECONDS_ANNOTATION};
use virtual_nodes::{VirtualNodeConfig, VirtualNodes};

use crate::common::{wait_for, TestServer};

/// Upstream settings, with the periods tests would otherwise wait for shortened.
pub fn fast_options() -> ControllerOptions {
    ControllerOptions {
        job_sync_batch_period: Duration::from_millis(20),
        job_pod_failure_backoff: Duration::from_millis(100),
        job_pod_failure_backoff_max: Duration::from_secs(1),
        ..Default::default()
    }
}

/// A server running the controllers with `options`, plus virtual nodes.
pub struct Cluster {
    pub server: TestServer,
    cancel: CancellationToken,
    /// `None` when the server's own controller manager runs them (upstream defaults).
    controllers: Option<tokio::task::JoinHandle<()>>,
    nodes: Option<tokio::task::JoinHandle<Result<(), virtual_nodes::Error>>>,
}

impl Cluster {
    pub async fn start(options: ControllerOptions, nodes: usize) -> anyhow::Result<Self> {
        crate::common::init_tracing();
        let server = TestServer::start_without_controllers().await?;
        let cancel = CancellationToken::new();
        let controllers = tokio::spawn(controllers::run_all_with(
            server.client(),
            cancel.clone(),
            options,
        ));
        Self::with_nodes(server, cancel, Some(controllers), nodes, true).await
    }

    /// The server as `rkube server` runs it (its controller manager, upstream
    /// defaults), with untainted virtual nodes so any pod lands on them.
    pub async fn start_as_server(nodes: usize) -> anyhow::Result<Self> {
        crate::common::init_tracing();
        let server = TestServer::start().await?;
        Self::with_nodes(server, CancellationToken::new(), None, nodes, false).await
    }

    async fn with_nodes(
        server: TestServer,
        cancel: CancellationToken,
        controllers: Option<tokio::task::JoinHandle<()>>,
        nodes: usize,
        tainted: bool,
    ) -> anyhow::Result<Self> {
        let nodes = if nodes > 0 {
            let mut config = VirtualNodeConfig {
                count: nodes,
                lease_interval: Duration::from_secs(1),
                record_node_events: false,
                ..Default::default()
            };
            if !tainted {
                config.taints.clear();
            }
            let vn = VirtualNodes::new(server.client(), config)?;
            let handle = vn.handle();
            let run = tokio::spawn(vn.run(cancel.clone()));
            tokio::time::timeout(Duration::from_secs(20), handle.wait_registered())
                .await
                .context("virtual nodes did not register")??;
            Some(run)
        } else {
            None
        };
        Ok(Cluster {
            server,
            cancel,
            controllers,
            nodes,
        })
    }

    pub fn client(&self) -> Client {
        self.server.client()
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        if let Some(c) = self.controllers {
            let _ = c.await;
        }
        if let Some(n) = self.nodes {
            let _ = n.await;
        }
        self.server.shutdown().await;
    }
}

/// A pod template that tolerates the virtual nodes; with `exit` the virtual kubelet
/// ends its container with that code after `run_seconds`, without it the pod runs on.
pub fn pod_template(exit: Option<i32>, run_seconds: f64) -> Value {
    let mut annotations = json!({});
    if let Some(code) = exit {
        annotations[EXIT_CODE_ANNOTATION] = json!(code.to_string());
        annotations[RUN_SECONDS_ANNOTATION] = json!(run_seconds.to_string());
    }
    json!({
        "metadata": {"annotations": annotations},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}],
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
        },
    })
}

/// A Job named `name` with `spec` (its `template` added from `template`).
pub fn job(name: &str, mut spec: Value, template: Value) -> Job {
    spec["template"] = template;
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("job manifest")
}

pub fn condition(job: &Job, type_: &str) -> Option<JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

pub fn is_true(job: &Job, type_: &str) -> bool {
    condition(job, type_).is_some_and(|c| c.status == "True")
}

/// Waits until the Job satisfies `pred`; returns it.
pub async fn wait_job(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&Job) -> bool,
) -> anyhow::Result<Job> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    wait_for(what, || async {
        let j = api.get(name).await?;
        Ok(pred(&j).then_some(j))
    })
    .await
}

/// (reason, message) of the Events about `name` in `ns`, oldest first.
pub async fn events_for(
    client: &Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut list: Vec<Event> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .collect();
    list.sort_by_key(|e| e.first_timestamp.as_ref().map(|t| t.0));
    Ok(list
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect())
}

/// How many times an Event with `reason` was recorded about `name` (identical events
/// are folded into one with a count).
pub async fn event_count(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> anyhow::Result<i32> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.count.unwrap_or(1))
        .sum())
}

/// Pods of the Job named `job` in `ns`.
pub async fn job_pods(client: &Client, ns: &str, job: &str) -> anyhow::Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let sel = format!("batch.kubernetes.io/job-name={job}");
    Ok(api.list(&ListParams::default().labels(&sel)).await?.items)
}

fn is_active(p: &Pod) -> bool {
    let phase = p
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    p.metadata.deletion_timestamp.is_none() && phase != "Succeeded" && phase != "Failed"
}

/// Follows every pod in a namespace through one watch (events in resourceVersion
/// order) and records the most that were active — neither finished nor being
/// deleted — at the same time, and every pod name seen.
pub struct ActiveWatch {
    max: Arc<AtomicUsize>,
    seen: Arc<Mutex<HashSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ActiveWatch {
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
        let (max, seen) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Mutex::new(HashSet::new())),
        );
        let (m, s) = (max.clone(), seen.clone());
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            let mut active: HashMap<String, bool> = HashMap::new();
            while let Some(Ok(event)) = stream.next().await {
                let (p, gone) = match event {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => (p, false),
                    WatchEvent::Deleted(p) => (p, true),
                    _ => continue,
                };
                let name = p.metadata.name.clone().unwrap_or_default();
                s.lock().expect("seen lock").insert(name.clone());
                active.insert(name, !gone && is_active(&p));
                let now = active.values().filter(|a| **a).count();
                m.fetch_max(now, Ordering::SeqCst);
            }
        });
        Ok(ActiveWatch { max, seen, task })
    }

    pub fn max_active(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    pub fn pods_seen(&self) -> usize {
        self.seen.lock().expect("seen lock").len()
    }
}

impl Drop for ActiveWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
