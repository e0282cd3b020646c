//! The SQLite backend: the conformance suite plus what only an embedded store has to
//! prove (durability across reopen and kill -9, compaction, lease horizon, lagging
//! watchers, group-commit throughput).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use storage::sqlite::SqliteStorage;
use storage::testing::{self, next_event};
use storage::{Storage, StorageError, WatchEvent};
use tokio_util::sync::CancellationToken;

fn open(path: &Path) -> Arc<SqliteStorage> {
    Arc::new(SqliteStorage::open(path).expect("open sqlite store"))
}

fn db_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_conformance_suite() {
    let mut dirs = Vec::new();
    testing::run_all(|_| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Storage> = open(&db_in(&dir));
        dirs.push(dir);
        async move { store }
    })
    .await;
}

#[tokio::test]
async fn reopen_keeps_data_revision_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a2, current, compacted) = {
        let store = open(&db_in(&dir));
        let a = store
            .create("/registry/pods/ns/a", Bytes::from("1"))
            .await
            .expect("create");
        let a2 = store
            .update(&a.key, Bytes::from("2"), a.mod_revision)
            .await
            .expect("update");
        store
            .create("/registry/pods/ns/b", Bytes::from("b"))
            .await
            .expect("create b");
        let (_, deleted) = store
            .delete("/registry/pods/ns/b", None)
            .await
            .expect("delete");
        // The newest log row is a deletion marker and compaction removes it: the
        // revision must still not be reused after reopening.
        store.compact(deleted).await.expect("compact");
        (
            a2,
            deleted,
            store.compacted_revision().await.expect("compacted"),
        )
    };
    let store = open(&db_in(&dir));
    assert_eq!(store.current_revision().await.expect("current"), current);
    assert_eq!(
        store.compacted_revision().await.expect("compacted"),
        compacted
    );
    assert_eq!(
        store.get("/registry/pods/ns/a").await.expect("get"),
        Some(a2.clone())
    );
    assert_eq!(store.get("/registry/pods/ns/b").await.expect("get"), None);
    let list = store
        .list("/registry/pods/", 0, None, 0)
        .await
        .expect("list");
    assert_eq!(list.items, [a2]);
    let c = store
        .create("/registry/pods/ns/c", Bytes::from("c"))
        .await
        .expect("create");
    assert_eq!(c.mod_revision, current + 1);
    assert!(matches!(
        store.list("/registry/pods/", compacted - 1, None, 0).await,
        Err(StorageError::Compacted { .. })
    ));
}

const CRASH_CHILD_ENV: &str = "RKUBE_SQLITE_CRASH_CHILD_DB";
const CRASH_ACKS: usize = 300;

