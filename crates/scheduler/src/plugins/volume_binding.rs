//! VolumeBinding: a pod's PersistentVolumeClaims decide where it may go, and are bound
//! before it is.
//!
//! - PreFilter: every claim must exist and not be terminating; a claim not yet bound
//!   must be of a `WaitForFirstConsumer` class (an unbound claim of an `Immediate`
//!   class is the PV controller's to bind first).
//! - Filter: a bound claim's volume must be reachable from the node (its
//!   `nodeAffinity`); an unbound claim needs an available volume reachable from the
//!   node, or a class with a provisioner that can make one.
//! - PreBind (off the loop): an unbound claim is pre-bound to the volume found for the
//!   chosen node, or marked `volume.kubernetes.io/selected-node` for its provisioner;
//!   then the pod waits, through a watch, until the PV controller has bound every claim.
//!
//! Claims, volumes and classes come from this plugin's own watches; any change to them
//! retries pods this plugin turned away.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apis::volume::{self, ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE, NO_PROVISIONER};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::framework::{
    CycleState, FilterPlugin, InformedPlugin, NodeInfo, Plugin, PodInfo, PreBindPlugin,
    PreFilterPlugin, PreFilterResult, Snapshot, Status,
};

pub const NAME: &str = "VolumeBinding";
pub const ERR_REASON_BIND_CONFLICT: &str =
    "node(s) didn't find available persistent volumes to bind";
pub const ERR_REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const ERR_REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
pub const ERR_REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// How long PreBind waits for the claims to be bound (upstream `bindTimeoutSeconds`).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);

struct Writers {
    claims: reflector::store::Writer<PersistentVolumeClaim>,
    volumes: reflector::store::Writer<PersistentVolume>,
    classes: reflector::store::Writer<StorageClass>,
}

pub struct VolumeBinding {
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    writers: Mutex<Option<Writers>>,
}

impl Default for VolumeBinding {
    fn default() -> Self {
        VolumeBinding::new()
    }
}

/// What PreFilter learnt about the pod's claims.
#[derive(Clone, Default)]
struct PodVolumes {
    /// Volumes of the bound claims (`None`: the claim names a volume that is missing).
    bound: Vec<Option<Arc<PersistentVolume>>>,
    /// Unbound claims of WaitForFirstConsumer classes, with whether their class can
    /// provision.
    delayed: Vec<(Arc<PersistentVolumeClaim>, bool)>,
    /// Every volume, when there are delayed claims to match.
    all_volumes: Vec<Arc<PersistentVolume>>,
}

/// Names of the claims a pod uses: `persistentVolumeClaim` volumes and generic
/// ephemeral volumes (`<pod>-<volume>`).
pub fn pod_claim_names(pod: &Pod) -> Vec<String> {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{pod_name}-{}", v.name))
            }
        })
        .collect()
}

fn is_bound(claim: &PersistentVolumeClaim) -> bool {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty())
}

/// Bound as far as a pod is concerned: the PV controller has finished both sides.
fn binding_completed(claim: &PersistentVolumeClaim) -> bool {
    is_bound(claim)
        && claim
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(volume::ANN_BIND_COMPLETED))
}

impl VolumeBinding {
    pub fn new() -> VolumeBinding {
        let (claims, cw) = reflector::store();
        let (volumes, vw) = reflector::store();
        let (classes, sw) = reflector::store();
        VolumeBinding {
            claims,
            volumes,
            classes,
            writers: Mutex::new(Some(Writers {
                claims: cw,
                volumes: vw,
                classes: sw,
            })),
        }
    }

    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(&ObjectRef::new(name).within(namespace))
    }

    /// The claim's class binds late, and whether it can provision.
    fn class_mode(&self, claim: &PersistentVolumeClaim) -> (bool, bool) {
        let name = volume::claim_class(claim);
        match self.classes.get(&ObjectRef::new(&name)) {
            Some(c) => (
                c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"),
                c.provisioner != NO_PROVISIONER,
            ),
            None => (false, false),
        }
    }

    fn pod_volumes(&self, pod: &PodInfo) -> Result<Option<PodVolumes>, Status> {
        let names = pod_claim_names(&pod.pod);
        if names.is_empty() {
            return Ok(None);
        }
        let mut out = PodVolumes::default();
        for name in names {
            let Some(claim) = self.claim(&pod.namespace, &name) else {
                return Err(Status::unresolvable(format!(
                    "persistentvolumeclaim \"{name}\" not found"
                )));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(Status::unresolvable(format!(
                    "persistentvolumeclaim \"{name}\" is being deleted"
                )));
            }
            if is_bound(&claim) {
                let pv = claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .and_then(|v| self.volumes.get(&ObjectRef::new(v)));
                out.bound.push(pv);
                continue;
            }
            let (delay, provisions) = self.class_mode(&claim);
            if !delay {
                return Err(Status::unresolvable(ERR_REASON_UNBOUND_IMMEDIATE));
            }
            out.delayed.push((claim, provisions));
        }
        if !out.delayed.is_empty() {
            out.all_volumes = self.volumes.state();
        }
        Ok(Some(out))
    }
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        match self.pod_volumes(pod) {
            Ok(None) => (None, Status::skip()),
            Ok(Some(v)) => {
                state.write(v);
                (None, Status::success())
            }
            Err(s) => (None, s),
        }
    }
}

