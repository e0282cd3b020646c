//! The books' walk-throughs against real containers on one node (SCENARIOS.md S1, S2, S3,
//! S10), typed as a reader would with stock kubectl; images are the busybox-built
//! stand-ins pulled from a local registry mirror (see `common::node`). The welcome page
//! is fetched from the host at each pod's IP (flat pod network).

use crate::common;

use std::time::Duration;

use common::node::NodeCluster;
use common::{eventually, fixture};

const POD_START: Duration = Duration::from_secs(90);

/// Names and IPs of the Running pods with `selector`.
fn running_pods(c: &NodeCluster, selector: &str) -> Vec<(String, String)> {
    let text = c
        .get(&[
            "get",
            "pods",
            "-l",
            selector,
            "-o",
            "jsonpath={range .items[?(@.status.phase==\"Running\")]}{.metadata.name} {.status.podIP} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ])
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            let (name, ip, deleting) = (w.next()?, w.next()?, w.next().unwrap_or(""));
            (!ip.is_empty() && deleting.is_empty()).then(|| (name.to_string(), ip.to_string()))
        })
        .collect()
}

fn wait_running_count(c: &NodeCluster, selector: &str, n: usize) -> Vec<(String, String)> {
    eventually(
        &format!("{n} running pods with {selector}"),
        POD_START,
        || {
            let pods = running_pods(c, selector);
            let ready = c
                .get(&[
                    "get",
                    "pods",
                    "-l",
                    selector,
                    "-o",
                    "jsonpath={.items[*].status.containerStatuses[*].ready}",
                ])
                .unwrap_or_default();
            let total = c
                .get(&["get", "pods", "-l", selector, "-o", "name"])
                .unwrap_or_default()
                .lines()
                .count();
            (pods.len() == n
                && total == n
                && ready.split(' ').filter(|r| *r == "true").count() == n)
                .then_some(pods)
        },
    )
}

#[test]
fn s1_and_s10_bare_pods_imperative_and_declarative() {
    let Some(c) = NodeCluster::start() else {
        return;
    };
    let r = &c.r;

    // S10: the node is listed Ready.
    let nodes = r.k(&["get", "nodes"]);
    let line = nodes
        .lines()
        .find(|l| l.starts_with(&c.node))
        .unwrap_or_else(|| panic!("{nodes}"));
    assert!(line.split_whitespace().nth(1) == Some("Ready"), "{nodes}");

    // S1: a bare pod, Running with an IP, serving the welcome page to the host.
    let out = r.k(&["apply", "-f", &fixture("nginx-pod.yaml")]);
    assert_eq!(out.trim(), "pod/nginx-pod-example created");
    let ip = c.wait_running("nginx-pod-example", POD_START);
    let wide = eventually("READY 1/1", Duration::from_secs(30), || {
        let t = r.k(&["get", "pod", "-o", "wide"]);
        t.lines()
            .any(|l| {
                l.starts_with("nginx-pod-example ") && l.split_whitespace().nth(1) == Some("1/1")
            })
            .then_some(t)
    });
    let row: Vec<&str> = wide
        .lines()
        .find(|l| l.starts_with("nginx-pod-example "))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        &row[..4],
        ["nginx-pod-example", "1/1", "Running", "0"],
        "{wide}"
    );
    assert_eq!(row[5], ip, "{wide}");
    assert_eq!(row[6], c.node, "{wide}");
    let page = c.welcome_page(&ip);
    assert!(page.contains("version 1.17"), "{page}");

    // S10: imperative and declarative pods; untagged images are pulled (Always).
    let out = r.k(&[
        "run",
        "webserver",
        "--restart=Never",
        "--image",
        "nginx",
        "--port",
        "80",
    ]);
    assert_eq!(out.trim(), "pod/webserver created");
    let out = r.k(&["apply", "-f", &fixture("webserver-2-pod.yaml")]);
    assert_eq!(out.trim(), "pod/webserver-2 created");
    let ip1 = c.wait_running("webserver", POD_START);
    c.wait_running("webserver-2", POD_START);
    let pods = r.k(&["get", "pods"]);
    for name in ["webserver ", "webserver-2 ", "nginx-pod-example "] {
        assert!(pods.lines().any(|l| l.starts_with(name)), "{pods}");
    }
    let all = r.k(&["get", "pods", "--all-namespaces"]);
    assert!(all.starts_with("NAMESPACE "), "{all}");
    assert!(c.welcome_page(&ip1).contains("version latest"));

    // logs (busybox httpd logs each request), describe with Events, exec.
    let logs = eventually("webserver logs", Duration::from_secs(30), || {
        let out = r.kubectl(&["logs", "webserver"]);
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        t.contains("response:200").then_some(t)
    });
    assert!(logs.contains(&c.node_ip) || logs.contains("10."), "{logs}");
    let describe = r.k(&["describe", "pod", "webserver"]);
    assert!(
        describe
            .lines()
            .any(|l| l.starts_with("Status:") && l.trim_end().ends_with(" Running")),
        "{describe}"
    );
    for want in [
        "Successfully assigned default/webserver",
        "Pulled",
        "Created",
        "Started",
    ] {
        assert!(
            describe.contains(want),
            "describe lacks {want:?}:\n{describe}"
        );
    }
    let out = r.k(&[
        "exec",
        "webserver",
        "--",
        "cat",
        "/usr/share/nginx/html/index.html",
    ]);
    assert!(out.contains("Welcome to nginx!"), "{out}");
    let out = r.k(&[
        "exec",
        "webserver-2",
        "-c",
        "wenserver-2-container",
        "--",
        "sh",
        "-c",
        "echo $HOSTNAME; id -u",
    ]);
    assert_eq!(out.trim(), "webserver-2\n0");

    // delete works on them, and their containers go away.
    let out = r.k(&[
        "delete",
        "pod",
        "webserver",
        "webserver-2",
        "nginx-pod-example",
        "--timeout=60s",
    ]);
    assert!(out.contains("pod \"webserver\" deleted"), "{out}");
    assert!(r.k(&["get", "pods", "-o", "name"]).trim().is_empty());
}

