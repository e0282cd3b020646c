//! Garbage collector against a real in-process server: background, foreground and
//! orphan deletion of a Deployment (acceptance 8), and owner references between
//! arbitrary objects.

use crate::common;

use common::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde_json::json;

const NAME: &str = "nginx-deployment-example";

async fn deployment_with_pods(client: &Client, ns: &str) -> anyhow::Result<()> {
    namespace(client, ns).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments
        .create(&PostParams::default(), &fixture("nginx-deployment.yaml"))
        .await?;
    wait_for("3 pods", || async {
        Ok((active_pods(client, ns, "environment=test").await?.len() == 3).then_some(()))
    })
    .await
}

async fn replica_sets(client: &Client, ns: &str) -> anyhow::Result<Vec<ReplicaSet>> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    Ok(api.list(&ListParams::default()).await?.items)
}

async fn pod_count(client: &Client, ns: &str) -> anyhow::Result<usize> {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    Ok(api.list(&ListParams::default()).await?.items.len())
}

#[tokio::test]
async fn deleting_a_deployment_removes_its_replica_sets_and_pods() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "gc-background";
    deployment_with_pods(&client, ns).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments
        .delete(NAME, &DeleteParams::background())
        .await?;
    wait_for("replica sets and pods gone", || async {
        Ok(
            (replica_sets(&client, ns).await?.is_empty() && pod_count(&client, ns).await? == 0)
                .then_some(()),
        )
    })
    .await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn foreground_deletion_waits_for_dependents() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "gc-foreground";
    deployment_with_pods(&client, ns).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments
        .delete(NAME, &DeleteParams::foreground())
        .await?;
    wait_for("deployment, replica sets and pods gone", || async {
        let gone = deployments.get_opt(NAME).await?.is_none();
        Ok((gone
            && replica_sets(&client, ns).await?.is_empty()
            && pod_count(&client, ns).await? == 0)
            .then_some(()))
    })
    .await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn orphan_deletion_leaves_dependents_without_owner_references() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "gc-orphan";
    deployment_with_pods(&client, ns).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments.delete(NAME, &DeleteParams::orphan()).await?;
    wait_for("deployment gone, replica set orphaned", || async {
        let gone = deployments.get_opt(NAME).await?.is_none();
        let rss = replica_sets(&client, ns).await?;
        let orphaned = rss.len() == 1
            && rss[0]
                .metadata
                .owner_references
                .as_ref()
                .is_none_or(|r| r.is_empty());
        Ok((gone && orphaned).then_some(()))
    })
    .await?;
    // The pods stay, still owned by their ReplicaSet.
    let pods = active_pods(&client, ns, "environment=test").await?;
    assert_eq!(pods.len(), 3);
    let rs_name = replica_sets(&client, ns).await?[0].metadata.name.clone();
    assert!(pods.iter().all(|p| controller_name(p) == rs_name));
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn dependents_lose_only_the_owners_that_are_gone() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "gc-refs";
    namespace(&client, ns).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mk = |name: &str| -> anyhow::Result<ConfigMap> {
        Ok(serde_json::from_value(json!({"metadata": {"name": name}}))?)
    };
    let a = cms.create(&PostParams::default(), &mk("owner-a")?).await?;
    let b = cms.create(&PostParams::default(), &mk("owner-b")?).await?;
    let owner_ref = |cm: &ConfigMap| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": cm.metadata.name, "uid": cm.metadata.uid});
    let both: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "both", "ownerReferences": [owner_ref(&a), owner_ref(&b)]},
    }))?;
    cms.create(&PostParams::default(), &both).await?;
    let only_a: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "only-a", "ownerReferences": [owner_ref(&a)]},
    }))?;
    cms.create(&PostParams::default(), &only_a).await?;
    // An owner that never existed: the dependent goes too.
    let stray: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "stray", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"}
        ]},
    }))?;
    cms.create(&PostParams::default(), &stray).await?;

    cms.delete("owner-a", &DeleteParams::background()).await?;
    wait_for(
        "only-a and stray deleted, both kept with one owner",
        || async {
            let only_a_gone = cms.get_opt("only-a").await?.is_none();
            let stray_gone = cms.get_opt("stray").await?.is_none();
            let both = cms.get("both").await?;
            let refs: Vec<String> = both
                .metadata
                .owner_references
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .collect();
            Ok((only_a_gone && stray_gone && refs == ["owner-b"]).then_some(()))
        },
    )
    .await?;
    server.shutdown().await;
    Ok(())
}

/// A v1 ReplicationController deleted without a propagation policy orphans its pods,
/// as upstream keeps for old clients; with `Background` they go.
#[tokio::test]
async fn replication_controllers_orphan_their_pods_by_default() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ReplicationController;
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "gc-rc-default";
    namespace(&client, ns).await?;
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), ns);
    let rc = |name: &str| -> anyhow::Result<ReplicationController> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": 2, "selector": {"app": name},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.17"}]}}},
        }))?)
    };
    for name in ["legacy", "modern"] {
        rcs.create(&PostParams::default(), &rc(name)?).await?;
        wait_for("2 pods", || async {
            Ok((active_pods(&client, ns, &format!("app={name}"))
                .await?
                .len()
                == 2)
                .then_some(()))
        })
        .await?;
    }
    rcs.delete("legacy", &DeleteParams::default()).await?;
    rcs.delete("modern", &DeleteParams::background()).await?;
    wait_for("legacy pods orphaned, modern pods gone", || async {
        let legacy = active_pods(&client, ns, "app=legacy").await?;
        let modern = active_pods(&client, ns, "app=modern").await?;
        let orphaned = legacy.len() == 2 && legacy.iter().all(|p| controller_name(p).is_none());
        let gone = rcs.get_opt("legacy").await?.is_none() && rcs.get_opt("modern").await?.is_none();
        Ok((orphaned && gone && modern.is_empty()).then_some(()))
    })
    .await?;
    server.shutdown().await;
    Ok(())
}
