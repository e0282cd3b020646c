//! The PersistentVolume controller (upstream `persistentvolume.PersistentVolumeController`):
//! binds each unbound claim to the best matching volume, asks a provisioner for one when
//! nothing matches, keeps both sides' phases true (`Pending`, `Available`, `Bound`,
//! `Released`, `Lost`, `Failed`) and releases a volume whose claim is gone.
//!
//! Binding writes the volume first (`spec.claimRef`, then `status.phase=Bound`) and the
//! claim second (`spec.volumeName` with `pv.kubernetes.io/bind-completed`, then its
//! status), each with the cached resourceVersion as precondition, so a crash between the
//! two leaves a volume pre-bound to the claim, which the next sync completes. Claims of
//! a `WaitForFirstConsumer` class wait for the scheduler's
//! `volume.kubernetes.io/selected-node` before they are provisioned; static volumes for
//! them are pre-bound by the scheduler. A released volume keeps its data: `Retain`
//! leaves it `Released`, `Delete` is carried out by the provisioner that made it.

use std::sync::Arc;
use std::time::Duration;

use apis::volume::{
    self, ANN_BETA_STORAGE_PROVISIONER, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER,
    ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, NO_PROVISIONER,
};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_utils::{is_not_found, meta_key, EventRecorder};
use crate::informer::{Cache, Change, InformerFactory};
use crate::workqueue::WorkQueue;

const CONTROLLER_NAME: &str = "persistentvolume-controller";
const WORKERS: usize = 2;
/// Every claim and volume is looked at again this often (upstream `--pvclaimbinder-sync-period`).
const RESYNC_PERIOD: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

struct Ctx {
    client: Client,
    claims: Cache<PersistentVolumeClaim>,
    volumes: Cache<PersistentVolume>,
    classes: Cache<StorageClass>,
    claim_queue: Arc<WorkQueue<String>>,
    volume_queue: Arc<WorkQueue<String>>,
    recorder: EventRecorder,
}

pub struct PersistentVolumeController {
    ctx: Arc<Ctx>,
}

impl PersistentVolumeController {
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
            claim_queue: WorkQueue::new(cancel.clone()),
            volume_queue: WorkQueue::new(cancel.clone()),
        });
        let (claims, volumes) = (ctx.claim_queue.clone(), ctx.volume_queue.clone());
        informers
            .informer::<PersistentVolumeClaim>()
            .add_handler(move |change| match change {
                Change::Added(c) | Change::Updated { new: c, .. } => {
                    claims.add(meta_key(&c.metadata));
                }
                // The claim's volume may now be released.
                Change::Deleted(c) => {
                    if let Some(v) = c.spec.as_ref().and_then(|s| s.volume_name.clone()) {
                        volumes.add(v);
                    }
                }
            });
        let (claims, volumes) = (ctx.claim_queue.clone(), ctx.volume_queue.clone());
        let claim_cache = ctx.claims.clone();
        informers
            .informer::<PersistentVolume>()
            .add_handler(move |change| {
                let pv = match change {
                    Change::Added(v) | Change::Updated { new: v, .. } => *v,
                    Change::Deleted(v) => *v,
                };
                if !matches!(change, Change::Deleted(_)) {
                    volumes.add(pv.metadata.name.clone().unwrap_or_default());
                }
                // A volume free to bind: the claims still waiting may take it now
                // rather than at the next resync.
                let free = claim_ref_of(pv).is_none() && !matches!(change, Change::Deleted(_));
                if free {
                    for c in claim_cache.store().state() {
                        if c.spec
                            .as_ref()
                            .and_then(|s| s.volume_name.as_deref())
                            .unwrap_or("")
                            .is_empty()
                        {
                            claims.add(meta_key(&c.metadata));
                        }
                    }
                }
                // The claim it names may now bind, or have lost its volume.
                if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                    claims.add(format!(
                        "{}/{}",
                        r.namespace.as_deref().unwrap_or(""),
                        r.name.as_deref().unwrap_or("")
                    ));
                }
            });
        PersistentVolumeController { ctx }
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
        tracing::info!(controller = CONTROLLER_NAME, "starting");
        let mut tasks = Vec::new();
        for _ in 0..WORKERS {
            tasks.push(tokio::spawn(claim_worker(ctx.clone())));
            tasks.push(tokio::spawn(volume_worker(ctx.clone())));
        }
        tasks.push(tokio::spawn(resync(ctx.clone(), cancel.clone())));
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn resync(ctx: Arc<Ctx>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RESYNC_PERIOD) => {}
        }
        for c in ctx.claims.store().state() {
            ctx.claim_queue.add(meta_key(&c.metadata));
        }
        for v in ctx.volumes.store().state() {
            ctx.volume_queue
                .add(v.metadata.name.clone().unwrap_or_default());
        }
    }
}

