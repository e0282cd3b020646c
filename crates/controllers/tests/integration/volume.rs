//! Persistent volumes against a real in-process server on virtual nodes: the
//! PersistentVolume controller binding static volumes by class, size and node, the
//! scheduler's VolumeBinding choosing a node and asking the local-path provisioner for a
//! volume there, and reclaim policies once a claim is deleted.

use crate::common;

use std::time::Duration;

use anyhow::Context;
use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use virtual_nodes::{VirtualNodeConfig, VirtualNodes};

/// Virtual nodes running until stopped.
struct Nodes {
    cancel: CancellationToken,
    run: tokio::task::JoinHandle<Result<(), virtual_nodes::Error>>,
}

impl Nodes {
    async fn start(client: &Client, prefix: &str, count: usize) -> anyhow::Result<Self> {
        let config = VirtualNodeConfig {
            count,
            prefix: prefix.to_string(),
            lease_interval: Duration::from_secs(1),
            ..Default::default()
        };
        let nodes = VirtualNodes::new(client.clone(), config)?;
        let handle = nodes.handle();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(nodes.run(cancel.clone()));
        tokio::time::timeout(DEADLINE, handle.wait_registered())
            .await
            .context("virtual nodes did not register")??;
        Ok(Nodes { cancel, run })
    }

    async fn stop(self) {
        self.cancel.cancel();
        let _ = self.run.await;
    }
}

fn claim(name: &str, size: &str, class: Option<&str>) -> PersistentVolumeClaim {
    let mut spec =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}});
    if let Some(c) = class {
        spec["storageClassName"] = json!(c);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("claim")
}

fn static_volume(name: &str, size: &str, node: Option<&str>) -> PersistentVolume {
    let mut spec = json!({
        "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
        "storageClassName": "manual", "persistentVolumeReclaimPolicy": "Retain",
        "hostPath": {"path": format!("/tmp/rkube-test-{name}")},
    });
    if let Some(n) = node {
        spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [n]}]}]}});
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pv")
}

/// A pod on virtual nodes mounting `claim`.
fn consumer(name: &str, claim: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "app", "image": "busybox",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
        },
    }))
    .expect("pod")
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

async fn bound_claim(
    claims: &Api<PersistentVolumeClaim>,
    name: &str,
) -> anyhow::Result<PersistentVolumeClaim> {
    wait_for(&format!("claim {name} Bound"), || async {
        let c = claims.get(name).await?;
        Ok((phase_of_claim(&c) == "Bound").then_some(c))
    })
    .await
}

