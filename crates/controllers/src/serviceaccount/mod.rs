//! ServiceAccount controllers (upstream `pkg/controller/serviceaccount` and
//! `pkg/controller/certificates/rootcacertpublisher`): [`ServiceAccountsController`]
//! keeps a `default` ServiceAccount in every active namespace, recreating it when
//! deleted; [`rootcacertpublisher::Publisher`] keeps the `kube-root-ca.crt` ConfigMap.

pub mod rootcacertpublisher;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_utils::{is_already_exists, is_namespace_terminating, is_not_found};
use crate::informer::{Cache, Change, InformerFactory};
use crate::workqueue::WorkQueue;

const CONTROLLER_NAME: &str = "serviceaccount-controller";
/// The accounts every namespace gets (upstream `DefaultServiceAccountsControllerOptions`).
pub const DEFAULT_SERVICE_ACCOUNTS: [&str; 1] = ["default"];
const WORKERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

/// Active: not marked for deletion and not `Terminating`.
pub fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Active")
            == "Active"
}

struct Ctx {
    client: Client,
    namespaces: Cache<Namespace>,
    accounts: Cache<ServiceAccount>,
    queue: Arc<WorkQueue<String>>,
}

pub struct ServiceAccountsController {
    ctx: Arc<Ctx>,
}

impl ServiceAccountsController {
    pub fn new(
        client: Client,
        informers: &mut InformerFactory,
        cancel: &CancellationToken,
    ) -> Self {
        let ctx = Arc::new(Ctx {
            client,
            namespaces: informers.informer::<Namespace>().cache(),
            accounts: informers.informer::<ServiceAccount>().cache(),
            queue: WorkQueue::new(cancel.clone()),
        });
        let queue = ctx.queue.clone();
        informers
            .informer::<Namespace>()
            .add_handler(move |change| match change {
                Change::Added(ns) | Change::Updated { new: ns, .. } => {
                    queue.add(ns.metadata.name.clone().unwrap_or_default())
                }
                Change::Deleted(_) => {}
            });
        let queue = ctx.queue.clone();
        informers
            .informer::<ServiceAccount>()
            .add_handler(move |change| {
                if let Change::Deleted(sa) = change {
                    if DEFAULT_SERVICE_ACCOUNTS.contains(&sa.metadata.name.as_deref().unwrap_or(""))
                    {
                        queue.add(sa.metadata.namespace.clone().unwrap_or_default());
                    }
                }
            });
        ServiceAccountsController { ctx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = async { ctx.namespaces.wait_until_ready().await; ctx.accounts.wait_until_ready().await } => {}
        }
        tracing::info!(controller = CONTROLLER_NAME, "starting");
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| tokio::spawn(worker(ctx.clone())))
            .collect();
        for w in workers {
            let _ = w.await;
        }
    }
}

async fn worker(ctx: Arc<Ctx>) {
    while let Some(ns) = ctx.queue.get().await {
        let span = tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %ns);
        match sync_namespace(&ctx, &ns).instrument(span).await {
            Ok(()) => ctx.queue.forget(&ns),
            Err(e) => {
                tracing::debug!(namespace = %ns, error = %e, "could not create service accounts; will retry");
                ctx.queue.add_rate_limited(ns.clone());
            }
        }
        ctx.queue.done(&ns);
    }
}

/// Upstream `syncNamespace`.
async fn sync_namespace(ctx: &Ctx, ns: &str) -> Result<(), Error> {
    let Some(namespace) = ctx.namespaces.get("", ns) else {
        return Ok(());
    };
    if !is_active(&namespace) {
        return Ok(());
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    for name in DEFAULT_SERVICE_ACCOUNTS {
        if ctx.accounts.get(ns, name).is_some() {
            continue;
        }
        let sa = ServiceAccount {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::debug!(namespace = ns, name, "created service account"),
            Err(e) if is_already_exists(&e) || is_namespace_terminating(&e) || is_not_found(&e) => {
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
