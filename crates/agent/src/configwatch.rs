//! Keeps configMap and secret volumes fresh without polling: one metadata-only watch
//! each on ConfigMaps and Secrets, and a change to one wakes the workers of the pods
//! whose volumes (directly or projected) use it; their next sync rewrites the files
//! (`volumes`). Upstream's kubelet reaches the same end with a periodic resync and
//! per-object watches; a change here shows up in the mounted file within a second.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::worker::{Ctx, PodWorkers};

/// Which kind of object changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    ConfigMap,
    Secret,
}

/// Whether a volume of `pod` is filled from the `source` named `name` (in its namespace).
pub fn uses(pod: &Pod, source: Source, name: &str) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.volumes.iter().flatten().any(|v| {
        let direct = match source {
            Source::ConfigMap => v.config_map.as_ref().is_some_and(|c| c.name == name),
            Source::Secret => v
                .secret
                .as_ref()
                .is_some_and(|s| s.secret_name.as_deref() == Some(name)),
        };
        direct
            || v.projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
                .any(|s| match source {
                    Source::ConfigMap => s.config_map.as_ref().is_some_and(|c| c.name == name),
                    Source::Secret => s.secret.as_ref().is_some_and(|c| c.name == name),
                })
    })
}

/// The namespace/name of an object that was added or changed, from a metadata watch.
fn changed<K>(ev: watcher::Event<PartialObjectMeta<K>>) -> Option<(String, String)> {
    match ev {
        watcher::Event::Apply(m) => Some((
            m.metadata.namespace.unwrap_or_default(),
            m.metadata.name.unwrap_or_default(),
        )),
        _ => None,
    }
}

pub async fn run(ctx: Arc<Ctx>, workers: Arc<PodWorkers>, cancel: CancellationToken) {
    let cms = watcher::watcher(
        Api::<PartialObjectMeta<ConfigMap>>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .map(|e| e.map(|e| (Source::ConfigMap, changed(e))))
    .boxed();
    let secrets = watcher::watcher(
        Api::<PartialObjectMeta<Secret>>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .map(|e| e.map(|e| (Source::Secret, changed(e))))
    .boxed();
    let mut events = futures::stream::select(cms, secrets);
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.next() => ev,
        };
        match ev {
            None => return,
            Some(Ok((source, Some((ns, name))))) => {
                let woken = workers.wake_matching(|pod| {
                    pod.metadata.namespace.as_deref() == Some(ns.as_str())
                        && uses(pod, source, &name)
                });
                if woken > 0 {
                    tracing::debug!(?source, %ns, %name, pods = woken, "volume source changed");
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "configmap/secret watch failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_direct_and_projected_sources() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [], "volumes": [
                {"name": "a", "configMap": {"name": "cm1"}},
                {"name": "b", "secret": {"secretName": "s1"}},
                {"name": "c", "projected": {"sources": [{"configMap": {"name": "cm2"}}, {"secret": {"name": "s2"}}]}},
            ]},
        }))
        .unwrap();
        assert!(uses(&pod, Source::ConfigMap, "cm1"));
        assert!(uses(&pod, Source::ConfigMap, "cm2"));
        assert!(uses(&pod, Source::Secret, "s1"));
        assert!(uses(&pod, Source::Secret, "s2"));
        assert!(!uses(&pod, Source::Secret, "cm1"));
        assert!(!uses(&pod, Source::ConfigMap, "other"));
    }
}
