//! The rollout commands a user types, run with stock kubectl against an in-process
//! server (skipped when kubectl is not installed): `rollout status`, `history`, `undo`.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

const KUBECTL: &str = "/usr/bin/kubectl";

fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(out.status.success(), "kubectl {args:?} failed: {text}");
    Ok(text)
}

fn image(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers[0].image.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn kubectl_rollout_status_history_and_undo() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} not found");
        return Ok(());
    }
    let server = TestServer::start().await?;
    let client = server.client();
    let kc = server.kubeconfig().to_path_buf();
    let ns = "default";
    let kubelet = auto_ready(&client, ns);
    let manifest = format!(
        "{}/tests/fixtures/nginx-deployment.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let run = |args: Vec<String>| {
        let kc = kc.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                kubectl(&kc, &refs)
            })
            .await?
        }
    };
    let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();

    run(args(&["apply", "-f", &manifest])).await?;
    let out = run(args(&[
        "rollout",
        "status",
        "deployment/nginx-deployment-example",
        "--timeout=30s",
    ]))
    .await?;
    assert!(
        out.contains("deployment \"nginx-deployment-example\" successfully rolled out"),
        "{out}"
    );

    run(args(&[
        "set",
        "image",
        "deployment/nginx-deployment-example",
        "nginx=nginx:1.16",
    ]))
    .await?;
    let out = run(args(&[
        "rollout",
        "status",
        "deployment/nginx-deployment-example",
        "--timeout=30s",
    ]))
    .await?;
    assert!(
        out.trim_end()
            .ends_with("deployment \"nginx-deployment-example\" successfully rolled out"),
        "{out}"
    );

    let out = run(args(&[
        "rollout",
        "history",
        "deployment/nginx-deployment-example",
    ]))
    .await?;
    let revisions: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{out}");

    run(args(&[
        "rollout",
        "undo",
        "deployment/nginx-deployment-example",
    ]))
    .await?;
    let out = run(args(&[
        "rollout",
        "status",
        "deployment/nginx-deployment-example",
        "--timeout=30s",
    ]))
    .await?;
    assert!(out.contains("successfully rolled out"), "{out}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    assert_eq!(
        image(&deployments.get("nginx-deployment-example").await?),
        "nginx:1.17"
    );
    let out = run(args(&[
        "rollout",
        "history",
        "deployment/nginx-deployment-example",
    ]))
    .await?;
    let revisions: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{out}");

    // `kubectl describe` shows the controller's events, worded as upstream.
    let out = run(args(&[
        "describe",
        "deployment",
        "nginx-deployment-example",
    ]))
    .await?;
    assert!(
        out.contains("ScalingReplicaSet") && out.contains("deployment-controller"),
        "{out}"
    );
    assert!(
        out.contains("Scaled up replica set nginx-deployment-example-"),
        "{out}"
    );

    kubelet.abort();
    server.shutdown().await;
    Ok(())
}
