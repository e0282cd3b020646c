//! The root CA publisher (upstream `rootcacertpublisher`): a ConfigMap
//! `kube-root-ca.crt` in every namespace holding the cluster CA under `ca.crt`, which
//! pods use to verify the API server (projected service-account volumes mount it).
//! Recreated when deleted, put back when edited.
//!
//! Upstream's publisher informs on every ConfigMap in the cluster. This one watches
//! only those named `kube-root-ca.crt` (a `metadata.name` field selector), so a
//! cluster holding many ConfigMaps does not keep a second copy of each of them in the
//! controller manager.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::is_active;
use crate::controller_utils::{is_namespace_terminating, is_not_found};
use crate::informer::{Cache, Change, Informer, InformerFactory};
use crate::workqueue::WorkQueue;

const CONTROLLER_NAME: &str = "root-ca-certificate-publisher";
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
const WORKERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

struct Ctx {
    client: Client,
    root_ca: String,
    namespaces: Cache<Namespace>,
    config_maps: Cache<ConfigMap>,
    queue: Arc<WorkQueue<String>>,
}

pub struct Publisher {
    ctx: Arc<Ctx>,
    /// Its own informer, over `kube-root-ca.crt` ConfigMaps only; run by [`Publisher::run`].
    config_map_informer: Informer<ConfigMap>,
}

fn wanted_data(root_ca: &str) -> BTreeMap<String, String> {
    [("ca.crt".to_string(), root_ca.to_string())].into()
}

/// Whether `cm` holds the CA and the description (upstream only checks the
/// annotation is there).
pub fn up_to_date(cm: &ConfigMap, root_ca: &str) -> bool {
    cm.data.as_ref() == Some(&wanted_data(root_ca))
        && cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
            .is_some_and(|d| !d.is_empty())
}

impl Publisher {
    pub fn new(
        client: Client,
        informers: &mut InformerFactory,
        root_ca: String,
        cancel: &CancellationToken,
    ) -> Self {
        let mut config_map_informer = Informer::<ConfigMap>::new(
            Api::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIG_MAP}")),
        );
        let ctx = Arc::new(Ctx {
            client,
            root_ca,
            namespaces: informers.informer::<Namespace>().cache(),
            config_maps: config_map_informer.cache(),
            queue: WorkQueue::new(cancel.clone()),
        });
        let queue = ctx.queue.clone();
        informers
            .informer::<Namespace>()
            .add_handler(move |change| match change {
                Change::Added(ns) => queue.add(ns.metadata.name.clone().unwrap_or_default()),
                Change::Updated { new, .. } if is_active(new) => {
                    queue.add(new.metadata.name.clone().unwrap_or_default())
                }
                _ => {}
            });
        let queue = ctx.queue.clone();
        config_map_informer.add_handler(move |change| {
            let cm = match change {
                Change::Updated { new, .. } => *new,
                Change::Deleted(cm) => *cm,
                Change::Added(_) => return,
            };
            if cm.metadata.name.as_deref() == Some(ROOT_CA_CONFIG_MAP) {
                queue.add(cm.metadata.namespace.clone().unwrap_or_default());
            }
        });
        Publisher {
            ctx,
            config_map_informer,
        }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        let informer = tokio::spawn(self.config_map_informer.run(cancel.clone()));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = async { ctx.namespaces.wait_until_ready().await; ctx.config_maps.wait_until_ready().await } => {}
        }
        tracing::info!(controller = CONTROLLER_NAME, "starting");
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| tokio::spawn(worker(ctx.clone())))
            .collect();
        for w in workers {
            let _ = w.await;
        }
        let _ = informer.await;
    }
}

async fn worker(ctx: Arc<Ctx>) {
    while let Some(ns) = ctx.queue.get().await {
        let span = tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %ns);
        match sync_namespace(&ctx, &ns).instrument(span).await {
            Ok(()) => ctx.queue.forget(&ns),
            Err(e) => {
                tracing::debug!(namespace = %ns, error = %e, "could not publish the root CA; will retry");
                ctx.queue.add_rate_limited(ns.clone());
            }
        }
        ctx.queue.done(&ns);
    }
}

/// Upstream `syncNamespace`.
async fn sync_namespace(ctx: &Ctx, ns: &str) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let annotations: BTreeMap<String, String> =
        [(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string())].into();
    let Some(cm) = ctx.config_maps.get(ns, ROOT_CA_CONFIG_MAP) else {
        if ctx.namespaces.get("", ns).is_none_or(|n| !is_active(&n)) {
            return Ok(());
        }
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(ROOT_CA_CONFIG_MAP.to_string()),
                annotations: Some(annotations),
                ..Default::default()
            },
            data: Some(wanted_data(&ctx.root_ca)),
            ..Default::default()
        };
        return match api.create(&PostParams::default(), &cm).await {
            Ok(_) => Ok(()),
            // Don't retry a create into a namespace that is gone or terminating.
            Err(e) if is_not_found(&e) || is_namespace_terminating(&e) => Ok(()),
            Err(e) => Err(e.into()),
        };
    };
    if up_to_date(&cm, &ctx.root_ca) {
        return Ok(());
    }
    let mut cm = cm.as_ref().clone();
    cm.data = Some(wanted_data(&ctx.root_ca));
    cm.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string());
    api.replace(ROOT_CA_CONFIG_MAP, &PostParams::default(), &cm)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_map_is_current_with_the_ca_and_a_description() {
        let mut cm = ConfigMap {
            data: Some(wanted_data("PEM")),
            ..Default::default()
        };
        assert!(!up_to_date(&cm, "PEM"));
        cm.metadata.annotations =
            Some([(DESCRIPTION_ANNOTATION.to_string(), "x".to_string())].into());
        assert!(up_to_date(&cm, "PEM"));
        assert!(!up_to_date(&cm, "OTHER"));
        cm.data
            .get_or_insert_with(BTreeMap::new)
            .insert("extra".into(), "1".into());
        assert!(!up_to_date(&cm, "PEM"));
    }
}
