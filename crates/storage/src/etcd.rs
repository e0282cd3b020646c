//! The etcd v3 backend: the storage contract mapped onto etcd transactions and watches.
//!
//! - `create`: txn `create_revision(key) == 0` → put.
//! - `update`: txn `mod_revision(key) == expected && create_revision(key) > 0` → put
//!   (the second compare keeps `expected == 0` from creating a missing key); on
//!   failure the else branch reads the key to tell `NotFound` from `Conflict`.
//! - `delete`: txn `create_revision(key) > 0 [&& mod_revision(key) == expected]` →
//!   delete with `prev_kv`.
//! - `list`: range `[prefix, prefix+1)` (or from just after `start_after`) at a
//!   revision, with etcd's own `limit`/`more`.
//! - `watch`: `start_revision = from + 1` with `prev_kv`. A watch below the compacted
//!   revision is refused up front by probing a range read at `from` (etcd refuses reads
//!   below its compacted revision, exactly our contract); a compaction racing the watch
//!   arrives as a cancel with `compact_revision`, surfaced as a `Compacted` item.
//! - etcd does not expose its compacted revision; [`EtcdStorage`] finds it by binary
//!   search over range reads (the lowest readable revision), starting from the highest
//!   value it has already seen.
//!
//! An optional key prefix ([`EtcdStorage::with_key_prefix`], like kube-apiserver's
//! `--etcd-prefix` root) lets several stores share one etcd; revisions and compaction
//! stay cluster-wide.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Txn, TxnOp,
    TxnOpResponse, TxnResponse, WatchOptions,
};

use crate::{KeyValue, ListResult, Result, Storage, StorageError, WatchEvent, WatchStream};

/// Largest gRPC response accepted (kube-apiserver uses `math.MaxInt32`).
const MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

/// The etcd v3 backend.
#[derive(Clone)]
pub struct EtcdStorage {
    client: Client,
    key_prefix: String,
    /// Highest compacted revision observed (a lower bound for the real one).
    compacted_hint: Arc<AtomicI64>,
}

enum EtcdFailure {
    Compacted,
    Future,
    Other,
}

fn classify(e: &etcd_client::Error) -> EtcdFailure {
    let text = match e {
        etcd_client::Error::GRpcStatus(status) => status.message().to_string(),
        other => other.to_string(),
    };
    if text.contains("required revision has been compacted") {
        EtcdFailure::Compacted
    } else if text.contains("required revision is a future revision") {
        EtcdFailure::Future
    } else {
        EtcdFailure::Other
    }
}

fn backend(e: etcd_client::Error) -> StorageError {
    StorageError::Backend(format!("etcd: {e}"))
}

/// The smallest key greater than every key starting with `prefix` (etcd's
/// `range_end` for a prefix); `[0]` means "to the end of the key space".
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStorage {
    /// Connects to etcd at `endpoints` (e.g. `http://127.0.0.1:2379`) and checks that
    /// it answers.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let mut client = Client::connect(endpoints, Some(options))
            .await
            .map_err(backend)?;
        client.status().await.map_err(backend)?;
        Ok(EtcdStorage {
            client,
            key_prefix: String::new(),
            compacted_hint: Arc::new(AtomicI64::new(0)),
        })
    }

    /// Stores every key under `prefix` in etcd (keys seen by callers exclude it).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// A KV client that accepts responses as large as kube-apiserver does (lists
    /// of a big prefix easily exceed gRPC's 4 MiB default).
    fn kv_client(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.key_prefix)
    }

    fn kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        let key = kv
            .key_str()
            .map_err(|e| StorageError::Backend(format!("etcd: non-UTF-8 key: {e}")))?;
        let key = key.strip_prefix(self.key_prefix.as_str()).unwrap_or(key);
        Ok(KeyValue {
            key: key.to_string(),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.kv_client().txn(txn).await.map_err(backend)
    }

    /// The key as read by the `get` op at `index` of a txn response.
    fn txn_get(&self, resp: &TxnResponse, index: usize) -> Result<Option<KeyValue>> {
        match resp.op_responses().get(index) {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| self.kv(kv)).transpose(),
            _ => Err(StorageError::Backend(
                "etcd: unexpected txn response".into(),
            )),
        }
    }

    fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
        header.map_or(0, |h| h.revision())
    }

    /// The conflict/not-found answer from a failed precondition txn whose else branch
    /// read the key.
    fn precondition_failed(&self, resp: &TxnResponse, key: &str, expected: i64) -> StorageError {
        match self.txn_get(resp, 0) {
            Ok(None) => StorageError::NotFound(key.to_string()),
            Ok(Some(current)) => StorageError::Conflict {
                key: key.to_string(),
                expected,
                current: Some(current),
            },
            Err(e) => e,
        }
    }

    /// Puts `value` under the txn guard `when`; returns the written KeyValue (its
    /// revisions read back keys-only in the same txn) or the failed txn's response.
    async fn guarded_put(
        &self,
        key: &str,
        value: Bytes,
        when: Vec<Compare>,
    ) -> Result<std::result::Result<KeyValue, TxnResponse>> {
        let full = self.full(key);
        let txn = Txn::new()
            .when(when)
            .and_then(vec![
                TxnOp::put(full.clone(), value.to_vec(), None),
                TxnOp::get(full.clone(), Some(GetOptions::new().with_keys_only())),
            ])
            .or_else(vec![TxnOp::get(full, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Ok(Err(resp));
        }
        let written = self
            .txn_get(&resp, 1)?
            .ok_or_else(|| StorageError::Backend("etcd: written key not found in txn".into()))?;
        Ok(Ok(KeyValue { value, ..written }))
    }

    /// Whether a read at `revision` is still possible (not compacted away).
    async fn readable_at(&self, revision: i64) -> Result<bool> {
        let options = GetOptions::new().with_revision(revision).with_count_only();
        match self
            .kv_client()
            .get(self.full("\0probe"), Some(options))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match classify(&e) {
                EtcdFailure::Compacted => Ok(false),
                EtcdFailure::Future => Ok(true),
                EtcdFailure::Other => Err(backend(e)),
            },
        }
    }

    async fn compacted_error(&self, requested: i64) -> StorageError {
        let compacted = self.compacted_revision().await.unwrap_or(requested);
        StorageError::Compacted {
            requested,
            compacted,
        }
    }

    fn map_read_error(&self, e: etcd_client::Error, revision: i64) -> ReadError {
        match classify(&e) {
            EtcdFailure::Compacted => ReadError::Compacted(revision),
            EtcdFailure::Future => ReadError::Future(revision),
            EtcdFailure::Other => ReadError::Other(backend(e)),
        }
    }

    async fn resolve(&self, err: ReadError) -> StorageError {
        match err {
            ReadError::Compacted(requested) => self.compacted_error(requested).await,
            ReadError::Future(requested) => StorageError::FutureRevision {
                requested,
                current: self.current_revision().await.unwrap_or(0),
            },
            ReadError::Other(e) => e,
        }
    }
}