async fn claim_worker(ctx: Arc<Ctx>) {
    let queue = ctx.claim_queue.clone();
    queue
        .work(CONTROLLER_NAME, |key: String| {
            let ctx = ctx.clone();
            async move {
                let span = tracing::debug_span!("sync_claim", claim = %key);
                let (ns, name) = key.split_once('/').unwrap_or(("", key.as_str()));
                match ctx.claims.get(ns, name) {
                    Some(claim) => sync_claim(&ctx, &claim).instrument(span).await,
                    None => Ok(()),
                }
            }
        })
        .await
}

async fn volume_worker(ctx: Arc<Ctx>) {
    let queue = ctx.volume_queue.clone();
    queue
        .work(CONTROLLER_NAME, |name: String| {
            let ctx = ctx.clone();
            async move {
                let span = tracing::debug_span!("sync_volume", volume = %name);
                match ctx.volumes.get("", &name) {
                    Some(pv) => sync_volume(&ctx, &pv).instrument(span).await,
                    None => Ok(()),
                }
            }
        })
        .await
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn claim_ref_of(pv: &PersistentVolume) -> Option<&ObjectReference> {
    pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
}

fn object_ref(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        ..Default::default()
    }
}

fn volume_ref(pv: &PersistentVolume) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolume".into()),
        name: pv.metadata.name.clone(),
        uid: pv.metadata.uid.clone(),
        ..Default::default()
    }
}

async fn sync_claim(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<(), Error> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    match volume_name {
        None => sync_unbound_claim(ctx, claim).await,
        Some(v) => sync_bound_claim(ctx, claim, &v).await,
    }
}