/// Whether the delayed claims can all be satisfied on `node`, each by a distinct
/// volume or by provisioning.
fn delayed_fit(v: &PodVolumes, node: &Node) -> bool {
    let mut taken: Vec<String> = Vec::new();
    for (claim, provisions) in &v.delayed {
        let free: Vec<Arc<PersistentVolume>> = v
            .all_volumes
            .iter()
            .filter(|pv| {
                !taken
                    .iter()
                    .any(|t| pv.metadata.name.as_deref() == Some(t.as_str()))
            })
            .cloned()
            .collect();
        match volume::find_best_match(claim, &free, Some(node), true) {
            Some(pv) => taken.push(pv.metadata.name.clone().unwrap_or_default()),
            None if *provisions => {}
            None => return false,
        }
    }
    true
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(v) = state.read::<PodVolumes>() else {
            return Status::success();
        };
        let Some(n) = node.node() else {
            return Status::error("node not found");
        };
        for pv in &v.bound {
            match pv {
                None => return Status::unresolvable(ERR_REASON_PV_NOT_EXIST),
                Some(pv) if !volume::reachable_from(pv, n) => {
                    return Status::unresolvable(ERR_REASON_NODE_CONFLICT)
                }
                Some(_) => {}
            }
        }
        if !delayed_fit(v, n) {
            return Status::unschedulable(ERR_REASON_BIND_CONFLICT);
        }
        Status::success()
    }
}

#[async_trait::async_trait]
impl PreBindPlugin for VolumeBinding {
    async fn pre_bind(&self, client: &Client, pod: &PodInfo, node: &str) -> Status {
        let names = pod_claim_names(&pod.pod);
        if names.is_empty() {
            return Status::skip();
        }
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &pod.namespace);
        let unbound: Vec<Arc<PersistentVolumeClaim>> = names
            .iter()
            .filter_map(|n| self.claim(&pod.namespace, n))
            .filter(|c| !is_bound(c))
            .collect();
        if !unbound.is_empty() {
            if let Err(s) = self.bind_claims(client, &unbound, node).await {
                return s;
            }
        }
        for name in &names {
            let wait = kube::runtime::wait::await_condition(
                claims.clone(),
                name,
                |c: Option<&PersistentVolumeClaim>| c.is_some_and(binding_completed),
            );
            match tokio::time::timeout(BIND_TIMEOUT, wait).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Status::error(format!("binding volumes: {e}")),
                Err(_) => return Status::error("binding volumes: context deadline exceeded"),
            }
        }
        Status::success()
    }
}

