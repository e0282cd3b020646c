mod common;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};

#[tokio::test]
async fn scale() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "scale";
    namespace(&client, ns).await?;
    let kubelet = auto_ready(&client, ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut d: Deployment = fixture("nginx-deployment.yaml");
    d.spec.as_mut().unwrap().replicas = Some(1000);
    let t = std::time::Instant::now();
    deployments.create(&PostParams::default(), &d).await?;
    wait_for("1000 available", || async {
        let s = deployments.get("nginx-deployment-example").await?.status.unwrap_or_default();
        Ok((s.available_replicas == Some(1000)).then_some(()))
    }).await?;
    println!("ELAPSED {:?}", t.elapsed());
    kubelet.abort();
    Ok(())
}
