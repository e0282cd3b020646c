//! WATCH: newline-delimited JSON events streamed from the watch cache.
//!
//! Selector semantics follow upstream's cacher: an object that stops matching the
//! selector is sent as DELETED, one that starts matching as ADDED. With
//! `sendInitialEvents=true` the current objects come first as ADDED, followed by a
//! BOOKMARK annotated `k8s.io/initial-events-end: "true"`. Bookmarks are sent about
//! once a minute when `allowWatchBookmarks=true`. A watcher too slow to keep up with
//! the cache's fan-out buffer has its stream ended; it resumes from its last
//! resourceVersion like after any disconnect.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, Response, StatusCode};
use rand::Rng;
use registry::{CacheEvent, EventType, LiveError, RegistryError};
use serde_json::json;
use tokio::sync::mpsc;

use super::output::selector_filter;
use super::{invalid_options, Ctx};
use crate::body::{channel, Body};
use crate::status::ApiError;

const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// A watch stream of one `ERROR` event with `err`'s Status.
fn expired_response(err: ApiError) -> Response<Body> {
    let mut line =
        serde_json::to_vec(&json!({"type": "ERROR", "object": err.status()})).unwrap_or_default();
    line.push(b'\n');
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(crate::body::full(Bytes::from(line)))
        .unwrap_or_else(|_| err.into_response())
}

pub async fn watch(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let q = &ctx.query;
    let send_initial = match q.get("sendInitialEvents") {
        Some("true") => true,
        Some("false") | None => false,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "invalid sendInitialEvents: {other}"
            )))
        }
    };
    let bookmarks = q.flag("allowWatchBookmarks");
    if send_initial {
        let mut errs = Vec::new();
        if q.get("resourceVersionMatch") != Some("NotOlderThan") {
            errs.push(apis::FieldError::forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !bookmarks {
            errs.push(apis::FieldError::forbidden(
                "allowWatchBookmarks",
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
        if !errs.is_empty() {
            return Err(invalid_options(errs));
        }
    }
    let filter = selector_filter(ctx)?;
    let timeout = match q.non_empty("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds: {t}")))?,
        ),
        // Upstream spreads watch lifetimes between 30 and 60 minutes.
        None => Duration::from_secs(rand::thread_rng().gen_range(1800..3600)),
    };
    let rv = q.get("resourceVersion");
    let sub = match ctx
        .served
        .store
        .watch(&ctx.info.namespace, rv, send_initial)
        .await
    {
        Ok(sub) => sub,
        // Upstream answers a resourceVersion older than the watch window with 200 and one
        // ERROR event carrying the 410 Status; reflectors relist on that event, whereas a
        // 410 response to the request makes some clients retry the same version forever.
        Err(e @ (RegistryError::Gone(_) | RegistryError::Expired(_))) => {
            return Ok(expired_response(ApiError::from(e)))
        }
        Err(e) => return Err(e.into()),
    };
    let scope = ctx.served.store.scope_prefix(&ctx.info.namespace);
    let info = ctx.served.info.clone();
    let (tx, rx) = mpsc::channel::<Bytes>(256);

    let converter = EventEncoder::new(ctx);
    let mut initial = Vec::with_capacity(sub.initial.len());
    let mut last_rv = sub.revision;
    for e in &sub.initial {
        if let Some((kind, obj)) = classify(e, &*filter) {
            initial.push(converter.encode(kind.as_str(), &obj.json)?);
        }
        last_rv = last_rv.max(e.revision);
    }
    let bookmark = move |rv: i64, initial_end: bool| -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": metadata});
        let mut line =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    };
    if send_initial {
        initial.push(bookmark(sub.revision, true));
    }

    let mut live = sub.live;
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(bookmark(last_rv, false)).await.is_err() {
                        return;
                    }
                }
                ev = live.recv() => match ev {
                    Ok(e) => {
                        if e.revision <= last_rv || !e.object.key.starts_with(&scope) {
                            continue;
                        }
                        last_rv = e.revision;
                        let Some((kind, obj)) = classify(&e, &*filter) else { continue };
                        match converter.encode(kind.as_str(), &obj.json) {
                            Ok(line) => {
                                if tx.send(line).await.is_err() {
                                    return;
                                }
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "cannot encode watch event");
                            }
                        }
                    }
                    Err(LiveError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "watcher too slow; closing its stream");
                        return;
                    }
                    Err(LiveError::Closed) => return,
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(channel(rx))
        .map_err(ApiError::internal)
}