impl VolumeBinding {
    /// Pre-binds each unbound claim to a volume reachable from `node`, or asks its
    /// provisioner for one there.
    async fn bind_claims(
        &self,
        client: &Client,
        unbound: &[Arc<PersistentVolumeClaim>],
        node: &str,
    ) -> Result<(), Status> {
        let nodes: Api<Node> = Api::all(client.clone());
        let node_obj = nodes
            .get(node)
            .await
            .map_err(|e| Status::error(format!("binding volumes: {e}")))?;
        let volumes: Api<PersistentVolume> = Api::all(client.clone());
        let mut all = self.volumes.state();
        for claim in unbound {
            let claim_name = claim.metadata.name.clone().unwrap_or_default();
            let ns = claim.metadata.namespace.clone().unwrap_or_default();
            if let Some(pv) = volume::find_best_match(claim, &all, Some(&node_obj), true).cloned() {
                let pv_name = pv.metadata.name.clone().unwrap_or_default();
                all.retain(|p| p.metadata.name.as_deref() != Some(pv_name.as_str()));
                if volume::is_bound_to(&pv, claim) {
                    continue;
                }
                let claim_ref = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("PersistentVolumeClaim".into()),
                    namespace: Some(ns),
                    name: Some(claim_name),
                    uid: claim.metadata.uid.clone(),
                    resource_version: claim.metadata.resource_version.clone(),
                    ..Default::default()
                };
                let patch = json!({
                    "metadata": {"resourceVersion": pv.metadata.resource_version,
                                 "annotations": {ANN_BOUND_BY_CONTROLLER: "yes"}},
                    "spec": {"claimRef": claim_ref},
                });
                volumes
                    .patch(&pv_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| Status::error(format!("binding volumes: {e}")))?;
                continue;
            }
            let selected = claim
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANN_SELECTED_NODE))
                .map(String::as_str);
            if selected == Some(node) {
                continue;
            }
            let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
            let patch = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
            api.patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Status::error(format!("binding volumes: {e}")))?;
        }
        Ok(())
    }
}

/// Feeds one store from a watch, calling `changed` after every change.
async fn reflect<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    changed: Arc<dyn Fn() + Send + Sync>,
    cancel: CancellationToken,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let stream = reflector::reflector(
        writer,
        watcher::watcher(api, watcher::Config::default()).default_backoff(),
    );
    let mut stream = std::pin::pin!(stream);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            ev = stream.next() => match ev {
                Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)) => changed(),
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::debug!(error = %e, "volume binding watch error; retrying"),
                None => return,
            },
        }
    }
}

impl InformedPlugin for VolumeBinding {
    fn start(
        &self,
        client: Client,
        cancel: CancellationToken,
        changed: Arc<dyn Fn() + Send + Sync>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(w) = self.writers.lock().ok().and_then(|mut w| w.take()) else {
            return Vec::new();
        };
        vec![
            tokio::spawn(reflect(
                Api::<PersistentVolumeClaim>::all(client.clone()),
                w.claims,
                changed.clone(),
                cancel.clone(),
            )),
            tokio::spawn(reflect(
                Api::<PersistentVolume>::all(client.clone()),
                w.volumes,
                changed.clone(),
                cancel.clone(),
            )),
            tokio::spawn(reflect(
                Api::<StorageClass>::all(client),
                w.classes,
                changed,
                cancel,
            )),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, node: &str) -> Arc<PersistentVolume> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "manual", "hostPath": {"path": "/tmp/x"},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
                "status": {"phase": "Available"},
            }))
            .expect("pv"),
        )
    }

    fn claim(name: &str) -> Arc<PersistentVolumeClaim> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": name},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                    "resources": {"requests": {"storage": "1Gi"}}},
            }))
            .expect("claim"),
        )
    }

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("node")
    }

    #[test]
    fn claims_of_a_pod_include_ephemeral_volumes() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0"},
            "spec": {"containers": [], "volumes": [
                {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "tmp", "emptyDir": {}},
            ]},
        }))
        .expect("pod");
        assert_eq!(pod_claim_names(&pod), vec!["www-web-0", "web-0-scratch"]);
    }

    #[test]
    fn delayed_claims_need_distinct_reachable_volumes_or_a_provisioner() {
        let one = PodVolumes {
            bound: vec![],
            delayed: vec![(claim("a"), false)],
            all_volumes: vec![pv("on-n1", "n1")],
        };
        assert!(delayed_fit(&one, &node("n1")));
        assert!(!delayed_fit(&one, &node("n2")));
        let two = PodVolumes {
            delayed: vec![(claim("a"), false), (claim("b"), false)],
            ..one.clone()
        };
        assert!(
            !delayed_fit(&two, &node("n1")),
            "one volume cannot serve two claims"
        );
        let provisioned = PodVolumes {
            delayed: vec![(claim("a"), true)],
            all_volumes: vec![],
            ..one
        };
        assert!(delayed_fit(&provisioned, &node("n2")));
    }
}
