//! Persistent volume logic shared by the PV controller and the scheduler's
//! VolumeBinding plugin: annotation names, and which volume a claim binds to (upstream
//! `FindMatchingVolume`): a volume pre-bound to
//! the claim if it is big enough, else the smallest Available, unclaimed volume of the
//! claim's class and volume mode that offers every requested access mode, holds at
//! least the requested storage, carries the labels the claim's selector asks for and,
//! when a node is known, is reachable from that node.

use std::sync::Arc;

use crate::resource::Quantity;
use crate::selectors::LabelSelector;
use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, PersistentVolume, PersistentVolumeClaim,
};

/// On a claim: binding finished (`"yes"`).
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On a claim or volume: the controller, not the user, made the binding (`"yes"`).
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On a claim: the node the scheduler chose for its first consumer (delayed binding).
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// On a claim: which provisioner is asked to create its volume.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta form of [`ANN_STORAGE_PROVISIONER`], still set for old provisioners.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// On a volume: the provisioner that created it.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The beta claim annotation that names a class instead of `spec.storageClassName`.
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// A class's provisioner meaning "volumes are created by hand" (no dynamic provisioning).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// The claim's class: `spec.storageClassName`, else the beta annotation, else `""`.
pub fn claim_class(claim: &PersistentVolumeClaim) -> String {
    if let Some(c) = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_BETA_STORAGE_CLASS))
    {
        return c.clone();
    }
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

pub fn volume_class(pv: &PersistentVolume) -> String {
    if let Some(c) = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_BETA_STORAGE_CLASS))
    {
        return c.clone();
    }
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

pub fn requested_storage(claim: &PersistentVolumeClaim) -> Quantity {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .unwrap_or(Quantity::ZERO)
}

pub fn capacity(pv: &PersistentVolume) -> Quantity {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .unwrap_or(Quantity::ZERO)
}

