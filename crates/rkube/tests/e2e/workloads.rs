//! The declarative loop end to end: the real `rkube server` (scheduler and controller
//! manager in-process, or as separate `rkube controller-manager` processes), real
//! `rkube virtual-nodes` as the nodes, and stock kubectl typing what the books' readers
//! type (scenarios S2, S3, S12 and S13 of shared/scenarios/SCENARIOS.md).

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;

const WAIT: Duration = Duration::from_secs(60);

/// `rkube virtual-nodes` with `count` untainted nodes named `<prefix>-<i>`, and a wait
/// until kubectl lists them all Ready.
fn virtual_nodes(r: &Rkube, prefix: &str, count: usize, extra: &[&str]) -> Component {
    let count_arg = count.to_string();
    let mut args = vec![
        "virtual-nodes",
        "--count",
        &count_arg,
        "--prefix",
        prefix,
        "--taints",
        "",
    ];
    args.extend_from_slice(extra);
    let nodes = r.spawn_component(prefix, &args);
    eventually("virtual nodes Ready", WAIT, || {
        let out = r.k(&["get", "nodes", "--no-headers"]);
        let ready = out
            .lines()
            .filter(|l| l.starts_with(prefix) && l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        (ready == count).then_some(())
    });
    nodes
}

/// Names of the pods matching `selector` that are not being deleted.
fn live_pods(r: &Rkube, selector: &str) -> Vec<String> {
    let out = r.k(&["get", "pods", "-l", selector, "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("pod list JSON");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn rollout_status(r: &Rkube, deployment: &str) -> String {
    r.k(&[
        "rollout",
        "status",
        &format!("deployment/{deployment}"),
        "--timeout=60s",
    ])
}

async fn client(r: &Rkube) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&r.kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("client")
}

#[test]
fn deployment_rolls_out_heals_rolls_back_and_cascades_on_virtual_nodes() {
    let r = Rkube::start();
    let _nodes = virtual_nodes(&r, "vn", 3, &[]);

    // S3: the Deployment becomes 3/3.
    let out = r.k(&["apply", "-f", &fixture("nginx-deployment.yaml")]);
    assert!(
        out.contains("deployment.apps/nginx-deployment-example created"),
        "{out}"
    );
    let out = rollout_status(&r, "nginx-deployment-example");
    assert!(
        out.contains("deployment \"nginx-deployment-example\" successfully rolled out"),
        "{out}"
    );
    let out = r.k(&[
        "get",
        "deployment",
        "nginx-deployment-example",
        "--no-headers",
    ]);
    assert_eq!(out.split_whitespace().nth(1), Some("3/3"), "{out}");
    let out = r.k(&["get", "pods", "-o", "wide", "--no-headers"]);
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("Running") && l.contains(" vn-"))
            .count(),
        3,
        "{out}"
    );

    // S2/S3: delete two pods; desired state brings the count back to three.
    let before = live_pods(&r, "environment=test");
    assert_eq!(before.len(), 3);
    r.k(&["delete", "pod", &before[0], &before[1], "--wait=false"]);
    let after = eventually("three replacement-inclusive pods Ready", WAIT, || {
        let out = r.k(&[
            "get",
            "deployment",
            "nginx-deployment-example",
            "--no-headers",
        ]);
        let pods = live_pods(&r, "environment=test");
        (out.split_whitespace().nth(1) == Some("3/3")
            && pods.len() == 3
            && !pods.contains(&before[0])
            && !pods.contains(&before[1]))
        .then_some(pods)
    });
    assert!(
        after.contains(&before[2]),
        "the untouched pod stays: {after:?}"
    );

    // Changing something outside the template starts no rollout.
    r.k(&[
        "label",
        "deployment",
        "nginx-deployment-example",
        "tier=web",
    ]);
    let revision = || {
        r.k(&[
            "get",
            "deployment",
            "nginx-deployment-example",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ])
    };
    assert_eq!(revision(), "1");

    // An image change rolls out; rollout status follows it to the end.
    let manifest = std::fs::read_to_string(fixture("nginx-deployment.yaml")).expect("fixture");
    let updated = r.write(
        "nginx-deployment-1.16.yaml",
        &manifest.replace("nginx:1.17", "nginx:1.16"),
    );
    let out = r.k(&["apply", "-f", updated.to_str().expect("utf-8 path")]);
    assert!(out.contains("configured"), "{out}");
    let out = rollout_status(&r, "nginx-deployment-example");
    assert!(
        out.contains("deployment \"nginx-deployment-example\" successfully rolled out"),
        "{out}"
    );
    assert_eq!(revision(), "2");
    let image = || {
        r.k(&[
            "get",
            "deployment",
            "nginx-deployment-example",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
    };
    assert_eq!(image(), "nginx:1.16");

    // History lists both revisions; undo returns to nginx:1.17.
    let out = r.k(&["rollout", "history", "deployment/nginx-deployment-example"]);
    let revisions: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        revisions.contains(&"1") && revisions.contains(&"2"),
        "{out}"
    );
    let out = r.k(&[
        "rollout",
        "history",
        "deployment/nginx-deployment-example",
        "--revision=1",
    ]);
    assert!(out.contains("nginx:1.17"), "{out}");
    let out = r.k(&["rollout", "undo", "deployment/nginx-deployment-example"]);
    assert!(out.contains("rolled back"), "{out}");
    rollout_status(&r, "nginx-deployment-example");
    assert_eq!(image(), "nginx:1.17");
    let out = r.k(&[
        "get",
        "pods",
        "-l",
        "environment=test",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert!(out.split_whitespace().all(|i| i == "nginx:1.17"), "{out}");

    // Deleting the Deployment removes its ReplicaSets and pods.
    r.k(&["delete", "deployment", "nginx-deployment-example"]);
    eventually("ReplicaSets and pods gone", WAIT, || {
        let rs = r.k(&["get", "replicasets", "-o", "name"]);
        let pods = r.k(&["get", "pods", "-o", "name"]);
        (rs.trim().is_empty() && pods.trim().is_empty()).then_some(())
    });

    // With --cascade=orphan they stay, without owners.
    r.k(&["apply", "-f", &fixture("nginx-deployment.yaml")]);
    rollout_status(&r, "nginx-deployment-example");
    let out = r.k(&[
        "delete",
        "deployment",
        "nginx-deployment-example",
        "--cascade=orphan",
    ]);
    assert!(out.contains("deleted"), "{out}");
    eventually("orphaned ReplicaSet without owner", WAIT, || {
        let out = r.k(&[
            "get",
            "replicasets",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.metadata.ownerReferences}{\"\\n\"}{end}",
        ]);
        (out.lines().count() == 1 && out.lines().all(|l| l.split_whitespace().count() == 1))
            .then_some(())
    });
    assert_eq!(live_pods(&r, "environment=test").len(), 3);
    let out = r.k(&["get", "deployments", "-o", "name"]);
    assert!(out.trim().is_empty(), "{out}");

    // The in-process components' metrics are part of the API server's /metrics.
    let metrics = r.k(&["get", "--raw", "/metrics"]);
    for needle in [
        "workqueue_adds_total{name=\"deployment-controller\"}",
        "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"}",
        "leader_election_master_status{name=\"kube-controller-manager\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from /metrics");
    }
}

/// S12: a watch over the whole rollout of tapp-deployment.yaml sees at most
/// replicas + maxSurge = 4 pods and at least replicas - maxUnavailable = 2 Ready ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tapp_rollout_never_exceeds_max_surge_or_max_unavailable() {
    let r = Rkube::start();
    let _nodes = virtual_nodes(&r, "tvn", 3, &[]);
    r.k(&["apply", "-f", &fixture("tapp-deployment.yaml")]);
    rollout_status(&r, "tappdeployment");

    let client = client(&r).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch = tokio::spawn(async move {
        let stream = watcher(pods, watcher::Config::default().labels("appname=myappnew"));
        futures::pin_mut!(stream);
        // name → ready, for pods not being deleted.
        let mut live: BTreeMap<String, bool> = BTreeMap::new();
        let mut initial = BTreeMap::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => initial.clear(),
                Ok(watcher::Event::InitApply(p)) => {
                    track(&mut initial, &p);
                }
                Ok(watcher::Event::InitDone) => live = std::mem::take(&mut initial),
                Ok(watcher::Event::Apply(p)) => track(&mut live, &p),
                Ok(watcher::Event::Delete(p)) => {
                    live.remove(&p.metadata.name.unwrap_or_default());
                }
                Err(_) => continue,
            }
            let ready = live.values().filter(|r| **r).count();
            if tx.send((live.len(), ready)).is_err() {
                break;
            }
        }
    });
    fn track(live: &mut BTreeMap<String, bool>, p: &Pod) {
        let name = p.metadata.name.clone().unwrap_or_default();
        if p.metadata.deletion_timestamp.is_some() {
            live.remove(&name);
            return;
        }
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        live.insert(name, ready);
    }
    // The watch has seen the settled state before the rollout starts.
    loop {
        let (total, ready) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("watch state")
            .expect("watch running");
        if total == 3 && ready == 3 {
            break;
        }
    }

    let out = r.k(&[
        "set",
        "image",
        "deployment/tappdeployment",
        "mynewcontainer=tacracr.azurecr.io/tapp:v2",
    ]);
    assert!(out.contains("image updated"), "{out}");
    let out = rollout_status(&r, "tappdeployment");
    assert!(out.contains("successfully rolled out"), "{out}");
    watch.abort();
    let mut seen = Vec::new();
    while let Ok(state) = rx.try_recv() {
        seen.push(state);
    }
    assert!(!seen.is_empty(), "the watch saw the rollout");
    let max_total = seen.iter().map(|s| s.0).max().unwrap_or(0);
    let min_ready = seen.iter().map(|s| s.1).min().unwrap_or(0);
    assert!(
        max_total <= 4,
        "more than replicas + maxSurge pods: {seen:?}"
    );
    assert!(
        min_ready >= 2,
        "fewer than replicas - maxUnavailable ready: {seen:?}"
    );
    assert!(
        max_total == 4 || min_ready == 2,
        "the rollout used its surge or unavailability budget: {seen:?}"
    );
    let out = r.k(&[
        "get",
        "pods",
        "-l",
        "appname=myappnew",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert!(
        out.split_whitespace()
            .all(|i| i == "tacracr.azurecr.io/tapp:v2"),
        "{out}"
    );
}

/// S13: a Deployment with the virtual-node podspec fragment lands on the (tainted,
/// labelled) virtual node; one without the toleration never does.
#[test]
fn only_pods_tolerating_the_virtual_node_taint_land_there() {
    let r = Rkube::start();
    let nodes = r.spawn_component("vk", &["virtual-nodes", "--count", "1", "--prefix", "vk"]);
    eventually("virtual node Ready", WAIT, || {
        r.k(&["get", "node", "vk-0", "--no-headers", "--ignore-not-found"])
            .contains(" Ready ")
            .then_some(())
    });
    let out = r.k(&[
        "get",
        "node",
        "vk-0",
        "-o",
        "jsonpath={.metadata.labels.type} {.spec.taints[0].key}",
    ]);
    assert_eq!(out, "virtual-kubelet virtual-kubelet.io/provider");

    let fragment =
        std::fs::read_to_string(fixture("virtual-node-podspec-fragment.yaml")).expect("fixture");
    let indented: String = fragment
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.trim() != "---")
        .map(|l| format!("{l}\n"))
        .collect();
    let manifest = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: on-virtual\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: on-virtual\n  template:\n    metadata:\n      labels:\n        app: on-virtual\n    spec:\n      containers:\n      - name: c\n        image: nginx:1.17\n{indented}"
    );
    let path = r.write("on-virtual.yaml", &manifest);
    r.k(&["apply", "-f", path.to_str().expect("utf-8 path")]);
    r.k(&["run", "plain", "--image=nginx:1.17", "--restart=Never"]);
    rollout_status(&r, "on-virtual");
    let out = r.k(&[
        "get",
        "pods",
        "-l",
        "app=on-virtual",
        "-o",
        "wide",
        "--no-headers",
    ]);
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("Running") && l.contains("vk-0"))
            .count(),
        2,
        "{out}"
    );
    let out = r.k(&[
        "get",
        "pod",
        "plain",
        "-o",
        "jsonpath={.status.phase} {.spec.nodeName}",
    ]);
    assert_eq!(
        out.trim(),
        "Pending",
        "the untolerating pod stays unscheduled"
    );
    let out = r.k(&["describe", "pod", "plain"]);
    assert!(
        out.contains("0/1 nodes are available: 1 node(s) had untolerated taint {virtual-kubelet.io/provider: rkube}"),
        "{out}"
    );
    drop(nodes);
}

