//! Deployment controller against a real in-process server (scenarios S3 and S12), with
//! the test standing in for the kubelet by marking pods ready.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;

const REVISION: &str = "deployment.kubernetes.io/revision";

fn annotation(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<String> {
    meta.annotations.as_ref().and_then(|a| a.get(key)).cloned()
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String, String)> {
    let c = d
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

/// What `kubectl rollout status` waits for.
fn rolled_out(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let s = d.status.clone().unwrap_or_default();
    d.metadata.generation <= s.observed_generation
        && s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want
}

async fn replica_sets(client: &Client, ns: &str) -> anyhow::Result<Vec<ReplicaSet>> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    Ok(api.list(&ListParams::default()).await?.items)
}

async fn set_image(
    api: &Api<Deployment>,
    name: &str,
    container: &str,
    image: &str,
) -> anyhow::Result<()> {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    Ok(())
}

#[tokio::test]
async fn deployment_becomes_available_rolls_out_and_rolls_back() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "deploy-test";
    namespace(&client, ns).await?;
    let kubelet = auto_ready(&client, ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let name = "nginx-deployment-example";
    let d: Deployment = fixture("nginx-deployment.yaml");
    deployments.create(&PostParams::default(), &d).await?;

    let d = wait_for("3/3 available", || async {
        let d = deployments.get(name).await?;
        Ok(rolled_out(&d).then_some(d))
    })
    .await?;
    let rss = replica_sets(&client, ns).await?;
    assert_eq!(rss.len(), 1);
    let first = &rss[0];
    let hash = first
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .cloned()
        .expect("hash label");
    assert_eq!(
        first.metadata.name.as_deref(),
        Some(format!("{name}-{hash}").as_str())
    );
    assert_eq!(
        first
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref())
            .and_then(|m| m.get("pod-template-hash")),
        Some(&hash)
    );
    assert_eq!(annotation(&first.metadata, REVISION).as_deref(), Some("1"));
    assert_eq!(
        annotation(&first.metadata, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("3")
    );
    assert_eq!(
        annotation(&first.metadata, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("4")
    );
    assert_eq!(annotation(&d.metadata, REVISION).as_deref(), Some("1"));
    assert_eq!(
        condition(&d, "Available").map(|c| (c.0, c.1)),
        Some(("True".into(), "MinimumReplicasAvailable".into()))
    );
    let first_name = first.metadata.name.clone().unwrap_or_default();
    let progressing = wait_for("NewReplicaSetAvailable", || async {
        let d = deployments.get(name).await?;
        Ok(condition(&d, "Progressing").filter(|c| c.1 == "NewReplicaSetAvailable"))
    })
    .await?;
    assert_eq!(
        progressing.2,
        format!("ReplicaSet \"{first_name}\" has successfully progressed.")
    );
    let pods = active_pods(&client, ns, "environment=test").await?;
    assert_eq!(pods.len(), 3);
    assert!(pods
        .iter()
        .all(|p| controller_name(p).as_deref() == Some(first_name.as_str())));

    // An image change makes a second ReplicaSet at revision 2 and moves every replica to it.
    set_image(&deployments, name, "nginx", "nginx:1.16").await?;
    let d = wait_for("rollout of nginx:1.16", || async {
        let d = deployments.get(name).await?;
        let rss = replica_sets(&client, ns).await?;
        let old_empty = rss
            .iter()
            .filter(|r| r.metadata.name.as_deref() == Some(first_name.as_str()))
            .all(|r| r.spec.as_ref().and_then(|s| s.replicas) == Some(0));
        Ok((rolled_out(&d)
            && rss.len() == 2
            && old_empty
            && annotation(&d.metadata, REVISION).as_deref() == Some("2"))
        .then_some(d))
    })
    .await?;
    let rss = replica_sets(&client, ns).await?;
    let second = rss
        .iter()
        .find(|r| r.metadata.name.as_deref() != Some(first_name.as_str()))
        .expect("second rs");
    assert_eq!(annotation(&second.metadata, REVISION).as_deref(), Some("2"));
    let second_name = second.metadata.name.clone().unwrap_or_default();
    assert_eq!(
        condition(&d, "Available").map(|c| c.0).as_deref(),
        Some("True")
    );

    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    wait_for("scaling events", || async {
        let notes: Vec<String> = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("ScalingReplicaSet"))
            .filter_map(|e| e.message)
            .collect();
        let want = [
            format!("Scaled up replica set {first_name} from 0 to 3"),
            format!("Scaled up replica set {second_name} from 0 to 1"),
        ];
        Ok(want.iter().all(|w| notes.contains(w)).then_some(()))
    })
    .await?;

    // Rolling back (what `kubectl rollout undo` patches) reuses the first ReplicaSet as revision 3.
    set_image(&deployments, name, "nginx", "nginx:1.17").await?;
    wait_for("rollback to nginx:1.17", || async {
        let d = deployments.get(name).await?;
        let rss = replica_sets(&client, ns).await?;
        let first = rss
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(first_name.as_str()));
        let reused = first.is_some_and(|r| {
            annotation(&r.metadata, REVISION).as_deref() == Some("3")
                && annotation(&r.metadata, "deployment.kubernetes.io/revision-history").as_deref()
                    == Some("1")
                && r.spec.as_ref().and_then(|s| s.replicas) == Some(3)
        });
        Ok((rolled_out(&d)
            && rss.len() == 2
            && reused
            && annotation(&d.metadata, REVISION).as_deref() == Some("3"))
        .then_some(()))
    })
    .await?;

    // A change outside the template (a label) starts no rollout.
    let patch = json!({"metadata": {"labels": {"team": "a"}}});
    deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    // Scaling is not a rollout either: the current ReplicaSet just grows.
    let patch = json!({"spec": {"replicas": 5}});
    deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_for("scaled to 5", || async {
        let d = deployments.get(name).await?;
        let rss = replica_sets(&client, ns).await?;
        Ok((rolled_out(&d)
            && rss.len() == 2
            && annotation(&d.metadata, REVISION).as_deref() == Some("3"))
        .then_some(()))
    })
    .await?;

    kubelet.abort();
    server.shutdown().await;
    Ok(())
}