#[test]
fn s2_and_s3_replicaset_and_rolling_update() {
    let Some(c) = NodeCluster::start() else {
        return;
    };
    let r = &c.r;

    // S2: three replicas, owned by the ReplicaSet; two deleted pods are replaced.
    r.k(&["apply", "-f", &fixture("nginx-replicaset.yaml")]);
    let pods = wait_running_count(&c, "environment=test", 3);
    let owner = r.k(&[
        "get",
        "pod",
        &pods[0].0,
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
    ]);
    assert_eq!(owner, "ReplicaSet/nginx-replicaset-example");
    for (_, ip) in &pods {
        c.welcome_page(ip);
    }
    r.k(&["delete", "pod", &pods[0].0, &pods[1].0, "--wait=false"]);
    let again = wait_running_count(&c, "environment=test", 3);
    assert!(
        again.iter().any(|(n, _)| n == &pods[2].0),
        "the untouched pod stays: {again:?}"
    );
    assert!(
        !again
            .iter()
            .any(|(n, _)| n == &pods[0].0 || n == &pods[1].0),
        "{again:?}"
    );
    r.k(&["delete", "rs", "nginx-replicaset-example", "--timeout=60s"]);
    eventually("the ReplicaSet's pods gone", POD_START, || {
        r.k(&["get", "pods", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });

    // S3: a Deployment reaches 3/3, an image change rolls out, undo goes back.
    r.k(&["apply", "-f", &fixture("nginx-deployment.yaml")]);
    let status = r.k(&[
        "rollout",
        "status",
        "deployment",
        "nginx-deployment-example",
        "--timeout=120s",
    ]);
    assert!(
        status.contains("deployment \"nginx-deployment-example\" successfully rolled out"),
        "{status}"
    );
    let ready = r.k(&["get", "deployment", "nginx-deployment-example"]);
    assert!(
        ready
            .lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("3/3")),
        "{ready}"
    );
    let edited = std::fs::read_to_string(fixture("nginx-deployment.yaml"))
        .expect("fixture")
        .replace("nginx:1.17", "nginx:1.16");
    let path = r.write("nginx-deployment-1.16.yaml", &edited);
    r.k(&["apply", "-f", path.to_str().expect("utf-8 path")]);
    let status = r.k(&[
        "rollout",
        "status",
        "deployment",
        "nginx-deployment-example",
        "--timeout=120s",
    ]);
    assert!(
        status
            .trim_end()
            .ends_with("deployment \"nginx-deployment-example\" successfully rolled out"),
        "{status}"
    );
    let pods = wait_running_count(&c, "environment=test", 3);
    for (_, ip) in &pods {
        let page = c.welcome_page(ip);
        assert!(page.contains("version 1.16"), "{page}");
    }
    let history = r.k(&[
        "rollout",
        "history",
        "deployment",
        "nginx-deployment-example",
    ]);
    assert!(
        history
            .lines()
            .filter(|l| l.starts_with('1') || l.starts_with('2'))
            .count()
            == 2,
        "{history}"
    );

    r.k(&["rollout", "undo", "deployment", "nginx-deployment-example"]);
    r.k(&[
        "rollout",
        "status",
        "deployment",
        "nginx-deployment-example",
        "--timeout=120s",
    ]);
    let image = r.k(&[
        "get",
        "deployment",
        "nginx-deployment-example",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx:1.17");
    let pods = wait_running_count(&c, "environment=test", 3);
    for (_, ip) in &pods {
        assert!(c.welcome_page(ip).contains("version 1.17"));
    }
    r.k(&[
        "delete",
        "deployment",
        "nginx-deployment-example",
        "--timeout=60s",
    ]);
}
