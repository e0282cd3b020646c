//! The built-in `local-path` provisioner (k3s ships rancher's local-path-provisioner;
//! this is the same contract, in-process): a claim that the PV controller hands to
//! `rancher.io/local-path` gets a `hostPath` volume `<dir>/pvc-<uid>_<namespace>_<name>`
//! (`DirectoryOrCreate`) pinned to the node the scheduler selected, pre-bound to the
//! claim. `<dir>` comes from the `local-path-config` ConfigMap in `kube-system`
//! (`nodePathMap`, per node or `DEFAULT_PATH_FOR_NON_LISTED_NODES`).
//!
//! A released volume of this provisioner whose reclaim policy is `Delete` is deleted
//! here; its directory lives on the node, so the node agent removes it once the
//! volume is gone (the provisioner never touches a host's files).

use std::collections::BTreeMap;
use std::sync::Arc;

use apis::volume::{self, ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER};
use k8s_openapi::api::core::v1::{
    ConfigMap, HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::events::EventType;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_utils::{is_already_exists, is_not_found, meta_key, EventRecorder};
use crate::informer::{Cache, Change, InformerFactory};
use crate::workqueue::WorkQueue;

/// The provisioner name classes use (as k3s's local-path StorageClass does).
pub const PROVISIONER: &str = "rancher.io/local-path";
/// The ConfigMap in `kube-system` that says where volumes live.
pub const CONFIG_MAP: &str = "local-path-config";
/// The `nodePathMap` entry for nodes not listed by name.
pub const DEFAULT_NODE: &str = "DEFAULT_PATH_FOR_NON_LISTED_NODES";

const CONTROLLER_NAME: &str = "rancher.io/local-path";
const WORKERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("configuration error, no node was specified")]
    NoNode,
    #[error("config map kube-system/{CONFIG_MAP}: {0}")]
    Config(String),
}

/// What the provisioner's queue holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Work {
    Claim(String),
    Volume(String),
}

impl std::fmt::Display for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::Claim(k) => write!(f, "claim {k}"),
            Work::Volume(n) => write!(f, "volume {n}"),
        }
    }
}

struct Ctx {
    client: Client,
    claims: Cache<PersistentVolumeClaim>,
    volumes: Cache<PersistentVolume>,
    classes: Cache<StorageClass>,
    queue: Arc<WorkQueue<Work>>,
    recorder: EventRecorder,
}

pub struct LocalPathProvisioner {
    ctx: Arc<Ctx>,
}

fn wants_us(claim: &PersistentVolumeClaim) -> bool {
    claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_STORAGE_PROVISIONER))
        .map(String::as_str)
        == Some(PROVISIONER)
}

fn ours(pv: &PersistentVolume) -> bool {
    pv.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_PROVISIONED_BY))
        .map(String::as_str)
        == Some(PROVISIONER)
}

impl LocalPathProvisioner {
    pub fn new(
        client: Client,
        informers: &mut InformerFactory,
        cancel: &CancellationToken,
    ) -> Self {
        let ctx = Arc::new(Ctx {
            recorder: EventRecorder::new(client.clone(), CONTROLLER_NAME),
            client,
            claims: informers.informer::<PersistentVolumeClaim>().cache(),
            volumes: informers.informer::<PersistentVolume>().cache(),
            classes: informers.informer::<StorageClass>().cache(),
            queue: WorkQueue::new(cancel.clone()),
        });
        let queue = ctx.queue.clone();
        informers
            .informer::<PersistentVolumeClaim>()
            .add_handler(move |change| {
                if let Change::Added(c) | Change::Updated { new: c, .. } = change {
                    if wants_us(c) {
                        queue.add(Work::Claim(meta_key(&c.metadata)));
                    }
                }
            });
        let queue = ctx.queue.clone();
        informers
            .informer::<PersistentVolume>()
            .add_handler(move |change| {
                if let Change::Added(v) | Change::Updated { new: v, .. } = change {
                    if ours(v) {
                        queue.add(Work::Volume(v.metadata.name.clone().unwrap_or_default()));
                    }
                }
            });
        LocalPathProvisioner { ctx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = async {
                ctx.claims.wait_until_ready().await;
                ctx.volumes.wait_until_ready().await;
                ctx.classes.wait_until_ready().await;
            } => {}
        }
        tracing::info!(provisioner = PROVISIONER, "starting");
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| tokio::spawn(worker(ctx.clone())))
            .collect();
        for w in workers {
            let _ = w.await;
        }
    }
}

