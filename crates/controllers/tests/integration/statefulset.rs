//! StatefulSet controller against a real in-process server, with the test standing in
//! for the kubelet (acceptance 3 of the controllers issue): ordered creation and
//! deletion proven from a single pod watch, stable claims, partitioned rolling update,
//! OnDelete, Parallel, and replacement of failed pods.

use crate::common;

use std::collections::BTreeMap;

use common::*;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

const REVISION_LABEL: &str = "controller-revision-hash";

fn web(replicas: i32) -> StatefulSet {
    let mut s: StatefulSet = fixture("web-statefulset.yaml");
    if let Some(spec) = s.spec.as_mut() {
        spec.replicas = Some(replicas);
    }
    s
}

fn label(p: &Pod, key: &str) -> String {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .cloned()
        .unwrap_or_default()
}

/// Active pods of `ns` by name.
async fn pods_by_name(client: &Client, ns: &str) -> anyhow::Result<BTreeMap<String, Pod>> {
    Ok(active_pods(client, ns, "app=nginx")
        .await?
        .into_iter()
        .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
        .collect())
}

async fn wait_status(
    sets: &Api<StatefulSet>,
    what: &str,
    ok: impl Fn(&k8s_openapi::api::apps::v1::StatefulSetStatus, &StatefulSet) -> bool,
) -> anyhow::Result<StatefulSet> {
    wait_for(what, || async {
        let s = sets.get("web").await?;
        let status = s.status.clone().unwrap_or_default();
        Ok((status.observed_generation == s.metadata.generation && ok(&status, &s)).then_some(s))
    })
    .await
}

async fn event_messages(client: &Client, ns: &str) -> anyhow::Result<Vec<(String, String)>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("StatefulSet"))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect())
}

fn index_of(changes: &[PodChange], want: &PodChange) -> usize {
    changes
        .iter()
        .position(|c| c == want)
        .unwrap_or_else(|| panic!("{want:?} not seen in {changes:?}"))
}

