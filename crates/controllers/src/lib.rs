//! Controllers: each watches the API through `kube::Client`, reconciles one object at a
//! time, and requeues with backoff on error. None of them touches the store, so each can
//! run in-process under `rkube server` or alone.

pub mod namespace;

use kube::Client;
use tokio_util::sync::CancellationToken;

/// Runs every controller until `cancel` fires.
pub async fn run_all(client: Client, cancel: CancellationToken) {
    let ns = tokio::spawn(namespace::run(client.clone(), cancel.clone()));
    let _ = ns.await;
}
