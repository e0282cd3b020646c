//! Client-level consistency of watch and list against a real server on 127.0.0.1:0:
//! gapless ordered watches under concurrent writes (SQLite and etcd, across a restart),
//! streaming lists (`sendInitialEvents`), 410 for resourceVersions older than the watch
//! cache window, and paginated lists pinned to the first page's resourceVersion.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::Value;
use test_support::etcd::EtcdServer;
use test_support::server::TestServer;
use tokio::sync::mpsc;

/// How long any one phase may wait for its events.
const PHASE_DEADLINE: Duration = Duration::from_secs(30);
/// Concurrent writer tasks in the watch-gap tests.
const WRITERS: usize = 32;

fn rv_of(meta: &ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .expect("object has a numeric resourceVersion")
}

fn config_map(name: &str, label: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([("test".to_string(), label.to_string())].into()),
            ..Default::default()
        },
        data: Some([("value".to_string(), value.to_string())].into()),
        ..Default::default()
    }
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// One acknowledged write, or one watch event, reduced to what the tests compare.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    kind: &'static str,
    name: String,
    rv: u64,
}

/// `total` writes from [`WRITERS`] tasks at once: each task creates a ConfigMap, then
/// updates it, then creates the next, and so on. Returns every acknowledged write.
async fn concurrent_writes(
    api: &Api<ConfigMap>,
    label: &str,
    round: &str,
    total: usize,
) -> Vec<Change> {
    let mut tasks = Vec::new();
    for t in 0..WRITERS {
        let api = api.clone();
        let label = label.to_string();
        let round = round.to_string();
        let count = total / WRITERS + usize::from(t < total % WRITERS);
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::with_capacity(count);
            let mut current: Option<ConfigMap> = None;
            for k in 0..count {
                let change = match current.take() {
                    Some(mut cm) => {
                        cm.data = Some([("value".to_string(), format!("update-{k}"))].into());
                        let name = cm.metadata.name.clone().expect("named");
                        let updated = api
                            .replace(&name, &PostParams::default(), &cm)
                            .await
                            .expect("update");
                        Change {
                            kind: "MODIFIED",
                            name,
                            rv: rv_of(&updated.metadata),
                        }
                    }
                    None => {
                        let name = format!("{round}-{t}-{k}");
                        let created = api
                            .create(
                                &PostParams::default(),
                                &config_map(&name, &label, "created"),
                            )
                            .await
                            .expect("create");
                        let change = Change {
                            kind: "ADDED",
                            name,
                            rv: rv_of(&created.metadata),
                        };
                        current = Some(created);
                        change
                    }
                };
                done.push(change);
            }
            done
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.expect("writer task"));
    }
    all
}

/// A raw watch from `from_rv` forwarding every event (or the reason it stopped).
fn spawn_watch(
    api: Api<ConfigMap>,
    label: &str,
    from_rv: String,
) -> (
    tokio::task::JoinHandle<()>,
    mpsc::UnboundedReceiver<Result<Change, String>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let params = WatchParams::default()
        .labels(&format!("test={label}"))
        .timeout(290);
    let handle = tokio::spawn(async move {
        let stream = match api.watch(&params, &from_rv).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(format!("watch from {from_rv} failed: {e}")));
                return;
            }
        };
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            let change = match item {
                Ok(WatchEvent::Added(cm)) => Ok(Change {
                    kind: "ADDED",
                    rv: rv_of(&cm.metadata),
                    name: cm.metadata.name.unwrap_or_default(),
                }),
                Ok(WatchEvent::Modified(cm)) => Ok(Change {
                    kind: "MODIFIED",
                    rv: rv_of(&cm.metadata),
                    name: cm.metadata.name.unwrap_or_default(),
                }),
                Ok(WatchEvent::Deleted(cm)) => Ok(Change {
                    kind: "DELETED",
                    rv: rv_of(&cm.metadata),
                    name: cm.metadata.name.unwrap_or_default(),
                }),
                Ok(WatchEvent::Bookmark(_)) => continue,
                Ok(WatchEvent::Error(status)) => Err(format!("ERROR event: {status:?}")),
                Err(e) => Err(format!("watch stream failed: {e}")),
            };
            if tx.send(change).is_err() {
                return;
            }
        }
        let _ = tx.send(Err(format!("watch from {from_rv} ended")));
    });
    (handle, rx)
}

