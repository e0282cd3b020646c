//! The node agent end to end: the real `rkube server` with its in-process agent (a managed
//! containerd child, CNI bridge) on a node IP of a veth pair this test creates. A busybox
//! image built here from Debian's `busybox-static` is imported with `rkube images import`;
//! a pod applied with stock kubectl runs, gets a pod IP, its output comes back through
//! `kubectl logs` (API server → agent's port 10250), and `kubectl delete pod` completes.
//! A second test covers probes (readiness gating READY, liveness restarts, httpGet, tcp
//! and startup probes against the pod IP) and lifecycle hooks (postStart, preStop on
//! delete, a failing postStart).
//!
//! Needs root and the Debian packages containerd, runc, containernetworking-plugins,
//! busybox-static and iproute2 (scripts/test.sh installs them). Without them the test
//! says so and does nothing.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::node::{missing_prerequisite, unique_id, HostGuard};
use common::{eventually, Rkube};

/// The busybox stand-in (an OCI layout tarball, `test_support::images`) named `name`.
fn busybox_image(name: &str, path: &Path) {
    let image = test_support::images::busybox(name).expect("busybox image");
    test_support::images::write_tarball(&image, path).expect("write image tarball");
}

/// A running `rkube server` with its agent, the node Ready and the busybox image
/// imported. Fields drop in order: the server stops before the host networking goes.
struct Cluster {
    r: Rkube,
    _host: HostGuard,
    node: String,
    node_ip: String,
    cluster_cidr: String,
    data_dir: PathBuf,
}

