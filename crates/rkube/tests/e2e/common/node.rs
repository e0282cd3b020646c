//! A one-node cluster with real containers: `rkube server` with its in-process agent (a
//! managed containerd child) on a node IP of a veth pair created here, its own pod
//! bridge and pod range, and Debian's `docker-registry` on loopback holding the
//! stand-in images, configured as the mirror of `docker.io` and `tacracr.azurecr.io`
//! (nothing is ever pulled from elsewhere: the default endpoints are disabled).
//!
//! Dropping it stops the server (and so the agent and containerd) by PID, then kills the
//! container shims of its data dir, unmounts what is mounted under it, and removes the
//! links it created.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use test_support::images::{self, Registry};

use super::{eventually, Rkube};

/// Why real pods cannot run here, if they cannot.
pub fn missing_prerequisite() -> Option<String> {
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
        images::BUSYBOX,
        images::DOCKER_REGISTRY,
    ] {
        if !Path::new(p).exists() {
            return Some(format!("{p} missing"));
        }
    }
    None
}

pub fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// A number below 200 that no other cluster of this test process has (the PID makes a
/// clash with another process unlikely). The first hundred also differ modulo 100, which
/// the pod CIDRs `10.(100 + id % 100).0.0/16` rely on.
pub fn unique_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    (std::process::id() * 7 + NEXT.fetch_add(1, Ordering::Relaxed) * 53) % 200
}

/// Host networking and processes a test creates, removed on [`HostGuard::cleanup`].
pub struct HostGuard {
    veth: String,
    bridge: String,
    pub data_dir: Option<PathBuf>,
    /// The pods' range: hostPort rules that forward into it are removed too.
    pub pod_cidr: Option<ipnet::Ipv4Net>,
}

impl HostGuard {
    pub fn new(veth: &str, peer: &str, node_ip: &str, bridge: &str) -> HostGuard {
        let _ = run("ip", &["link", "del", veth]);
        let _ = run("ip", &["link", "del", bridge]);
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
        HostGuard {
            veth: veth.to_string(),
            bridge: bridge.to_string(),
            data_dir: None,
            pod_cidr: None,
        }
    }

    /// Kills the shims of the data dir (by PID), unmounts under it, deletes the links.
    pub fn cleanup(&mut self) {
        if let Some(dir) = self.data_dir.take() {
            let needle = dir.display().to_string();
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
        remove_pod_netns(&self.bridge);
        remove_masquerade(&self.bridge);
        if let Some(cidr) = self.pod_cidr.take() {
            remove_host_ports(cidr);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
        let _ = run("ip", &["link", "del", &self.veth]);
    }
}

/// Removes the agent's pod egress masquerade of `bridge` (its nat chain and the jumps to
/// it), which the agent leaves in place on shutdown.
fn remove_masquerade(bridge: &str) {
    let mut chain = format!("RKUBE-MASQ-{bridge}");
    chain.truncate(28);
    remove_nat_chain("POSTROUTING", &chain);
}

/// Removes the portmap plugin's hostPort chains (`CNI-DN-…`) that forward into `pod_cidr`:
/// pods still running when the test's server stops never get their CNI DEL.
fn remove_host_ports(pod_cidr: ipnet::Ipv4Net) {
    let out = run("iptables-save", &["-t", "nat"]);
    let mut chains: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let chain = words.clone().nth(1)?;
            if words.next() != Some("-A") || !chain.starts_with("CNI-DN-") {
                return None;
            }
            let to = words.skip_while(|w| *w != "--to-destination").nth(1)?;
            let ip: std::net::Ipv4Addr = to.split(':').next()?.parse().ok()?;
            pod_cidr.contains(&ip).then(|| chain.to_string())
        })
        .collect();
    chains.dedup();
    for chain in chains {
        remove_nat_chain("CNI-HOSTPORT-DNAT", &chain);
    }
}

/// Deletes the jumps from nat chain `from` to `chain`, then `chain` itself.
fn remove_nat_chain(from: &str, chain: &str) {
    let out = run(
        "iptables",
        &["-w", "-t", "nat", "-L", from, "-n", "--line-numbers"],
    );
    let mut numbers: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(chain))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    for n in numbers {
        let _ = run("iptables", &["-w", "-t", "nat", "-D", from, &n.to_string()]);
    }
    let _ = run("iptables", &["-w", "-t", "nat", "-F", chain]);
    let _ = run("iptables", &["-w", "-t", "nat", "-X", chain]);
}

