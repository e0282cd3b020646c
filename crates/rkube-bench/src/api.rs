//! The `api` suite: create throughput and latency, watch delivery latency, a large
//! LIST, and the server's memory. Every metric starts its own server child so the
//! metrics do not disturb one another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex};

use crate::client::{connect_many, Proto};
use crate::load::{closed_loop, create_namespace, merge, MakeRequest, Until};
use crate::meter::CpuMeter;
use crate::process::{Launch, ServerProcess};
use crate::stats::{line, median, percentile, Target};

const SUITE: &str = "api";

/// Every metric of the suite, in the order `api` runs them.
pub const METRICS: &[&str] = &[
    "rss_idle",
    "create_throughput",
    "create_throughput_etcd",
    "create_latency_p99",
    "watch_delivery_p99",
    "list_10k_pods",
    "rss_100k_configmaps",
];

/// Knobs shared by the metrics.
#[derive(Clone, Debug)]
pub struct Options {
    pub launch: Launch,
    pub proto: Proto,
    /// Concurrent clients of the throughput runs.
    pub clients: usize,
    /// Connections the clients share when `proto` is HTTP/2.
    pub h2_connections: usize,
    /// Measured window of the throughput and latency runs.
    pub duration: Duration,
}

/// Runs one metric; returns its result lines.
pub async fn run(metric: &str, opts: &Options) -> anyhow::Result<Vec<Value>> {
    match metric {
        "rss_idle" => rss_idle(opts).await,
        "create_throughput" => create_throughput(opts, false).await,
        "create_throughput_etcd" => create_throughput(opts, true).await,
        "create_latency_p99" => create_latency(opts).await,
        "watch_delivery_p99" => watch_delivery(opts).await,
        "list_10k_pods" => list_pods(opts).await,
        "rss_100k_configmaps" => rss_configmaps(opts).await,
        other => bail!("unknown metric {other:?}; known: {}", METRICS.join(", ")),
    }
}

fn configmap_body(name: &str, data: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"payload":"{data}"}}}}"#
    ))
}

fn pod_body(name: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"c","image":"registry.k8s.io/pause:3.10"}}]}}}}"#
    ))
}

fn load_shape(opts: &Options) -> Value {
    json!({
        "clients": opts.clients,
        "proto": match opts.proto { Proto::H1 => "h1", Proto::H2 => "h2" },
        "connections": match opts.proto { Proto::H1 => opts.clients, Proto::H2 => opts.h2_connections.clamp(1, opts.clients) },
    })
}

async fn rss_idle(opts: &Options) -> anyhow::Result<Vec<Value>> {
    let server = ServerProcess::start(&opts.launch)?;
    let rss = server.settled_rss_mib(Duration::from_secs(10)).await?;
    let extra = server.memory_detail()?;
    Ok(vec![line(
        SUITE,
        "rss_idle",
        rss,
        "MiB",
        Some(Target::Below(40.0)),
        extra,
    )])
}

async fn create_throughput(opts: &Options, etcd: bool) -> anyhow::Result<Vec<Value>> {
    let etcd_server = if etcd {
        Some(test_support::etcd::EtcdServer::start().context("starting etcd")?)
    } else {
        None
    };
    let mut launch = opts.launch.clone();
    launch.datastore_endpoint = etcd_server.as_ref().map(|e| e.endpoint.clone());
    let server = ServerProcess::start(&launch)?;
    let conns = connect_many(
        &server.endpoint,
        opts.proto,
        opts.clients,
        opts.h2_connections,
    )
    .await?;
    let until = Until::Window {
        warmup: Duration::from_millis(500),
        measure: opts.duration,
    };
    let make: MakeRequest = Arc::new(|seq| {
        (
            "/api/v1/namespaces/default/configmaps".to_string(),
            configmap_body(&format!("tp-{seq}"), "v"),
        )
    });
    let cpu = CpuMeter::start(&[("server", server.pid())])?;
    let result = closed_loop(conns, until, make).await?;
    let extra = merge(
        merge(merge(load_shape(opts), result.extra()), cpu.read()?),
        json!({"seconds": opts.duration.as_secs_f64()}),
    );
    let (metric, target) = if etcd {
        ("create_throughput_etcd", Target::AtLeast(2000.0))
    } else {
        ("create_throughput", Target::AtLeast(5000.0))
    };
    Ok(vec![line(
        SUITE,
        metric,
        result.rate(until),
        "ops/s",
        Some(target),
        extra,
    )])
}

