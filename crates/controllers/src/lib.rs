//! Controllers: each watches the API through `kube::Client`, reconciles one object at a
//! time, and requeues with backoff on error. None of them touches the store, so each can
//! run in-process under `rkube server` or alone.

pub mod controller_ref_manager;
pub mod controller_utils;
pub mod deployment;
pub mod expectations;
pub mod garbagecollector;
pub mod informer;
pub mod namespace;
pub mod queue;
pub mod replicaset;
pub mod workqueue;

use kube::Client;
use tokio_util::sync::CancellationToken;

/// Runs every controller until `cancel` fires.
pub async fn run_all(client: Client, cancel: CancellationToken) {
    let ns = tokio::spawn(namespace::run(client.clone(), cancel.clone()));
    let workloads = tokio::spawn(run_workloads(client.clone(), cancel.clone()));
    let _ = ns.await;
    let _ = workloads.await;
}

/// The ReplicaSet, ReplicationController, Deployment and garbage-collector controllers,
/// sharing one informer per resource type.
async fn run_workloads(client: Client, cancel: CancellationToken) {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::ReplicationController;
    let mut informers = informer::InformerFactory::new(client.clone());
    let rs = replicaset::ReplicaSetController::<ReplicaSet>::new(client.clone(), &mut informers);
    let rc = replicaset::ReplicaSetController::<ReplicationController>::new(
        client.clone(),
        &mut informers,
    );
    let deployments = deployment::DeploymentController::new(client.clone(), &mut informers);
    let mut tasks = informers.start(&cancel);
    tasks.push(tokio::spawn(deployments.run(cancel.clone())));
    tasks.push(tokio::spawn(garbagecollector::run(
        client.clone(),
        cancel.clone(),
    )));
    tasks.push(tokio::spawn(rs.run(cancel.clone())));
    tasks.push(tokio::spawn(rc.run(cancel.clone())));
    for t in tasks {
        let _ = t.await;
    }
}