/// A pod asking for more cpu than any node has stays Pending with upstream's event
/// text (`kubectl describe` shows it) and schedules once a big enough node appears.
#[test]
fn an_oversized_pod_waits_for_a_big_enough_node() {
    let r = Rkube::start();
    let _small = virtual_nodes(&r, "small", 2, &["--cpu", "2"]);
    let pod = r.write(
        "big.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\nspec:\n  containers:\n  - name: c\n    image: nginx:1.17\n    resources:\n      requests:\n        cpu: \"6\"\n",
    );
    r.k(&["apply", "-f", pod.to_str().expect("utf-8 path")]);
    let out = eventually("FailedScheduling event", WAIT, || {
        let out = r.k(&["describe", "pod", "big"]);
        out.contains("FailedScheduling").then_some(out)
    });
    assert!(
        out.contains("0/2 nodes are available: 2 Insufficient cpu."),
        "{out}"
    );
    let out = r.k(&["get", "pod", "big", "--no-headers"]);
    assert!(out.contains("Pending"), "{out}");

    let _big = virtual_nodes(&r, "big", 1, &["--cpu", "8"]);
    eventually("the pod on the big node", WAIT, || {
        let out = r.k(&[
            "get",
            "pod",
            "big",
            "-o",
            "jsonpath={.spec.nodeName} {.status.phase}",
        ]);
        (out == "big-0 Running").then_some(())
    });
}

