//! Endpoints and EndpointSlice controllers against a real in-process server: ready and
//! not-ready pods, named target ports, readiness changes and pod deletion.

use crate::common;

use common::*;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn pod_with_ip(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) -> anyhow::Result<()> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.17", "ports": [{"name": "http", "containerPort": 8080}]}]},
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    set_ready(pods, name, ip, ready).await
}

async fn set_ready(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) -> anyhow::Result<()> {
    let status = if ready { "True" } else { "False" };
    let patch = json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": status}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    Ok(())
}

/// (ready IPs, not-ready IPs, ports) of an Endpoints object.
fn summary(ep: &Endpoints) -> (Vec<String>, Vec<String>, Vec<i32>) {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    let mut ports = Vec::new();
    for s in ep.subsets.iter().flatten() {
        ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
        ports.extend(s.ports.iter().flatten().map(|p| p.port));
    }
    ready.sort();
    not_ready.sort();
    ports.dedup();
    (ready, not_ready, ports)
}

/// (ip, ready) of every endpoint in the Service's slices, and their ports.
async fn slice_summary(
    slices: &Api<EndpointSlice>,
) -> anyhow::Result<(Vec<(String, bool)>, Vec<i32>)> {
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await?;
    let mut endpoints = Vec::new();
    let mut ports = Vec::new();
    for s in &list.items {
        for e in &s.endpoints {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
            endpoints.push((e.addresses[0].clone(), ready));
        }
        ports.extend(s.ports.iter().flatten().filter_map(|p| p.port));
    }
    endpoints.sort();
    ports.dedup();
    Ok((endpoints, ports))
}

#[tokio::test]
async fn endpoints_and_slices_follow_pod_readiness_and_named_ports() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "endpoints";
    namespace(&client, ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);

    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]},
    }))?;
    services.create(&PostParams::default(), &svc).await?;
    pod_with_ip(&pods, "a", "10.42.0.2", true).await?;
    pod_with_ip(&pods, "b", "10.42.0.3", true).await?;
    pod_with_ip(&pods, "c", "10.42.0.4", false).await?;

    wait_for(
        "endpoints with two ready and one not-ready address",
        || async {
            let Some(ep) = endpoints.get_opt("web").await? else {
                return Ok(None);
            };
            let want = (
                vec!["10.42.0.2".to_string(), "10.42.0.3".to_string()],
                vec!["10.42.0.4".to_string()],
                vec![8080],
            );
            Ok((summary(&ep) == want).then_some(()))
        },
    )
    .await?;
    wait_for("slices with three endpoints, one not ready", || async {
        let want = (
            vec![
                ("10.42.0.2".to_string(), true),
                ("10.42.0.3".to_string(), true),
                ("10.42.0.4".to_string(), false),
            ],
            vec![8080],
        );
        Ok((slice_summary(&slices).await? == want).then_some(()))
    })
    .await?;
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await?;
    let slice = &list.items[0];
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    assert_eq!(
        slice
            .metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].name.as_str()),
        Some("web")
    );

    // Readiness changes and deletions are followed.
    set_ready(&pods, "c", "10.42.0.4", true).await?;
    pods.delete("a", &DeleteParams::default().grace_period(0))
        .await?;
    wait_for("endpoints follow", || async {
        let Some(ep) = endpoints.get_opt("web").await? else {
            return Ok(None);
        };
        let want = (
            vec!["10.42.0.3".to_string(), "10.42.0.4".to_string()],
            vec![],
            vec![8080],
        );
        Ok((summary(&ep) == want).then_some(()))
    })
    .await?;
    wait_for("slices follow", || async {
        let want = (
            vec![
                ("10.42.0.3".to_string(), true),
                ("10.42.0.4".to_string(), true),
            ],
            vec![8080],
        );
        Ok((slice_summary(&slices).await? == want).then_some(()))
    })
    .await?;

    // Deleting the Service removes its Endpoints and (through the GC) its slices.
    services.delete("web", &DeleteParams::default()).await?;
    wait_for("endpoints and slices gone", || async {
        let ep = endpoints.get_opt("web").await?;
        let (eps, _) = slice_summary(&slices).await?;
        Ok((ep.is_none() && eps.is_empty()).then_some(()))
    })
    .await?;
    server.shutdown().await;
    Ok(())
}