/// What a watcher with `filter` sees of an event, if anything.
fn classify<'e>(
    e: &'e CacheEvent,
    filter: &dyn Fn(&registry::ObjectAttrs) -> bool,
) -> Option<(EventType, &'e registry::CachedObject)> {
    let cur = filter(&e.object.attrs);
    match e.kind {
        EventType::Added => cur.then_some((EventType::Added, &*e.object)),
        EventType::Deleted => cur.then_some((EventType::Deleted, &*e.object)),
        EventType::Modified => {
            let prev = e.prev.as_ref().map(|p| filter(&p.attrs)).unwrap_or(false);
            match (prev, cur) {
                (true, true) => Some((EventType::Modified, &*e.object)),
                (false, true) => Some((EventType::Added, &*e.object)),
                (true, false) => Some((EventType::Deleted, &*e.object)),
                (false, false) => None,
            }
        }
    }
}

/// Encodes live events without borrowing the request.
struct EventEncoder {
    output: super::Output,
    convert: Option<std::sync::Arc<dyn registry::Strategy>>,
    table: Option<TableContext>,
}

struct TableContext {
    group: String,
    resource: String,
    columns: Option<Vec<serde_json::Value>>,
    include: printers::IncludeObject,
}

impl EventEncoder {
    fn new(ctx: &Ctx<'_>) -> Self {
        let info = &ctx.served.info;
        let table = (ctx.output == super::Output::Table).then(|| TableContext {
            group: info.group.clone(),
            resource: info.resource.clone(),
            columns: ctx.server.registry.printer_columns(
                &info.group,
                &info.version,
                &info.resource,
            ),
            include: match ctx.query.get("includeObject") {
                Some("None") => printers::IncludeObject::None,
                Some("Object") => printers::IncludeObject::Object,
                _ => printers::IncludeObject::Metadata,
            },
        });
        let strategy = ctx.served.store.strategy.clone();
        let convert = strategy.converts().then_some(strategy);
        EventEncoder {
            output: ctx.output.clone(),
            convert,
            table,
        }
    }

    fn encode(&self, kind: &str, json: &Bytes) -> Result<Bytes, ApiError> {
        let converted;
        let json = match &self.convert {
            Some(s) => {
                converted = super::output::convert_bytes(&**s, json)?;
                &converted
            }
            None => json,
        };
        let object: Bytes = match (&self.output, &self.table) {
            (super::Output::Table, Some(t)) => {
                let obj: serde_json::Value =
                    serde_json::from_slice(json).map_err(ApiError::internal)?;
                let now = chrono::Utc::now();
                let mut table = match &t.columns {
                    Some(cols) => {
                        printers::custom_table(cols, std::slice::from_ref(&obj), t.include, now)
                    }
                    None => printers::table(
                        &t.group,
                        &t.resource,
                        std::slice::from_ref(&obj),
                        t.include,
                        now,
                    ),
                };
                table["metadata"] =
                    json!({"resourceVersion": registry::meta::resource_version(&obj)});
                Bytes::from(serde_json::to_vec(&table).map_err(ApiError::internal)?)
            }
            (super::Output::Metadata, _) => {
                let obj: serde_json::Value =
                    serde_json::from_slice(json).map_err(ApiError::internal)?;
                let m = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata")});
                Bytes::from(serde_json::to_vec(&m).map_err(ApiError::internal)?)
            }
            _ => json.clone(),
        };
        let mut b = BytesMut::with_capacity(object.len() + 32);
        b.put_slice(b"{\"type\":\"");
        b.put_slice(kind.as_bytes());
        b.put_slice(b"\",\"object\":");
        b.put_slice(&object);
        b.put_slice(b"}\n");
        Ok(b.freeze())
    }
}
