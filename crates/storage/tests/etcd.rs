//! The etcd backend against a real etcd (`/usr/bin/etcd` on free loopback ports).
//! A missing etcd fails these tests unless `RKUBE_SKIP_ETCD=1` is set.

use std::sync::Arc;

use bytes::Bytes;
use storage::etcd::EtcdStorage;
use storage::testing;
use storage::Storage;
use test_support::etcd::EtcdServer;

fn start_etcd() -> Option<EtcdServer> {
    match EtcdServer::start_or_skip() {
        Ok(server) => server,
        Err(e) => panic!("cannot run etcd tests: {e:#}"),
    }
}

async fn connect(server: &EtcdServer) -> EtcdStorage {
    EtcdStorage::connect(std::slice::from_ref(&server.endpoint))
        .await
        .expect("connect to etcd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_passes_conformance_suite() {
    let Some(server) = start_etcd() else { return };
    let base = connect(&server).await;
    // One etcd for all cases; each case gets its own key namespace.
    testing::run_all(|name| {
        let store: Arc<dyn Storage> = Arc::new(base.clone().with_key_prefix(format!("/{name}")));
        async move { store }
    })
    .await;
}

#[tokio::test]
async fn compacted_revision_is_found_without_a_hint() {
    let Some(server) = start_etcd() else { return };
    let writer = connect(&server).await;
    let mut revisions = Vec::new();
    for i in 0..20 {
        let kv = writer
            .create(&format!("/registry/pods/ns/p{i}"), Bytes::from("x"))
            .await
            .expect("create");
        revisions.push(kv.mod_revision);
    }
    let fresh = connect(&server).await;
    assert_eq!(fresh.compacted_revision().await.expect("compacted"), 0);
    writer.compact(revisions[13]).await.expect("compact");
    assert_eq!(
        fresh.compacted_revision().await.expect("compacted"),
        revisions[13]
    );
    assert_eq!(
        writer.compacted_revision().await.expect("compacted"),
        revisions[13]
    );
}

#[tokio::test]
async fn key_prefixes_isolate_stores_sharing_one_etcd() {
    let Some(server) = start_etcd() else { return };
    let base = connect(&server).await;
    let a = base.clone().with_key_prefix("/tenant-a");
    let b = base.with_key_prefix("/tenant-b");
    let kv = a
        .create("/registry/pods/ns/p", Bytes::from("a"))
        .await
        .expect("create");
    assert_eq!(kv.key, "/registry/pods/ns/p");
    assert_eq!(b.get("/registry/pods/ns/p").await.expect("get"), None);
    b.create("/registry/pods/ns/p", Bytes::from("b"))
        .await
        .expect("create in b");
    let list = a.list("/registry/", 0, None, 0).await.expect("list");
    assert_eq!(list.items, [kv]);
    assert_eq!(b.count("/registry/").await.expect("count"), 1);
}