/// Creates at a fixed rate (open loop) and reports latency from each create's
/// scheduled start, so a stalled server cannot hide queued requests.
async fn create_latency(opts: &Options) -> anyhow::Result<Vec<Value>> {
    const RATE: u64 = 1000;
    let server = ServerProcess::start(&opts.launch)?;
    let conns = connect_many(
        &server.endpoint,
        opts.proto,
        opts.clients,
        opts.h2_connections,
    )
    .await?;
    let warmup = RATE / 2;
    let total = warmup + RATE * opts.duration.as_secs().max(1);
    let period = Duration::from_nanos(1_000_000_000 / RATE);
    let (tx, rx) = mpsc::channel::<(u64, Instant)>(total as usize);
    let rx = Arc::new(Mutex::new(rx));
    let cpu = CpuMeter::start(&[("server", server.pid())])?;
    let mut workers = Vec::new();
    for mut conn in conns {
        let rx = rx.clone();
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                let job = rx.lock().await.recv().await;
                let Some((seq, scheduled)) = job else { break };
                let sent = Instant::now();
                let body = configmap_body(&format!("lat-{seq}"), "v");
                match conn
                    .post("/api/v1/namespaces/default/configmaps", body)
                    .await
                {
                    Ok(r) if r.status == StatusCode::CREATED => {
                        let done = Instant::now();
                        if seq >= warmup {
                            samples.push((
                                (done - scheduled).as_secs_f64() * 1e3,
                                (done - sent).as_secs_f64() * 1e3,
                            ));
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
                        break;
                    }
                }
            }
            (samples, errors, first_error)
        }));
    }
    let start = Instant::now() + Duration::from_millis(20);
    for seq in 0..total {
        let at = start + period * seq as u32;
        tokio::time::sleep_until(at.into()).await;
        tx.send((seq, at))
            .await
            .context("latency workers stopped")?;
    }
    drop(tx);
    let mut from_schedule = Vec::new();
    let mut from_send = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for w in workers {
        let (samples, e, fe) = w.await.context("latency worker panicked")?;
        errors += e;
        first_error = first_error.or(fe);
        for (a, b) in samples {
            from_schedule.push(a);
            from_send.push(b);
        }
    }
    if from_schedule.is_empty() {
        bail!("no create succeeded: {}", first_error.unwrap_or_default());
    }
    let achieved =
        from_schedule.len() as f64 / (start.elapsed().as_secs_f64() - warmup as f64 / RATE as f64);
    let mut extra = merge(
        load_shape(opts),
        json!({
            "rate": RATE,
            "samples": from_schedule.len(),
            "achieved_rate": achieved,
            "errors": errors,
            "p50_ms": percentile(&from_schedule, 0.5).unwrap_or(0.0),
            "p999_ms": percentile(&from_schedule, 0.999).unwrap_or(0.0),
            "max_ms": percentile(&from_schedule, 1.0).unwrap_or(0.0),
            "p99_from_send_ms": percentile(&from_send, 0.99).unwrap_or(0.0),
        }),
    );
    extra = merge(extra, cpu.read()?);
    if let Some(e) = first_error {
        extra["first_error"] = json!(e);
    }
    let p99 = percentile(&from_schedule, 0.99).unwrap_or(0.0);
    Ok(vec![line(
        SUITE,
        "create_latency_p99",
        p99,
        "ms",
        Some(Target::Below(20.0)),
        extra,
    )])
}