async fn claim_events(client: &Client, ns: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
    Ok(events
        .list(&lp)
        .await?
        .items
        .into_iter()
        .map(|e| {
            format!(
                "{} {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect())
}

#[tokio::test]
async fn static_volumes_bind_by_class_and_size_and_are_retained() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "pv-static";
    namespace(&client, ns).await?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    for (name, size) in [("small", "1Gi"), ("big", "5Gi")] {
        volumes
            .create(&PostParams::default(), &static_volume(name, size, None))
            .await?;
    }
    wait_for("both volumes Available", || async {
        let all = volumes.list(&ListParams::default()).await?.items;
        Ok(all
            .iter()
            .all(|v| phase_of_volume(v) == "Available")
            .then_some(()))
    })
    .await?;

    // No class "manual" exists: the claim binds to the smallest volume that fits.
    claims
        .create(&PostParams::default(), &claim("db", "2Gi", Some("manual")))
        .await?;
    let db = bound_claim(&claims, "db").await?;
    assert_eq!(
        db.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some("big")
    );
    let status = db.status.clone().unwrap_or_default();
    assert_eq!(
        status
            .capacity
            .and_then(|c| c.get("storage").cloned())
            .map(|q| q.0),
        Some("5Gi".into())
    );
    let annotations = db.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("pv.kubernetes.io/bind-completed")
            .map(String::as_str),
        Some("yes")
    );
    let big = volumes.get("big").await?;
    assert_eq!(phase_of_volume(&big), "Bound");
    let claim_ref = big
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.clone())
        .unwrap_or_default();
    assert_eq!(
        (claim_ref.namespace.as_deref(), claim_ref.name.as_deref()),
        (Some(ns), Some("db"))
    );
    assert_eq!(claim_ref.uid, db.metadata.uid);

    // Too big for every volume: Pending until a volume that fits appears.
    claims
        .create(
            &PostParams::default(),
            &claim("archive", "10Gi", Some("manual")),
        )
        .await?;
    wait_for("archive Pending", || async {
        Ok((phase_of_claim(&claims.get("archive").await?) == "Pending").then_some(()))
    })
    .await?;
    assert_eq!(phase_of_volume(&volumes.get("small").await?), "Available");
    volumes
        .create(&PostParams::default(), &static_volume("huge", "20Gi", None))
        .await?;
    let archive = bound_claim(&claims, "archive").await?;
    assert_eq!(
        archive.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some("huge")
    );

    // Retain: the volume outlives its claim as Released, still naming it.
    claims.delete("db", &DeleteParams::default()).await?;
    wait_for("big Released", || async {
        Ok((phase_of_volume(&volumes.get("big").await?) == "Released").then_some(()))
    })
    .await?;
    assert!(volumes
        .get("big")
        .await?
        .spec
        .and_then(|s| s.claim_ref)
        .is_some());
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn local_path_claims_are_provisioned_where_their_pod_is_scheduled() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "pv-local";
    namespace(&client, ns).await?;
    let nodes = Nodes::start(&client, "pv-node", 2).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);

    // No class given: the default local-path class, which waits for a consumer.
    claims
        .create(&PostParams::default(), &claim("data", "1Gi", None))
        .await?;
    wait_for("WaitForFirstConsumer event", || async {
        let events = claim_events(&client, ns, "data").await?;
        Ok(events
            .iter()
            .any(|e| {
                e == "WaitForFirstConsumer waiting for first consumer to be created before binding"
            })
            .then_some(()))
    })
    .await?;
    let pending = claims.get("data").await?;
    assert_eq!(phase_of_claim(&pending), "Pending");
    assert_eq!(
        pending
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref()),
        Some("local-path")
    );

    pods.create(&PostParams::default(), &consumer("app", "data"))
        .await?;
    let data = bound_claim(&claims, "data").await?;
    let pod = wait_for("pod scheduled", || async {
        let p = pods.get("app").await?;
        Ok(p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .map(|n| (p, n)))
    })
    .await?;
    let node = pod.1;
    let annotations = data.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("volume.kubernetes.io/selected-node"),
        Some(&node)
    );
    assert_eq!(
        annotations
            .get("volume.kubernetes.io/storage-provisioner")
            .map(String::as_str),
        Some("rancher.io/local-path")
    );
    let pv_name = format!("pvc-{}", data.metadata.uid.clone().unwrap_or_default());
    assert_eq!(
        data.spec.as_ref().and_then(|s| s.volume_name.clone()),
        Some(pv_name.clone())
    );
    let pv = volumes.get(&pv_name).await?;
    assert_eq!(phase_of_volume(&pv), "Bound");
    let spec = pv.spec.clone().unwrap_or_default();
    let path = spec.host_path.map(|h| h.path).unwrap_or_default();
    let storage = server.data_dir().join("storage");
    assert_eq!(path, format!("{}/{pv_name}_{ns}_data", storage.display()));
    let affinity = serde_json::to_value(&spec.node_affinity)?;
    assert_eq!(
        affinity["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
        json!([node])
    );
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    let events = claim_events(&client, ns, "data").await?;
    assert!(
        events.contains(&format!(
            "ProvisioningSucceeded Successfully provisioned volume {pv_name}"
        )),
        "{events:?}"
    );

    // Delete: the claim's end takes its volume with it.
    pods.delete("app", &DeleteParams::default().grace_period(0))
        .await?;
    claims.delete("data", &DeleteParams::default()).await?;
    wait_for("provisioned volume deleted", || async {
        Ok(volumes.get_opt(&pv_name).await?.is_none().then_some(()))
    })
    .await?;
    nodes.stop().await;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn statefulset_claims_follow_their_pods_node_and_outlive_them() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "pv-sts";
    namespace(&client, ns).await?;
    let nodes = Nodes::start(&client, "sts-node", 3).await?;
    let mut set: StatefulSet = fixture("web-statefulset.yaml");
    if let Some(spec) = set.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.tolerations = Some(vec![serde_json::from_value(
            json!({"key": "virtual-kubelet.io/provider", "operator": "Exists"}),
        )?]);
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    sets.create(&PostParams::default(), &set).await?;
    wait_for("3 ready replicas", || async {
        let s = sets.get("web").await?;
        Ok((s.status.and_then(|s| s.ready_replicas) == Some(3)).then_some(()))
    })
    .await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut first = Vec::new();
    for i in 0..3 {
        let c = bound_claim(&claims, &format!("www-web-{i}")).await?;
        let pv = volumes
            .get(
                c.spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .unwrap_or(""),
            )
            .await?;
        let pod = pods.get(&format!("web-{i}")).await?;
        let node = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
        let affinity = serde_json::to_value(pv.spec.and_then(|s| s.node_affinity))?;
        assert_eq!(
            affinity["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
            json!([node]),
            "web-{i}'s volume is on its node"
        );
        first.push((c.metadata.uid, node));
    }

    // A deleted pod comes back on the node its volume lives on, with the same claim.
    let old_uid = pods.get("web-1").await?.metadata.uid;
    pods.delete("web-1", &DeleteParams::default().grace_period(0))
        .await?;
    let back = wait_for("web-1 recreated and scheduled", || async {
        let p = pods.get_opt("web-1").await?;
        Ok(p.filter(|p| p.metadata.uid != old_uid)
            .and_then(|p| p.spec.and_then(|s| s.node_name)))
    })
    .await?;
    assert_eq!(back, first[1].1, "web-1 returned to its volume's node");
    let c = claims.get("www-web-1").await?;
    assert_eq!(c.metadata.uid, first[1].0, "the claim survived its pod");
    nodes.stop().await;
    server.shutdown().await;
    Ok(())
}