fn start_cluster() -> Cluster {
    let id = unique_id();
    let veth = format!("rkagt{id}");
    let node_ip = format!("10.201.{id}.1");
    let bridge = format!("rkbr{id}");
    let mut host = HostGuard::new(&veth, &format!("rkagt{id}p"), &node_ip, &bridge);
    let node = format!("agent-e2e-{id}");
    let cluster_cidr = format!("10.{}.0.0/16", 100 + id % 100);
    let r = Rkube::start_with_agent(&[
        "--node-ip",
        &node_ip,
        "--node-name",
        &node,
        "--cluster-cidr",
        &cluster_cidr,
        "--cni-bridge",
        &bridge,
    ]);
    let data_dir = r.dir.path().join("data");
    host.data_dir = Some(data_dir.clone());
    host.pod_cidr = cluster_cidr.parse().ok();

    // The node registers Ready, with capacity and the control-plane role.
    let ready = eventually("node Ready", Duration::from_secs(60), || {
        let out = r.kubectl(&[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.capacity.pods} {.status.addresses[?(@.type==\"InternalIP\")].address}",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.starts_with("True ").then_some(text)
    });
    assert_eq!(ready, format!("True 110 {node_ip}"), "{}", r.log());

    // `rkube images import` puts a local image into the runtime; CRI lists it.
    let tarball = r.path("busybox.tar");
    busybox_image("docker.io/library/busybox:1.36", &tarball);
    let rkube = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .args(args)
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .expect("run rkube images");
        assert!(
            out.status.success(),
            "rkube {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    rkube(&["images", "import", tarball.to_str().expect("utf-8 path")]);
    let images = rkube(&["images", "list"]);
    assert!(
        images.contains("docker.io/library/busybox:1.36"),
        "{images}"
    );
    Cluster {
        r,
        _host: host,
        node,
        node_ip,
        cluster_cidr,
        data_dir,
    }
}

#[test]
fn pod_runs_on_the_agent_with_logs_and_deletion() {
    if let Some(reason) = missing_prerequisite() {
        eprintln!("skipping the agent end-to-end test: {reason}");
        return;
    }
    let cluster = start_cluster();
    let Cluster {
        r,
        node,
        node_ip,
        cluster_cidr,
        data_dir,
        ..
    } = &cluster;
    let labels = r.k(&["get", "node", node, "--show-labels"]);
    assert!(
        labels.contains("node-role.kubernetes.io/control-plane"),
        "{labels}"
    );
    let lease = eventually("node Lease", Duration::from_secs(30), || {
        let out = r.kubectl(&[
            "get",
            "lease",
            node,
            "-n",
            "kube-node-lease",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert_eq!(&lease, node);

    // A pod runs, gets an IP from the node's podCIDR, and its output reaches kubectl logs.
    let manifest = r.write(
        "pod.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: hello
  namespace: default
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: busybox:1.36
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; echo hello from rkube; while true; do sleep 1; done"]
"#
        ),
    );
    r.k(&["apply", "-f", manifest.to_str().expect("utf-8 path")]);
    let running = eventually("pod Running", Duration::from_secs(60), || {
        let out = r.kubectl(&[
            "get",
            "pod",
            "hello",
            "-o",
            "jsonpath={.status.phase} {.status.podIP} {.status.hostIP}",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut parts = text.split(' ');
        (parts.next() == Some("Running") && parts.next().is_some_and(|ip| !ip.is_empty()))
            .then_some(text)
    });
    let pod_ip: std::net::Ipv4Addr = running
        .split(' ')
        .nth(1)
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("no pod IP in {running:?}"));
    let cidr: ipnet::Ipv4Net = cluster_cidr.parse().expect("cluster CIDR");
    assert!(cidr.contains(&pod_ip), "pod IP {pod_ip} outside {cidr}");
    assert!(running.ends_with(node_ip.as_str()), "{running}");
    let ready = r.k(&[
        "get",
        "pod",
        "hello",
        "-o",
        "jsonpath={.status.containerStatuses[0].ready} {.status.containerStatuses[0].image}",
    ]);
    assert_eq!(ready, "true docker.io/library/busybox:1.36");

    let logs = eventually("kubectl logs", Duration::from_secs(30), || {
        let out = r.kubectl(&["logs", "hello"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("hello from rkube").then_some(text)
    });
    assert_eq!(logs.trim(), "hello from rkube");

    // Deletion stops the container (it exits on SIGTERM) and the pod goes away.
    r.k(&["delete", "pod", "hello", "--timeout=60s"]);
    let gone = r.kubectl(&["get", "pod", "hello"]);
    assert!(!gone.status.success(), "pod still there after delete");
    // The runtime's containers go once the pod is gone from the API.
    eventually(
        "the pod's containers removed",
        Duration::from_secs(30),
        || {
            let out = Command::new("ctr")
                .arg("--address")
                .arg(data_dir.join("agent/containerd/containerd.sock"))
                .args(["-n", "k8s.io", "containers", "ls", "-q"])
                .output()
                .expect("ctr containers ls");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .is_empty()
                .then_some(())
        },
    );
}

/// `kubectl get pod NAME --no-headers`: (READY, STATUS, RESTARTS).
fn ready_column(r: &Rkube, pod: &str) -> Option<(String, String, String)> {
    let out = r.kubectl(&["get", "pod", pod, "--no-headers"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let cols: Vec<&str> = text.split_whitespace().collect();
    (cols.len() >= 4).then(|| {
        (
            cols[1].to_string(),
            cols[2].to_string(),
            cols[3].to_string(),
        )
    })
}

fn jsonpath(r: &Rkube, pod: &str, path: &str) -> String {
    let out = r.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={path}")]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn probes_gate_readiness_restart_unhealthy_containers_and_hooks_run() {
    if let Some(reason) = missing_prerequisite() {
        eprintln!("skipping the agent end-to-end test: {reason}");
        return;
    }
    let cluster = start_cluster();
    let Cluster { r, node, .. } = &cluster;
    let hooks_dir = r.path("hooks");
    std::fs::create_dir_all(&hooks_dir).expect("hooks dir");
    let hooks = hooks_dir.display();
    let loop_until_term = "trap 'exit 0' TERM; while true; do sleep 1; done";
    let manifest = r.write(
        "probes.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: gated
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:1.36
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 6; touch /tmp/ready; while true; do sleep 1; done"]
    readinessProbe:
      exec:
        command: ["cat", "/tmp/ready"]
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: unlive
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:1.36
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{loop_until_term}"]
    livenessProbe:
      exec:
        command: ["false"]
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Pod
metadata:
  name: unlive-http
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:1.36
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{loop_until_term}"]
    livenessProbe:
      httpGet:
        path: /healthz
        port: 8080
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: slow
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:1.36
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{loop_until_term}"]
    readinessProbe:
      exec:
        command: ["sleep", "5"]
      timeoutSeconds: 1
      periodSeconds: 2
---
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 2
  containers:
  - name: httpd
    image: busybox:1.36
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports:
    - name: http
      containerPort: 8080
    startupProbe:
      tcpSocket:
        port: http
      periodSeconds: 1
      failureThreshold: 30
    readinessProbe:
      httpGet:
        path: /index.html
        port: http
      periodSeconds: 1
    livenessProbe:
      tcpSocket:
        port: 8080
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: hooked
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 10
  volumes:
  - name: hooks
    hostPath:
      path: {hooks}
  containers:
  - name: main
    image: busybox:1.36
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'echo term >> /hooks/log; exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts:
    - name: hooks
      mountPath: /hooks
    lifecycle:
      postStart:
        exec:
          command: ["sh", "-c", "echo poststart > /hooks/poststart"]
      preStop:
        exec:
          command: ["sh", "-c", "echo prestop >> /hooks/log"]
---
apiVersion: v1
kind: Pod
metadata:
  name: badhook
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:1.36
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{loop_until_term}"]
    lifecycle:
      postStart:
        exec:
          command: ["false"]
"#
        ),
    );
    r.k(&["apply", "-f", manifest.to_str().expect("utf-8 path")]);

    // Readiness: Running but not ready until the probe's file exists, then ready.
    let first = eventually("gated Running 0/1", Duration::from_secs(60), || {
        ready_column(r, "gated").filter(|(ready, status, _)| status == "Running" && ready == "0/1")
    });
    assert_eq!(first.2, "0");
    assert_eq!(
        jsonpath(
            r,
            "gated",
            "{.status.containerStatuses[0].ready} {.status.containerStatuses[0].started} {.status.conditions[?(@.type==\"Ready\")].status} {.status.conditions[?(@.type==\"ContainersReady\")].status}"
        ),
        "false true False False"
    );
    eventually("gated 1/1", Duration::from_secs(30), || {
        ready_column(r, "gated").filter(|(ready, status, _)| status == "Running" && ready == "1/1")
    });
    assert_eq!(
        jsonpath(
            r,
            "gated",
            "{.status.containerStatuses[0].ready} {.status.conditions[?(@.type==\"Ready\")].status} {.status.containerStatuses[0].restartCount}"
        ),
        "true True 0"
    );
    let describe = r.k(&["describe", "pod", "gated"]);
    assert!(
        describe.contains(
            "Readiness probe failed: cat: can't open '/tmp/ready': No such file or directory"
        ),
        "{describe}"
    );

    // Liveness (exec): the failing container is killed and restarted.
    eventually("unlive restarted", Duration::from_secs(60), || {
        let n: i32 = jsonpath(r, "unlive", "{.status.containerStatuses[0].restartCount}")
            .parse()
            .ok()?;
        (n >= 1).then_some(n)
    });
    let describe = eventually("unlive events", Duration::from_secs(30), || {
        let d = r.k(&["describe", "pod", "unlive"]);
        (d.contains("Unhealthy") && d.contains("Killing")).then_some(d)
    });
    assert!(describe.contains("Liveness probe failed:"), "{describe}");
    assert!(
        describe.contains("Container main failed liveness probe, will be restarted"),
        "{describe}"
    );

    // Liveness (httpGet to the pod IP, nothing listening): the same, with Go's message.
    eventually("unlive-http restarted", Duration::from_secs(60), || {
        let n: i32 = jsonpath(
            r,
            "unlive-http",
            "{.status.containerStatuses[0].restartCount}",
        )
        .parse()
        .ok()?;
        (n >= 1).then_some(n)
    });
    let pod_ip = jsonpath(r, "unlive-http", "{.status.podIP}");
    let describe = r.k(&["describe", "pod", "unlive-http"]);
    assert!(
        describe.contains(&format!(
            "Liveness probe failed: Get \"http://{pod_ip}:8080/healthz\": dial tcp {pod_ip}:8080: connect: connection refused"
        )),
        "{describe}"
    );

    // An exec probe that outlives timeoutSeconds fails.
    let describe = eventually("slow probe timed out", Duration::from_secs(60), || {
        let d = r.k(&["describe", "pod", "slow"]);
        d.contains("Unhealthy").then_some(d)
    });
    assert!(
        describe.contains("Readiness probe failed: command \"sleep 5\" timed out"),
        "{describe}"
    );
    assert_eq!(
        ready_column(r, "slow").map(|c| c.0),
        Some("0/1".to_string())
    );

    // Startup (tcp, named port) then readiness (httpGet) and liveness (tcp) that pass.
    eventually("web 1/1", Duration::from_secs(60), || {
        ready_column(r, "web").filter(|(ready, status, _)| status == "Running" && ready == "1/1")
    });
    assert_eq!(
        jsonpath(
            r,
            "web",
            "{.status.containerStatuses[0].started} {.status.containerStatuses[0].restartCount}"
        ),
        "true 0"
    );

    // A failing postStart hook: event, and the container is killed and restarted.
    let describe = eventually(
        "badhook FailedPostStartHook",
        Duration::from_secs(60),
        || {
            let d = r.k(&["describe", "pod", "badhook"]);
            d.contains("FailedPostStartHook").then_some(d)
        },
    );
    assert!(describe.contains("PostStartHook failed"), "{describe}");
    eventually("badhook restarted", Duration::from_secs(60), || {
        let n: i32 = jsonpath(r, "badhook", "{.status.containerStatuses[0].restartCount}")
            .parse()
            .ok()?;
        (n >= 1).then_some(n)
    });

    // postStart ran; on delete preStop runs before the container gets SIGTERM.
    eventually("postStart hook output", Duration::from_secs(60), || {
        std::fs::read_to_string(hooks_dir.join("poststart")).ok()
    });
    eventually("hooked Running", Duration::from_secs(30), || {
        ready_column(r, "hooked").filter(|(ready, status, _)| status == "Running" && ready == "1/1")
    });
    r.k(&["delete", "pod", "hooked", "--timeout=60s"]);
    let log = std::fs::read_to_string(hooks_dir.join("log")).unwrap_or_default();
    assert_eq!(log, "prestop\nterm\n");

    // The web pod is still healthy: its probes never failed.
    assert_eq!(
        jsonpath(r, "web", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );
    r.k(&["delete", "pod", "--all", "--timeout=60s"]);
}
