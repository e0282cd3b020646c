//! The smallest end-to-end check: the real binary starts, kubectl talks to it, and a
//! ConfigMap goes through create → get → watch → delete. Also run against every
//! kubectl version installed here (1.27 … 1.33).

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, Rkube, KUBECTL};

fn smoke(r: &Rkube, kubectl: &str, ns: &str) {
    let k = |args: &[&str]| {
        let out = r.kubectl_with(kubectl, args);
        assert!(
            out.status.success(),
            "{kubectl} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    k(&["create", "namespace", ns]);
    let manifest = r.write(
        &format!("{ns}-cm.yaml"),
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: smoke\n  namespace: {ns}\ndata:\n  a: \"1\"\n"),
    );
    let out = k(&["apply", "-f", manifest.to_str().expect("path")]);
    assert!(out.contains("configmap/smoke created"), "{out}");
    let out = k(&["get", "configmap", "smoke", "-n", ns]);
    assert!(out.contains("NAME") && out.contains("smoke"), "{out}");

    // get -w sees the update and the delete.
    let mut watch = Command::new(kubectl)
        // Table output: the `-o name` printer drops the event type.
        .args([
            "get",
            "configmap",
            "smoke",
            "-n",
            ns,
            "-w",
            "--output-watch-events",
        ])
        .env("KUBECONFIG", &r.kubeconfig)
        .env("KUBECACHEDIR", r.path("kube-cache"))
        .env("HOME", r.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("initial watch line");
    if first.starts_with("EVENT") {
        first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("initial watch event");
    }
    assert!(
        first.starts_with("ADDED") && first.contains("smoke"),
        "{first}"
    );
    k(&["label", "configmap", "smoke", "-n", ns, "touched=yes"]);
    let second = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("update event");
    assert!(second.contains("MODIFIED"), "{second}");
    k(&["delete", "configmap", "smoke", "-n", ns]);
    let third = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("delete event");
    assert!(third.contains("DELETED"), "{third}");
    let _ = watch.kill();
    let _ = watch.wait();
    let err = r.kubectl_with(kubectl, &["get", "configmap", "smoke", "-n", ns]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr)
        .contains("Error from server (NotFound): configmaps \"smoke\" not found"));
}

#[test]
fn kubectl_smoke_apply_get_watch_delete() {
    let r = Rkube::start();
    let version = r.k(&["version"]);
    assert!(version.contains("Server Version: v1.33"), "{version}");
    smoke(&r, KUBECTL, "smoke");
}

#[test]
fn every_installed_kubectl_version_passes_the_smoke_test() {
    let r = Rkube::start();
    let mut ran = 0;
    for minor in 27..=33 {
        let bin = format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}");
        if !std::path::Path::new(&bin).exists() {
            if std::env::var("CI").is_ok() {
                panic!("{bin} is missing");
            }
            continue;
        }
        smoke(&r, &bin, &format!("smoke-{minor}"));
        ran += 1;
    }
    assert!(
        ran > 0 || std::env::var("CI").is_err(),
        "no versioned kubectl found"
    );
    let _ = eventually("noop", Duration::from_secs(1), || Some(()));
}