async fn worker(ctx: Arc<Ctx>) {
    let queue = ctx.queue.clone();
    queue
        .work(CONTROLLER_NAME, |work: Work| {
            let ctx = ctx.clone();
            async move {
                match &work {
                    Work::Claim(key) => {
                        let span = tracing::debug_span!("provision", claim = %key);
                        let (ns, name) = key.split_once('/').unwrap_or(("", key.as_str()));
                        match ctx.claims.get(ns, name) {
                            Some(c) => provision(&ctx, &c).instrument(span).await,
                            None => Ok(()),
                        }
                    }
                    Work::Volume(name) => match ctx.volumes.get("", name) {
                        Some(v) => reclaim(&ctx, &v).await,
                        None => Ok(()),
                    },
                }
            }
        })
        .await
}

/// `pvc-<claim uid>`, as the PV controller names provisioned volumes.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or(""))
}

/// The directory for `node` in the provisioner's `config.json`.
pub fn base_dir(config_json: &str, node: &str) -> Result<String, Error> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Config {
        node_path_map: Vec<NodePaths>,
    }
    #[derive(serde::Deserialize)]
    struct NodePaths {
        node: String,
        paths: Vec<String>,
    }
    let config: Config =
        serde_json::from_str(config_json).map_err(|e| Error::Config(e.to_string()))?;
    let pick = |want: &str| {
        config
            .node_path_map
            .iter()
            .find(|n| n.node == want)
            .and_then(|n| n.paths.first().cloned())
    };
    pick(node)
        .or_else(|| pick(DEFAULT_NODE))
        .ok_or_else(|| Error::Config(format!("no local path available on node {node}")))
}

/// The volume the provisioner makes for `claim` on `node` under `dir`.
pub fn build_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    dir: &str,
) -> PersistentVolume {
    let ns = claim.metadata.namespace.clone().unwrap_or_default();
    let claim_name = claim.metadata.name.clone().unwrap_or_default();
    let name = volume_name(claim);
    let spec = claim.spec.clone().unwrap_or_default();
    let size = volume::requested_storage(claim);
    let path = format!("{}/{name}_{ns}_{claim_name}", dir.trim_end_matches('/'));
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(BTreeMap::from([(
                ANN_PROVISIONED_BY.to_string(),
                PROVISIONER.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity(size.to_string()),
            )])),
            access_modes: spec.access_modes.clone(),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: Some(volume::claim_class(claim)),
            volume_mode: Some("Filesystem".into()),
            host_path: Some(HostPathVolumeSource {
                path,
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![node.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns),
                name: Some(claim_name),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                ..Default::default()
            }),
            mount_options: class.mount_options.clone(),
            ..Default::default()
        }),
        status: None,
    }
}

fn claim_ref(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        ..Default::default()
    }
}