/// Receives watch events until `sentinel` arrives; everything before it is returned.
async fn events_until(
    rx: &mut mpsc::UnboundedReceiver<Result<Change, String>>,
    sentinel: &Change,
) -> Vec<Change> {
    let deadline = tokio::time::Instant::now() + PHASE_DEADLINE;
    let mut seen = Vec::new();
    loop {
        let next = tokio::time::timeout_at(deadline, rx.recv()).await;
        match next {
            Ok(Some(Ok(change))) if change == *sentinel => return seen,
            Ok(Some(Ok(change))) => seen.push(change),
            Ok(Some(Err(reason))) => panic!("watch stopped after {} events: {reason}", seen.len()),
            Ok(None) => panic!("watch task gone after {} events", seen.len()),
            Err(_) => panic!(
                "sentinel {sentinel:?} not seen within {PHASE_DEADLINE:?}; got {} events",
                seen.len()
            ),
        }
    }
}

/// Every acknowledged write is seen exactly once, in strictly increasing
/// resourceVersion order, with nothing else in between.
fn assert_gapless(phase: &str, seen: &[Change], writes: &[Change]) {
    for pair in seen.windows(2) {
        assert!(
            pair[0].rv < pair[1].rv,
            "{phase}: resourceVersions not strictly increasing: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    let written: BTreeMap<u64, &Change> = writes.iter().map(|w| (w.rv, w)).collect();
    assert_eq!(
        written.len(),
        writes.len(),
        "{phase}: two writes acknowledged with the same resourceVersion"
    );
    let observed: BTreeMap<u64, &Change> = seen.iter().map(|c| (c.rv, c)).collect();
    let missing: Vec<_> = written
        .values()
        .filter(|w| !observed.contains_key(&w.rv))
        .take(10)
        .collect();
    let unexpected: Vec<_> = observed
        .values()
        .filter(|c| !written.contains_key(&c.rv))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "{phase}: acknowledged writes never seen (first 10): {missing:?}"
    );
    assert!(
        unexpected.is_empty(),
        "{phase}: events for no acknowledged write (first 10): {unexpected:?}"
    );
    for (rv, w) in &written {
        assert_eq!(
            observed[rv], *w,
            "{phase}: event at {rv} differs from the write"
        );
    }
}

/// The watch-gap scenario: concurrent writes seen gaplessly, then a restart and a
/// resumed watch that again sees exactly the later writes.
async fn watch_sees_every_write_across_restart(
    mut server: TestServer,
    before: usize,
    after: usize,
) {
    let started = Instant::now();
    let client = server.client();
    create_namespace(&client, "gap").await;
    let api: Api<ConfigMap> = Api::namespaced(client, "gap");
    let list = api
        .list(&ListParams::default().labels("test=gap"))
        .await
        .expect("list");
    let from = list
        .metadata
        .resource_version
        .expect("list resourceVersion");
    let (watch, mut rx) = spawn_watch(api.clone(), "gap", from);

    let writes = concurrent_writes(&api, "gap", "a", before).await;
    assert_eq!(writes.len(), before);
    // A last write acts as a barrier: once it is seen, every earlier event has been.
    let sentinel = api
        .create(
            &PostParams::default(),
            &config_map("sentinel-a", "gap", "x"),
        )
        .await
        .expect("sentinel");
    let sentinel = Change {
        kind: "ADDED",
        name: "sentinel-a".into(),
        rv: rv_of(&sentinel.metadata),
    };
    let seen = events_until(&mut rx, &sentinel).await;
    assert_gapless("before restart", &seen, &writes);
    watch.abort();
    let last_seen = sentinel.rv;

    // Other resources keep changing while this watcher is away.
    let secrets: Api<Secret> = Api::namespaced(server.client(), "gap");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("unrelated".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("unrelated write");

    server.restart().await.expect("restart");
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "gap");
    let (watch, mut rx) = spawn_watch(api.clone(), "gap", last_seen.to_string());
    let writes = concurrent_writes(&api, "gap", "b", after).await;
    let sentinel = api
        .create(
            &PostParams::default(),
            &config_map("sentinel-b", "gap", "x"),
        )
        .await
        .expect("sentinel");
    let sentinel = Change {
        kind: "ADDED",
        name: "sentinel-b".into(),
        rv: rv_of(&sentinel.metadata),
    };
    let seen = events_until(&mut rx, &sentinel).await;
    assert_gapless("after restart", &seen, &writes);
    assert!(
        seen.iter().all(|c| c.rv > last_seen),
        "events replayed from before the resume point"
    );
    watch.abort();
    server.shutdown().await;
    eprintln!(
        "watch gap: {before}+{after} writes in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_every_event_of_1000_concurrent_writes_in_order() {
    let server = TestServer::start().await.expect("start server");
    watch_sees_every_write_across_restart(server, 1000, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_every_event_of_concurrent_writes_in_order_on_etcd() {
    let Some(etcd) = EtcdServer::start_or_skip().expect("start etcd") else {
        return;
    };
    let server = TestServer::start_with_etcd(&etcd.endpoint)
        .await
        .expect("start server");
    watch_sees_every_write_across_restart(server, 200, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_initial_events_streams_every_object_then_an_initial_events_end_bookmark() {
    let server = TestServer::start().await.expect("start server");
    let client = server.client();
    create_namespace(&client, "stream").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "stream");
    let mut expected = BTreeMap::new();
    for i in 0..50 {
        let name = format!("cm-{i:02}");
        let cm = api
            .create(&PostParams::default(), &config_map(&name, "stream", "v"))
            .await
            .expect("create");
        expected.insert(name, rv_of(&cm.metadata));
    }

    // Raw request, so the wire format itself is checked.
    let uri = "/api/v1/namespaces/stream/configmaps?watch=true&sendInitialEvents=true\
               &resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=30";
    let request = http::Request::get(uri).body(Vec::new()).expect("request");
    let body = client
        .request_stream(request)
        .await
        .expect("streaming list");
    let mut lines = body.lines();
    let mut added = BTreeMap::new();
    let bookmark = tokio::time::timeout(PHASE_DEADLINE, async {
        while let Some(line) = lines.next().await {
            let event: Value = serde_json::from_str(&line.expect("read line")).expect("event JSON");
            match event["type"].as_str() {
                Some("ADDED") => {
                    let name = event["object"]["metadata"]["name"]
                        .as_str()
                        .expect("name")
                        .to_string();
                    // Published into every namespace by the root CA publisher.
                    if name == "kube-root-ca.crt" {
                        continue;
                    }
                    let rv: u64 = event["object"]["metadata"]["resourceVersion"]
                        .as_str()
                        .expect("rv")
                        .parse()
                        .expect("numeric rv");
                    assert!(
                        added.insert(name.clone(), rv).is_none(),
                        "{name} sent twice"
                    );
                }
                Some("BOOKMARK") => return event,
                other => panic!("unexpected event {other:?} before the bookmark: {event}"),
            }
        }
        panic!("stream ended before the initial-events-end bookmark");
    })
    .await
    .expect("bookmark within deadline");
    assert_eq!(
        added, expected,
        "initial events are every object at its resourceVersion"
    );
    let meta = &bookmark["object"]["metadata"];
    assert_eq!(
        meta["annotations"]["k8s.io/initial-events-end"], "true",
        "bookmark: {bookmark}"
    );
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");
    let bookmark_rv: u64 = meta["resourceVersion"]
        .as_str()
        .expect("bookmark rv")
        .parse()
        .expect("numeric");
    assert!(
        bookmark_rv >= *expected.values().max().expect("objects"),
        "bookmark {bookmark_rv} older than the objects"
    );

    // The same stream then follows live changes.
    let late = api
        .create(&PostParams::default(), &config_map("late", "stream", "v"))
        .await
        .expect("create late");
    let line = tokio::time::timeout(PHASE_DEADLINE, lines.next())
        .await
        .expect("live event in time")
        .expect("stream open")
        .expect("line");
    let event: Value = serde_json::from_str(&line).expect("event JSON");
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "late");
    assert_eq!(
        event["object"]["metadata"]["resourceVersion"].as_str(),
        late.metadata.resource_version.as_deref()
    );

    // kube-runtime's streaming-list watcher reaches InitDone with every object.
    expected.insert("late".into(), rv_of(&late.metadata));
    let config = watcher::Config::default()
        .labels("test=stream")
        .streaming_lists();
    let stream = watcher(api.clone(), config);
    futures::pin_mut!(stream);
    let mut listed = BTreeMap::new();
    let mut init = false;
    tokio::time::timeout(PHASE_DEADLINE, async {
        while let Some(event) = stream.try_next().await.expect("watcher") {
            match event {
                watcher::Event::Init => init = true,
                watcher::Event::InitApply(cm) => {
                    listed.insert(cm.metadata.name.clone().expect("name"), rv_of(&cm.metadata));
                }
                watcher::Event::InitDone => return,
                other => panic!("unexpected watcher event before InitDone: {other:?}"),
            }
        }
        panic!("watcher ended before InitDone");
    })
    .await
    .expect("InitDone within deadline");
    assert!(init, "no Init before InitDone");
    assert_eq!(listed, expected);
    server.shutdown().await;
}

/// More than the watch cache's per-resource history (10,000 events) written straight
/// to the store, which is far quicker than through the API and feeds the cache the
/// same way (the cache follows the store, not the API).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_resource_version_older_than_the_cache_window_is_gone() {
    const FLOOD: usize = 10_050;
    let server = TestServer::start().await.expect("start server");
    let client = server.client();
    create_namespace(&client, "old").await;
    let api: Api<ConfigMap> = Api::namespaced(client, "old");
    let first = api
        .create(&PostParams::default(), &config_map("first", "old", "v"))
        .await
        .expect("create");
    let old_rv = first.metadata.resource_version.clone().expect("rv");

    let registry = server.running().expect("running").registry.clone();
    let store = registry
        .lookup("", "v1", "configmaps")
        .expect("configmaps served")
        .store;
    let storage = registry.storage().clone();
    let writes = futures::stream::iter(0..FLOOD).map(|i| {
        let storage = storage.clone();
        let name = format!("flood-{i}");
        let key = store.key("old", &name);
        async move {
            let value = serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "old", "uid": format!("uid-{i}")},
            });
            storage
                .create(&key, bytes::Bytes::from(value.to_string()))
                .await
                .map(|kv| kv.mod_revision)
        }
    });
    let revisions: Vec<i64> = writes
        .buffer_unordered(256)
        .try_collect()
        .await
        .expect("flood the store");
    let newest = revisions.iter().copied().max().expect("writes");

    // Wait until the cache has applied the flood (a consistent list syncs with it).
    let list = api
        .list(&ListParams::default().labels("test=old"))
        .await
        .expect("list");
    let list_rv: i64 = list
        .metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .expect("list rv");
    assert!(
        list_rv >= newest,
        "list at {list_rv} before the flood's {newest}"
    );

    // As upstream: 200 and an ERROR event (reflectors relist on it), not a 410 response.
    let gone = match api.watch(&WatchParams::default(), &old_rv).await {
        Err(e) => panic!("watch from {old_rv}: unexpected error {e}"),
        Ok(stream) => {
            futures::pin_mut!(stream);
            match tokio::time::timeout(PHASE_DEADLINE, stream.next())
                .await
                .expect("first event in time")
            {
                Some(Ok(WatchEvent::Error(status))) => *status,
                other => panic!("watch from {old_rv}: expected 410, got {other:?}"),
            }
        }
    };
    assert_eq!(gone.code, 410, "{gone:?}");
    assert!(
        matches!(gone.reason.as_str(), "Expired" | "Gone"),
        "{gone:?}"
    );
    assert!(
        gone.message.contains("too old resource version"),
        "{gone:?}"
    );

    // A resourceVersion inside the window still resumes.
    let recent = (newest - 10).to_string();
    let stream = api
        .watch(&WatchParams::default(), &recent)
        .await
        .expect("watch inside the window");
    futures::pin_mut!(stream);
    let mut replayed = 0;
    while replayed < 10 {
        match tokio::time::timeout(PHASE_DEADLINE, stream.next())
            .await
            .expect("replayed event in time")
        {
            Some(Ok(WatchEvent::Added(cm))) => {
                assert!(rv_of(&cm.metadata) > (newest - 10) as u64);
                replayed += 1;
            }
            other => panic!("expected ADDED replay, got {other:?}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_list_is_consistent_at_the_first_pages_resource_version_despite_writes() {
    const OBJECTS: usize = 1200;
    let server = TestServer::start().await.expect("start server");
    let client = server.client();
    create_namespace(&client, "pages").await;
    let api: Api<ConfigMap> = Api::namespaced(client, "pages");
    futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(
                    &PostParams::default(),
                    &config_map(&format!("cm-{i:04}"), "pages", "v1"),
                )
                .await
            }
        })
        .buffer_unordered(WRITERS)
        .try_collect::<Vec<_>>()
        .await
        .expect("create objects");

    // The state the pages must reproduce: everything in the namespace, unpaged.
    let full = api.list(&ListParams::default()).await.expect("full list");
    let snapshot: BTreeMap<String, String> = full
        .items
        .iter()
        .map(|cm| {
            (
                cm.metadata.name.clone().expect("name"),
                cm.metadata.resource_version.clone().expect("rv"),
            )
        })
        .collect();
    assert!(snapshot.len() >= OBJECTS);

    let mut pages = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.expect("page");
        let token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        pages.push(page);
        let Some(token) = token else { break };
        // Writes between pages: new objects, updates and deletes across the key range.
        let n = pages.len();
        api.create(
            &PostParams::default(),
            &config_map(&format!("cm-{n}-new"), "pages", "v1"),
        )
        .await
        .expect("create between pages");
        for victim in [format!("cm-{:04}", 100 * n), format!("cm-{:04}", 1100 + n)] {
            let mut cm = api.get(&victim).await.expect("get");
            cm.data = Some([("value".to_string(), "changed".to_string())].into());
            api.replace(&victim, &PostParams::default(), &cm)
                .await
                .expect("update between pages");
        }
        api.delete(&format!("cm-{:04}", 1190 + n), &Default::default())
            .await
            .expect("delete between pages");
        params = params.continue_token(&token);
    }

    assert_eq!(pages.len(), 3, "1,200+ objects in pages of 500");
    let first_rv = pages[0].metadata.resource_version.clone().expect("page rv");
    for (i, page) in pages.iter().enumerate() {
        assert_eq!(
            page.metadata.resource_version.as_ref(),
            Some(&first_rv),
            "page {i} resourceVersion"
        );
    }
    assert_eq!(pages[0].items.len(), 500);
    assert_eq!(pages[1].items.len(), 500);
    assert_eq!(pages[2].items.len(), snapshot.len() - 1000);
    assert!(
        pages[0]
            .metadata
            .remaining_item_count
            .is_some_and(|n| n > 0),
        "page 0 remainingItemCount"
    );
    assert!(
        pages[2]
            .metadata
            .continue_
            .as_deref()
            .unwrap_or("")
            .is_empty(),
        "last page has no continue token"
    );

    let paged: Vec<(String, String)> = pages
        .iter()
        .flat_map(|p| p.items.iter())
        .map(|cm| {
            (
                cm.metadata.name.clone().expect("name"),
                cm.metadata.resource_version.clone().expect("rv"),
            )
        })
        .collect();
    let names: Vec<&String> = paged.iter().map(|(n, _)| n).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "pages are in key order without duplicates");
    let paged: BTreeMap<String, String> = paged.into_iter().collect();
    assert_eq!(
        paged, snapshot,
        "pages reproduce the state at the first page's resourceVersion"
    );
    let page_names: BTreeSet<&String> = paged.keys().collect();
    assert!(
        !page_names.iter().any(|n| n.ends_with("-new")),
        "objects created after the first page leaked in"
    );
    server.shutdown().await;
}
