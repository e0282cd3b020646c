//! Crash durability of the real binary: `kill -9` right after acknowledged writes loses
//! none of them, with the embedded store and with etcd. Every create, update and delete
//! the API acknowledged must be there after a restart, at the resourceVersion it was
//! acknowledged with, and revisions are not reused afterwards.

use crate::common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::Rkube;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use test_support::etcd::EtcdServer;

const NAMESPACE: &str = "durable";
const OBJECTS: usize = 200;
const UPDATED: usize = 100;
const DELETED: usize = 20;
const CONCURRENCY: usize = 32;

/// What the store must hold for one name after the crash.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Acked {
    Present { rv: String, value: String },
    Deleted,
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some([("value".to_string(), value.to_string())].into()),
        ..Default::default()
    }
}

fn name(i: usize) -> String {
    format!("cm-{i:03}")
}

fn value_of(cm: &ConfigMap) -> String {
    cm.data
        .as_ref()
        .and_then(|d| d.get("value"))
        .cloned()
        .unwrap_or_default()
}

fn rv_of(cm: &ConfigMap) -> String {
    cm.metadata
        .resource_version
        .clone()
        .expect("acknowledged object has a resourceVersion")
}

async fn client(r: &Rkube) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&r.kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("client")
}

/// Creates, then updates and deletes some, concurrently; returns what was acknowledged.
async fn acknowledged_writes(api: &Api<ConfigMap>) -> BTreeMap<String, Acked> {
    let created: Vec<ConfigMap> = futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &config_map(&name(i), "created"))
                    .await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
        .expect("create");
    let mut acked: BTreeMap<String, Acked> = created
        .iter()
        .map(|cm| {
            (
                cm.metadata.name.clone().expect("name"),
                Acked::Present {
                    rv: rv_of(cm),
                    value: value_of(cm),
                },
            )
        })
        .collect();
    assert_eq!(acked.len(), OBJECTS);

    // The last round mixes updates and deletes; the server dies right after its acks.
    let by_name: BTreeMap<String, ConfigMap> = created
        .into_iter()
        .map(|cm| (cm.metadata.name.clone().expect("name"), cm))
        .collect();
    let last_round = futures::stream::iter(0..UPDATED + DELETED)
        .map(|i| {
            let api = api.clone();
            let target = if i < UPDATED {
                name(i)
            } else {
                name(OBJECTS - 1 - (i - UPDATED))
            };
            let mut cm = by_name[&target].clone();
            async move {
                if i < UPDATED {
                    cm.data = Some([("value".to_string(), format!("updated-{i}"))].into());
                    let updated = api.replace(&target, &PostParams::default(), &cm).await?;
                    Ok::<_, kube::Error>((
                        target,
                        Acked::Present {
                            rv: rv_of(&updated),
                            value: value_of(&updated),
                        },
                    ))
                } else {
                    api.delete(&target, &DeleteParams::default()).await?;
                    Ok((target, Acked::Deleted))
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await
        .expect("update and delete");
    acked.extend(last_round);
    acked
}

fn crash_loses_no_acknowledged_write(mut r: Rkube) {
    let started = Instant::now();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let acked = rt.block_on(async {
        let client = client(&r).await;
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(NAMESPACE.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        acknowledged_writes(&Api::namespaced(client, NAMESPACE)).await
    });
    // SIGKILL, as soon as the last acknowledgement is in.
    r.crash();
    let writes_done = started.elapsed();

    r.restart_after_crash();
    rt.block_on(async {
        let api: Api<ConfigMap> = Api::namespaced(client(&r).await, NAMESPACE);
        let list = api
            .list(&ListParams::default())
            .await
            .expect("list after restart");
        let found: BTreeMap<String, &ConfigMap> = list
            .items
            .iter()
            .map(|cm| (cm.metadata.name.clone().expect("name"), cm))
            .collect();
        let mut lost = Vec::new();
        for (name, want) in &acked {
            let got = found
                .get(name)
                .map(|cm| Acked::Present {
                    rv: rv_of(cm),
                    value: value_of(cm),
                })
                .unwrap_or(Acked::Deleted);
            if got != *want {
                lost.push(format!("{name}: acknowledged {want:?}, found {got:?}"));
            }
        }
        assert!(
            lost.is_empty(),
            "{} acknowledged writes lost or changed by the crash:\n{}\nlog:\n{}",
            lost.len(),
            lost.join("\n"),
            r.log()
        );

        // Revisions continue after the crash; none is handed out twice.
        let newest = acked
            .values()
            .filter_map(|a| match a {
                Acked::Present { rv, .. } => rv.parse::<u64>().ok(),
                Acked::Deleted => None,
            })
            .max()
            .expect("some objects remain");
        let after = api
            .create(&PostParams::default(), &config_map("after-crash", "x"))
            .await
            .expect("write after restart");
        let after_rv: u64 = rv_of(&after).parse().expect("numeric rv");
        assert!(
            after_rv > newest,
            "revision {after_rv} after the crash is not above the acknowledged {newest}"
        );
    });
    eprintln!(
        "{} acknowledged writes in {writes_done:?}; total {:?}",
        acked.len(),
        started.elapsed()
    );
}

#[test]
fn kill_9_after_acknowledged_writes_loses_none_with_the_embedded_store() {
    crash_loses_no_acknowledged_write(Rkube::start());
}

#[test]
fn kill_9_after_acknowledged_writes_loses_none_with_etcd() {
    let Some(etcd) = EtcdServer::start_or_skip().expect("start etcd") else {
        return;
    };
    crash_loses_no_acknowledged_write(Rkube::start_with(&["--datastore-endpoint", &etcd.endpoint]));
}