/// Pods by name → (ready, image); the state a watch has seen so far.
type Seen = BTreeMap<String, (bool, String)>;

#[tokio::test]
async fn rolling_update_respects_max_surge_and_max_unavailable() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "tapp";
    namespace(&client, ns).await?;
    let kubelet = auto_ready(&client, ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d: Deployment = fixture("tapp-deployment.yaml");
    deployments.create(&PostParams::default(), &d).await?;
    wait_for("3/3 available", || async {
        Ok(rolled_out(&deployments.get("tappdeployment").await?).then_some(()))
    })
    .await?;

    // Watch every pod change from here on and check the limits at each observed state.
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let max_seen = Arc::new(Mutex::new(0usize));
    let watch = {
        let (client, violations, max_seen) = (client.clone(), violations.clone(), max_seen.clone());
        tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, "tapp");
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            futures::pin_mut!(stream);
            let mut seen = Seen::new();
            let mut listed = false;
            while let Some(Ok(ev)) = stream.next().await {
                match ev {
                    watcher::Event::InitDone => listed = true,
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        if p.metadata.deletion_timestamp.is_some() {
                            seen.remove(&name);
                        } else {
                            let image = p
                                .spec
                                .as_ref()
                                .map(|s| s.containers[0].image.clone().unwrap_or_default())
                                .unwrap_or_default();
                            seen.insert(name, (is_ready(&p), image));
                        }
                    }
                    watcher::Event::Delete(p) => {
                        seen.remove(&p.metadata.name.clone().unwrap_or_default());
                    }
                    _ => continue,
                }
                if !listed {
                    continue;
                }
                let total = seen.len();
                let ready = seen.values().filter(|(r, _)| *r).count();
                let mut m = max_seen.lock().expect("lock");
                *m = (*m).max(total);
                if total > 4 || ready < 2 {
                    violations
                        .lock()
                        .expect("lock")
                        .push(format!("{total} pods, {ready} ready: {seen:?}"));
                }
            }
        })
    };

    set_image(
        &deployments,
        "tappdeployment",
        "mynewcontainer",
        "tacracr.azurecr.io/tapp:v2",
    )
    .await?;
    wait_for("rollout of v2", || async {
        let d = deployments.get("tappdeployment").await?;
        let pods = active_pods(&client, ns, "appname=myappnew").await?;
        let all_new = pods.iter().all(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.containers[0].image.as_deref())
                == Some("tacracr.azurecr.io/tapp:v2")
        });
        Ok((rolled_out(&d)
            && all_new
            && pods.len() == 3
            && annotation(&d.metadata, REVISION).as_deref() == Some("2"))
        .then_some(()))
    })
    .await?;
    watch.abort();
    kubelet.abort();
    let v = violations.lock().expect("lock").clone();
    assert!(v.is_empty(), "limits exceeded: {v:#?}");
    // The surge was used: the rollout ran 4 pods at some point.
    assert_eq!(*max_seen.lock().expect("lock"), 4);
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn recreate_never_runs_old_and_new_pods_together() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "recreate";
    namespace(&client, ns).await?;
    let kubelet = auto_ready(&client, ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut d: Deployment = fixture("nginx-deployment.yaml");
    if let Some(spec) = d.spec.as_mut() {
        spec.strategy = Some(serde_json::from_value(json!({"type": "Recreate"}))?);
    }
    deployments.create(&PostParams::default(), &d).await?;
    let name = "nginx-deployment-example";
    wait_for("3/3 available", || async {
        Ok(rolled_out(&deployments.get(name).await?).then_some(()))
    })
    .await?;

    let mixed = Arc::new(Mutex::new(false));
    let watch = {
        let (client, mixed) = (client.clone(), mixed.clone());
        tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, "recreate");
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            futures::pin_mut!(stream);
            let mut seen = BTreeMap::<String, String>::new();
            while let Some(Ok(ev)) = stream.next().await {
                match ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        let image = p
                            .spec
                            .as_ref()
                            .map(|s| s.containers[0].image.clone().unwrap_or_default())
                            .unwrap_or_default();
                        seen.insert(p.metadata.name.clone().unwrap_or_default(), image);
                    }
                    watcher::Event::Delete(p) => {
                        seen.remove(&p.metadata.name.clone().unwrap_or_default());
                    }
                    _ => continue,
                }
                let images: std::collections::BTreeSet<&String> = seen.values().collect();
                if images.len() > 1 {
                    *mixed.lock().expect("lock") = true;
                }
            }
        })
    };
    set_image(&deployments, name, "nginx", "nginx:1.16").await?;
    wait_for("recreated on nginx:1.16", || async {
        let d = deployments.get(name).await?;
        let pods = active_pods(&client, ns, "environment=test").await?;
        let all_new = pods.iter().all(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.containers[0].image.as_deref())
                == Some("nginx:1.16")
        });
        Ok((rolled_out(&d) && all_new && pods.len() == 3).then_some(()))
    })
    .await?;
    watch.abort();
    kubelet.abort();
    assert!(
        !*mixed.lock().expect("lock"),
        "old and new pods ran at the same time"
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn stuck_rollout_reports_progress_deadline_exceeded_and_pause_holds_rollouts(
) -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "stuck";
    namespace(&client, ns).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    // No kubelet here: pods never become ready.
    let mut d: Deployment = fixture("nginx-deployment.yaml");
    if let Some(spec) = d.spec.as_mut() {
        spec.progress_deadline_seconds = Some(1);
    }
    deployments.create(&PostParams::default(), &d).await?;
    let name = "nginx-deployment-example";
    let c = wait_for("ProgressDeadlineExceeded", || async {
        let d = deployments.get(name).await?;
        Ok(condition(&d, "Progressing").filter(|c| c.0 == "False"))
    })
    .await?;
    assert_eq!(c.1, "ProgressDeadlineExceeded");
    assert!(c.2.ends_with("has timed out progressing."), "{}", c.2);
    let d = deployments.get(name).await?;
    assert_eq!(
        condition(&d, "Available").map(|c| (c.0, c.1)),
        Some(("False".into(), "MinimumReplicasUnavailable".into()))
    );

    // Paused: a template change makes no new ReplicaSet; resuming does.
    let patch = json!({"spec": {"paused": true}});
    deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    set_image(&deployments, name, "nginx", "nginx:1.16").await?;
    wait_for("paused observed", || async {
        let d = deployments.get(name).await?;
        Ok(
            (d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation)
                .then_some(()),
        )
    })
    .await?;
    assert_eq!(replica_sets(&client, ns).await?.len(), 1);
    let patch = json!({"spec": {"paused": false}});
    deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_for("second replica set after resume", || async {
        Ok((replica_sets(&client, ns).await?.len() == 2).then_some(()))
    })
    .await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn min_ready_seconds_delays_availability_and_history_is_limited() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "history";
    namespace(&client, ns).await?;
    let kubelet = auto_ready(&client, ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let name = "nginx-deployment-example";
    let mut d: Deployment = fixture("nginx-deployment.yaml");
    if let Some(spec) = d.spec.as_mut() {
        spec.replicas = Some(1);
        // Wide enough that a loaded machine still sees the ready-not-available status
        // (with 1 s it was missed under a parallel test run).
        spec.min_ready_seconds = Some(3);
        spec.revision_history_limit = Some(1);
    }
    deployments.create(&PostParams::default(), &d).await?;
    // Ready is not yet available: the status shows 1 ready, 0 available first.
    wait_for("ready but not available", || async {
        let s = deployments.get(name).await?.status.unwrap_or_default();
        Ok((s.ready_replicas == Some(1) && s.available_replicas.is_none()).then_some(()))
    })
    .await?;
    wait_for("available after minReadySeconds", || async {
        Ok(rolled_out(&deployments.get(name).await?).then_some(()))
    })
    .await?;
    // Three more templates; only the newest old ReplicaSet is kept.
    for (i, image) in ["nginx:1.16", "nginx:1.15", "nginx:1.14"]
        .iter()
        .enumerate()
    {
        set_image(&deployments, name, "nginx", image).await?;
        let revision = (i + 2).to_string();
        wait_for("rollout", || async {
            let d = deployments.get(name).await?;
            Ok(
                (rolled_out(&d) && annotation(&d.metadata, REVISION) == Some(revision.clone()))
                    .then_some(()),
            )
        })
        .await?;
    }
    wait_for("old replica sets cleaned up", || async {
        let rss = replica_sets(&client, ns).await?;
        let mut revisions: Vec<String> = rss
            .iter()
            .filter_map(|r| annotation(&r.metadata, REVISION))
            .collect();
        revisions.sort();
        Ok((revisions == ["3", "4"]).then_some(()))
    })
    .await?;
    kubelet.abort();
    server.shutdown().await;
    Ok(())
}
