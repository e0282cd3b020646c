//! The scheduler against a real in-process server (which runs it), with fake Nodes
//! created through the API: binding, the upstream-worded Unschedulable condition and
//! FailedScheduling event, rescheduling when a big node appears, node selectors, taints,
//! required anti-affinity, other schedulers' pods, and preemption.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use test_support::server::TestServer;

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` until it yields a value, failing after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Ready node with `cpu` cores, 8Gi and 110 pods, the hostname label, and `extra`
/// merged into its metadata/spec.
async fn create_node(
    client: &Client,
    name: &str,
    cpu: &str,
    labels: Value,
    taints: Value,
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let status = json!({
        "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now, "lastTransitionTime": now}],
    });
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": status,
    }))?;
    nodes
        .create(&PostParams::default(), &node)
        .await
        .with_context(|| format!("creating node {name}"))?;
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .with_context(|| format!("setting status of node {name}"))?;
    Ok(())
}

/// A pod in `default` whose single container requests `cpu`; `spec` is merged in.
async fn create_pod(
    client: &Client,
    name: &str,
    cpu: &str,
    labels: Value,
    spec: Value,
) -> anyhow::Result<()> {
    let mut s = json!({"containers": [{"name": "app", "image": "nginx", "resources": {"requests": {"cpu": cpu}}}]});
    if let (Some(into), Some(from)) = (s.as_object_mut(), spec.as_object()) {
        for (k, v) in from {
            into.insert(k.clone(), v.clone());
        }
    }
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": s,
    }))?;
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating pod {name}"))?;
    Ok(())
}

async fn get_pod(client: &Client, name: &str) -> anyhow::Result<Option<Pod>> {
    Ok(Api::<Pod>::namespaced(client.clone(), "default")
        .get_opt(name)
        .await?)
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

/// `(status, reason, message)` of the pod's PodScheduled condition.
fn scheduled_condition(pod: &Pod) -> Option<(String, String, String)> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

async fn wait_bound(client: &Client, name: &str) -> anyhow::Result<String> {
    eventually(&format!("{name} to be bound"), || async {
        Ok(get_pod(client, name).await?.as_ref().and_then(node_of))
    })
    .await
}

/// Waits for `PodScheduled=False, reason Unschedulable` with exactly `message`.
async fn wait_unschedulable(client: &Client, name: &str, message: &str) -> anyhow::Result<()> {
    let want = (
        "False".to_string(),
        "Unschedulable".to_string(),
        message.to_string(),
    );
    let r = eventually(&format!("{name} to be Unschedulable"), || {
        let want = want.clone();
        async move {
            Ok((get_pod(client, name)
                .await?
                .as_ref()
                .and_then(scheduled_condition)
                == Some(want))
            .then_some(()))
        }
    })
    .await;
    if r.is_err() {
        let last = get_pod(client, name)
            .await?
            .as_ref()
            .and_then(scheduled_condition);
        return r.with_context(|| format!("last condition: {last:?}"));
    }
    Ok(())
}

/// Events regarding pod `name`, as `(type, reason, note, reporting controller)`.
async fn events_of(
    client: &Client,
    name: &str,
) -> anyhow::Result<Vec<(String, String, String, String)>> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
                e.reporting_controller.unwrap_or_default(),
            )
        })
        .collect())
}

async fn wait_event(
    client: &Client,
    pod: &str,
    type_: &str,
    reason: &str,
    note: &str,
) -> anyhow::Result<()> {
    let want = (
        type_.to_string(),
        reason.to_string(),
        note.to_string(),
        "default-scheduler".to_string(),
    );
    eventually(&format!("{reason} event on {pod}: {note}"), || {
        let want = want.clone();
        async move { Ok(events_of(client, pod).await?.contains(&want).then_some(())) }
    })
    .await
}

/// Logs to the test output with `RUST_LOG` (e.g. `RUST_LOG=scheduler=debug`).
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

#[tokio::test]
async fn pods_bind_where_they_fit_and_wait_for_a_big_enough_node() -> anyhow::Result<()> {
    init_logging();
    let server = TestServer::start().await?;
    let client = server.client();
    for n in ["node1", "node2", "node3"] {
        create_node(&client, n, "2", json!({}), json!([])).await?;
    }
    create_pod(&client, "fits", "1500m", json!({}), json!({})).await?;
    let node = wait_bound(&client, "fits").await?;
    wait_event(
        &client,
        "fits",
        "Normal",
        "Scheduled",
        &format!("Successfully assigned default/fits to {node}"),
    )
    .await?;
    let pod = get_pod(&client, "fits").await?.context("fits")?;
    assert_eq!(
        scheduled_condition(&pod).map(|c| c.0).as_deref(),
        Some("True")
    );

    create_pod(&client, "huge", "3", json!({}), json!({})).await?;
    let message = "0/3 nodes are available: 3 Insufficient cpu. \
                   preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..";
    wait_unschedulable(&client, "huge", message).await?;
    wait_event(&client, "huge", "Warning", "FailedScheduling", message).await?;

    create_node(&client, "big", "16", json!({}), json!([])).await?;
    assert_eq!(wait_bound(&client, "huge").await?, "big");
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn node_selectors_taints_and_scheduler_names_are_honoured() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    create_node(&client, "hdd", "4", json!({"disk": "hdd"}), json!([])).await?;
    create_node(&client, "ssd", "4", json!({"disk": "ssd"}), json!([])).await?;
    create_node(
        &client,
        "gpu",
        "4",
        json!({"disk": "ssd", "gpu": "yes"}),
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    )
    .await?;

    // Another scheduler's pod first: it must still be untouched once ours are placed.
    create_pod(
        &client,
        "elsewhere",
        "100m",
        json!({}),
        json!({"schedulerName": "other-scheduler"}),
    )
    .await?;

    for i in 0..3 {
        create_pod(
            &client,
            &format!("on-ssd-{i}"),
            "100m",
            json!({}),
            json!({"nodeSelector": {"disk": "ssd"}}),
        )
        .await?;
    }
    for i in 0..3 {
        assert_eq!(
            wait_bound(&client, &format!("on-ssd-{i}")).await?,
            "ssd",
            "the gpu node's taint is not tolerated"
        );
    }

    let tolerating = json!({"nodeSelector": {"gpu": "yes"}, "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]});
    create_pod(&client, "tolerates", "100m", json!({}), tolerating).await?;
    assert_eq!(wait_bound(&client, "tolerates").await?, "gpu");

    create_pod(
        &client,
        "intolerant",
        "100m",
        json!({}),
        json!({"nodeSelector": {"gpu": "yes"}}),
    )
    .await?;
    wait_unschedulable(
        &client,
        "intolerant",
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling..",
    )
    .await?;

    let other = get_pod(&client, "elsewhere").await?.context("elsewhere")?;
    assert_eq!(node_of(&other), None);
    assert_eq!(scheduled_condition(&other), None);
    assert!(events_of(&client, "elsewhere").await?.is_empty());
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn required_anti_affinity_spreads_three_replicas_and_the_fourth_stays_pending(
) -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    for n in ["node1", "node2", "node3"] {
        create_node(&client, n, "4", json!({}), json!([])).await?;
    }
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    let names: Vec<String> = (0..4).map(|i| format!("web-{i}")).collect();
    for n in &names {
        create_pod(&client, n, "100m", json!({"app": "web"}), anti.clone()).await?;
    }
    let message = "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
                   preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..";
    let pending = eventually("three web pods bound and one Unschedulable", || async {
        let mut bound = Vec::new();
        let mut pending = Vec::new();
        for n in &names {
            let Some(p) = get_pod(&client, n).await? else {
                continue;
            };
            match node_of(&p) {
                Some(node) => bound.push(node),
                None if scheduled_condition(&p).is_some_and(|c| c.2 == message) => {
                    pending.push(n.clone())
                }
                None => {}
            }
        }
        bound.sort();
        Ok((bound == ["node1", "node2", "node3"] && pending.len() == 1).then(|| pending.remove(0)))
    })
    .await?;
    wait_event(&client, &pending, "Warning", "FailedScheduling", message).await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn preemption_evicts_a_lower_priority_pod() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let classes: Api<PriorityClass> = Api::all(client.clone());
    for (name, value) in [("low", 100), ("high", 1000)] {
        let pc: PriorityClass = serde_json::from_value(
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value}),
        )?;
        classes.create(&PostParams::default(), &pc).await?;
    }
    create_node(&client, "node1", "2", json!({}), json!([])).await?;
    create_pod(
        &client,
        "victim",
        "1500m",
        json!({}),
        json!({"priorityClassName": "low", "terminationGracePeriodSeconds": 0}),
    )
    .await?;
    assert_eq!(wait_bound(&client, "victim").await?, "node1");
    let victim_uid = get_pod(&client, "victim")
        .await?
        .and_then(|p| p.metadata.uid)
        .context("victim uid")?;

    create_pod(
        &client,
        "preemptor",
        "1500m",
        json!({}),
        json!({"priorityClassName": "high"}),
    )
    .await?;
    assert_eq!(wait_bound(&client, "preemptor").await?, "node1");
    let victim = get_pod(&client, "victim").await?;
    assert!(
        victim.is_none_or(|p| p.metadata.uid.as_deref() != Some(victim_uid.as_str())),
        "the victim was evicted"
    );
    let preemptor_uid = get_pod(&client, "preemptor")
        .await?
        .and_then(|p| p.metadata.uid)
        .context("preemptor uid")?;
    wait_event(
        &client,
        "victim",
        "Normal",
        "Preempted",
        &format!("Preempted by pod {preemptor_uid} on node node1"),
    )
    .await?;
    server.shutdown().await;
    Ok(())
}