async fn provision(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<(), Error> {
    let bound = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty());
    if claim.metadata.deletion_timestamp.is_some() || bound {
        return Ok(());
    }
    let name = volume_name(claim);
    if ctx.volumes.get("", &name).is_some() {
        return Ok(());
    }
    let class_name = volume::claim_class(claim);
    let Some(class) = ctx.classes.get("", &class_name) else {
        return Ok(());
    };
    if class.provisioner != PROVISIONER {
        return Ok(());
    }
    let selected = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_SELECTED_NODE))
        .cloned();
    let reference = claim_ref(claim);
    let Some(node) = selected else {
        ctx.recorder
            .publish(
                &reference,
                EventType::Warning,
                "ProvisioningFailed",
                "Provisioning",
                format!(
                    "failed to provision volume with StorageClass \"{class_name}\": {}",
                    Error::NoNode
                ),
            )
            .await;
        return Ok(());
    };
    ctx.recorder
        .publish(
            &reference,
            EventType::Normal,
            "Provisioning",
            "Provisioning",
            format!(
                "External provisioner is provisioning volume for claim \"{}\"",
                meta_key(&claim.metadata)
            ),
        )
        .await;
    let configs: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), "kube-system");
    let config = match configs.get(CONFIG_MAP).await {
        Ok(c) => c,
        Err(e) if is_not_found(&e) => {
            let e = Error::Config("not found".into());
            ctx.recorder
                .publish(
                    &reference,
                    EventType::Warning,
                    "ProvisioningFailed",
                    "Provisioning",
                    format!("failed to provision volume with StorageClass \"{class_name}\": {e}"),
                )
                .await;
            return Err(e);
        }
        Err(e) => return Err(e.into()),
    };
    let json = config
        .data
        .as_ref()
        .and_then(|d| d.get("config.json"))
        .cloned()
        .unwrap_or_default();
    let dir = match base_dir(&json, &node) {
        Ok(d) => d,
        Err(e) => {
            ctx.recorder
                .publish(
                    &reference,
                    EventType::Warning,
                    "ProvisioningFailed",
                    "Provisioning",
                    format!("failed to provision volume with StorageClass \"{class_name}\": {e}"),
                )
                .await;
            return Err(e);
        }
    };
    let pv = build_volume(claim, &class, &node, &dir);
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        Err(e) if is_already_exists(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(claim = %meta_key(&claim.metadata), volume = %name, %node, "provisioned");
    ctx.recorder
        .publish(
            &reference,
            EventType::Normal,
            "ProvisioningSucceeded",
            "Provisioning",
            format!("Successfully provisioned volume {name}"),
        )
        .await;
    Ok(())
}

/// Deletes a released volume of ours whose policy says so.
async fn reclaim(ctx: &Ctx, pv: &PersistentVolume) -> Result<(), Error> {
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    if !released || !delete || pv.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let name = pv.metadata.name.clone().unwrap_or_default();
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pv.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            tracing::info!(volume = %name, "deleted released volume");
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base_dir_prefers_the_node_then_the_default() {
        let config = json!({"nodePathMap": [
            {"node": DEFAULT_NODE, "paths": ["/var/lib/rkube/storage"]},
            {"node": "n2", "paths": ["/data"]},
        ]})
        .to_string();
        assert_eq!(
            base_dir(&config, "n1").expect("default"),
            "/var/lib/rkube/storage"
        );
        assert_eq!(base_dir(&config, "n2").expect("n2"), "/data");
        let only = json!({"nodePathMap": [{"node": "n2", "paths": ["/data"]}]}).to_string();
        assert!(base_dir(&only, "n1").is_err());
        assert!(base_dir("{", "n1").is_err());
    }

    #[test]
    fn the_volume_is_pinned_to_the_node_and_pre_bound_to_the_claim() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "www-web-0", "namespace": "default", "uid": "u-1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                     "resources": {"requests": {"storage": "1Gi"}}},
        }))
        .expect("claim");
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": "local-path"}, "provisioner": PROVISIONER, "reclaimPolicy": "Retain",
        }))
        .expect("class");
        let pv = build_volume(&claim, &class, "node-a", "/srv/storage/");
        let v = serde_json::to_value(&pv).expect("json");
        assert_eq!(v["metadata"]["name"], "pvc-u-1");
        assert_eq!(
            v["spec"]["hostPath"]["path"],
            "/srv/storage/pvc-u-1_default_www-web-0"
        );
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(v["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(v["spec"]["claimRef"]["uid"], "u-1");
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
                ["values"][0],
            "node-a"
        );
        assert!(volume::is_bound_to(&pv, &claim));
    }
}