/// SIGKILLs every process in the network namespace bound at `netns` (a pod's pause
/// process and containers outlive their killed shims).
fn kill_processes_in(netns: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(inode) = std::fs::metadata(netns).map(|m| m.ino()) else {
        return;
    };
    let want = format!("net:[{inode}]");
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let ns = std::fs::read_link(entry.path().join("ns/net"))
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ns == want {
            #[allow(unsafe_code)]
            // SAFETY: signalling a process of a pod this test's agent started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Deletes the pod network namespaces whose host-side veth hangs off `bridge`: pods
/// whose sandboxes were never torn down (their shims were killed with the test).
fn remove_pod_netns(bridge: &str) {
    // Host-side ifindex → the bridge it is attached to.
    let mut master_of = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        let index = std::fs::read_to_string(path.join("ifindex"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let master = std::fs::read_link(path.join("master"))
            .ok()
            .and_then(|m| m.file_name().map(|n| n.to_string_lossy().into_owned()));
        if let Some(m) = master {
            master_of.insert(index, m);
        }
    }
    for entry in std::fs::read_dir("/var/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let ns = entry.file_name().to_string_lossy().into_owned();
        if !ns.starts_with("cni-") {
            continue;
        }
        // `eth0@if<N>`: N is the host side's ifindex.
        let out = run(
            "ip",
            &["netns", "exec", &ns, "cat", "/sys/class/net/eth0/iflink"],
        );
        let peer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if master_of.get(&peer).map(String::as_str) == Some(bridge) {
            kill_processes_in(&entry.path());
            let _ = run("ip", &["netns", "delete", &ns]);
        }
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A one-node cluster running real containers (see the module doc).
pub struct NodeCluster {
    pub r: Rkube,
    pub node: String,
    pub node_ip: String,
    pub cluster_cidr: String,
    pub registry: Registry,
    host: HostGuard,
}

impl NodeCluster {
    /// Starts it and waits for the node to be Ready; `None` (after saying why) when this
    /// machine cannot run containers.
    pub fn start() -> Option<NodeCluster> {
        Self::start_with(&[])
    }

    /// As [`NodeCluster::start`], with more `rkube server` flags (e.g. `--kubelet-arg`).
    pub fn start_with(extra: &[&str]) -> Option<NodeCluster> {
        if let Some(reason) = missing_prerequisite() {
            eprintln!("skipping a test that runs real containers: {reason}");
            return None;
        }
        let id = unique_id();
        let veth = format!("rkn{id}");
        let node_ip = format!("10.202.{id}.1");
        let bridge = format!("rknbr{id}");
        let mut host = HostGuard::new(&veth, &format!("rkn{id}p"), &node_ip, &bridge);
        let registry = Registry::start().expect("docker-registry");
        for image in [
            images::nginx("docker.io/library/nginx:1.17", "1.17"),
            images::nginx("docker.io/library/nginx:1.16", "1.16"),
            images::nginx("docker.io/library/nginx:latest", "latest"),
            images::nginx("tacracr.azurecr.io/tapp:latest", "tapp"),
            images::busybox("docker.io/library/busybox:latest"),
        ] {
            registry
                .push(&image.expect("stand-in image"))
                .expect("push a stand-in image");
        }
        let node = format!("node-{id}");
        let cluster_cidr = format!("10.{}.0.0/16", 100 + id % 100);
        let dir = tempfile::tempdir().expect("tempdir");
        let registries = images::write_registries_yaml(
            &dir.path().join("registries.yaml"),
            &registry.endpoint(),
        )
        .expect("write registries.yaml");
        let registries = registries.to_str().expect("utf-8 path").to_string();
        let mut args = vec![
            "--node-ip",
            &node_ip,
            "--node-name",
            &node,
            "--cluster-cidr",
            &cluster_cidr,
            "--cni-bridge",
            &bridge,
            "--registry-config",
            &registries,
            "--disable-default-registry-endpoint",
        ];
        args.extend_from_slice(extra);
        let r = Rkube::start_with_agent(&args);
        // The registries file lives as long as the test.
        std::mem::forget(dir);
        host.data_dir = Some(r.dir.path().join("data"));
        host.pod_cidr = cluster_cidr.parse().ok();
        let c = NodeCluster {
            r,
            node,
            node_ip,
            cluster_cidr,
            registry,
            host,
        };
        eventually("the node Ready", Duration::from_secs(60), || {
            let out = c.r.kubectl(&[
                "get",
                "node",
                &c.node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        });
        Some(c)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.r.dir.path().join("data")
    }

    /// The node's pod bridge.
    pub fn bridge(&self) -> &str {
        &self.host.bridge
    }

    /// The host interface that carries the node IP.
    pub fn node_link(&self) -> &str {
        &self.host.veth
    }

    /// `jsonpath` of an object, or `None` while kubectl fails.
    /// `kubectl apply -f` of `yaml`, written to `<name>.yaml` in the test's directory.
    pub fn apply(&self, name: &str, yaml: &str) {
        let path = self.r.write(&format!("{name}.yaml"), yaml);
        self.r
            .k(&["apply", "-f", path.to_str().expect("utf-8 path")]);
    }

    /// `kubectl get <kind_name…> -o jsonpath=<path>`, empty when it fails.
    pub fn jsonpath(&self, kind_name: &[&str], path: &str) -> String {
        let mut args = vec!["get"];
        args.extend_from_slice(kind_name);
        let expr = format!("jsonpath={path}");
        args.extend(["-o", expr.as_str()]);
        self.get(&args).unwrap_or_default()
    }

    pub fn get(&self, args: &[&str]) -> Option<String> {
        let out = self.r.kubectl(args);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until pod `name` is Running with an IP, and returns the IP.
    pub fn wait_running(&self, name: &str, timeout: Duration) -> String {
        eventually(&format!("pod {name} Running"), timeout, || {
            let text = self.get(&[
                "get",
                "pod",
                name,
                "-o",
                "jsonpath={.status.phase} {.status.podIP}",
            ])?;
            let (phase, ip) = text.split_once(' ')?;
            (phase == "Running" && !ip.is_empty()).then(|| ip.to_string())
        })
    }

    /// An HTTP GET from the host to a pod (or other cluster) address: status and body.
    pub fn http_get(&self, ip: &str, port: u16, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().ok()?;
        let mut tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(tcp, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").ok()?;
        let mut resp = String::new();
        tcp.read_to_string(&mut resp).ok()?;
        let code = resp.split(' ').nth(1)?.parse().ok()?;
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    }

    /// Waits until `ip:port` serves the welcome page and returns it.
    pub fn welcome_page(&self, ip: &str) -> String {
        eventually(
            &format!("the welcome page from {ip}"),
            Duration::from_secs(30),
            || {
                let (code, body) = self.http_get(ip, 80, "/")?;
                (code == 200 && body.contains("Welcome to nginx!")).then_some(body)
            },
        )
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        self.r.stop();
        self.host.cleanup();
    }
}
