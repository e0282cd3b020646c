//! The disruption and resource quota controllers against a real in-process server:
//! a PodDisruptionBudget's status follows its pods and the eviction API honours it;
//! a ResourceQuota created over existing objects reports what they use, and usage goes
//! down when a pod goes.

use crate::common;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, EvictParams, PostParams};
use serde_json::json;

fn pod(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "db", "image": "busybox"}]},
    }))?)
}

#[tokio::test]
async fn budgets_track_healthy_pods_and_limit_evictions() -> anyhow::Result<()> {
    init_tracing();
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "pdb";
    namespace(&client, ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for name in ["db-0", "db-1", "db-2"] {
        pods.create(&PostParams::default(), &pod(name)?).await?;
        mark_ready(&client, ns, name).await?;
    }
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let budget: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}},
    }))?;
    budgets.create(&PostParams::default(), &budget).await?;
    let status = wait_for("budget status", || async {
        let b = budgets.get("db").await?;
        Ok(b.status
            .filter(|s| s.current_healthy == 3 && s.observed_generation.is_some()))
    })
    .await?;
    assert_eq!(status.desired_healthy, 2);
    assert_eq!(status.expected_pods, 3);
    assert_eq!(status.disruptions_allowed, 1);

    pods.evict("db-0", &EvictParams::default()).await?;
    // kube-rs retries 429s by default (kubectl does not): see the refusal itself.
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig())?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    config.default_retry = false;
    let no_retry: Api<Pod> = Api::namespaced(kube::Client::try_from(config)?, ns);
    let refused = no_retry
        .evict("db-1", &EvictParams::default())
        .await
        .expect_err("a second eviction breaks the budget");
    match refused {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 429);
            assert_eq!(
                s.message,
                "Cannot evict pod as it would violate the pod's disruption budget."
            );
        }
        other => panic!("unexpected error {other}"),
    }
    wait_for("budget sees the evicted pod gone", || async {
        let b = budgets.get("db").await?;
        Ok(b.status
            .filter(|s| s.current_healthy == 2 && s.disruptions_allowed == 0)
            .map(|_| ()))
    })
    .await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn quotas_report_usage_of_existing_objects_and_replenish() -> anyhow::Result<()> {
    init_tracing();
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "quota";
    namespace(&client, ns).await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for name in ["a", "b"] {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        configmaps.create(&PostParams::default(), &cm).await?;
    }
    // The root CA publisher's ConfigMap counts too, as upstream.
    wait_for("kube-root-ca.crt published", || async {
        Ok(configmaps.get_opt("kube-root-ca.crt").await?.map(|_| ()))
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create(&PostParams::default(), &pod("only")?).await?;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "counts"},
        "spec": {"hard": {"pods": "5", "count/configmaps": "10"}},
    }))?;
    quotas.create(&PostParams::default(), &quota).await?;
    let used = |want_pods: &'static str| {
        let quotas = quotas.clone();
        async move {
            wait_for(&format!("quota used pods={want_pods}"), || async {
                let q = quotas.get("counts").await?;
                let used = q.status.and_then(|s| s.used).unwrap_or_default();
                let get = |k: &str| used.get(k).map(|q| q.0.clone()).unwrap_or_default();
                Ok((get("pods") == want_pods).then(|| get("count/configmaps")))
            })
            .await
        }
    };
    assert_eq!(used("1").await?, "3");
    pods.delete("only", &DeleteParams::default().grace_period(0))
        .await?;
    used("0").await?;
    server.shutdown().await;
    Ok(())
}
