//! Controllers: each watches the API through `kube::Client`, reconciles one object at a
//! time, and requeues with backoff on error. None of them touches the store, so each can
//! run in-process under `rkube server` or alone.

pub mod clock;
pub mod controller_ref_manager;
pub mod controller_utils;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod expectations;
pub mod garbagecollector;
pub mod history;
pub mod informer;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod options;
pub mod podautoscaler;
pub mod podgc;
pub mod queue;
pub mod replicaset;
pub mod resourcequota;
pub mod serviceaccount;
pub mod statefulset;
pub mod tainteviction;
pub mod ttlafterfinished;
pub mod volume;
pub mod workqueue;

use kube::Client;
use tokio_util::sync::CancellationToken;

/// Runs every controller until `cancel` fires.
pub async fn run_all(client: Client, cancel: CancellationToken) {
    run_all_with(client, cancel, options::ControllerOptions::default()).await
}

/// [`run_all`] with settings other than upstream's defaults (flags, tests).
pub async fn run_all_with(
    client: Client,
    cancel: CancellationToken,
    options: options::ControllerOptions,
) {
    let ns = tokio::spawn(namespace::run(client.clone(), cancel.clone()));
    let workloads = tokio::spawn(run_workloads(client.clone(), cancel.clone(), options));
    let _ = ns.await;
    let _ = workloads.await;
}

/// The workload controllers (ReplicaSet, ReplicationController, Deployment,
/// StatefulSet, Job, CronJob, TTL-after-finished), PodGC and the garbage collector,
/// sharing one informer per resource type.
async fn run_workloads(
    client: Client,
    cancel: CancellationToken,
    options: options::ControllerOptions,
) {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::ReplicationController;
    let mut informers = informer::InformerFactory::new(client.clone());
    let rs = replicaset::ReplicaSetController::<ReplicaSet>::new(client.clone(), &mut informers);
    let rc = replicaset::ReplicaSetController::<ReplicationController>::new(
        client.clone(),
        &mut informers,
    );
    let deployments = deployment::DeploymentController::new(client.clone(), &mut informers);
    let statefulsets = statefulset::StatefulSetController::new(client.clone(), &mut informers);
    let daemonsets = daemonset::DaemonSetController::new(client.clone(), &mut informers);
    let jobs = job::JobController::new(client.clone(), &mut informers, &options, &cancel);
    let cronjobs =
        cronjob::CronJobController::new(client.clone(), &mut informers, &options, &cancel);
    let ttl =
        ttlafterfinished::TtlAfterFinishedController::new(client.clone(), &mut informers, &cancel);
    let podgc = podgc::PodGcController::new(client.clone(), &mut informers, &options);
    let endpoints = endpoints::EndpointsController::new(client.clone(), &mut informers, &cancel);
    let endpoint_slices =
        endpointslice::EndpointSliceController::new(client.clone(), &mut informers, &cancel);
    let volumes =
        volume::binder::PersistentVolumeController::new(client.clone(), &mut informers, &cancel);
    let local_path =
        volume::local_path::LocalPathProvisioner::new(client.clone(), &mut informers, &cancel);
    let node_lifecycle = nodelifecycle::NodeLifecycleController::new(
        client.clone(),
        &mut informers,
        &options,
        &cancel,
    );
    let taint_eviction =
        tainteviction::TaintEvictionController::new(client.clone(), &mut informers, &cancel);
    let node_ipam =
        nodeipam::NodeIpamController::new(client.clone(), &mut informers, &options, &cancel);
    let service_accounts =
        serviceaccount::ServiceAccountsController::new(client.clone(), &mut informers, &cancel);
    let root_ca = options.root_ca.clone().map(|ca| {
        serviceaccount::rootcacertpublisher::Publisher::new(
            client.clone(),
            &mut informers,
            ca,
            &cancel,
        )
    });
    let disruption = disruption::DisruptionController::new(client.clone(), &mut informers);
    let quotas =
        resourcequota::ResourceQuotaController::new(client.clone(), &mut informers, &options);
    let autoscaler =
        podautoscaler::HorizontalController::new(client.clone(), &mut informers, &options);
    let mut tasks = informers.start(&cancel);
    tasks.push(tokio::spawn(autoscaler.run(cancel.clone())));
    tasks.push(tokio::spawn(disruption.run(cancel.clone())));
    tasks.push(tokio::spawn(quotas.run(cancel.clone())));
    tasks.push(tokio::spawn(node_lifecycle.run(cancel.clone())));
    tasks.push(tokio::spawn(taint_eviction.run(cancel.clone())));
    tasks.push(tokio::spawn(service_accounts.run(cancel.clone())));
    if let Some(ipam) = node_ipam {
        tasks.push(tokio::spawn(ipam.run(cancel.clone())));
    }
    if let Some(publisher) = root_ca {
        tasks.push(tokio::spawn(publisher.run(cancel.clone())));
    }
    tasks.push(tokio::spawn(volumes.run(cancel.clone())));
    tasks.push(tokio::spawn(local_path.run(cancel.clone())));
    tasks.push(tokio::spawn(endpoints.run(cancel.clone())));
    tasks.push(tokio::spawn(endpoint_slices.run(cancel.clone())));
    tasks.push(tokio::spawn(jobs.run(cancel.clone())));
    tasks.push(tokio::spawn(cronjobs.run(cancel.clone())));
    tasks.push(tokio::spawn(ttl.run(cancel.clone())));
    tasks.push(tokio::spawn(podgc.run(cancel.clone())));
    tasks.push(tokio::spawn(deployments.run(cancel.clone())));
    tasks.push(tokio::spawn(statefulsets.run(cancel.clone())));
    tasks.push(tokio::spawn(daemonsets.run(cancel.clone())));
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
