//! The storage conformance suite: every backend must pass every case here.
//!
//! Each case is a public async function taking a fresh, empty store (its keys may
//! live under a private namespace, but revisions may be shared with other stores, so
//! cases only assert relations between revisions, never absolute values). Cases
//! panic on failure. [`run_all`] runs them in order against stores from a factory;
//! backends' test files call it (see `tests/sqlite.rs`, `tests/etcd.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{KeyValue, Storage, StorageError, WatchEvent, WatchStream};

/// One conformance case.
pub type Case = fn(Arc<dyn Storage>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long a case waits for an expected watch event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("create_get_already_exists", |s| {
        Box::pin(create_get_already_exists(s))
    }),
    ("update_checks_revision", |s| {
        Box::pin(update_checks_revision(s))
    }),
    ("delete_checks_precondition", |s| {
        Box::pin(delete_checks_precondition(s))
    }),
    ("list_by_prefix_in_key_order", |s| {
        Box::pin(list_by_prefix_in_key_order(s))
    }),
    ("list_pages_with_limit_and_start_after", |s| {
        Box::pin(list_pages_with_limit_and_start_after(s))
    }),
    ("list_at_old_revision", |s| {
        Box::pin(list_at_old_revision(s))
    }),
    ("list_at_compacted_or_future_revision_fails", |s| {
        Box::pin(list_at_compacted_or_future_revision_fails(s))
    }),
    ("count_by_prefix", |s| Box::pin(count_by_prefix(s))),
    ("watch_from_zero_sees_only_new_events", |s| {
        Box::pin(watch_from_zero_sees_only_new_events(s))
    }),
    ("watch_from_old_revision_replays_with_prev", |s| {
        Box::pin(watch_from_old_revision_replays_with_prev(s))
    }),
    ("watch_from_compacted_revision_fails", |s| {
        Box::pin(watch_from_compacted_revision_fails(s))
    }),
    ("watch_prefix_isolation", |s| {
        Box::pin(watch_prefix_isolation(s))
    }),
    ("concurrent_writes_watched_in_order", |s| {
        Box::pin(concurrent_writes_watched_in_order(s))
    }),
    ("revisions_strictly_increase", |s| {
        Box::pin(revisions_strictly_increase(s))
    }),
];

