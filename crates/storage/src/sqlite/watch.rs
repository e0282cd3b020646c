//! Watch streams for the SQLite store: replay from the log, then live events from
//! the writer's broadcast, joined without gap or duplicate.
//!
//! Protocol: subscribe to the broadcast *first*, then read `current` (X). Every
//! revision `<= X` is committed and readable from the log; every revision `> X` is
//! broadcast after the subscription existed, so it arrives live. The stream replays
//! `(from, X]` from the log in pages, then forwards live events with revision `> X`
//! (tracking the last revision processed, so nothing is delivered twice). If the
//! broadcast overruns this watcher (`Lagged`), it re-subscribes and replays the missed
//! range from the log the same way; only if that range has been compacted meanwhile
//! does the stream yield `Compacted` and end. A watcher therefore never sees a gap.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use super::read::{self, ReadPool};
use super::writer::{EventSender, Shared};
use crate::{Result, StorageError, WatchEvent, WatchStream};

/// History rows read per replay query.
const REPLAY_PAGE: usize = 500;

struct Watcher {
    pool: Arc<ReadPool>,
    shared: Arc<Shared>,
    prefix: String,
    rx: broadcast::Receiver<Arc<Vec<WatchEvent>>>,
    /// The highest revision already processed (delivered or filtered out).
    after: i64,
    /// While replaying: the revision up to which the log must be read.
    replay_upto: Option<i64>,
    buf: VecDeque<WatchEvent>,
    done: bool,
}

/// Starts a watch of `prefix` for revisions `> from` (`from <= 0`: from now on).
pub(crate) fn start(
    pool: Arc<ReadPool>,
    shared: Arc<Shared>,
    events: &EventSender,
    prefix: &str,
    from: i64,
) -> Result<WatchStream> {
    let rx = events.subscribe();
    let current = shared.current.load(Ordering::Acquire);
    let (after, replay_upto) = if from <= 0 {
        (current, None)
    } else {
        let compacted = shared.meta().compacted_for(prefix);
        if from < compacted {
            return Err(StorageError::Compacted {
                requested: from,
                compacted,
            });
        }
        (from, (from < current).then_some(current))
    };
    let watcher = Watcher {
        pool,
        shared,
        prefix: prefix.to_string(),
        rx,
        after,
        replay_upto,
        buf: VecDeque::new(),
        done: false,
    };
    Ok(Box::pin(futures::stream::unfold(
        watcher,
        |mut w| async move { w.next().await.map(|item| (item, w)) },
    )))
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.buf.pop_front() {
                return Some(Ok(event));
            }
            if let Some(upto) = self.replay_upto {
                if self.after >= upto {
                    self.replay_upto = None;
                    continue;
                }
                let prefix = self.prefix.clone();
                let after = self.after;
                let page = self
                    .pool
                    .run(move |conn| read::history_page(conn, &prefix, after, upto, REPLAY_PAGE))
                    .await;
                match page {
                    Ok((events, covered)) => {
                        self.after = covered;
                        self.buf.extend(events);
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(batch) => {
                    for event in batch.iter() {
                        let rev = event.revision();
                        if rev <= self.after {
                            continue;
                        }
                        self.after = rev;
                        if event.key().starts_with(&self.prefix) {
                            self.buf.push_back(event.clone());
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(prefix = %self.prefix, missed, "watcher lagged; replaying from the log");
                    self.rx = self.rx.resubscribe();
                    self.replay_upto = Some(self.shared.current.load(Ordering::Acquire));
                }
                Err(RecvError::Closed) => {
                    // The store was dropped: its writer and every sender are gone.
                    self.done = true;
                    return Some(Err(StorageError::Backend("sqlite store closed".into())));
                }
            }
        }
    }
}
