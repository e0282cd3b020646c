//! Pod egress on the real agent: the node masquerades traffic from its podCIDR to
//! addresses outside the cluster with one nat chain, ahead of any per-pod chain (the
//! bridge plugin's `ipMasq` is off). The outside host is a network namespace this test
//! creates, with no route back to the pods: its replies arrive only because the source
//! was rewritten, and the node chain's MASQUERADE rule counts the packets.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::eventually;
use common::node::{run, NodeCluster};

/// A host outside the cluster: a network namespace behind a veth pair, serving HTTP.
struct OutsideHost {
    netns: String,
    link: String,
    httpd: Option<Child>,
    address: String,
}

impl OutsideHost {
    fn start(id: &str, www: &std::path::Path) -> OutsideHost {
        let netns = format!("rkext{id}");
        let link = format!("rkx{id}");
        let peer = format!("rkx{id}n");
        let _ = run("ip", &["netns", "delete", &netns]);
        let _ = run("ip", &["link", "del", &link]);
        let host_ip = format!("10.204.{id}.1/24");
        let address = format!("10.204.{id}.2");
        let mut guard = OutsideHost {
            netns: netns.clone(),
            link: link.clone(),
            httpd: None,
            address: address.clone(),
        };
        for args in [
            vec!["netns", "add", &netns],
            vec!["link", "add", &link, "type", "veth", "peer", "name", &peer],
            vec!["link", "set", &peer, "netns", &netns],
            vec!["addr", "add", &host_ip, "dev", &link],
            vec!["link", "set", &link, "up"],
        ] {
            let out = run("ip", &args);
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let inside = format!("{address}/24");
        for args in [
            vec!["addr", "add", inside.as_str(), "dev", &peer],
            vec!["link", "set", &peer, "up"],
        ] {
            let mut full = vec!["netns", "exec", &netns, "ip"];
            full.extend(args);
            let out = run("ip", &full);
            assert!(
                out.status.success(),
                "ip {}: {}",
                full.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let httpd = Command::new("ip")
            .args(["netns", "exec", &netns])
            .args([
                test_support::images::BUSYBOX,
                "httpd",
                "-f",
                "-p",
                "8080",
                "-h",
            ])
            .arg(www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start httpd in the outside namespace");
        guard.httpd = Some(httpd);
        guard
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        if let Some(mut child) = self.httpd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = run("ip", &["netns", "delete", &self.netns]);
        let _ = run("ip", &["link", "del", &self.link]);
    }
}

#[test]
fn pods_reach_a_host_outside_the_cluster_through_the_node_masquerade() {
    let Some(c) = NodeCluster::start() else {
        return;
    };
    // Written once the node has its podCIDR (after it registered Ready).
    let conf = c.data_dir().join("agent/etc/cni/net.d/10-rkube.conflist");
    let conflist = eventually("the CNI config", Duration::from_secs(30), || {
        std::fs::read_to_string(&conf).ok()
    });
    assert!(conflist.contains("\"ipMasq\": false"), "{conflist}");

    let id = c.node.trim_start_matches("node-").to_string();
    let www = c.r.path("outside-www");
    std::fs::create_dir_all(&www).expect("www dir");
    std::fs::write(www.join("index.html"), "hello from outside\n").expect("index");
    let outside = OutsideHost::start(&id, &www);

    let path = c.r.write(
        "client.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n",
    );
    c.r.k(&["apply", "-f", path.to_str().expect("utf-8 path")]);
    c.wait_running("client", Duration::from_secs(90));

    // nc with a timeout (busybox's `wget -T` crashes).
    let request = format!(
        "echo -e 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {} 8080",
        outside.address
    );
    let body = eventually(
        "the outside host's page from the pod",
        Duration::from_secs(30),
        || {
            let out = c.r.kubectl(&["exec", "client", "--", "sh", "-c", &request]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.starts_with("HTTP/1.1 200").then_some(text)
        },
    );
    let body = body
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    assert_eq!(body.trim(), "hello from outside");

    // The node's chain did the rewriting (its MASQUERADE rule counted packets).
    let chain = format!("RKUBE-MASQ-{}", c.bridge());
    let out = run(
        "iptables",
        &["-w", "-t", "nat", "-L", &chain, "-v", "-n", "-x"],
    );
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let packets: u64 = listing
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("MASQUERADE"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("a MASQUERADE rule in {chain}:\n{listing}"));
    assert!(packets > 0, "{listing}");
}
