//! Static pods: manifests in `<data-dir>/agent/pod-manifests/*.yaml|*.yml|*.json` (one
//! Pod each, or several in a YAML stream) run on this node without anyone creating them
//! through the API. The agent mirrors each into the API as a pod named
//! `<name>-<node>` bound to this node, owned by the Node and annotated as upstream's
//! kubelet does (`kubernetes.io/config.source: file`, `kubernetes.io/config.hash`,
//! `kubernetes.io/config.mirror`), so `kubectl get pods -A` shows it and the pod
//! workers run it like any other. The folder is read at start and every 20 s (the
//! kubelet's file-check frequency): a new or changed manifest (new hash) replaces its
//! mirror pod, a removed one deletes it, and a mirror pod deleted through the API is
//! created again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const CHECK_EVERY: Duration = Duration::from_secs(20);

/// The mirror pods the manifests in `dir` ask for, by name.
pub fn desired(dir: &Path, node: &str) -> BTreeMap<String, Pod> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut out = BTreeMap::new();
    for file in files {
        let ext = file
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if !matches!(ext, "yaml" | "yml" | "json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = match serde_json::Value::deserialize(doc) {
                Ok(v) if !v.is_null() => v,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "static pod manifest is not valid YAML");
                    continue;
                }
            };
            match mirror_pod(value, node) {
                Some(p) => {
                    out.insert(p.metadata.name.clone().unwrap_or_default(), p);
                }
                None => {
                    tracing::warn!(file = %file.display(), "static pod manifest is not a Pod with a name")
                }
            }
        }
    }
    out
}

/// The mirror pod of one manifest: `<name>-<node>` in its namespace (default
/// `default`), bound to `node`, with the source annotations.
pub fn mirror_pod(mut manifest: serde_json::Value, node: &str) -> Option<Pod> {
    if manifest.get("kind").and_then(|k| k.as_str()) != Some("Pod") {
        return None;
    }
    let hash = format!("{:x}", Sha256::digest(serde_json::to_vec(&manifest).ok()?));
    let hash = &hash[..32];
    let name = manifest.pointer("/metadata/name")?.as_str()?.to_string();
    let meta = manifest.get_mut("metadata")?.as_object_mut()?;
    meta.insert("name".into(), format!("{name}-{node}").into());
    if !meta.contains_key("namespace") {
        meta.insert("namespace".into(), "default".into());
    }
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| serde_json::json!({}));
    let annotations = annotations.as_object_mut()?;
    annotations.insert(SOURCE_ANNOTATION.into(), "file".into());
    annotations.insert(HASH_ANNOTATION.into(), hash.into());
    annotations.insert(MIRROR_ANNOTATION.into(), hash.into());
    manifest
        .get_mut("spec")?
        .as_object_mut()?
        .insert("nodeName".into(), node.into());
    serde_json::from_value(manifest).ok()
}

pub async fn run(client: Client, dir: std::path::PathBuf, node: String, cancel: CancellationToken) {
    let _ = std::fs::create_dir_all(&dir);
    loop {
        if let Err(e) = sync(&client, &dir, &node).await {
            tracing::warn!(error = %e, "syncing static pods failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

async fn sync(client: &Client, dir: &Path, node: &str) -> anyhow::Result<()> {
    let want = desired(dir, node);
    let all: Api<Pod> = Api::all(client.clone());
    let have: Vec<Pod> = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
        })
        .collect();
    let node_uid = Api::<Node>::all(client.clone())
        .get(node)
        .await?
        .metadata
        .uid;
    let hash_of = |p: &Pod| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(HASH_ANNOTATION).cloned())
    };
    for p in &have {
        let name = p.metadata.name.clone().unwrap_or_default();
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let stale = match want.get(&name) {
            Some(w) => {
                hash_of(w) != hash_of(p) || w.metadata.namespace.as_deref() != Some(ns.as_str())
            }
            None => true,
        };
        if stale && p.metadata.deletion_timestamp.is_none() {
            tracing::info!(pod = %format!("{ns}/{name}"), "removing a static pod's mirror");
            let _ = Api::<Pod>::namespaced(client.clone(), &ns)
                .delete(&name, &DeleteParams::default())
                .await;
        }
    }
    for (name, mut pod) in want {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        if have.iter().any(|p| {
            p.metadata.name.as_deref() == Some(name.as_str())
                && p.metadata.namespace.as_deref() == Some(ns.as_str())
        }) {
            continue;
        }
        pod.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.to_string(),
                uid: node_uid.clone().unwrap_or_default(),
                controller: Some(true),
                ..Default::default()
            },
        ]);
        match Api::<Pod>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &pod)
            .await
        {
            Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "created a static pod's mirror"),
            // Still terminating after a change: the next round creates it.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "creating a mirror pod failed")
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_become_named_annotated_bound_pods() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("web.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: kube-system\nspec:\n  containers:\n  - name: c\n    image: busybox\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: second\nspec:\n  containers: []\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            "kind: Service\nmetadata: {name: x}\n",
        )
        .unwrap();
        let pods = desired(dir.path(), "n1");
        assert_eq!(pods.keys().collect::<Vec<_>>(), ["second-n1", "web-n1"]);
        let web = &pods["web-n1"];
        assert_eq!(web.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(
            pods["second-n1"].metadata.namespace.as_deref(),
            Some("default")
        );
        assert_eq!(
            web.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some("n1")
        );
        let a = web.metadata.annotations.clone().unwrap();
        assert_eq!(a[SOURCE_ANNOTATION], "file");
        assert_eq!(a[HASH_ANNOTATION], a[MIRROR_ANNOTATION]);
        // A changed manifest has another hash.
        std::fs::write(dir.path().join("web.yaml"), "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: kube-system\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n").unwrap();
        let again = desired(dir.path(), "n1");
        assert_ne!(
            again["web-n1"].metadata.annotations.as_ref().unwrap()[HASH_ANNOTATION],
            a[HASH_ANNOTATION]
        );
    }
}