#[tokio::test]
async fn statefulset_orders_pods_and_keeps_their_claims() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "sts-order";
    namespace(&client, ns).await?;
    let log = PodLog::start(&client, ns).await?;
    let kubelet = auto_ready(&client, ns);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    sets.create(&PostParams::default(), &web(3)).await?;

    let set = wait_status(&sets, "3 ready replicas", |s, _| {
        s.ready_replicas == Some(3) && s.current_replicas == Some(3)
    })
    .await?;
    // web-(i) is created only after web-(i-1) was seen Ready, in one watch's order.
    let changes = log.changes();
    for i in 1..3 {
        let created = index_of(&changes, &PodChange::Created(format!("web-{i}")));
        let prev_ready = index_of(&changes, &PodChange::Ready(format!("web-{}", i - 1)));
        assert!(
            prev_ready < created,
            "web-{i} was created before web-{} was ready: {changes:?}",
            i - 1
        );
    }

    let status = set.status.clone().unwrap_or_default();
    let revision = status.update_revision.clone().unwrap_or_default();
    assert_eq!(status.current_revision.as_deref(), Some(revision.as_str()));
    assert_eq!(status.replicas, 3);
    assert_eq!(status.available_replicas, Some(3));
    assert_eq!(status.collision_count, Some(0));
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let rev = revisions.get(&revision).await?;
    assert!(revision.starts_with("web-"));
    assert_eq!(rev.revision, 1);
    assert_eq!(
        rev.metadata
            .owner_references
            .as_ref()
            .map(|r| r[0].name.as_str()),
        Some("web")
    );

    let pods = pods_by_name(&client, ns).await?;
    assert_eq!(
        pods.keys().cloned().collect::<Vec<_>>(),
        ["web-0", "web-1", "web-2"]
    );
    for (i, (name, p)) in pods.iter().enumerate() {
        assert_eq!(label(p, "statefulset.kubernetes.io/pod-name"), *name);
        assert_eq!(label(p, "apps.kubernetes.io/pod-index"), i.to_string());
        assert_eq!(label(p, REVISION_LABEL), revision);
        let spec = p.spec.clone().unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let claim = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == "www")
            .and_then(|v| v.persistent_volume_claim)
            .map(|c| c.claim_name);
        assert_eq!(claim, Some(format!("www-{name}")));
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let mut claim_uids = BTreeMap::new();
    for i in 0..3 {
        let c = claims.get(&format!("www-web-{i}")).await?;
        assert_eq!(
            c.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str),
            Some("nginx")
        );
        assert!(
            c.metadata.owner_references.is_none(),
            "Retain leaves claims unowned"
        );
        claim_uids.insert(i, c.metadata.uid.clone().unwrap_or_default());
    }
    let events = event_messages(&client, ns).await?;
    for want in [
        (
            "SuccessfulCreate",
            "create Pod web-0 in StatefulSet web successful",
        ),
        (
            "SuccessfulCreate",
            "create Claim www-web-0 Pod web-0 in StatefulSet web success",
        ),
        (
            "SuccessfulCreate",
            "create Pod web-2 in StatefulSet web successful",
        ),
    ] {
        assert!(
            events.iter().any(|(r, m)| r == want.0 && m == want.1),
            "missing event {want:?} in {events:?}"
        );
    }

    // A deleted pod comes back under its name, on the same claim.
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let old_uid = pods["web-1"].metadata.uid.clone();
    pod_api.delete("web-1", &Default::default()).await?;
    wait_for("web-1 recreated and ready", || async {
        let p = pods_by_name(&client, ns).await?;
        Ok(p.get("web-1")
            .filter(|p| p.metadata.uid != old_uid && is_ready(p))
            .map(|_| ()))
    })
    .await?;
    // A failed pod is replaced too.
    let failed_uid = pods["web-2"].metadata.uid.clone();
    pod_api
        .patch_status(
            "web-2",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": "Failed"}})),
        )
        .await?;
    wait_for("failed web-2 replaced", || async {
        let p = pods_by_name(&client, ns).await?;
        Ok(p.get("web-2")
            .filter(|p| p.metadata.uid != failed_uid && is_ready(p))
            .map(|_| ()))
    })
    .await?;
    wait_status(&sets, "3 ready again", |s, _| s.ready_replicas == Some(3)).await?;

    // Scale to zero through the scale subresource: highest ordinal first, one at a time.
    let before = log.changes().len();
    sets.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 0}})),
    )
    .await?;
    wait_status(&sets, "no replicas", |s, _| s.replicas == 0).await?;
    wait_for("all pods gone", || async {
        Ok(pods_by_name(&client, ns).await?.is_empty().then_some(()))
    })
    .await?;
    let changes = log.changes()[before..].to_vec();
    let deleted: Vec<&PodChange> = changes
        .iter()
        .filter(|c| matches!(c, PodChange::Deleted(_)))
        .collect();
    assert_eq!(
        deleted,
        [
            &PodChange::Deleted("web-2".into()),
            &PodChange::Deleted("web-1".into()),
            &PodChange::Deleted("web-0".into())
        ],
        "{changes:?}"
    );
    // The claims outlive their pods.
    for (i, uid) in &claim_uids {
        let c = claims.get(&format!("www-web-{i}")).await?;
        assert_eq!(c.metadata.uid.as_ref(), Some(uid));
        assert!(c.metadata.deletion_timestamp.is_none());
    }
    let events = event_messages(&client, ns).await?;
    assert!(events
        .iter()
        .any(|(r, m)| r == "SuccessfulDelete"
            && m == "delete Pod web-2 in StatefulSet web successful"));

    // Scaling up again reuses the same claims.
    sets.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await?;
    wait_status(&sets, "1 ready", |s, _| s.ready_replicas == Some(1)).await?;
    let c = claims.get("www-web-0").await?;
    assert_eq!(c.metadata.uid.as_ref(), claim_uids.get(&0));
    kubelet.abort();
    Ok(())
}

async fn set_image(sets: &Api<StatefulSet>, image: &str) -> anyhow::Result<()> {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": image}]}}}});
    sets.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    Ok(())
}

async fn set_partition(sets: &Api<StatefulSet>, partition: i32) -> anyhow::Result<()> {
    let patch = json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}}});
    sets.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn revisions_of(pods: &BTreeMap<String, Pod>) -> Vec<String> {
    pods.values().map(|p| label(p, REVISION_LABEL)).collect()
}