/// The `w-<n>` index in a watch event line, if it is one of ours.
fn event_index(line: &[u8]) -> Option<u64> {
    const NEEDLE: &[u8] = b"\"name\":\"w-";
    let at = line.windows(NEEDLE.len()).position(|w| w == NEEDLE)? + NEEDLE.len();
    let digits: &[u8] = &line[at..];
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// 100 watchers on one namespace's ConfigMaps, each on its own connection; one writer
/// creates ConfigMaps at a steady pace. Each (write, watcher) pair is one sample.
async fn watch_delivery(opts: &Options) -> anyhow::Result<Vec<Value>> {
    const WATCHERS: usize = 100;
    const WRITES: u64 = 300;
    const WRITE_PERIOD: Duration = Duration::from_millis(10);
    const NAMESPACE: &str = "watch-bench";
    let server = ServerProcess::start(&opts.launch)?;
    create_namespace(&server.endpoint, NAMESPACE).await?;
    let mut lister = server.endpoint.connect(Proto::H1).await?;
    let list = lister
        .get(&format!("/api/v1/namespaces/{NAMESPACE}/configmaps"))
        .await?;
    let list: Value = serde_json::from_slice(&list.body).context("decoding list")?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list without resourceVersion")?
        .to_string();

    let conns = connect_many(&server.endpoint, Proto::H1, WATCHERS, 1).await?;
    let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps?watch=true&resourceVersion={rv}");
    let mut watchers = Vec::new();
    for mut conn in conns {
        let resp = conn.send(http::Method::GET, &path, Bytes::new()).await?;
        if resp.status() != StatusCode::OK {
            bail!("watch answered {}", resp.status());
        }
        // The response head arrives only after the server has subscribed.
        let mut body = resp.into_body();
        watchers.push(tokio::spawn(async move {
            let _conn = conn;
            let mut seen: Vec<(u64, Instant)> = Vec::with_capacity(WRITES as usize);
            let mut pending: Vec<u8> = Vec::new();
            while (seen.len() as u64) < WRITES {
                let Some(Ok(frame)) = body.frame().await else {
                    break;
                };
                let at = Instant::now();
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                pending.extend_from_slice(&data);
                while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=nl).collect();
                    if let Some(i) = event_index(&line) {
                        seen.push((i, at));
                    }
                }
            }
            seen
        }));
    }

    let cpu = CpuMeter::start(&[("server", server.pid())])?;
    let mut writer = server.endpoint.connect(Proto::H1).await?;
    let mut sent = Vec::with_capacity(WRITES as usize);
    let mut acked = Vec::with_capacity(WRITES as usize);
    let origin = Instant::now();
    for i in 0..WRITES {
        tokio::time::sleep_until((origin + WRITE_PERIOD * i as u32).into()).await;
        let t_send = Instant::now();
        let stamp = (t_send - origin).as_nanos().to_string();
        let reply = writer
            .post(
                &format!("/api/v1/namespaces/{NAMESPACE}/configmaps"),
                configmap_body(&format!("w-{i}"), &stamp),
            )
            .await?;
        if reply.status != StatusCode::CREATED {
            bail!(
                "write {i}: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        sent.push(t_send);
        acked.push(Instant::now());
    }
    let mut from_ack = Vec::new();
    let mut from_send = Vec::new();
    let mut missing = 0u64;
    for w in watchers {
        let seen = match tokio::time::timeout(Duration::from_secs(10), w).await {
            Ok(r) => r.context("watcher panicked")?,
            Err(_) => bail!("a watcher did not receive every event within 10 s"),
        };
        missing += WRITES - seen.len() as u64;
        for (i, at) in seen {
            let i = i as usize;
            if i >= sent.len() {
                continue;
            }
            from_ack.push(at.saturating_duration_since(acked[i]).as_secs_f64() * 1e3);
            from_send.push(at.saturating_duration_since(sent[i]).as_secs_f64() * 1e3);
        }
    }
    if missing > 0 {
        bail!("{missing} watch events never arrived");
    }
    let write_ms: Vec<f64> = sent
        .iter()
        .zip(&acked)
        .map(|(s, a)| (*a - *s).as_secs_f64() * 1e3)
        .collect();
    let extra = merge(
        json!({
            "watchers": WATCHERS,
            "writes": WRITES,
            "samples": from_ack.len(),
            "p50_ms": median(&from_ack).unwrap_or(0.0),
            "max_ms": percentile(&from_ack, 1.0).unwrap_or(0.0),
            "write_p99_ms": percentile(&write_ms, 0.99).unwrap_or(0.0),
            "from": "write acknowledgement (0 if delivered before it)",
        }),
        cpu.read()?,
    );
    let extra_send = json!({
        "samples": from_send.len(),
        "p50_ms": median(&from_send).unwrap_or(0.0),
        "max_ms": percentile(&from_send, 1.0).unwrap_or(0.0),
        "from": "write sent",
    });
    Ok(vec![
        line(
            SUITE,
            "watch_delivery_p99",
            percentile(&from_ack, 0.99).unwrap_or(0.0),
            "ms",
            Some(Target::Below(10.0)),
            extra,
        ),
        line(
            SUITE,
            "watch_delivery_p99_from_send",
            percentile(&from_send, 0.99).unwrap_or(0.0),
            "ms",
            None,
            extra_send,
        ),
    ])
}

async fn list_pods(opts: &Options) -> anyhow::Result<Vec<Value>> {
    const PODS: u64 = 10_000;
    const RUNS: usize = 9;
    const NAMESPACE: &str = "list-bench";
    let server = ServerProcess::start(&opts.launch)?;
    create_namespace(&server.endpoint, NAMESPACE).await?;
    let conns = connect_many(
        &server.endpoint,
        opts.proto,
        opts.clients,
        opts.h2_connections,
    )
    .await?;
    let make: MakeRequest = Arc::new(|seq| {
        (
            format!("/api/v1/namespaces/{NAMESPACE}/pods"),
            pod_body(&format!("p-{seq}")),
        )
    });
    let created = closed_loop(conns, Until::Count(PODS), make).await?;
    if created.ok != PODS {
        bail!(
            "created {} of {PODS} pods: {}",
            created.ok,
            created.first_error.unwrap_or_default()
        );
    }
    let mut conn = server.endpoint.connect(Proto::H1).await?;
    // The first LIST is checked, not timed.
    let first = conn.get("/api/v1/pods").await?;
    let decoded: Value = serde_json::from_slice(&first.body).context("decoding pod list")?;
    let items = decoded["items"].as_array().map_or(0, Vec::len);
    if first.status != StatusCode::OK || items as u64 != PODS {
        bail!("LIST answered {} with {items} pods", first.status);
    }
    let cpu = CpuMeter::start(&[("server", server.pid())])?;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let reply = conn.get("/api/v1/pods").await?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if reply.status != StatusCode::OK || reply.body.len() < first.body.len() / 2 {
            bail!(
                "LIST answered {} ({} bytes)",
                reply.status,
                reply.body.len()
            );
        }
        times.push(ms);
    }
    let extra = merge(
        json!({
            "pods": PODS,
            "runs": RUNS,
            "min_ms": percentile(&times, 0.0).unwrap_or(0.0),
            "max_ms": percentile(&times, 1.0).unwrap_or(0.0),
            "body_bytes": first.body.len(),
            "create_rate": created.rate(Until::Count(PODS)),
        }),
        cpu.read()?,
    );
    Ok(vec![line(
        SUITE,
        "list_10k_pods",
        median(&times).unwrap_or(0.0),
        "ms",
        Some(Target::Below(200.0)),
        extra,
    )])
}

