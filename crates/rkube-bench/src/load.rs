//! Load helpers shared by the suites: closed-loop creates over the hand-made HTTP
//! client, namespaces, and merging result fields.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use crate::client::{Conn, Endpoint, Proto};
use crate::stats::percentile;

/// `a` with the fields of `b` added (both JSON objects).
pub fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

pub async fn create_namespace(endpoint: &Endpoint, name: &str) -> anyhow::Result<()> {
    let mut conn = endpoint.connect(Proto::H1).await?;
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let reply = conn
        .post("/api/v1/namespaces", Bytes::from(body.to_string()))
        .await?;
    if reply.status != StatusCode::CREATED {
        bail!(
            "creating namespace {name}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    Ok(())
}

/// When a closed-loop run stops.
#[derive(Clone, Copy)]
pub enum Until {
    /// Run `warmup + measure`; count completions inside the measured window.
    Window { warmup: Duration, measure: Duration },
    /// Create exactly this many objects.
    Count(u64),
}

pub struct LoadResult {
    /// Successful creates counted (in the window, or all for `Count`).
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latencies_ms: Vec<f64>,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn rate(&self, until: Until) -> f64 {
        match until {
            Until::Window { measure, .. } => self.ok as f64 / measure.as_secs_f64(),
            Until::Count(_) => self.ok as f64 / self.elapsed.as_secs_f64(),
        }
    }

    pub fn extra(&self) -> Value {
        let mut v = json!({
            "errors": self.errors,
            "latency_p50_ms": percentile(&self.latencies_ms, 0.5).unwrap_or(0.0),
            "latency_p99_ms": percentile(&self.latencies_ms, 0.99).unwrap_or(0.0),
        });
        if let Some(e) = &self.first_error {
            v["first_error"] = json!(e);
        }
        v
    }
}

pub type MakeRequest = Arc<dyn Fn(u64) -> (String, Bytes) + Send + Sync>;

/// Each connection handle creates objects back to back until `until`.
pub async fn closed_loop(
    conns: Vec<Conn>,
    until: Until,
    make: MakeRequest,
) -> anyhow::Result<LoadResult> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (window_start, end) = match until {
        Until::Window { warmup, measure } => (started + warmup, Some(started + warmup + measure)),
        Until::Count(_) => (started, None),
    };
    let mut tasks = Vec::new();
    for mut conn in conns {
        let next = next.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            let mut errors = 0u64;
            let mut first_error = None;
            let mut latencies = Vec::new();
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                match (until, end) {
                    (Until::Count(n), _) if seq >= n => break,
                    (_, Some(end)) if Instant::now() >= end => break,
                    _ => {}
                }
                let (path, body) = make(seq);
                let t0 = Instant::now();
                let result = conn.post(&path, body).await;
                let t1 = Instant::now();
                let in_window = t1 >= window_start && end.is_none_or(|e| t1 <= e);
                match result {
                    Ok(r) if r.status == StatusCode::CREATED => {
                        if in_window {
                            ok += 1;
                            latencies.push((t1 - t0).as_secs_f64() * 1e3);
                        }
                    }
                    Ok(r) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("{} {}", r.status, String::from_utf8_lossy(&r.body))
                        });
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                        // A broken connection stays broken; stop this client.
                        break;
                    }
                }
            }
            (ok, errors, first_error, latencies)
        }));
    }
    let mut result = LoadResult {
        ok: 0,
        errors: 0,
        first_error: None,
        latencies_ms: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (ok, errors, first_error, latencies) = t.await.context("load task panicked")?;
        result.ok += ok;
        result.errors += errors;
        if result.first_error.is_none() {
            result.first_error = first_error;
        }
        result.latencies_ms.extend(latencies);
    }
    result.elapsed = started.elapsed();
    if result.ok == 0 {
        bail!(
            "no request succeeded: {}",
            result.first_error.unwrap_or_default()
        );
    }
    Ok(result)
}