fn claim_mode(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

fn volume_mode(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

/// Whether `pv.spec.claimRef` names this claim (uid unset counts: pre-bound by name).
pub fn is_bound_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == claim.metadata.name.as_deref()
        && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
        && (r.uid.as_deref().unwrap_or("").is_empty() || r.uid == claim.metadata.uid)
}

fn access_modes_fit(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let offered = pv
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default();
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default()
        .iter()
        .all(|m| offered.contains(m))
}

fn requirement_matches(r: &NodeSelectorRequirement, node: &Node) -> bool {
    let name = node.metadata.name.clone().unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let value = match r.key.as_str() {
        // A node without the hostname label still answers to its name.
        "kubernetes.io/hostname" => labels.get(&r.key).cloned().or(Some(name)),
        k => labels.get(k).cloned(),
    };
    let values = r.values.clone().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => !value.is_some_and(|v| values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// Whether the volume's required node affinity admits `node`.
pub fn reachable_from(pv: &PersistentVolume, node: &Node) -> bool {
    let Some(terms) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(|r| &r.node_selector_terms)
    else {
        return true;
    };
    terms.iter().any(|t| {
        t.match_expressions
            .iter()
            .flatten()
            .all(|r| requirement_matches(r, node))
    })
}

/// The volume `claim` should bind to. With `delay_binding` and no `node`, only volumes
/// already pre-bound to the claim qualify (the scheduler picks the rest).
pub fn find_best_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: &'a [Arc<PersistentVolume>],
    node: Option<&Node>,
    delay_binding: bool,
) -> Option<&'a Arc<PersistentVolume>> {
    let requested = requested_storage(claim);
    let class = claim_class(claim);
    let selector = match claim.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(s) => LabelSelector::from_metav1(s).ok()?,
        None => LabelSelector::everything(),
    };
    let mut best: Option<&Arc<PersistentVolume>> = None;
    for pv in volumes {
        if pv.metadata.deletion_timestamp.is_some() || volume_mode(pv) != claim_mode(claim) {
            continue;
        }
        if node.is_some_and(|n| !reachable_from(pv, n)) {
            continue;
        }
        let size = capacity(pv);
        if is_bound_to(pv, claim) {
            if size >= requested {
                return Some(pv);
            }
            continue;
        }
        if delay_binding && node.is_none() {
            continue;
        }
        let spec = pv.spec.clone().unwrap_or_default();
        let available = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
        if spec.claim_ref.is_some() || !available {
            continue;
        }
        let labels = pv.metadata.labels.clone().unwrap_or_default();
        if !selector.matches(&labels)
            || volume_class(pv) != class
            || !access_modes_fit(claim, pv)
            || size < requested
        {
            continue;
        }
        if best.is_none_or(|b| size < capacity(b)) {
            best = Some(pv);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, class: &str, extra: serde_json::Value) -> Arc<PersistentVolume> {
        let mut v = json!({"metadata": {"name": name, "labels": {"tier": "fast"}}, "spec": {
            "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": class,
            "hostPath": {"path": "/tmp/x"}}, "status": {"phase": "Available"}});
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            for (k, x) in extra {
                spec.insert(k.clone(), x.clone());
            }
        }
        Arc::new(serde_json::from_value(v).expect("pv"))
    }

    fn claim(size: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut v = json!({"metadata": {"name": "data", "namespace": "ns", "uid": "u1"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, "storageClassName": "manual"}});
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            for (k, x) in extra {
                spec.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(v).expect("claim")
    }

    fn name(v: Option<&Arc<PersistentVolume>>) -> Option<&str> {
        v.and_then(|p| p.metadata.name.as_deref())
    }

    #[test]
    fn picks_the_smallest_volume_that_fits_class_modes_and_selector() {
        let volumes = vec![
            pv("big", "10Gi", "manual", json!({})),
            pv("small", "1Gi", "manual", json!({})),
            pv("fits", "2Gi", "manual", json!({})),
            pv("other-class", "2Gi", "gold", json!({})),
            pv(
                "rwx-only",
                "2Gi",
                "manual",
                json!({"accessModes": ["ReadWriteMany"]}),
            ),
            pv(
                "taken",
                "2Gi",
                "manual",
                json!({"claimRef": {"name": "x", "namespace": "ns"}}),
            ),
        ];
        assert_eq!(
            name(find_best_match(
                &claim("1500Mi", json!({})),
                &volumes,
                None,
                false
            )),
            Some("fits")
        );
        assert_eq!(
            name(find_best_match(
                &claim("20Gi", json!({})),
                &volumes,
                None,
                false
            )),
            None
        );
        let sel = json!({"selector": {"matchLabels": {"tier": "slow"}}});
        assert_eq!(
            name(find_best_match(&claim("1Gi", sel), &volumes, None, false)),
            None
        );
    }

    #[test]
    fn pre_bound_volumes_win_and_delayed_binding_waits_for_a_node() {
        let volumes = vec![
            pv("any", "5Gi", "manual", json!({})),
            pv(
                "mine",
                "5Gi",
                "other",
                json!({"claimRef": {"name": "data", "namespace": "ns", "uid": "u1"}}),
            ),
        ];
        assert_eq!(
            name(find_best_match(
                &claim("1Gi", json!({})),
                &volumes,
                None,
                true
            )),
            Some("mine")
        );
        let free = vec![pv("any", "5Gi", "manual", json!({}))];
        assert_eq!(
            name(find_best_match(&claim("1Gi", json!({})), &free, None, true)),
            None
        );
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).expect("node");
        let pinned = vec![pv(
            "n2-only",
            "5Gi",
            "manual",
            json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}}),
        )];
        assert_eq!(
            name(find_best_match(
                &claim("1Gi", json!({})),
                &pinned,
                Some(&node),
                true
            )),
            None
        );
        assert_eq!(
            name(find_best_match(
                &claim("1Gi", json!({})),
                &free,
                Some(&node),
                true
            )),
            Some("any")
        );
    }
}