/// Overrides the 100,000 of `rss_100k_configmaps` (for profiling under valgrind).
const RSS_OBJECTS_ENV: &str = "RKUBE_BENCH_RSS_OBJECTS";

async fn rss_configmaps(opts: &Options) -> anyhow::Result<Vec<Value>> {
    const NAMESPACE: &str = "rss-bench";
    let count: u64 = match std::env::var(RSS_OBJECTS_ENV) {
        Ok(n) => n
            .parse()
            .with_context(|| format!("{RSS_OBJECTS_ENV}={n}"))?,
        Err(_) => 100_000,
    };
    let server = ServerProcess::start(&opts.launch)?;
    create_namespace(&server.endpoint, NAMESPACE).await?;
    let clients = opts.clients.max(64);
    let conns = connect_many(&server.endpoint, opts.proto, clients, opts.h2_connections).await?;
    let payload: Arc<str> = Arc::from("x".repeat(1024));
    let make: MakeRequest = Arc::new(move |seq| {
        (
            format!("/api/v1/namespaces/{NAMESPACE}/configmaps"),
            configmap_body(&format!("cm-{seq:06}"), &payload),
        )
    });
    let cpu = CpuMeter::start(&[("server", server.pid())])?;
    let created = closed_loop(conns, Until::Count(count), make).await?;
    if created.ok != count {
        bail!(
            "created {} of {count} ConfigMaps: {}",
            created.ok,
            created.first_error.unwrap_or_default()
        );
    }
    let cpu = cpu.read()?;
    let rss = server.settled_rss_mib(Duration::from_secs(10)).await?;
    let extra = merge(
        json!({
            "configmaps": count,
            "clients": clients,
            "create_rate": created.rate(Until::Count(count)),
            "create_seconds": created.elapsed.as_secs_f64(),
        }),
        merge(server.memory_detail()?, cpu),
    );
    Ok(vec![line(
        SUITE,
        "rss_100k_configmaps",
        rss,
        "MiB",
        Some(Target::Below(400.0)),
        extra,
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_index_finds_our_names() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (
                br#"{"type":"ADDED","object":{"metadata":{"name":"w-42","namespace":"x"}}}"#,
                Some(42),
            ),
            (
                br#"{"type":"ADDED","object":{"metadata":{"name":"other"}}}"#,
                None,
            ),
            (br#"{"type":"BOOKMARK","object":{"metadata":{}}}"#, None),
        ];
        for (text, want) in cases {
            assert_eq!(
                event_index(text),
                *want,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn bodies_are_json() {
        let cm: Value = serde_json::from_slice(&configmap_body("a", "b")).expect("configmap JSON");
        assert_eq!(cm["data"]["payload"], "b");
        let pod: Value = serde_json::from_slice(&pod_body("p")).expect("pod JSON");
        assert_eq!(pod["spec"]["containers"][0]["name"], "c");
    }

    #[test]
    fn every_metric_is_known() {
        assert_eq!(METRICS.len(), 7);
        assert!(METRICS.contains(&"create_throughput_etcd"));
    }
}
