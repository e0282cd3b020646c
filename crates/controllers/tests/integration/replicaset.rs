//! ReplicaSet controller against a real in-process server (scenario S2): replicas
//! with owner references, replacement of deleted pods, adoption of a matching bare
//! pod, no stealing by a second ReplicaSet, status and events.

use crate::common;

use common::*;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

const SELECTOR: &str = "environment=test";

#[tokio::test]
async fn replicaset_creates_replaces_adopts_and_never_steals() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "rs-test";
    namespace(&client, ns).await?;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);

    let rs: ReplicaSet = fixture("nginx-replicaset.yaml");
    let rs = rss.create(&PostParams::default(), &rs).await?;
    let uid = rs.metadata.uid.clone().unwrap_or_default();

    // Three pods, named from generateName, controlled by the ReplicaSet.
    let first = wait_for("3 replicas", || async {
        let ps = active_pods(&client, ns, SELECTOR).await?;
        Ok((ps.len() == 3).then_some(ps))
    })
    .await?;
    for p in &first {
        let name = p.metadata.name.clone().unwrap_or_default();
        assert!(
            name.starts_with("nginx-replicaset-example-")
                && name.len() == "nginx-replicaset-example-".len() + 5
        );
        assert_eq!(
            p.metadata.generate_name.as_deref(),
            Some("nginx-replicaset-example-")
        );
        let r = &p.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (r.kind.as_str(), r.name.as_str(), r.uid.as_str()),
            ("ReplicaSet", "nginx-replicaset-example", uid.as_str())
        );
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );
    }

    // Status follows readiness.
    for p in &first {
        mark_ready(&client, ns, p.metadata.name.as_deref().unwrap_or("")).await?;
    }
    wait_for("ready status", || async {
        let s = rss
            .get("nginx-replicaset-example")
            .await?
            .status
            .unwrap_or_default();
        Ok((s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.fully_labeled_replicas == Some(3)
            && s.observed_generation == Some(1))
        .then_some(()))
    })
    .await?;

    // Deleting two brings the count back to three.
    for p in &first[..2] {
        pods.delete(
            p.metadata.name.as_deref().unwrap_or(""),
            &DeleteParams::default(),
        )
        .await?;
    }
    let replaced = wait_for("replacements", || async {
        let ps = active_pods(&client, ns, SELECTOR).await?;
        let fresh = ps
            .iter()
            .filter(|p| !first.iter().any(|f| f.metadata.name == p.metadata.name))
            .count();
        Ok((ps.len() == 3 && fresh == 2).then_some(ps))
    })
    .await?;
    for p in &replaced {
        mark_ready(&client, ns, p.metadata.name.as_deref().unwrap_or("")).await?;
    }

    // A bare pod with the selector's labels is adopted, then deleted as surplus (it is
    // the only not-ready one, so it goes first).
    let bare: Pod = serde_json::from_value(json!({
        "metadata": {"name": "bare", "labels": {"environment": "test"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.17"}]},
    }))?;
    pods.create(&PostParams::default(), &bare).await?;
    wait_for("bare pod adopted and removed", || async {
        let ps = active_pods(&client, ns, SELECTOR).await?;
        let bare_left = ps
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some("bare"));
        Ok((!bare_left && ps.len() == 3).then_some(()))
    })
    .await?;
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    wait_for("adoption seen in events", || async {
        let evs = events.list(&ListParams::default()).await?;
        let deleted_bare = evs.items.iter().any(|e| {
            e.reason.as_deref() == Some("SuccessfulDelete")
                && e.message.as_deref() == Some("Deleted pod: bare")
        });
        let created = evs
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
            .count();
        Ok((deleted_bare && created >= 5).then_some(()))
    })
    .await?;

    // A second ReplicaSet with the same selector makes its own pods and takes none.
    let mut second: ReplicaSet = fixture("nginx-replicaset.yaml");
    second.metadata.name = Some("second".into());
    rss.create(&PostParams::default(), &second).await?;
    let all = wait_for("second replica set's pods", || async {
        let ps = active_pods(&client, ns, SELECTOR).await?;
        Ok((ps.len() == 6).then_some(ps))
    })
    .await?;
    let by_first = all
        .iter()
        .filter(|p| controller_name(p).as_deref() == Some("nginx-replicaset-example"))
        .count();
    let by_second = all
        .iter()
        .filter(|p| controller_name(p).as_deref() == Some("second"))
        .count();
    assert_eq!((by_first, by_second), (3, 3));
    for p in &replaced {
        let now = pods.get(p.metadata.name.as_deref().unwrap_or("")).await?;
        assert_eq!(
            controller_name(&now).as_deref(),
            Some("nginx-replicaset-example")
        );
    }

    // Scaling down removes pods; scaling to zero removes them all.
    let scale = json!({"spec": {"replicas": 1}});
    rss.patch(
        "nginx-replicaset-example",
        &Default::default(),
        &kube::api::Patch::Merge(&scale),
    )
    .await?;
    wait_for("scale down to 1", || async {
        let ps = active_pods(&client, ns, SELECTOR).await?;
        let n = ps
            .iter()
            .filter(|p| controller_name(p).as_deref() == Some("nginx-replicaset-example"))
            .count();
        let s = rss
            .get("nginx-replicaset-example")
            .await?
            .status
            .unwrap_or_default();
        Ok((n == 1 && s.replicas == 1 && s.observed_generation == Some(2)).then_some(()))
    })
    .await?;

    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn released_pods_lose_their_owner_reference() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "rs-release";
    namespace(&client, ns).await?;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut rs: ReplicaSet = fixture("nginx-replicaset.yaml");
    if let Some(spec) = rs.spec.as_mut() {
        spec.replicas = Some(1);
    }
    rss.create(&PostParams::default(), &rs).await?;
    let pod = wait_for("1 replica", || async {
        let ps = active_pods(&client, ns, SELECTOR).await?;
        Ok((ps.len() == 1).then(|| ps[0].clone()))
    })
    .await?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    // Relabel it out of the selector: the ReplicaSet releases it and makes another.
    let relabel = json!({"metadata": {"labels": {"environment": "debug"}}});
    pods.patch(
        &name,
        &Default::default(),
        &kube::api::Patch::Merge(&relabel),
    )
    .await?;
    wait_for("release and replacement", || async {
        let p = pods.get(&name).await?;
        let released = p
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|r| r.is_empty());
        let replacements = active_pods(&client, ns, SELECTOR).await?.len();
        Ok((released && replacements == 1).then_some(()))
    })
    .await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn replication_controllers_run_through_the_same_controller() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ReplicationController;
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "rc-test";
    namespace(&client, ns).await?;
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), ns);
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"app": "web"},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.17"}]},
            },
        },
    }))?;
    rcs.create(&PostParams::default(), &rc).await?;
    let pods = wait_for("2 replicas", || async {
        let ps = active_pods(&client, ns, "app=web").await?;
        Ok((ps.len() == 2).then_some(ps))
    })
    .await?;
    for p in &pods {
        let r = &p.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (r.api_version.as_str(), r.kind.as_str()),
            ("v1", "ReplicationController")
        );
        mark_ready(&client, ns, p.metadata.name.as_deref().unwrap_or("")).await?;
    }
    wait_for("rc status", || async {
        let s = rcs.get("web").await?.status.unwrap_or_default();
        Ok(
            (s.replicas == 2 && s.ready_replicas == Some(2) && s.available_replicas == Some(2))
                .then_some(()),
        )
    })
    .await?;
    server.shutdown().await;
    Ok(())
}
