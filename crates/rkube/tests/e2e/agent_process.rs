//! `rkube agent` as its own process joining a server that runs no agent
//! (`--disable-agent`), as a second machine would: it registers a worker Node (no
//! control-plane role), pulls through its own registry mirror configuration, runs a pod
//! whose page the host fetches at the pod IP, and serves `kubectl logs` and `exec`
//! through the API server.

use crate::common;

use std::time::Duration;

use common::node::{missing_prerequisite, unique_id, HostGuard};
use common::{eventually, fixture, Rkube};
use test_support::images::{self, Registry};

#[test]
fn a_separate_agent_joins_and_runs_pods() {
    if let Some(reason) = missing_prerequisite() {
        eprintln!("skipping: {reason}");
        return;
    }
    let id = unique_id();
    let (veth, bridge, node_ip, node) = (
        format!("rkj{id}"),
        format!("rkjbr{id}"),
        format!("10.204.{id}.1"),
        format!("worker-{id}"),
    );
    let mut host = HostGuard::new(&veth, &format!("rkj{id}p"), &node_ip, &bridge);
    let registry = Registry::start().expect("docker-registry");
    registry
        .push(&images::nginx("docker.io/library/nginx:1.17", "1.17").expect("image"))
        .expect("push");
    let r = Rkube::start();
    let registries =
        images::write_registries_yaml(&r.path("registries.yaml"), &registry.endpoint())
            .expect("registries.yaml");
    let data_dir = r.path("agent-data");
    host.data_dir = Some(data_dir.clone());
    let mut agent = r.spawn_component(
        "agent",
        &[
            "agent",
            "--data-dir",
            data_dir.to_str().expect("utf-8"),
            "--node-ip",
            &node_ip,
            "--node-name",
            &node,
            "--cni-bridge",
            &bridge,
            "--registry-config",
            registries.to_str().expect("utf-8"),
            "--disable-default-registry-endpoint",
            common::AGENT_KUBELET_ARGS[0],
            common::AGENT_KUBELET_ARGS[1],
        ],
    );
    eventually("the worker node Ready", Duration::from_secs(60), || {
        let out = r.kubectl(&[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
    });
    let roles = r.k(&["get", "node", &node, "--no-headers"]);
    assert_eq!(
        roles.split_whitespace().nth(2),
        Some("<none>"),
        "a worker has no roles: {roles}"
    );

    r.k(&["apply", "-f", &fixture("nginx-pod.yaml")]);
    let ip = eventually(
        "the pod Running on the worker",
        Duration::from_secs(90),
        || {
            let out = r.kubectl(&[
                "get",
                "pod",
                "nginx-pod-example",
                "-o",
                "jsonpath={.status.phase} {.status.podIP} {.spec.nodeName}",
            ]);
            let t = String::from_utf8_lossy(&out.stdout).into_owned();
            let w: Vec<&str> = t.split(' ').collect();
            (w.len() == 3 && w[0] == "Running" && !w[1].is_empty() && w[2] == node)
                .then(|| w[1].to_string())
        },
    );
    let page = eventually("the welcome page", Duration::from_secs(30), || {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect_timeout(
            &format!("{ip}:80").parse().ok()?,
            Duration::from_secs(2),
        )
        .ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut resp = String::new();
        tcp.read_to_string(&mut resp).ok()?;
        resp.contains("Welcome to nginx!").then_some(resp)
    });
    assert!(
        page.starts_with("HTTP/1.") && page.contains(" 200 "),
        "{page}"
    );
    let logs = eventually(
        "logs through the API server",
        Duration::from_secs(30),
        || {
            let out = r.kubectl(&["logs", "nginx-pod-example"]);
            let t = String::from_utf8_lossy(&out.stdout).into_owned();
            t.contains("response:200").then_some(t)
        },
    );
    assert!(!logs.is_empty());
    assert_eq!(
        r.k(&[
            "exec",
            "nginx-pod-example",
            "--",
            "cat",
            "/usr/share/nginx/html/index.html"
        ]),
        images::welcome_page("1.17")
    );

    r.k(&["delete", "pod", "nginx-pod-example", "--timeout=60s"]);
    agent.stop();
    assert!(agent.log().contains("agent ready"), "{}", agent.log());
    host.cleanup();
}