#[tokio::test]
async fn statefulset_partitioned_rolling_update_then_on_delete() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "sts-update";
    namespace(&client, ns).await?;
    let kubelet = auto_ready(&client, ns);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    sets.create(&PostParams::default(), &web(3)).await?;
    let set = wait_status(&sets, "3 ready", |s, _| s.ready_replicas == Some(3)).await?;
    let first = set
        .status
        .and_then(|s| s.current_revision)
        .unwrap_or_default();

    // Partition 2: only ordinals >= 2 move to the new revision.
    set_partition(&sets, 2).await?;
    set_image(&sets, "registry.k8s.io/nginx-slim:0.25").await?;
    let set = wait_status(&sets, "web-2 updated", |s, _| {
        s.updated_replicas == Some(1) && s.ready_replicas == Some(3)
    })
    .await?;
    let status = set.status.clone().unwrap_or_default();
    let second = status.update_revision.clone().unwrap_or_default();
    assert_ne!(second, first);
    assert_eq!(status.current_revision.as_deref(), Some(first.as_str()));
    assert_eq!(status.current_replicas, Some(2));
    let pods = pods_by_name(&client, ns).await?;
    assert_eq!(
        revisions_of(&pods),
        [first.clone(), first.clone(), second.clone()]
    );
    let image = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.containers[0].image.clone())
            .unwrap_or_default()
    };
    assert_eq!(image(&pods["web-2"]), "registry.k8s.io/nginx-slim:0.25");
    assert_eq!(image(&pods["web-0"]), "registry.k8s.io/nginx-slim:0.24");

    // Partition 0 finishes the rollout, highest ordinal first.
    let log = PodLog::start(&client, ns).await?;
    set_partition(&sets, 0).await?;
    let set = wait_status(&sets, "rollout complete", |s, _| {
        s.updated_replicas == Some(3)
            && s.ready_replicas == Some(3)
            && s.current_revision == s.update_revision
    })
    .await?;
    assert_eq!(
        set.status.as_ref().and_then(|s| s.current_replicas),
        Some(3)
    );
    let changes = log.changes();
    let d1 = index_of(&changes, &PodChange::Deleted("web-1".into()));
    let d0 = index_of(&changes, &PodChange::Deleted("web-0".into()));
    let r1 = changes
        .iter()
        .enumerate()
        .skip(d1)
        .find(|(_, c)| **c == PodChange::Ready("web-1".into()))
        .map(|(i, _)| i)
        .expect("new web-1 ready");
    assert!(
        d1 < r1 && r1 < d0,
        "web-0 was replaced before the new web-1 was ready: {changes:?}"
    );
    assert!(!changes.contains(&PodChange::Deleted("web-2".into())));
    let pods = pods_by_name(&client, ns).await?;
    assert_eq!(revisions_of(&pods), vec![second.clone(); 3]);

    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let mut revs: Vec<(i64, String)> = revisions
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|r| (r.revision, r.metadata.name.unwrap_or_default()))
        .collect();
    revs.sort();
    assert_eq!(revs, [(1, first.clone()), (2, second.clone())]);

    // OnDelete: a new template changes no pod until the pod is deleted.
    let patch = json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}});
    sets.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    set_image(&sets, "registry.k8s.io/nginx-slim:0.26").await?;
    let set = wait_status(&sets, "third revision seen", |s, _| {
        s.update_revision.as_deref().is_some_and(|r| r != second)
    })
    .await?;
    let third = set
        .status
        .and_then(|s| s.update_revision)
        .unwrap_or_default();
    let untouched = pods_by_name(&client, ns).await?;
    assert_eq!(revisions_of(&untouched), vec![second.clone(); 3]);
    let uids = |p: &BTreeMap<String, Pod>| {
        p.values()
            .map(|p| p.metadata.uid.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert_eq!(uids(&untouched), uids(&pods));
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    pod_api.delete("web-0", &Default::default()).await?;
    wait_for("web-0 back at the third revision", || async {
        let p = pods_by_name(&client, ns).await?;
        Ok(p.get("web-0")
            .filter(|p| label(p, REVISION_LABEL) == third && is_ready(p))
            .map(|_| ()))
    })
    .await?;
    let pods = pods_by_name(&client, ns).await?;
    assert_eq!(
        revisions_of(&pods),
        [third.clone(), second.clone(), second.clone()]
    );
    // Rolling back the template to the first image reuses revision 1's object, renumbered.
    set_image(&sets, "registry.k8s.io/nginx-slim:0.24").await?;
    wait_for("first revision renumbered", || async {
        let r = revisions.get(&first).await?;
        Ok((r.revision == 4).then_some(()))
    })
    .await?;
    kubelet.abort();
    Ok(())
}

#[tokio::test]
async fn parallel_statefulset_creates_every_pod_without_waiting() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "sts-parallel";
    namespace(&client, ns).await?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let mut set = web(3);
    if let Some(spec) = set.spec.as_mut() {
        spec.pod_management_policy = Some("Parallel".into());
    }
    sets.create(&PostParams::default(), &set).await?;
    // No kubelet: nothing ever gets ready, yet all three pods exist.
    wait_for("3 pending pods", || async {
        let p = pods_by_name(&client, ns).await?;
        Ok((p.len() == 3).then_some(()))
    })
    .await?;
    let s = wait_status(&sets, "status counts 3", |s, _| s.replicas == 3).await?;
    assert_eq!(s.status.and_then(|s| s.ready_replicas), None);
    // And scale-down does not wait for readiness either.
    sets.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await?;
    wait_for("one pod left", || async {
        let p = pods_by_name(&client, ns).await?;
        Ok((p.keys().cloned().collect::<Vec<_>>() == ["web-0"]).then_some(()))
    })
    .await?;
    Ok(())
}

