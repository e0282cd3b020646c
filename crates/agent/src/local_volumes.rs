//! Directories of local-path volumes (`controllers::volume::local_path`) on this node.
//! The provisioner only writes API objects; the directory of a volume pinned to this
//! node is created by the first pod that mounts it (`volumes`) and removed here when
//! its PersistentVolume is deleted, as local-path-provisioner's helper pod does.
//!
//! Deletions are seen through a watch, so a volume deleted while the agent was down
//! leaves its directory behind.

use std::path::PathBuf;

use apis::volume::ANN_PROVISIONED_BY;
use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::Api;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::Client;
use tokio_util::sync::CancellationToken;

/// Made by the local-path provisioner.
pub fn provisioned_locally(pv: &PersistentVolume) -> bool {
    pv.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_PROVISIONED_BY))
        .map(String::as_str)
        == Some(controllers::volume::local_path::PROVISIONER)
}

/// The volume's required node affinity names `node` by hostname.
pub fn pinned_to(pv: &PersistentVolume, node: &str) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_some_and(|r| {
            r.node_selector_terms.iter().any(|t| {
                t.match_expressions.iter().flatten().any(|e| {
                    e.key == "kubernetes.io/hostname"
                        && e.operator == "In"
                        && e.values.iter().flatten().any(|v| v == node)
                })
            })
        })
}

/// The directory to remove for a deleted local-path volume: only an absolute path
/// whose last component is the provisioner's `pvc-…` name.
pub fn removable_dir(pv: &PersistentVolume) -> Option<PathBuf> {
    let path = PathBuf::from(&pv.spec.as_ref()?.host_path.as_ref()?.path);
    let last = path.file_name()?.to_str()?;
    let named = pv.metadata.name.as_deref()?;
    (path.is_absolute() && path.components().count() > 2 && last.starts_with(&format!("{named}_")))
        .then_some(path)
}

/// Removes the directories of this node's local-path volumes as they are deleted.
pub async fn run(client: Client, node: String, cancel: CancellationToken) {
    let api: Api<PersistentVolume> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = stream.next() => ev,
        };
        match ev {
            Some(Ok(watcher::Event::Delete(pv))) => {
                if !provisioned_locally(&pv) || !pinned_to(&pv, &node) {
                    continue;
                }
                let Some(dir) = removable_dir(&pv) else {
                    continue;
                };
                match tokio::fs::remove_dir_all(&dir).await {
                    Ok(()) => {
                        tracing::info!(volume = ?pv.metadata.name, dir = %dir.display(), "removed the directory of a deleted volume")
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the directory of a deleted volume")
                    }
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::debug!(error = %e, "volume watch error; retrying"),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, path: &str, node: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {ANN_PROVISIONED_BY: "rancher.io/local-path"}},
            "spec": {"hostPath": {"path": path},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
        }))
        .expect("pv")
    }

    #[test]
    fn only_the_provisioners_own_directories_are_removed() {
        let ok = pv(
            "pvc-1",
            "/var/lib/rkube/storage/pvc-1_default_www-web-0",
            "n1",
        );
        assert!(provisioned_locally(&ok));
        assert!(pinned_to(&ok, "n1"));
        assert!(!pinned_to(&ok, "n2"));
        assert_eq!(
            removable_dir(&ok),
            Some(PathBuf::from(
                "/var/lib/rkube/storage/pvc-1_default_www-web-0"
            ))
        );
        assert_eq!(removable_dir(&pv("pvc-1", "/var/lib/rkube", "n1")), None);
        assert_eq!(removable_dir(&pv("pvc-1", "/pvc-1_x_y", "n1")), None);
        assert_eq!(
            removable_dir(&pv("pvc-1", "relative/pvc-1_x_y", "n1")),
            None
        );
        assert_eq!(
            removable_dir(&pv("pvc-2", "/srv/data/pvc-1_x_y", "n1")),
            None
        );
    }
}