/// Runs every case in order, each against a fresh store from `factory(case_name)`.
pub async fn run_all<F, Fut>(mut factory: F)
where
    F: FnMut(&'static str) -> Fut,
    Fut: Future<Output = Arc<dyn Storage>>,
{
    for (name, case) in CASES {
        eprintln!("storage conformance: {name}");
        let store = factory(name).await;
        case(store).await;
    }
}

fn val(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

/// The next event of `stream`; panics on error, end of stream or timeout.
pub async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended unexpectedly"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

async fn watch_ok(store: &dyn Storage, prefix: &str, from: i64) -> WatchStream {
    match store.watch(prefix, from).await {
        Ok(stream) => stream,
        Err(e) => panic!("watch({prefix:?}, {from}) failed: {e}"),
    }
}

fn assert_put(event: &WatchEvent, key: &str, value: &str, prev: Option<&KeyValue>) {
    match event {
        WatchEvent::Put { kv, prev: got } => {
            assert_eq!(kv.key, key, "event {event:?}");
            assert_eq!(kv.value, val(value), "event {event:?}");
            assert_eq!(got.as_ref(), prev, "prev of {event:?}");
        }
        other => panic!("expected Put of {key}, got {other:?}"),
    }
}

pub async fn create_get_already_exists(store: Arc<dyn Storage>) {
    let key = "/registry/pods/default/a";
    assert_eq!(store.get(key).await.expect("get"), None);
    let kv = store.create(key, val("1")).await.expect("create");
    assert_eq!(kv.key, key);
    assert_eq!(kv.value, val("1"));
    assert!(kv.create_revision > 0);
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(store.get(key).await.expect("get"), Some(kv.clone()));
    match store.create(key, val("2")).await {
        Err(StorageError::AlreadyExists(k)) => assert_eq!(k, key),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get(key).await.expect("get"), Some(kv));
}

pub async fn update_checks_revision(store: Arc<dyn Storage>) {
    let key = "/registry/pods/default/a";
    let kv = store.create(key, val("1")).await.expect("create");
    let updated = store
        .update(key, val("2"), kv.mod_revision)
        .await
        .expect("update");
    assert_eq!(updated.value, val("2"));
    assert_eq!(updated.create_revision, kv.create_revision);
    assert!(updated.mod_revision > kv.mod_revision);
    match store.update(key, val("3"), kv.mod_revision).await {
        Err(StorageError::Conflict {
            key: k,
            expected,
            current,
        }) => {
            assert_eq!(k, key);
            assert_eq!(expected, kv.mod_revision);
            assert_eq!(current, Some(updated.clone()));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    for expected in [0, 1, updated.mod_revision] {
        match store
            .update("/registry/pods/default/missing", val("x"), expected)
            .await
        {
            Err(StorageError::NotFound(k)) => assert_eq!(k, "/registry/pods/default/missing"),
            other => panic!("expected NotFound (expected={expected}), got {other:?}"),
        }
    }
    assert_eq!(
        store
            .get("/registry/pods/default/missing")
            .await
            .expect("get"),
        None
    );
    assert_eq!(store.get(key).await.expect("get"), Some(updated));
}

pub async fn delete_checks_precondition(store: Arc<dyn Storage>) {
    let missing = "/registry/pods/default/missing";
    for expected in [None, Some(0), Some(5)] {
        match store.delete(missing, expected).await {
            Err(StorageError::NotFound(k)) => assert_eq!(k, missing),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    let a = "/registry/pods/default/a";
    let kv = store.create(a, val("1")).await.expect("create");
    match store.delete(a, Some(kv.mod_revision + 1000)).await {
        Err(StorageError::Conflict { current, .. }) => assert_eq!(current, Some(kv.clone())),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let (prev, rev) = store
        .delete(a, Some(kv.mod_revision))
        .await
        .expect("delete");
    assert_eq!(prev, kv);
    assert!(rev > kv.mod_revision);
    assert_eq!(store.get(a).await.expect("get"), None);
    assert!(matches!(
        store.delete(a, None).await,
        Err(StorageError::NotFound(_))
    ));

    let b = store
        .create("/registry/pods/default/b", val("b"))
        .await
        .expect("create b");
    let (prev, rev_b) = store.delete(&b.key, None).await.expect("delete b");
    assert_eq!(prev, b);
    assert!(rev_b > rev);

    let again = store.create(a, val("again")).await.expect("re-create");
    assert!(
        again.create_revision > rev_b,
        "re-created key gets a fresh create_revision"
    );
    assert_eq!(again.create_revision, again.mod_revision);
}

pub async fn list_by_prefix_in_key_order(store: Arc<dyn Storage>) {
    for key in [
        "/registry/pods/ns1/c",
        "/registry/podtemplates/ns1/x",
        "/registry/pods/ns2/b",
        "/registry/pods/ns1/a",
        "/registry/services/specs/ns1/s",
    ] {
        store.create(key, val(key)).await.expect("create");
    }
    let current = store.current_revision().await.expect("current");
    let all = store
        .list("/registry/pods/", 0, None, 0)
        .await
        .expect("list");
    assert_eq!(
        keys(&all.items),
        [
            "/registry/pods/ns1/a",
            "/registry/pods/ns1/c",
            "/registry/pods/ns2/b"
        ]
    );
    assert_eq!(all.revision, current);
    assert!(!all.more);
    for kv in &all.items {
        assert_eq!(kv.value, val(&kv.key));
    }
    let ns1 = store
        .list("/registry/pods/ns1/", 0, None, 0)
        .await
        .expect("list ns1");
    assert_eq!(
        keys(&ns1.items),
        ["/registry/pods/ns1/a", "/registry/pods/ns1/c"]
    );
    let templates = store
        .list("/registry/podtemplates/", 0, None, 0)
        .await
        .expect("list");
    assert_eq!(keys(&templates.items), ["/registry/podtemplates/ns1/x"]);
    let none = store
        .list("/registry/secrets/", 0, None, 0)
        .await
        .expect("list");
    assert!(none.items.is_empty());
    assert_eq!(none.revision, current);
}

pub async fn list_pages_with_limit_and_start_after(store: Arc<dyn Storage>) {
    let prefix = "/registry/configmaps/ns/";
    let mut kvs = Vec::new();
    for i in 0..5 {
        kvs.push(
            store
                .create(&format!("{prefix}k{i}"), val("v1"))
                .await
                .expect("create"),
        );
    }
    let page1 = store.list(prefix, 0, None, 2).await.expect("page 1");
    assert_eq!(
        keys(&page1.items),
        [format!("{prefix}k0"), format!("{prefix}k1")]
    );
    assert!(page1.more);
    let rev = page1.revision;

    // Later writes must not show through pages read at the first page's revision.
    store
        .update(&kvs[3].key, val("v2"), kvs[3].mod_revision)
        .await
        .expect("update");
    store
        .create(&format!("{prefix}k5"), val("v1"))
        .await
        .expect("create k5");

    let page2 = store
        .list(prefix, rev, Some(&page1.items[1].key), 2)
        .await
        .expect("page 2");
    assert_eq!(
        keys(&page2.items),
        [format!("{prefix}k2"), format!("{prefix}k3")]
    );
    assert_eq!(page2.items[1], kvs[3], "old value at the listed revision");
    assert!(page2.more);
    assert_eq!(page2.revision, rev);
    let page3 = store
        .list(prefix, rev, Some(&page2.items[1].key), 2)
        .await
        .expect("page 3");
    assert_eq!(keys(&page3.items), [format!("{prefix}k4")]);
    assert!(!page3.more);
    let exact = store
        .list(prefix, rev, Some(&page2.items[0].key), 2)
        .await
        .expect("exact");
    assert_eq!(
        keys(&exact.items),
        [format!("{prefix}k3"), format!("{prefix}k4")]
    );
    assert!(!exact.more, "no more keys after an exactly full page");

    let latest = store
        .list(prefix, 0, Some(&format!("{prefix}k3")), 0)
        .await
        .expect("latest");
    assert_eq!(
        keys(&latest.items),
        [format!("{prefix}k4"), format!("{prefix}k5")]
    );
    assert!(!latest.more);
}

pub async fn list_at_old_revision(store: Arc<dyn Storage>) {
    let prefix = "/registry/deployments/ns/";
    let a = store
        .create(&format!("{prefix}a"), val("a1"))
        .await
        .expect("create a");
    let b = store
        .create(&format!("{prefix}b"), val("b1"))
        .await
        .expect("create b");
    let a2 = store
        .update(&a.key, val("a2"), a.mod_revision)
        .await
        .expect("update a");
    store.delete(&b.key, None).await.expect("delete b");
    let c = store
        .create(&format!("{prefix}c"), val("c1"))
        .await
        .expect("create c");

    let at_b = store
        .list(prefix, b.mod_revision, None, 0)
        .await
        .expect("list at b");
    assert_eq!(at_b.items, [a.clone(), b.clone()]);
    assert_eq!(at_b.revision, b.mod_revision);
    let at_a = store
        .list(prefix, a.mod_revision, None, 0)
        .await
        .expect("list at a");
    assert_eq!(at_a.items, [a]);
    let now = store.list(prefix, 0, None, 0).await.expect("list now");
    assert_eq!(now.items, [a2, c]);
}

pub async fn list_at_compacted_or_future_revision_fails(store: Arc<dyn Storage>) {
    let prefix = "/registry/replicasets/ns/";
    let a = store
        .create(&format!("{prefix}a"), val("a1"))
        .await
        .expect("create");
    let gone = store
        .create(&format!("{prefix}gone"), val("g"))
        .await
        .expect("create");
    let a2 = store
        .update(&a.key, val("a2"), a.mod_revision)
        .await
        .expect("update");
    let (_, deleted_at) = store.delete(&gone.key, None).await.expect("delete");
    let b = store
        .create(&format!("{prefix}b"), val("b1"))
        .await
        .expect("create b");
    let compact_at = deleted_at;
    store.compact(compact_at).await.expect("compact");
    assert!(store.compacted_revision().await.expect("compacted") >= compact_at);

    match store.list(prefix, a.mod_revision, None, 0).await {
        Err(StorageError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, a.mod_revision);
            assert!(
                compacted >= compact_at,
                "compacted {compacted} < {compact_at}"
            );
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    // Reading exactly at the compacted revision still works.
    let at = store
        .list(prefix, compact_at, None, 0)
        .await
        .expect("list at compacted");
    assert_eq!(at.items, std::slice::from_ref(&a2));
    // Current values survive compaction; deleted keys stay deleted.
    let now = store.list(prefix, 0, None, 0).await.expect("list now");
    assert_eq!(now.items, [a2.clone(), b]);
    assert_eq!(store.get(&a.key).await.expect("get"), Some(a2));
    assert_eq!(store.get(&gone.key).await.expect("get"), None);

    let current = store.current_revision().await.expect("current");
    match store.list(prefix, current + 100, None, 0).await {
        Err(StorageError::FutureRevision { requested, .. }) => assert_eq!(requested, current + 100),
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    // Compaction is idempotent and refuses the future.
    store.compact(compact_at).await.expect("compact again");
    store.compact(compact_at - 1).await.expect("compact below");
    assert!(matches!(
        store.compact(current + 100).await,
        Err(StorageError::FutureRevision { .. })
    ));
}

pub async fn count_by_prefix(store: Arc<dyn Storage>) {
    let prefix = "/registry/secrets/ns/";
    assert_eq!(store.count(prefix).await.expect("count"), 0);
    for name in ["a", "b", "c"] {
        store
            .create(&format!("{prefix}{name}"), val(name))
            .await
            .expect("create");
    }
    store
        .create("/registry/secretsx/ns/z", val("z"))
        .await
        .expect("create");
    store
        .create("/registry/secrets/other/z", val("z"))
        .await
        .expect("create");
    store
        .delete(&format!("{prefix}b"), None)
        .await
        .expect("delete");
    assert_eq!(store.count(prefix).await.expect("count"), 2);
    assert_eq!(store.count("/registry/secrets/").await.expect("count"), 3);
}

pub async fn watch_from_zero_sees_only_new_events(store: Arc<dyn Storage>) {
    let prefix = "/registry/pods/ns/";
    store
        .create(&format!("{prefix}old"), val("old"))
        .await
        .expect("create old");
    let mut w = watch_ok(store.as_ref(), prefix, 0).await;
    let key = format!("{prefix}new");
    let b1 = store.create(&key, val("1")).await.expect("create");
    let b2 = store
        .update(&key, val("2"), b1.mod_revision)
        .await
        .expect("update");
    let (_, rev) = store
        .delete(&key, Some(b2.mod_revision))
        .await
        .expect("delete");

    let first = next_event(&mut w).await;
    assert_put(&first, &key, "1", None);
    assert_eq!(first.revision(), b1.mod_revision);
    let second = next_event(&mut w).await;
    assert_put(&second, &key, "2", Some(&b1));
    assert_eq!(second.revision(), b2.mod_revision);
    assert_eq!(
        next_event(&mut w).await,
        WatchEvent::Delete {
            prev: b2,
            revision: rev
        }
    );
}

pub async fn watch_from_old_revision_replays_with_prev(store: Arc<dyn Storage>) {
    let prefix = "/registry/services/ns/";
    // Keeps a1 above revision 1, so "just before a1" is not 0 (= from now on).
    store
        .create("/registry/other/x", val("x"))
        .await
        .expect("create filler");
    let a1 = store
        .create(&format!("{prefix}a"), val("a1"))
        .await
        .expect("create a");
    let a2 = store
        .update(&a1.key, val("a2"), a1.mod_revision)
        .await
        .expect("update a");
    let b1 = store
        .create(&format!("{prefix}b"), val("b1"))
        .await
        .expect("create b");
    let (_, deleted) = store.delete(&a1.key, None).await.expect("delete a");

    let mut w = watch_ok(store.as_ref(), prefix, a1.mod_revision).await;
    let e = next_event(&mut w).await;
    assert_put(&e, &a1.key, "a2", Some(&a1));
    assert_eq!(e.revision(), a2.mod_revision);
    assert_put(&next_event(&mut w).await, &b1.key, "b1", None);
    assert_eq!(
        next_event(&mut w).await,
        WatchEvent::Delete {
            prev: a2,
            revision: deleted
        }
    );
    // Then live events follow, without a gap.
    let c = store
        .create(&format!("{prefix}c"), val("c1"))
        .await
        .expect("create c");
    let e = next_event(&mut w).await;
    assert_put(&e, &c.key, "c1", None);
    assert_eq!(e.revision(), c.mod_revision);

    // From just before the first write, the creation itself is replayed.
    let mut w = watch_ok(store.as_ref(), prefix, a1.mod_revision - 1).await;
    let e = next_event(&mut w).await;
    assert_put(&e, &a1.key, "a1", None);
    assert_eq!(e.revision(), a1.mod_revision);
}

pub async fn watch_from_compacted_revision_fails(store: Arc<dyn Storage>) {
    let prefix = "/registry/endpoints/ns/";
    let a1 = store
        .create(&format!("{prefix}a"), val("1"))
        .await
        .expect("create");
    let a2 = store
        .update(&a1.key, val("2"), a1.mod_revision)
        .await
        .expect("update");
    let a3 = store
        .update(&a1.key, val("3"), a2.mod_revision)
        .await
        .expect("update");
    store.compact(a2.mod_revision).await.expect("compact");

    match store.watch(prefix, a1.mod_revision).await {
        Err(StorageError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, a1.mod_revision);
            assert!(compacted >= a2.mod_revision);
        }
        Err(other) => panic!("expected Compacted, got {other}"),
        Ok(_) => panic!("watch below the compacted revision must fail"),
    }
    // From the compacted revision itself, history is still complete.
    let mut w = watch_ok(store.as_ref(), prefix, a2.mod_revision).await;
    let e = next_event(&mut w).await;
    assert_put(&e, &a1.key, "3", Some(&a2));
    assert_eq!(e.revision(), a3.mod_revision);
}

pub async fn watch_prefix_isolation(store: Arc<dyn Storage>) {
    // Keeps `before` above 0 (= from now on).
    store
        .create("/registry/other/x", val("x"))
        .await
        .expect("create filler");
    let before = store.current_revision().await.expect("current");
    let mut pods = watch_ok(store.as_ref(), "/registry/pods/", 0).await;
    let mut templates = watch_ok(store.as_ref(), "/registry/podtemplates/", 0).await;
    store
        .create("/registry/podtemplates/ns/t", val("t"))
        .await
        .expect("create t");
    store
        .create("/registry/podsx/ns/y", val("y"))
        .await
        .expect("create y");
    store
        .create("/registry/pods/ns/p", val("p"))
        .await
        .expect("create p");
    store
        .create("/registry/podtemplates/ns/u", val("u"))
        .await
        .expect("create u");

    assert_eq!(next_event(&mut pods).await.key(), "/registry/pods/ns/p");
    assert_eq!(
        next_event(&mut templates).await.key(),
        "/registry/podtemplates/ns/t"
    );
    assert_eq!(
        next_event(&mut templates).await.key(),
        "/registry/podtemplates/ns/u"
    );
    // A replay is filtered the same way.
    let mut replay = watch_ok(store.as_ref(), "/registry/pods/", before).await;
    assert_eq!(next_event(&mut replay).await.key(), "/registry/pods/ns/p");
    store
        .create("/registry/pods/ns/q", val("q"))
        .await
        .expect("create q");
    assert_eq!(next_event(&mut pods).await.key(), "/registry/pods/ns/q");
    assert_eq!(next_event(&mut replay).await.key(), "/registry/pods/ns/q");
}

pub async fn concurrent_writes_watched_in_order(store: Arc<dyn Storage>) {
    const WRITES: usize = 1000;
    let prefix = "/registry/events/ns/";
    let mut w = watch_ok(store.as_ref(), prefix, 0).await;
    let tasks: Vec<_> = (0..WRITES)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create(&format!("{prefix}e{i:04}"), val("x")).await })
        })
        .collect();
    let mut revisions = Vec::with_capacity(WRITES);
    for task in tasks {
        revisions.push(task.await.expect("task").expect("create").mod_revision);
    }
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), WRITES, "every write has its own revision");
    let mut seen = Vec::with_capacity(WRITES);
    for _ in 0..WRITES {
        seen.push(next_event(&mut w).await.revision());
    }
    assert_eq!(
        seen, revisions,
        "watcher sees every write once, in revision order"
    );
}

pub async fn revisions_strictly_increase(store: Arc<dyn Storage>) {
    let r0 = store.current_revision().await.expect("current");
    let key = "/registry/namespaces/a";
    let a = store.create(key, val("1")).await.expect("create");
    assert!(a.mod_revision > r0);
    assert_eq!(
        store.current_revision().await.expect("current"),
        a.mod_revision
    );
    // Failed writes do not consume revisions.
    assert!(store.create(key, val("x")).await.is_err());
    assert!(store
        .update(key, val("x"), a.mod_revision + 7)
        .await
        .is_err());
    assert_eq!(
        store.current_revision().await.expect("current"),
        a.mod_revision
    );
    let a2 = store
        .update(key, val("2"), a.mod_revision)
        .await
        .expect("update");
    assert!(a2.mod_revision > a.mod_revision);
    let (_, d) = store.delete(key, None).await.expect("delete");
    assert!(d > a2.mod_revision);
    assert_eq!(store.current_revision().await.expect("current"), d);
    let b = store.create(key, val("3")).await.expect("re-create");
    assert!(b.mod_revision > d);
    store.compact(d).await.expect("compact");
    let c = store
        .create("/registry/namespaces/c", val("c"))
        .await
        .expect("create after compact");
    assert!(c.mod_revision > b.mod_revision);
}
