//! The namespace controller: empties a namespace marked for deletion, then releases it.
//!
//! Deleting a namespace marks it `Terminating` with `spec.finalizers: [kubernetes]`.
//! This controller deletes every namespaced object in it (one DELETECOLLECTION per
//! resource found through discovery), waits until listing finds nothing, and then
//! removes its `kubernetes` finalizer through the `finalize` subresource, after which
//! the API server deletes the namespace.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::Client;
use tokio_util::sync::CancellationToken;

pub const FINALIZER: &str = "kubernetes";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("namespace {0} still has content")]
    NotEmpty(String),
}

struct Ctx {
    client: Client,
}

pub async fn run(client: Client, cancel: CancellationToken) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ctx = Arc::new(Ctx { client });
    Controller::new(namespaces, watcher::Config::default())
        .graceful_shutdown_on(async move { cancel.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    match err {
        Error::NotEmpty(_) => Action::requeue(Duration::from_secs(1)),
        Error::Api(_) => Action::requeue(Duration::from_secs(2)),
    }
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if ns.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let span = tracing::info_span!("reconcile", controller = "namespace", object = %name);
    let _enter = span.enter();
    let remaining = delete_content(&ctx.client, &name).await?;
    if remaining > 0 {
        tracing::debug!(remaining, "waiting for namespace content to go");
        return Err(Error::NotEmpty(name));
    }
    let mut released = (*ns).clone();
    if let Some(spec) = released.spec.as_mut() {
        spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    api.replace_subresource("finalize", &name, &PostParams::default(), &released)
        .await?;
    tracing::info!("namespace emptied and finalized");
    Ok(Action::await_change())
}

/// Deletes everything in `namespace`; returns how many objects are left.
async fn delete_content(client: &Client, namespace: &str) -> Result<usize, Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut remaining = 0;
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced || !caps.supports_operation(verbs::LIST) {
                continue;
            }
            // Events go with their namespace too.
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
            if caps.supports_operation(verbs::DELETE_COLLECTION) {
                if let Err(e) = api
                    .delete_collection(&DeleteParams::background(), &ListParams::default())
                    .await
                {
                    tracing::warn!(resource = %ar.plural, error = %e, "deletecollection failed");
                }
            }
            let left = api.list_metadata(&ListParams::default().limit(1)).await?;
            remaining += left.items.len();
        }
    }
    Ok(remaining)
}
