//! What a pod may take from its node, on the real agent: hostPorts (containerd's portmap
//! plugin maps them on the node IP; the scheduler keeps a second pod off a taken port),
//! the host's network, PID and IPC namespaces, and security contexts (users and groups,
//! fsGroup volume ownership, a read-only root, capabilities, no_new_privs, privileged,
//! runAsNonRoot). One node per test (`common::node`), stock kubectl throughout.

use crate::common;

use std::time::Duration;

use common::node::NodeCluster;
use common::{eventually, free_port};

const POD_START: Duration = Duration::from_secs(90);

/// The logs of `pod`'s container `ctr` once they contain `marker`.
fn logs_with(c: &NodeCluster, pod: &str, ctr: &str, marker: &str) -> String {
    eventually(
        &format!("{marker:?} in the logs of {pod}/{ctr}"),
        POD_START,
        || {
            let out = c.r.kubectl(&["logs", pod, "-c", ctr]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains(marker).then_some(text)
        },
    )
}

/// Waits for pod `name` to run; on timeout, fails with `kubectl describe` and the log.
fn wait_running(c: &NodeCluster, name: &str) -> String {
    let deadline = std::time::Instant::now() + POD_START;
    loop {
        let t = c.jsonpath(&["pod", name], "{.status.phase} {.status.podIP}");
        if let Some((phase, ip)) = t.split_once(' ') {
            if phase == "Running" && !ip.is_empty() {
                return ip.to_string();
            }
        }
        if std::time::Instant::now() > deadline {
            let describe = c.r.k(&["describe", "pod", name]);
            let log = c.r.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            panic!(
                "pod {name} not Running:\n{describe}\n--- log tail ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The namespace link (`net:[4026531840]`) of this test process.
fn own_namespace(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .expect("read own namespace")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn host_ports_and_host_namespaces() {
    let Some(c) = NodeCluster::start() else {
        return;
    };
    let host_port = free_port();

    // A hostPort is mapped on the node IP to the pod's port.
    c.apply("web",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo served-through-hostport > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports:
    - containerPort: 8080
      hostPort: {host_port}
"#
        ),
    );
    wait_running(&c, "web");
    let body = eventually(
        "the page at nodeIP:hostPort",
        Duration::from_secs(30),
        || {
            let (code, body) = c.http_get(&c.node_ip, host_port, "/")?;
            (code == 200).then_some(body)
        },
    );
    assert_eq!(body.trim(), "served-through-hostport");

    // The scheduler's NodePorts filter keeps a second pod wanting the port off the node.
    c.apply("web2",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web2\nspec:\n  containers:\n  - name: httpd\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n    ports:\n    - containerPort: 80\n      hostPort: {host_port}\n"
        ),
    );
    let message = eventually("web2 FailedScheduling", Duration::from_secs(30), || {
        let text = c.get(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web2",
            "-o",
            "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
        ])?;
        text.contains("FailedScheduling: ").then_some(text)
    });
    assert!(
        message.contains("didn't have free ports for the requested pod ports"),
        "{message}"
    );
    assert_eq!(c.jsonpath(&["pod", "web2"], "{.status.phase}"), "Pending");

    // hostNetwork: the pod sees the host's interfaces and its IP is the node IP; hostPID
    // and hostIPC: the host's PID and IPC namespaces.
    let net_port = free_port();
    c.apply("hostns",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: hostns
spec:
  hostNetwork: true
  hostPID: true
  hostIPC: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "ls /sys/class/net; ls -l /proc/self/ns/; cat /proc/1/comm; echo listing-done; mkdir -p /www && echo host-network > /www/index.html && exec httpd -f -p {net_port} -h /www"]
"#
        ),
    );
    wait_running(&c, "hostns");
    assert_eq!(
        c.jsonpath(&["pod", "hostns"], "{.status.podIP} {.status.hostIP}"),
        format!("{} {}", c.node_ip, c.node_ip)
    );
    let out = logs_with(&c, "hostns", "main", "listing-done");
    assert!(
        out.lines().any(|l| l == c.node_link()),
        "the host's {} among the pod's interfaces:\n{out}",
        c.node_link()
    );
    for kind in ["net", "pid", "ipc"] {
        let ns = own_namespace(kind);
        assert!(out.contains(&ns), "{kind} namespace {ns} in:\n{out}");
    }
    let init = std::fs::read_to_string("/proc/1/comm").expect("host pid 1");
    assert!(
        out.contains(init.trim()),
        "the host's pid 1 {init:?} in:\n{out}"
    );
    let (code, body) = eventually(
        "the host-network pod's port on the node IP",
        Duration::from_secs(30),
        || c.http_get(&c.node_ip, net_port, "/"),
    );
    assert_eq!((code, body.trim()), (200, "host-network"));

    // Without the host flags the pod has namespaces of its own.
    c.apply("ownns",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ownns\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: busybox\n    command: [\"sh\", \"-c\", \"ls -l /proc/self/ns/; cat /proc/1/comm; echo listing-done\"]\n",
    );
    let out = logs_with(&c, "ownns", "main", "listing-done");
    for kind in ["net", "pid", "ipc"] {
        let ns = own_namespace(kind);
        assert!(!out.contains(&ns), "{kind} namespace {ns} shared:\n{out}");
    }
    assert!(
        out.lines().any(|l| l == "sh"),
        "pid 1 is the container's own:\n{out}"
    );
}

/// The capability bits of `field` (`CapEff`, `CapBnd`) in a /proc/<pid>/status text.
fn cap_bits(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} in {status}"));
    u64::from_str_radix(line.trim(), 16).expect("hex capability set")
}

const CAP_CHOWN: u64 = 1 << 0;
const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_NET_RAW: u64 = 1 << 13;
const CAP_SYS_ADMIN: u64 = 1 << 21;

#[test]
fn security_contexts_reach_the_containers() {
    let Some(c) = NodeCluster::start() else {
        return;
    };
    c.apply("secure",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: secure
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
  volumes:
  - name: data
    emptyDir: {}
  containers:
  - name: user
    image: busybox
    command: ["sh", "-c", "id; ls -nd /data; touch /data/f && ls -n /data/f; touch /rootfile 2>&1; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; echo checks-done; sleep 3600"]
    volumeMounts: [{name: data, mountPath: /data}]
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
  - name: caps
    image: busybox
    command: ["sh", "-c", "id; cat /proc/self/status; echo checks-done; sleep 3600"]
    securityContext:
      runAsUser: 0
      runAsGroup: 0
      capabilities:
        drop: ["CHOWN", "NET_RAW"]
        add: ["NET_ADMIN"]
  - name: privileged
    image: busybox
    command: ["sh", "-c", "cat /proc/self/status; echo checks-done; sleep 3600"]
    securityContext:
      runAsUser: 0
      privileged: true
"#,
    );
    wait_running(&c, "secure");

    // runAsUser/runAsGroup from the pod, fsGroup as a supplemental group and the owner
    // group (setgid) of the emptyDir, a read-only root, no_new_privs.
    let out = logs_with(&c, "secure", "user", "checks-done");
    let id = out.lines().next().unwrap_or_default();
    assert!(
        id.starts_with("uid=1000 gid=3000 ") && id.contains("2000"),
        "{out}"
    );
    let data = out.lines().nth(1).unwrap_or_default();
    let cols: Vec<&str> = data.split_whitespace().collect();
    assert!(
        cols.first().is_some_and(|m| m.starts_with("drwxrws")) && cols.get(3) == Some(&"2000"),
        "/data group-owned by fsGroup with setgid: {out}"
    );
    let file = out.lines().nth(2).unwrap_or_default();
    let cols: Vec<&str> = file.split_whitespace().collect();
    assert_eq!(
        (cols.get(2), cols.get(3)),
        (Some(&"1000"), Some(&"2000")),
        "a new file in /data inherits the group: {out}"
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert_eq!(cap_bits(&out, "CapEff"), 0, "a non-root user: {out}");

    // Capabilities dropped and added for a root container.
    let out = logs_with(&c, "secure", "caps", "checks-done");
    assert!(out.starts_with("uid=0(root) gid=0(root)"), "{out}");
    let eff = cap_bits(&out, "CapEff");
    assert_eq!(eff & (CAP_CHOWN | CAP_NET_RAW), 0, "dropped: {eff:x}");
    assert_ne!(eff & CAP_NET_ADMIN, 0, "added: {eff:x}");
    assert_eq!(eff & CAP_SYS_ADMIN, 0, "not in the default set: {eff:x}");
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");

    // Privileged: every capability (the sandbox is privileged too, or containerd refuses).
    let out = logs_with(&c, "secure", "privileged", "checks-done");
    let eff = cap_bits(&out, "CapEff");
    assert_eq!(eff, cap_bits(&out, "CapBnd"), "{out}");
    assert_ne!(eff & CAP_SYS_ADMIN, 0, "{eff:x}");

    // runAsNonRoot with an image that runs as root: not created, as upstream.
    c.apply("nonroot",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nonroot\nspec:\n  securityContext:\n    runAsNonRoot: true\n  containers:\n  - name: main\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n",
    );
    let waiting = eventually("nonroot waiting", POD_START, || {
        let t = c.jsonpath(&["pod", "nonroot"],
            "{.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}",
        );
        t.starts_with("CreateContainerConfigError|").then_some(t)
    });
    assert!(
        waiting.contains("container has runAsNonRoot and image will run as root"),
        "{waiting}"
    );
}

/// `rkube images …` against the node's managed containerd.
fn rkube_images(c: &NodeCluster, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rkube"))
        .arg("images")
        .args(args)
        .arg("--data-dir")
        .arg(c.data_dir())
        .output()
        .expect("run rkube images");
    assert!(
        out.status.success(),
        "rkube images {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn image_gc_removes_unused_images_and_keeps_used_ones() {
    // Over the high threshold on any disk (1%), freeing down to 0% (never enough, so
    // FreeDiskSpaceFailed), every 2 s, images older than 5 s; imagefs.available<100%
    // is always crossed, so DiskPressure.
    let Some(c) = NodeCluster::start_with(&[
        "--kubelet-arg=image-gc-high-threshold=1",
        "--kubelet-arg=image-gc-low-threshold=0",
        "--kubelet-arg=image-minimum-gc-age=5s",
        "--kubelet-arg=image-gc-period=2s",
        "--kubelet-arg=eviction-hard=imagefs.available<100%",
    ]) else {
        return;
    };
    let condition = eventually("DiskPressure True", Duration::from_secs(60), || {
        let t = c.jsonpath(&["node", &c.node],
            "{.status.conditions[?(@.type==\"DiskPressure\")].status} {.status.conditions[?(@.type==\"DiskPressure\")].reason}",
        );
        t.starts_with("True ").then_some(t)
    });
    assert_eq!(condition, "True KubeletHasDiskPressure");

    // A pod (tolerating the disk-pressure taint) keeps its image in use.
    c.apply(
        "inuse",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: inuse
spec:
  terminationGracePeriodSeconds: 1
  tolerations:
  - key: node.kubernetes.io/disk-pressure
    operator: Exists
    effect: NoSchedule
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
"#,
    );
    wait_running(&c, "inuse");

    // An image no container uses is removed once it is old enough.
    let tarball = c.r.path("unused.tar");
    let image = test_support::images::nginx("docker.io/library/unused:1", "unused")
        .expect("stand-in image");
    test_support::images::write_tarball(&image, &tarball).expect("write image tarball");
    rkube_images(&c, &["import", tarball.to_str().expect("utf-8 path")]);
    assert!(rkube_images(&c, &["list"]).contains("docker.io/library/unused:1"));
    let listed = eventually("the unused image removed", Duration::from_secs(60), || {
        let list = rkube_images(&c, &["list"]);
        (!list.contains("docker.io/library/unused:1")).then_some(list)
    });
    assert!(
        listed.contains("docker.io/library/busybox:latest"),
        "the image in use stays: {listed}"
    );
    assert!(
        listed.contains("rkube.local/pause"),
        "the pause image stays: {listed}"
    );
    assert_eq!(c.jsonpath(&["pod", "inuse"], "{.status.phase}"), "Running");

    // Never enough freed: FreeDiskSpaceFailed, and ImageGCFailed for repeated failures.
    let events = eventually(
        "FreeDiskSpaceFailed and ImageGCFailed on the node",
        Duration::from_secs(60),
        || {
            let t = c.get(&[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.kind=Node,involvedObject.name={}", c.node),
                "-o",
                "jsonpath={range .items[*]}{.type} {.reason}: {.message}{\"\\n\"}{end}",
            ])?;
            (t.contains("Warning FreeDiskSpaceFailed: ") && t.contains("Warning ImageGCFailed: "))
                .then_some(t)
        },
    );
    assert!(
        events.contains("Failed to garbage collect required amount of images. Attempted to free"),
        "{events}"
    );
}
