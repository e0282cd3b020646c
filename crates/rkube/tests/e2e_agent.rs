//! The node agent end to end: the real `rkube server` with its in-process agent (a managed
//! containerd child, CNI bridge) on a node IP of a veth pair this test creates. A busybox
//! image built here from Debian's `busybox-static` is imported with `rkube images import`;
//! a pod applied with stock kubectl runs, gets a pod IP, its output comes back through
//! `kubectl logs` (API server → agent's port 10250), and `kubectl delete pod` completes.
//!
//! Needs root and the Debian packages containerd, runc, containernetworking-plugins,
//! busybox-static and iproute2 (scripts/test.sh installs them). Without them the test
//! says so and does nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{eventually, Rkube};

const BUSYBOX: &str = "/bin/busybox";

/// What the test can check up front; `Some(reason)` when the agent cannot run here.
fn missing_prerequisite() -> Option<String> {
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some("not root".into());
    }
    for p in [
        "/usr/bin/containerd",
        "/usr/bin/ctr",
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
        BUSYBOX,
    ] {
        if !Path::new(p).exists() {
            return Some(format!("{p} missing"));
        }
    }
    None
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// Host networking and processes this test creates, removed on drop (also when the test
/// fails): the veth pair holding the node IP, the pod bridge, containerd shims left
/// behind under the data dir, and mounts under it.
struct HostGuard {
    veth: String,
    bridge: String,
    data_dir: Option<PathBuf>,
}

impl HostGuard {
    fn new(veth: &str, peer: &str, node_ip: &str, bridge: &str) -> HostGuard {
        let _ = run("ip", &["link", "del", veth]);
        let guard = HostGuard {
            veth: veth.to_string(),
            bridge: bridge.to_string(),
            data_dir: None,
        };
        for args in [
            vec!["link", "add", veth, "type", "veth", "peer", "name", peer],
            vec!["addr", "add", &format!("{node_ip}/24"), "dev", veth],
            vec!["link", "set", veth, "up"],
            vec!["link", "set", peer, "up"],
        ] {
            let out = run("ip", &args);
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        guard
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        if let Some(dir) = &self.data_dir {
            let needle = dir.display().to_string();
            // Shims (and their containers) started for this data dir, by PID.
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&needle) {
                    #[allow(unsafe_code)]
                    // SAFETY: signalling a process this test's server started.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let mut points: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&needle))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = run("umount", &["-l", p]);
            }
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
        let _ = run("ip", &["link", "del", &self.veth]);
    }
}

/// A busybox image (OCI layout tarball) from the host's static busybox: `/bin/busybox`
/// plus the applet links the test uses.
fn busybox_image(name: &str, path: &Path) {
    use agent::oci::{image_tarball, Entry, ImageConfig};
    let data = std::fs::read(BUSYBOX).expect("read busybox");
    let mut entries = vec![
        Entry::Dir {
            path: "bin".into(),
            mode: 0o755,
        },
        Entry::Dir {
            path: "tmp".into(),
            mode: 0o1777,
        },
        Entry::Dir {
            path: "etc".into(),
            mode: 0o755,
        },
        Entry::File {
            path: "bin/busybox".into(),
            mode: 0o755,
            data,
        },
    ];
    for applet in ["sh", "echo", "sleep", "cat", "ls", "hostname", "ip", "wget"] {
        entries.push(Entry::Symlink {
            path: format!("bin/{applet}"),
            target: "busybox".into(),
        });
    }
    let config = ImageConfig {
        name: name.to_string(),
        cmd: vec!["sh".into()],
        env: vec!["PATH=/bin".into()],
        ..Default::default()
    };
    std::fs::write(path, image_tarball(&config, &entries)).expect("write image tarball");
}

#[test]
fn pod_runs_on_the_agent_with_logs_and_deletion() {
    if let Some(reason) = missing_prerequisite() {
        eprintln!("skipping the agent end-to-end test: {reason}");
        return;
    }
    let id = std::process::id() % 200;
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
    let labels = r.k(&["get", "node", &node, "--show-labels"]);
    assert!(
        labels.contains("node-role.kubernetes.io/control-plane"),
        "{labels}"
    );
    let lease = eventually("node Lease", Duration::from_secs(30), || {
        let out = r.kubectl(&[
            "get",
            "lease",
            &node,
            "-n",
            "kube-node-lease",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert_eq!(lease, node);

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
    assert!(running.ends_with(&node_ip), "{running}");
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
    let sandboxes = Command::new("ctr")
        .arg("--address")
        .arg(data_dir.join("agent/containerd/containerd.sock"))
        .args(["-n", "k8s.io", "containers", "ls", "-q"])
        .output()
        .expect("ctr containers ls");
    let left = String::from_utf8_lossy(&sandboxes.stdout).into_owned();
    assert!(left.trim().is_empty(), "containers left: {left}");
}