/// Not a test on its own: the child process of `acknowledged_writes_survive_kill_9`.
/// It writes forever and prints every acknowledged write until it is killed.
#[test]
fn crash_child_writer() {
    let Some(path) = std::env::var_os(CRASH_CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = open(Path::new(&path));
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/registry/configmaps/w{w}/k{i}");
                        let kv = store.create(&key, Bytes::from("v")).await.expect("create");
                        println!("ACK {key} {}", kv.mod_revision);
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.expect("writer");
        }
    });
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    if std::env::var_os(CRASH_CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_in(&dir);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "crash_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (key, rev) = rest.split_once(' ').expect("ACK <key> <rev>");
            acked.push((key.to_string(), rev.parse::<i64>().expect("revision")));
            if acked.len() >= CRASH_ACKS {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    assert_eq!(
        acked.len(),
        CRASH_ACKS,
        "child stopped before acknowledging enough writes"
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open(&db);
        let max = acked.iter().map(|(_, rev)| *rev).max().unwrap_or(0);
        assert!(store.current_revision().await.expect("current") >= max);
        for (key, rev) in &acked {
            let kv = store.get(key).await.expect("get");
            assert_eq!(
                kv.map(|kv| kv.mod_revision),
                Some(*rev),
                "acknowledged {key} lost"
            );
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_catches_up_from_the_log_or_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&db_in(&dir));
    let prefix = "/registry/pods/ns/";
    let mut slow = store.watch(prefix, 0).await.expect("watch");
    let mut doomed = store.watch(prefix, 0).await.expect("watch");
    // Sequential writes commit one batch each: more batches than the broadcast holds.
    const WRITES: usize = 300;
    let mut revisions = Vec::new();
    for i in 0..WRITES {
        let kv = store
            .create(&format!("{prefix}p{i}"), Bytes::from("x"))
            .await
            .expect("create");
        revisions.push(kv.mod_revision);
    }
    let mut seen = Vec::new();
    for _ in 0..WRITES {
        seen.push(next_event(&mut slow).await.revision());
    }
    assert_eq!(
        seen, revisions,
        "lagged watcher recovered every event in order"
    );

    // If the missed range was compacted meanwhile, the watcher gets an error, then ends.
    store.compact(revisions[WRITES / 2]).await.expect("compact");
    let mut items = Vec::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(10), doomed.next())
        .await
        .expect("watch item")
    {
        items.push(item);
    }
    assert!(
        matches!(items.last(), Some(Err(StorageError::Compacted { .. }))),
        "expected a final Compacted error, got {:?}",
        items.last()
    );
    let delivered: Vec<i64> = items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .map(WatchEvent::revision)
        .collect();
    assert_eq!(
        delivered,
        revisions[..delivered.len()],
        "no gap before the error"
    );
}

#[tokio::test]
async fn lease_history_has_its_own_short_horizon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&db_in(&dir));
    let lease = "/registry/leases/kube-node-lease/node-1";
    let mut kv = store
        .create(lease, Bytes::from("0"))
        .await
        .expect("create lease");
    let first_lease = kv.mod_revision;
    let pod = store
        .create("/registry/pods/ns/p", Bytes::from("0"))
        .await
        .expect("create pod");
    let pod2 = store
        .update(&pod.key, Bytes::from("1"), pod.mod_revision)
        .await
        .expect("update pod");
    for i in 1..50 {
        kv = store
            .update(lease, Bytes::from(i.to_string()), kv.mod_revision)
            .await
            .expect("renew");
    }
    assert_eq!(store.log_rows().await.expect("rows"), 52);
    let mark = store.current_revision().await.expect("current");
    store.compact_leases(mark).await.expect("compact leases");
    assert_eq!(store.lease_compacted_revision(), mark);
    assert_eq!(store.compacted_revision().await.expect("compacted"), 0);
    // One lease row and both pod rows remain.
    assert_eq!(store.log_rows().await.expect("rows"), 3);
    assert_eq!(store.get(lease).await.expect("get"), Some(kv.clone()));

    // Pod history is untouched ...
    let old = store
        .list("/registry/pods/", pod.mod_revision, None, 0)
        .await
        .expect("list pods");
    assert_eq!(old.items, std::slice::from_ref(&pod));
    let mut w = store
        .watch("/registry/pods/", pod.mod_revision)
        .await
        .expect("watch pods");
    match next_event(&mut w).await {
        WatchEvent::Put { kv, prev } => {
            assert_eq!(kv, pod2);
            assert_eq!(prev, Some(pod));
        }
        other => panic!("unexpected {other:?}"),
    }
    // ... while old lease history is gone, for leases and any prefix containing them.
    for prefix in ["/registry/leases/", "/registry/"] {
        assert!(matches!(
            store.list(prefix, first_lease, None, 0).await,
            Err(StorageError::Compacted { .. })
        ));
        assert!(matches!(
            store.watch(prefix, first_lease).await,
            Err(StorageError::Compacted { .. })
        ));
    }
    // Live lease watchers still get previous values.
    let mut w = store
        .watch("/registry/leases/", 0)
        .await
        .expect("watch leases");
    let renewed = store
        .update(lease, Bytes::from("next"), kv.mod_revision)
        .await
        .expect("renew");
    match next_event(&mut w).await {
        WatchEvent::Put { kv: got, prev } => {
            assert_eq!(got, renewed);
            assert_eq!(prev, Some(kv));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactor_task_compacts_in_steps_and_stops_on_cancel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&db_in(&dir));
    // 30 keys x 50 updates = 1,530 rows: more than one compaction step.
    let tasks: Vec<_> = (0..30)
        .map(|k| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut kv = store
                    .create(&format!("/registry/pods/ns/p{k}"), Bytes::from("0"))
                    .await?;
                for i in 1..=50 {
                    kv = store
                        .update(&kv.key, Bytes::from(i.to_string()), kv.mod_revision)
                        .await?;
                }
                Ok::<_, StorageError>(kv)
            })
        })
        .collect();
    let mut latest = Vec::new();
    for t in tasks {
        latest.push(t.await.expect("task").expect("writes"));
    }
    assert_eq!(store.log_rows().await.expect("rows"), 1530);
    let current = store.current_revision().await.expect("current");

    let cancel = CancellationToken::new();
    let task = store.start_compactor(Duration::from_millis(20), 0, cancel.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.compacted_revision().await.expect("compacted") < current {
        assert!(
            Instant::now() < deadline,
            "compactor did not reach {current}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    task.await.expect("compactor task");
    assert_eq!(store.log_rows().await.expect("rows"), 30);
    latest.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        store
            .list("/registry/pods/", 0, None, 0)
            .await
            .expect("list")
            .items,
        latest
    );
    assert!(store.checkpoint().await.expect("checkpoint"));
}

/// Not an assertion on speed: prints group-commit throughput for the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_throughput_with_32_writers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&db_in(&dir));
    const TASKS: usize = 32;
    const PER_TASK: usize = 250;
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    let key = format!("/registry/configmaps/t{t}/c{i}");
                    store.create(&key, Bytes::from_static(&[b'x'; 200])).await?;
                }
                Ok::<_, StorageError>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("creates");
    }
    let elapsed = started.elapsed();
    let total = TASKS * PER_TASK;
    eprintln!(
        "sqlite: {total} creates from {TASKS} tasks in {elapsed:?} = {:.0} creates/s",
        total as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(
        store.count("/registry/configmaps/").await.expect("count"),
        total as u64
    );
}
