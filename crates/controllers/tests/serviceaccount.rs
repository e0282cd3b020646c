//! ServiceAccount controller and root CA publisher against a real in-process server:
//! a new namespace gets a `default` ServiceAccount and a `kube-root-ca.crt` ConfigMap;
//! both come back when deleted, and an edited ConfigMap is put back.

mod common;

use common::*;
use controllers::options::ControllerOptions;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const CA: &str = "-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n";

fn ca_of(cm: &ConfigMap) -> Option<String> {
    cm.data.as_ref()?.get("ca.crt").cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_get_a_default_service_account_and_the_root_ca() -> anyhow::Result<()> {
    init_tracing();
    let server = TestServer::start_without_controllers().await?;
    let client = server.client();
    let cancel = CancellationToken::new();
    let options = ControllerOptions {
        root_ca: Some(CA.to_string()),
        ..Default::default()
    };
    let controllers = tokio::spawn(controllers::run_all_with(
        client.clone(),
        cancel.clone(),
        options,
    ));
    let result = async {
        // Namespaces that existed before the controllers started get them too.
        let system: Api<ServiceAccount> = Api::namespaced(client.clone(), "kube-system");
        wait_for("kube-system's default service account", || async {
            Ok(system.get_opt("default").await?.map(|_| ()))
        })
        .await?;

        let ns = "sa-test";
        namespace(&client, ns).await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let first = wait_for("the default service account", || async {
            Ok(accounts.get_opt("default").await?)
        })
        .await?;
        let cm = wait_for("kube-root-ca.crt", || async {
            Ok(config_maps.get_opt("kube-root-ca.crt").await?)
        })
        .await?;
        assert_eq!(ca_of(&cm).as_deref(), Some(CA));
        let description = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kubernetes.io/description"))
            .cloned()
            .unwrap_or_default();
        assert!(
            description.starts_with("Contains a CA bundle"),
            "{description}"
        );

        accounts.delete("default", &DeleteParams::default()).await?;
        wait_for("the default service account to be recreated", || async {
            Ok(accounts
                .get_opt("default")
                .await?
                .filter(|sa| sa.metadata.uid != first.metadata.uid)
                .map(|_| ()))
        })
        .await?;

        let edit = json!({"data": {"ca.crt": "tampered"}});
        config_maps
            .patch(
                "kube-root-ca.crt",
                &PatchParams::default(),
                &Patch::Merge(&edit),
            )
            .await?;
        wait_for("the CA to be put back", || async {
            let cm = config_maps.get("kube-root-ca.crt").await?;
            Ok((ca_of(&cm).as_deref() == Some(CA)).then_some(()))
        })
        .await?;
        config_maps
            .delete("kube-root-ca.crt", &DeleteParams::default())
            .await?;
        wait_for("kube-root-ca.crt to be recreated", || async {
            Ok(config_maps
                .get_opt("kube-root-ca.crt")
                .await?
                .filter(|c| c.metadata.uid != cm.metadata.uid)
                .map(|_| ()))
        })
        .await?;
        anyhow::Ok(())
    }
    .await;
    cancel.cancel();
    let _ = controllers.await;
    server.shutdown().await;
    result
}