/// Upstream `syncUnboundClaim` for a claim that names no volume.
async fn sync_unbound_claim(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<(), Error> {
    let class_name = volume::claim_class(claim);
    let class = (!class_name.is_empty())
        .then(|| ctx.classes.get("", &class_name))
        .flatten();
    let delay = class
        .as_ref()
        .and_then(|c| c.volume_binding_mode.as_deref())
        == Some("WaitForFirstConsumer");
    let volumes = ctx.volumes.store().state();
    if let Some(pv) = volume::find_best_match(claim, &volumes, None, delay) {
        return bind(ctx, claim, pv).await;
    }
    let claim_ref = object_ref(claim);
    let selected = annotation(&claim.metadata, ANN_SELECTED_NODE).is_some();
    if delay && !selected {
        ctx.recorder
            .publish(
                &claim_ref,
                EventType::Normal,
                "WaitForFirstConsumer",
                "Binding",
                "waiting for first consumer to be created before binding".into(),
            )
            .await;
    } else if class_name.is_empty() {
        ctx.recorder
            .publish(
                &claim_ref,
                EventType::Normal,
                "FailedBinding",
                "Binding",
                "no persistent volumes available for this claim and no storage class is set".into(),
            )
            .await;
    } else {
        provision(ctx, claim, &class_name, class.as_deref()).await?;
    }
    set_claim_phase(ctx, claim, "Pending").await
}

/// Upstream `provisionClaim` for external provisioners: names the provisioner on the
/// claim and says it is waiting for it.
async fn provision(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    class_name: &str,
    class: Option<&StorageClass>,
) -> Result<(), Error> {
    let claim_ref = object_ref(claim);
    let Some(class) = class else {
        ctx.recorder
            .publish(
                &claim_ref,
                EventType::Warning,
                "ProvisioningFailed",
                "Provisioning",
                format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
            )
            .await;
        return Ok(());
    };
    if class.provisioner == NO_PROVISIONER {
        ctx.recorder
            .publish(
                &claim_ref,
                EventType::Normal,
                "FailedBinding",
                "Binding",
                "no persistent volumes available for this claim and no storage class is set".into(),
            )
            .await;
        return Ok(());
    }
    if annotation(&claim.metadata, ANN_STORAGE_PROVISIONER) != Some(class.provisioner.as_str()) {
        let patch = json!({"metadata": {
            "resourceVersion": claim.metadata.resource_version,
            "annotations": {
                ANN_STORAGE_PROVISIONER: class.provisioner,
                ANN_BETA_STORAGE_PROVISIONER: class.provisioner,
            },
        }});
        claims_api(ctx, claim)
            .patch(
                &name(&claim.metadata),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    ctx.recorder
        .publish(
            &claim_ref,
            EventType::Normal,
            "ExternalProvisioning",
            "Provisioning",
            format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or \
                 manually by the system administrator. If volume creation is delayed, please \
                 verify that the provisioner is running and correctly registered.",
                class.provisioner
            ),
        )
        .await;
    Ok(())
}

/// Upstream `syncBoundClaim` for a claim that names its volume.
async fn sync_bound_claim(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    volume_name: &str,
) -> Result<(), Error> {
    let Some(pv) = ctx.volumes.get("", volume_name) else {
        if annotation(&claim.metadata, ANN_BIND_COMPLETED).is_some() && claim_phase(claim) != "Lost"
        {
            ctx.recorder
                .publish(
                    &object_ref(claim),
                    EventType::Warning,
                    "ClaimLost",
                    "Binding",
                    "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
                        .into(),
                )
                .await;
            return set_claim_phase(ctx, claim, "Lost").await;
        }
        // Pre-bound by the user to a volume that does not exist (yet).
        return set_claim_phase(ctx, claim, "Pending").await;
    };
    match claim_ref_of(&pv) {
        None => bind(ctx, claim, &pv).await,
        // Pre-bound by name only: the uid is still to be filled in.
        Some(r) if volume::is_bound_to(&pv, claim) && r.uid.as_deref().unwrap_or("").is_empty() => {
            bind(ctx, claim, &pv).await
        }
        Some(_) if volume::is_bound_to(&pv, claim) => finish_claim(ctx, claim, &pv, false).await,
        Some(_) => {
            if annotation(&claim.metadata, ANN_BIND_COMPLETED).is_some()
                && claim_phase(claim) != "Lost"
            {
                ctx.recorder
                    .publish(
                        &object_ref(claim),
                        EventType::Warning,
                        "ClaimMisbound",
                        "Binding",
                        "Two claims are bound to the same volume, this one is bound incorrectly"
                            .into(),
                    )
                    .await;
                return set_claim_phase(ctx, claim, "Lost").await;
            }
            set_claim_phase(ctx, claim, "Pending").await
        }
    }
}

/// Binds both sides (upstream `bind`): the volume's claimRef and phase, then the
/// claim's volumeName, annotations and status.
async fn bind(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<(), Error> {
    let pv_name = name(&pv.metadata);
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let bound_uid = claim_ref_of(pv).and_then(|r| r.uid.as_deref());
    let pv = if bound_uid.is_none() || bound_uid != claim.metadata.uid.as_deref() {
        let mut annotations = serde_json::Map::new();
        if claim_ref_of(pv).is_none() {
            annotations.insert(ANN_BOUND_BY_CONTROLLER.into(), json!("yes"));
        }
        let patch = json!({
            "metadata": {"resourceVersion": pv.metadata.resource_version, "annotations": annotations},
            "spec": {"claimRef": object_ref(claim)},
        });
        volumes
            .patch(&pv_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?
    } else {
        pv.clone()
    };
    if volume_phase(&pv) != "Bound" {
        let patch = json!({"status": {"phase": "Bound"}});
        volumes
            .patch_status(&pv_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    finish_claim(ctx, claim, &pv, true).await
}

/// The claim's half of a binding: `spec.volumeName`, the annotations and `Bound`.
async fn finish_claim(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
    by_controller: bool,
) -> Result<(), Error> {
    let pv_name = name(&pv.metadata);
    let api = claims_api(ctx, claim);
    let claim_name = name(&claim.metadata);
    let named =
        claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(pv_name.as_str());
    if !named || annotation(&claim.metadata, ANN_BIND_COMPLETED).is_none() {
        let mut annotations = serde_json::Map::new();
        annotations.insert(ANN_BIND_COMPLETED.into(), json!("yes"));
        if !named && by_controller {
            annotations.insert(ANN_BOUND_BY_CONTROLLER.into(), json!("yes"));
        }
        let patch = json!({
            "metadata": {"resourceVersion": claim.metadata.resource_version, "annotations": annotations},
            "spec": {"volumeName": pv_name},
        });
        api.patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let spec = pv.spec.clone().unwrap_or_default();
    let status = claim.status.clone().unwrap_or_default();
    if status.phase.as_deref() != Some("Bound")
        || status.capacity != spec.capacity
        || status.access_modes != spec.access_modes
    {
        let patch = json!({"status": {
            "phase": "Bound",
            "capacity": spec.capacity,
            "accessModes": spec.access_modes,
        }});
        api.patch_status(&claim_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        if status.phase.as_deref() != Some("Bound") {
            tracing::info!(claim = %meta_key(&claim.metadata), volume = %pv_name, "claim bound");
        }
    }
    Ok(())
}

/// Upstream `syncVolume`.
async fn sync_volume(ctx: &Ctx, pv: &PersistentVolume) -> Result<(), Error> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let Some(r) = claim_ref_of(pv) else {
        return set_volume_phase(ctx, pv, "Available", None).await;
    };
    let ns = r.namespace.clone().unwrap_or_default();
    let claim_name = r.name.clone().unwrap_or_default();
    let Some(uid) = r.uid.clone().filter(|u| !u.is_empty()) else {
        // Pre-bound by name: available to that claim only, which binds it.
        ctx.claim_queue.add(format!("{ns}/{claim_name}"));
        return set_volume_phase(ctx, pv, "Available", None).await;
    };
    let mut claim = ctx.claims.get(&ns, &claim_name);
    if claim.is_none() {
        // The cache may lag behind a claim just created: ask the API before releasing.
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        claim = match api.get(&claim_name).await {
            Ok(c) => Some(Arc::new(c)),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e.into()),
        };
    }
    let claim = claim.filter(|c| c.metadata.uid.as_deref() == Some(uid.as_str()));
    let Some(claim) = claim else {
        return release(ctx, pv).await;
    };
    let claimed = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    match claimed {
        None | Some("") => {
            // The claim's half of the binding is still to be written.
            ctx.claim_queue.add(meta_key(&claim.metadata));
            Ok(())
        }
        Some(v) if v == name(&pv.metadata) => set_volume_phase(ctx, pv, "Bound", None).await,
        Some(_) => {
            // The claim chose another volume: undo a binding this controller made.
            if annotation(&pv.metadata, ANN_BOUND_BY_CONTROLLER).is_some() {
                let patch = json!({"metadata": {"resourceVersion": pv.metadata.resource_version,
                    "annotations": {ANN_BOUND_BY_CONTROLLER: null}}, "spec": {"claimRef": null}});
                let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
                api.patch(
                    &name(&pv.metadata),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                Ok(())
            } else {
                release(ctx, pv).await
            }
        }
    }
}

/// The volume's claim is gone: `Released`, then its reclaim policy.
async fn release(ctx: &Ctx, pv: &PersistentVolume) -> Result<(), Error> {
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    let phase = volume_phase(pv);
    if phase == "Failed" {
        return Ok(());
    }
    if phase != "Released" {
        set_volume_phase(ctx, pv, "Released", None).await?;
        tracing::info!(volume = %name(&pv.metadata), policy, "volume released");
    }
    match policy {
        "Recycle" => {
            let message = "Recycle is not supported: use dynamic provisioning instead";
            ctx.recorder
                .publish(
                    &volume_ref(pv),
                    EventType::Warning,
                    "VolumeFailedRecycle",
                    "Recycle",
                    message.into(),
                )
                .await;
            set_volume_phase(ctx, pv, "Failed", Some(message)).await
        }
        "Delete" if annotation(&pv.metadata, volume::ANN_PROVISIONED_BY).is_none() => {
            let message = "error getting deleter volume plugin for volume: no deletable volume plugin matched";
            ctx.recorder
                .publish(
                    &volume_ref(pv),
                    EventType::Warning,
                    "VolumeFailedDelete",
                    "Delete",
                    message.into(),
                )
                .await;
            set_volume_phase(ctx, pv, "Failed", Some(message)).await
        }
        // Retain keeps it Released; Delete of a provisioned volume is its provisioner's.
        _ => Ok(()),
    }
}

async fn set_volume_phase(
    ctx: &Ctx,
    pv: &PersistentVolume,
    phase: &str,
    message: Option<&str>,
) -> Result<(), Error> {
    if volume_phase(pv) == phase {
        return Ok(());
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let patch = json!({"status": {"phase": phase, "message": message}});
    api.patch_status(
        &name(&pv.metadata),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn set_claim_phase(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    phase: &str,
) -> Result<(), Error> {
    if claim_phase(claim) == phase {
        return Ok(());
    }
    let patch = json!({"status": {"phase": phase}});
    claims_api(ctx, claim)
        .patch_status(
            &name(&claim.metadata),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

fn claims_api(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Api<PersistentVolumeClaim> {
    Api::namespaced(
        ctx.client.clone(),
        claim.metadata.namespace.as_deref().unwrap_or("default"),
    )
}

fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}
