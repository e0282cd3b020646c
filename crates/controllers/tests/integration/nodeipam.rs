//! Node IPAM against a real in-process server, with a cluster CIDR of two /24s: a node
//! bringing its own podCIDR keeps it and its range is never handed out again, a new
//! node gets the free block, a third finds the range exhausted (`CIDRNotAvailable`)
//! until a node is deleted and its block freed.

use crate::common;

use anyhow::Context;
use common::*;
use controllers::options::ControllerOptions;
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn pod_cidrs(n: &Node) -> (Option<String>, Vec<String>) {
    let spec = n.spec.clone().unwrap_or_default();
    (spec.pod_cidr, spec.pod_cidrs.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_free_pod_cidrs_and_release_them() -> anyhow::Result<()> {
    init_tracing();
    let server = TestServer::start_without_controllers().await?;
    let client = server.client();
    let nodes: Api<Node> = Api::all(client.clone());
    // Present before the controller starts: its range must be restored as used.
    let own: Node = serde_json::from_value(json!({
        "metadata": {"name": "brings-own"},
        "spec": {"podCIDR": "10.99.0.0/24", "podCIDRs": ["10.99.0.0/24"]},
    }))?;
    nodes.create(&PostParams::default(), &own).await?;
    let cancel = CancellationToken::new();
    let options = ControllerOptions {
        allocate_node_cidrs: true,
        cluster_cidr: "10.99.0.0/23".parse()?,
        node_cidr_mask_size: 24,
        ..Default::default()
    };
    let controllers = tokio::spawn(controllers::run_all_with(
        client.clone(),
        cancel.clone(),
        options,
    ));
    let result = async {
        let bare = |name: &str| -> anyhow::Result<Node> {
            Ok(serde_json::from_value(json!({"metadata": {"name": name}}))?)
        };
        nodes
            .create(&PostParams::default(), &bare("first")?)
            .await?;
        let first = wait_for("first node's podCIDR", || async {
            let n = nodes.get("first").await?;
            Ok(pod_cidrs(&n).0.is_some().then_some(n))
        })
        .await?;
        assert_eq!(
            pod_cidrs(&first),
            (
                Some("10.99.1.0/24".into()),
                vec!["10.99.1.0/24".to_string()]
            )
        );
        assert_eq!(
            pod_cidrs(&nodes.get("brings-own").await?).0.as_deref(),
            Some("10.99.0.0/24")
        );

        nodes
            .create(&PostParams::default(), &bare("second")?)
            .await?;
        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        wait_for("CIDRNotAvailable for the second node", || async {
            let list = events.list(&ListParams::default()).await?;
            Ok(list
                .items
                .iter()
                .find(|e| {
                    e.reason.as_deref() == Some("CIDRNotAvailable")
                        && e.involved_object.name.as_deref() == Some("second")
                })
                .map(|e| e.message.clone()))
        })
        .await?
        .filter(|m| m == "Node second status is now: CIDRNotAvailable")
        .context("event message")?;
        assert_eq!(pod_cidrs(&nodes.get("second").await?).0, None);

        // Freeing a block lets the waiting node have it.
        nodes.delete("first", &DeleteParams::default()).await?;
        let second = wait_for("second node's podCIDR", || async {
            let n = nodes.get("second").await?;
            Ok(pod_cidrs(&n).0.is_some().then_some(n))
        })
        .await?;
        assert_eq!(pod_cidrs(&second).0.as_deref(), Some("10.99.1.0/24"));
        anyhow::Ok(())
    }
    .await;
    cancel.cancel();
    let _ = controllers.await;
    server.shutdown().await;
    result
}
