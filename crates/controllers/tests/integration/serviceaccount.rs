//! ServiceAccount controller and root CA publisher against a real in-process server:
//! a new namespace gets a `default` ServiceAccount and a `kube-root-ca.crt` ConfigMap;
//! both come back when deleted, and an edited ConfigMap is put back.

use crate::common;

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

/// The ServiceAccount admission plugin of the API server, with the controller making
/// the accounts: every new pod names an account that exists and, unless it opts out,
/// gets the projected `kube-api-access-…` volume mounted in each container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_their_service_account_and_api_access_volume() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::PostParams;
    init_tracing();
    let server = TestServer::start().await?;
    let client = server.client();
    // Created right after its namespace: admission waits for the `default` account.
    let ns = "sa-admission";
    namespace(&client, ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = |name: &str, extra: serde_json::Value| -> anyhow::Result<Pod> {
        let mut spec = json!({"containers": [{"name": "app", "image": "busybox"}],
            "initContainers": [{"name": "init", "image": "busybox"}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        Ok(serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": spec}),
        )?)
    };
    let created = pods
        .create(&PostParams::default(), &pod("plain", json!({}))?)
        .await?;
    let spec = created.spec.clone().unwrap_or_default();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let volumes = spec.volumes.clone().unwrap_or_default();
    assert_eq!(volumes.len(), 1);
    let volume = &volumes[0];
    assert!(
        volume.name.starts_with("kube-api-access-") && volume.name.len() == 21,
        "{}",
        volume.name
    );
    let sources = serde_json::to_value(&volume.projected)?;
    assert_eq!(
        sources["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        3607
    );
    assert_eq!(
        sources["sources"][1]["configMap"]["name"],
        "kube-root-ca.crt"
    );
    assert_eq!(
        sources["sources"][2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let mounts = c.volume_mounts.clone().unwrap_or_default();
        assert!(
            mounts.iter().any(|m| m.name == volume.name
                && m.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount"
                && m.read_only == Some(true)),
            "{}: {mounts:?}",
            c.name
        );
    }

    let opted_out = pods
        .create(
            &PostParams::default(),
            &pod("no-token", json!({"automountServiceAccountToken": false}))?,
        )
        .await?;
    assert!(opted_out
        .spec
        .and_then(|s| s.volumes)
        .unwrap_or_default()
        .is_empty());

    let err = pods
        .create(
            &PostParams::default(),
            &pod("ghost", json!({"serviceAccountName": "ghost"}))?,
        )
        .await
        .expect_err("an account that does not exist");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert_eq!(
                s.message,
                "pods \"ghost\" is forbidden: error looking up service account sa-admission/ghost: serviceaccount \"ghost\" not found"
            );
        }
        other => panic!("unexpected error {other}"),
    }
    server.shutdown().await;
    Ok(())
}