const KUBECTL: &str = "/usr/bin/kubectl";

/// Runs stock kubectl against the test server (off the async runtime).
async fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let kc = kubeconfig.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&kc)
            .args(&args)
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        anyhow::ensure!(out.status.success(), "kubectl {args:?} failed: {text}");
        Ok(text)
    })
    .await?
}

/// kubectl's rollout status for a StatefulSet: the API defaults `rollingUpdate.partition`
/// to 0, so kubectl reports a "partitioned roll out" as it does against upstream.
#[tokio::test]
async fn kubectl_rolls_statefulsets_out_and_back() -> anyhow::Result<()> {
    if !std::path::Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} not found");
        return Ok(());
    }
    let server = TestServer::start().await?;
    let client = server.client();
    let kc = server.kubeconfig().to_path_buf();
    let kubelet = auto_ready(&client, "default");
    let manifest = format!(
        "{}/tests/fixtures/web-statefulset.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = kubectl(&kc, &["apply", "-f", &manifest]).await?;
    assert!(out.contains("statefulset.apps/web created"), "{out}");
    let out = kubectl(
        &kc,
        &["rollout", "status", "statefulset/web", "--timeout=30s"],
    )
    .await?;
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    let out = kubectl(&kc, &["get", "statefulset", "web", "--no-headers"]).await?;
    assert!(
        out.split_whitespace().nth(1) == Some("3/3"),
        "READY column: {out}"
    );

    kubectl(
        &kc,
        &[
            "set",
            "image",
            "statefulset/web",
            "nginx=registry.k8s.io/nginx-slim:0.25",
        ],
    )
    .await?;
    let out = kubectl(
        &kc,
        &["rollout", "status", "statefulset/web", "--timeout=30s"],
    )
    .await?;
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    let out = kubectl(&kc, &["rollout", "history", "statefulset/web"]).await?;
    let revisions: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{out}");

    let out = kubectl(&kc, &["rollout", "undo", "statefulset/web"]).await?;
    assert!(out.contains("statefulset.apps/web rolled back"), "{out}");
    let out = kubectl(
        &kc,
        &["rollout", "status", "statefulset/web", "--timeout=30s"],
    )
    .await?;
    assert!(
        out.contains("roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let image = sets
        .get("web")
        .await?
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers[0].image.clone());
    assert_eq!(image.as_deref(), Some("registry.k8s.io/nginx-slim:0.24"));
    let pods = pods_by_name(&client, "default").await?;
    assert!(pods.values().all(|p| p
        .spec
        .as_ref()
        .and_then(|s| s.containers[0].image.as_deref())
        == Some("registry.k8s.io/nginx-slim:0.24")));
    kubelet.abort();
    Ok(())
}