/// Two `rkube controller-manager`s against one server: only the Lease holder acts,
/// and killing it hands the work to the other.
#[test]
fn two_controller_managers_hand_over_on_the_lease() {
    let r = Rkube::start_with(&["--disable-controller-manager"]);
    let timing = [
        "--leader-elect-lease-duration",
        "3s",
        "--leader-elect-renew-deadline",
        "2s",
        "--leader-elect-retry-period",
        "500ms",
    ];
    let ports = [free_port().to_string(), free_port().to_string()];
    let args = |port: &str| {
        let mut args = vec![
            "controller-manager".to_string(),
            "--secure-port".to_string(),
            port.to_string(),
        ];
        args.extend(timing.iter().map(|s| s.to_string()));
        args
    };
    // What a component's own /metrics says of its leadership.
    let master_status = |port: &str| -> Option<String> {
        let out = std::process::Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "5",
                &format!("https://127.0.0.1:{port}/metrics"),
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| {
                l.starts_with("leader_election_master_status{name=\"kube-controller-manager\"}")
            })
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_string)
    };
    let holder = || {
        r.k(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-controller-manager",
            "--ignore-not-found",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
    };
    let identity_in = |log: &str| -> Option<String> {
        log.lines()
            .find(|l| l.contains("campaigning for leadership"))
            .and_then(|l| l.split("identity=").nth(1))
            .map(|s| {
                s.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string()
            })
    };
    let first_args = args(&ports[0]);
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let mut first = r.spawn_component("cm-1", &first_args);
    let first_id = eventually("first controller-manager leads", WAIT, || {
        let id = identity_in(&first.log())?;
        (holder() == id).then_some(id)
    });
    let second_args = args(&ports[1]);
    let second_args: Vec<&str> = second_args.iter().map(String::as_str).collect();
    let second = r.spawn_component("cm-2", &second_args);
    let second_id = eventually("second controller-manager campaigns", WAIT, || {
        identity_in(&second.log())
    });
    assert_ne!(first_id, second_id);

    let replica_set = |name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {name}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: c\n        image: nginx:1.17\n"
        )
    };
    let path = r.write("rs-a.yaml", &replica_set("rs-a"));
    r.k(&["apply", "-f", path.to_str().expect("utf-8 path")]);
    eventually("rs-a pods", WAIT, || {
        (live_pods(&r, "app=rs-a").len() == 2).then_some(())
    });
    assert_eq!(
        holder(),
        first_id,
        "the standby did not take the Lease while the leader renews it"
    );
    eventually("the leader's /metrics", WAIT, || {
        (master_status(&ports[0]).as_deref() == Some("1")).then_some(())
    });
    assert_ne!(
        master_status(&ports[1]).as_deref(),
        Some("1"),
        "the standby does not lead"
    );

    first.kill();
    eventually("second controller-manager takes over", WAIT, || {
        (holder() == second_id).then_some(())
    });
    let path = r.write("rs-b.yaml", &replica_set("rs-b"));
    r.k(&["apply", "-f", path.to_str().expect("utf-8 path")]);
    eventually("rs-b pods from the new leader", WAIT, || {
        (live_pods(&r, "app=rs-b").len() == 2).then_some(())
    });
    assert_eq!(master_status(&ports[1]).as_deref(), Some("1"));
    // The Lease records the hand-over.
    let transitions = r.k(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-controller-manager",
        "-o",
        "jsonpath={.spec.leaseTransitions}",
    ]);
    assert!(
        transitions.trim().parse::<i32>().unwrap_or(0) >= 1,
        "leaseTransitions {transitions:?}"
    );
}