enum ReadError {
    Compacted(i64),
    Future(i64),
    Other(StorageError),
}

#[async_trait]
impl Storage for EtcdStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .kv_client()
            .get(self.full(key), None)
            .await
            .map_err(backend)?;
        resp.kvs().first().map(|kv| self.kv(kv)).transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        revision: i64,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult> {
        let full_prefix = self.full(prefix);
        let start = match start_after {
            Some(after) if after >= prefix => format!("{}\0", self.full(after)),
            _ => full_prefix.clone(),
        };
        let mut options = GetOptions::new()
            .with_range(range_end(full_prefix.as_bytes()))
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let resp = match self.kv_client().get(start, Some(options)).await {
            Ok(resp) => resp,
            Err(e) => {
                let err = self.map_read_error(e, revision);
                return Err(self.resolve(err).await);
            }
        };
        let items = resp
            .kvs()
            .iter()
            .map(|kv| self.kv(kv))
            .collect::<Result<Vec<_>>>()?;
        Ok(ListResult {
            items,
            revision: if revision > 0 {
                revision
            } else {
                Self::header_revision(resp.header())
            },
            more: resp.more(),
        })
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let full_prefix = self.full(prefix);
        let options = GetOptions::new()
            .with_range(range_end(full_prefix.as_bytes()))
            .with_count_only();
        let resp = self
            .kv_client()
            .get(full_prefix, Some(options))
            .await
            .map_err(backend)?;
        Ok(u64::try_from(resp.count()).unwrap_or(0))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let when = vec![Compare::create_revision(
            self.full(key),
            CompareOp::Equal,
            0,
        )];
        match self.guarded_put(key, value, when).await? {
            Ok(kv) => Ok(kv),
            Err(_) => Err(StorageError::AlreadyExists(key.to_string())),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: i64) -> Result<KeyValue> {
        let full = self.full(key);
        let when = vec![
            Compare::mod_revision(full.clone(), CompareOp::Equal, expected_revision),
            Compare::create_revision(full, CompareOp::Greater, 0),
        ];
        match self.guarded_put(key, value, when).await? {
            Ok(kv) => Ok(kv),
            Err(resp) => Err(self.precondition_failed(&resp, key, expected_revision)),
        }
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        let full = self.full(key);
        let mut when = vec![Compare::create_revision(
            full.clone(),
            CompareOp::Greater,
            0,
        )];
        if let Some(expected) = expected_revision {
            when.push(Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected,
            ));
        }
        let txn = Txn::new()
            .when(when)
            .and_then(vec![TxnOp::delete(
                full.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else(vec![TxnOp::get(full, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(self.precondition_failed(&resp, key, expected_revision.unwrap_or(0)));
        }
        let prev = match resp.op_responses().first() {
            Some(TxnOpResponse::Delete(del)) => del.prev_kvs().first().map(|kv| self.kv(kv)),
            _ => None,
        };
        let prev = prev
            .transpose()?
            .ok_or_else(|| StorageError::NotFound(key.to_string()))?;
        Ok((prev, Self::header_revision(resp.header())))
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        if from_revision > 0 && !self.readable_at(from_revision).await? {
            return Err(self.compacted_error(from_revision).await);
        }
        let full_prefix = self.full(prefix);
        let mut options = WatchOptions::new()
            .with_range(range_end(full_prefix.as_bytes()))
            .with_prev_key();
        if from_revision > 0 {
            options = options.with_start_revision(from_revision + 1);
        }
        let mut stream = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .watch(full_prefix, Some(options))
            .await
            .map_err(backend)?;
        // Wait until the watch exists, so writes after this call returns are seen.
        match stream.message().await.map_err(backend)? {
            Some(resp) if resp.canceled() && resp.compact_revision() > 0 => {
                return Err(StorageError::Compacted {
                    requested: from_revision,
                    compacted: resp.compact_revision(),
                });
            }
            Some(resp) if resp.canceled() => {
                return Err(StorageError::Backend(format!(
                    "etcd: watch refused: {}",
                    resp.cancel_reason()
                )));
            }
            Some(_) => {}
            None => return Err(StorageError::Backend("etcd: watch stream closed".into())),
        }
        let state = EtcdWatch {
            store: self.clone(),
            stream,
            buf: VecDeque::new(),
            last: from_revision,
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut w| async move { w.next().await.map(|item| (item, w)) },
        )))
    }

    /// Compacting at or below the compacted revision is a no-op; above the current
    /// revision it fails with `FutureRevision`.
    async fn compact(&self, revision: i64) -> Result<()> {
        match self.kv_client().compact(revision, None).await {
            Ok(_) => {
                self.compacted_hint.fetch_max(revision, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => match classify(&e) {
                EtcdFailure::Compacted => Ok(()),
                EtcdFailure::Future => Err(self.resolve(ReadError::Future(revision)).await),
                EtcdFailure::Other => Err(backend(e)),
            },
        }
    }

    async fn current_revision(&self) -> Result<i64> {
        let resp = self
            .kv_client()
            .get(
                self.full("\0probe"),
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(backend)?;
        Ok(Self::header_revision(resp.header()))
    }

    /// The lowest revision etcd still serves reads at, found by binary search (0 when
    /// nothing was compacted; a compaction at revision 1 also reads as 0).
    async fn compacted_revision(&self) -> Result<i64> {
        let current = self.current_revision().await?;
        let mut lo = self.compacted_hint.load(Ordering::Acquire).max(1);
        let mut hi = current.max(lo);
        // Invariant: reads at `hi` work; reads below `lo` do not (or lo == 1).
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.readable_at(mid).await? {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        self.compacted_hint.fetch_max(lo, Ordering::AcqRel);
        Ok(if lo <= 1 { 0 } else { lo })
    }
}

/// State of one etcd watch stream.
struct EtcdWatch {
    store: EtcdStorage,
    stream: etcd_client::WatchStream,
    buf: VecDeque<WatchEvent>,
    /// The last revision delivered (for the `Compacted` error).
    last: i64,
    done: bool,
}

impl EtcdWatch {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.buf.pop_front() {
                self.last = event.revision();
                return Some(Ok(event));
            }
            let resp = match self.stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    self.done = true;
                    return Some(Err(StorageError::Backend(
                        "etcd: watch stream closed".into(),
                    )));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(backend(e)));
                }
            };
            if resp.canceled() {
                self.done = true;
                return Some(Err(if resp.compact_revision() > 0 {
                    StorageError::Compacted {
                        requested: self.last,
                        compacted: resp.compact_revision(),
                    }
                } else {
                    StorageError::Backend(format!("etcd: watch canceled: {}", resp.cancel_reason()))
                }));
            }
            for event in resp.events() {
                match self.convert(event) {
                    Ok(event) => self.buf.push_back(event),
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    fn convert(&self, event: &etcd_client::Event) -> Result<WatchEvent> {
        let kv = event
            .kv()
            .ok_or_else(|| StorageError::Backend("etcd: watch event without kv".into()))?;
        let kv = self.store.kv(kv)?;
        let prev = event.prev_kv().map(|p| self.store.kv(p)).transpose()?;
        Ok(match event.event_type() {
            EventType::Put => WatchEvent::Put {
                // A (re)created key has no previous value even if etcd kept one.
                prev: prev.filter(|_| kv.create_revision != kv.mod_revision),
                kv,
            },
            EventType::Delete => {
                let revision = kv.mod_revision;
                // Without prev_kv (compacted meanwhile) only the key is known.
                let prev = prev.unwrap_or(KeyValue {
                    value: Bytes::new(),
                    create_revision: 0,
                    mod_revision: 0,
                    ..kv
                });
                WatchEvent::Delete { prev, revision }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_for_prefixes() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"/registry/pods/", b"/registry/pods0"),
            (b"a\xff", b"b"),
            (b"\xff\xff", b"\0"),
            (b"", b"\0"),
        ];
        for (prefix, want) in cases {
            assert_eq!(range_end(prefix), want, "prefix {prefix:?}");
        }
    }
}