/// A DaemonSet runs one pod on every node it tolerates, including a node that joins
/// later, and none on a node whose taint it does not tolerate; an image change rolls
/// out node by node (`kubectl rollout status`).
#[test]
fn daemonset_covers_every_eligible_node_and_rolls_out() {
    let r = Rkube::start();
    let _nodes = virtual_nodes(&r, "dsn", 2, &[]);
    let _tainted = r.spawn_component(
        "tainted",
        &[
            "virtual-nodes",
            "--count",
            "1",
            "--prefix",
            "tainted",
            "--taints",
            "dedicated=gpu:NoSchedule",
        ],
    );
    eventually("tainted node Ready", WAIT, || {
        r.k(&[
            "get",
            "node",
            "tainted-0",
            "--no-headers",
            "--ignore-not-found",
        ])
        .contains(" Ready ")
        .then_some(())
    });
    let manifest = r.write(
        "ds.yaml",
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: node-agent\nspec:\n  selector:\n    matchLabels:\n      app: node-agent\n  template:\n    metadata:\n      labels:\n        app: node-agent\n    spec:\n      containers:\n      - name: agent\n        image: busybox:1.36\n",
    );
    let out = r.k(&["apply", "-f", manifest.to_str().expect("utf-8 path")]);
    assert!(out.contains("daemonset.apps/node-agent created"), "{out}");
    let nodes_of_pods = || -> Vec<String> {
        let out = r.k(&["get", "pods", "-l", "app=node-agent", "-o", "json"]);
        let list: serde_json::Value = serde_json::from_str(&out).expect("pod list JSON");
        let mut nodes: Vec<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running"
            })
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
            .collect();
        nodes.sort();
        nodes
    };
    eventually("a pod on each untainted node", WAIT, || {
        (nodes_of_pods() == ["dsn-0", "dsn-1"]).then_some(())
    });
    let out = r.k(&["get", "daemonset", "node-agent", "--no-headers"]);
    let columns: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        &columns[1..4],
        ["2", "2", "2"],
        "DESIRED CURRENT READY: {out}"
    );

    // A node that joins later gets its pod.
    let _late = virtual_nodes(&r, "late", 1, &[]);
    eventually("a pod on the new node", WAIT, || {
        (nodes_of_pods() == ["dsn-0", "dsn-1", "late-0"]).then_some(())
    });

    // An image change rolls out; every pod ends on the new template.
    r.k(&["set", "image", "daemonset/node-agent", "agent=busybox:1.37"]);
    let out = r.k(&["rollout", "status", "daemonset/node-agent", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    eventually("three pods on the new image", WAIT, || {
        let images = r.k(&[
            "get",
            "pods",
            "-l",
            "app=node-agent",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ]);
        let images: Vec<&str> = images.split_whitespace().collect();
        (images.len() == 3 && images.iter().all(|i| *i == "busybox:1.37")).then_some(())
    });
    assert_eq!(nodes_of_pods(), ["dsn-0", "dsn-1", "late-0"]);
}
