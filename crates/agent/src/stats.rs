//! Resource usage, as the kubelet serves it for a metrics pipeline (`kubectl top` once a
//! metrics API exists): `/stats/summary` (the kubelet's `stats/v1alpha1` Summary: node
//! and per-pod, per-container cpu and memory) and `/metrics/resource` (Prometheus text
//! with upstream's metric names).
//!
//! Containers come from CRI `ListContainerStats` (cumulative cpu and working set from
//! their cgroups); the node from `/proc/stat` and `/proc/meminfo`. `usageNanoCores` is
//! the rate between this and the previous reading of the same container (or node), so
//! the first reading has none, as upstream's first scrape.

use std::collections::HashMap;

use cri::v1 as c;
use cri::CallExt;
use serde_json::{json, Value};

use crate::kuberuntime::{
    CONTAINER_NAME_LABEL, MANAGED_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL, POD_UID_LABEL,
};
use crate::worker::Ctx;

/// Previous cumulative cpu readings (ns of cpu, ns timestamp) by container ID (`""`: the node).
#[derive(Default)]
pub struct CpuHistory(parking_lot::Mutex<HashMap<String, (u64, i64)>>);

impl CpuHistory {
    /// Nano-cores used between the previous reading of `id` and this one.
    fn rate(&self, id: &str, cpu_ns: u64, at_ns: i64) -> Option<u64> {
        let mut h = self.0.lock();
        let prev = h.insert(id.to_string(), (cpu_ns, at_ns));
        let (prev_cpu, prev_at) = prev?;
        let dt = at_ns.checked_sub(prev_at).filter(|d| *d > 0)?;
        let used = cpu_ns.checked_sub(prev_cpu)?;
        Some((used as u128 * 1_000_000_000 / dt as u128) as u64)
    }
}

/// One container's (or the node's) reading.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    pub at_ns: i64,
    pub cpu_core_ns: u64,
    pub cpu_nano_cores: Option<u64>,
    pub memory_working_set: u64,
    pub memory_usage: u64,
    pub memory_rss: u64,
    pub memory_available: Option<u64>,
}

impl Usage {
    fn cpu_json(&self) -> Value {
        let mut v = json!({"time": rfc3339(self.at_ns), "usageCoreNanoSeconds": self.cpu_core_ns});
        if let Some(n) = self.cpu_nano_cores {
            v["usageNanoCores"] = json!(n);
        }
        v
    }
    fn memory_json(&self) -> Value {
        let mut v = json!({
            "time": rfc3339(self.at_ns),
            "workingSetBytes": self.memory_working_set,
            "usageBytes": self.memory_usage,
            "rssBytes": self.memory_rss,
        });
        if let Some(a) = self.memory_available {
            v["availableBytes"] = json!(a);
        }
        v
    }
}

fn rfc3339(ns: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn now_ns() -> i64 {
    i64::try_from(k8s_openapi::jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

/// The node's cpu (from `/proc/stat`'s first line) and memory (from `/proc/meminfo`).
pub fn node_usage(stat: &str, meminfo: &str, at_ns: i64) -> Usage {
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let busy: u64 = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| v)
        .sum();
    let kib = |name: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(':')?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
            * 1024
    };
    let (total, free, available) = (kib("MemTotal"), kib("MemFree"), kib("MemAvailable"));
    Usage {
        at_ns,
        // USER_HZ is 100: a jiffy is 10 ms.
        cpu_core_ns: busy * 10_000_000,
        cpu_nano_cores: None,
        memory_working_set: total.saturating_sub(available),
        memory_usage: total.saturating_sub(free),
        memory_rss: total.saturating_sub(available),
        memory_available: Some(available),
    }
}

/// A pod's containers and their usage.
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub containers: Vec<(String, Usage)>,
}

/// Reads the node and every running container of this agent.
pub async fn collect(ctx: &Ctx) -> anyhow::Result<(Usage, Vec<PodUsage>)> {
    let at = now_ns();
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mut node = node_usage(&stat, &meminfo, at);
    node.cpu_nano_cores = ctx.cpu_history.rate("", node.cpu_core_ns, at);

    let mut cri = ctx.cri.clone();
    let stats = cri
        .runtime
        .list_container_stats(c::ListContainerStatsRequest {
            filter: Some(c::ContainerStatsFilter {
                label_selector: HashMap::from([(MANAGED_LABEL.to_string(), "true".to_string())]),
                ..Default::default()
            }),
        })
        .await
        .call("ListContainerStats")?
        .stats;
    let mut pods: HashMap<String, PodUsage> = HashMap::new();
    for s in stats {
        let Some(attr) = s.attributes else { continue };
        let label = |k: &str| attr.labels.get(k).cloned().unwrap_or_default();
        let cpu = s.cpu.unwrap_or_default();
        let mem = s.memory.unwrap_or_default();
        let cpu_ns = cpu.usage_core_nano_seconds.map(|v| v.value).unwrap_or(0);
        let at = if cpu.timestamp > 0 { cpu.timestamp } else { at };
        let usage = Usage {
            at_ns: at,
            cpu_core_ns: cpu_ns,
            cpu_nano_cores: ctx.cpu_history.rate(&attr.id, cpu_ns, at),
            memory_working_set: mem.working_set_bytes.map(|v| v.value).unwrap_or(0),
            memory_usage: mem.usage_bytes.map(|v| v.value).unwrap_or(0),
            memory_rss: mem.rss_bytes.map(|v| v.value).unwrap_or(0),
            memory_available: mem.available_bytes.map(|v| v.value),
        };
        let uid = label(POD_UID_LABEL);
        let pod = pods.entry(uid.clone()).or_insert_with(|| PodUsage {
            namespace: label(POD_NAMESPACE_LABEL),
            name: label(POD_NAME_LABEL),
            uid,
            containers: Vec::new(),
        });
        pod.containers.push((label(CONTAINER_NAME_LABEL), usage));
    }
    let mut pods: Vec<PodUsage> = pods.into_values().collect();
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for p in &mut pods {
        p.containers.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok((node, pods))
}

/// The sum of a pod's containers.
fn pod_total(p: &PodUsage) -> Usage {
    let mut t = Usage {
        at_ns: p.containers.iter().map(|(_, u)| u.at_ns).max().unwrap_or(0),
        ..Default::default()
    };
    let mut rate = Some(0u64);
    for (_, u) in &p.containers {
        t.cpu_core_ns += u.cpu_core_ns;
        t.memory_working_set += u.memory_working_set;
        t.memory_usage += u.memory_usage;
        t.memory_rss += u.memory_rss;
        rate = rate.zip(u.cpu_nano_cores).map(|(a, b)| a + b);
    }
    t.cpu_nano_cores = rate;
    t
}

/// The kubelet's Summary (`/stats/summary`).
pub fn summary_json(node_name: &str, node: &Usage, pods: &[PodUsage]) -> Value {
    json!({
        "node": {
            "nodeName": node_name,
            "cpu": node.cpu_json(),
            "memory": node.memory_json(),
        },
        "pods": pods.iter().map(|p| {
            let total = pod_total(p);
            json!({
                "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                "containers": p.containers.iter().map(|(name, u)| json!({
                    "name": name,
                    "cpu": u.cpu_json(),
                    "memory": u.memory_json(),
                })).collect::<Vec<_>>(),
                "cpu": total.cpu_json(),
                "memory": total.memory_json(),
            })
        }).collect::<Vec<_>>(),
    })
}

/// `/metrics/resource`: Prometheus text with upstream's names (timestamps in ms).
pub fn resource_metrics(node: &Usage, pods: &[PodUsage]) -> String {
    let ms = |ns: i64| ns / 1_000_000;
    let secs = |ns: u64| ns as f64 / 1e9;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String, i64)>| {
        out.push_str(&format!(
            "# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}\n"
        ));
        for (labels, value, ts) in rows {
            out.push_str(&format!("{name}{labels} {value} {ts}\n"));
        }
    };
    let container_rows = |f: &dyn Fn(&Usage) -> String| -> Vec<(String, String, i64)> {
        pods.iter()
            .flat_map(|p| {
                p.containers.iter().map(move |(c, u)| {
                    (
                        format!(
                            "{{container=\"{c}\",namespace=\"{}\",pod=\"{}\"}}",
                            p.namespace, p.name
                        ),
                        f(u),
                        ms(u.at_ns),
                    )
                })
            })
            .collect()
    };
    let pod_rows = |f: &dyn Fn(&Usage) -> String| -> Vec<(String, String, i64)> {
        pods.iter()
            .map(|p| {
                let t = pod_total(p);
                (
                    format!("{{namespace=\"{}\",pod=\"{}\"}}", p.namespace, p.name),
                    f(&t),
                    ms(t.at_ns),
                )
            })
            .collect()
    };
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
        container_rows(&|u| secs(u.cpu_core_ns).to_string()),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
        container_rows(&|u| u.memory_working_set.to_string()),
    );
    family(
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
        vec![(
            String::new(),
            secs(node.cpu_core_ns).to_string(),
            ms(node.at_ns),
        )],
    );
    family(
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
        vec![(
            String::new(),
            node.memory_working_set.to_string(),
            ms(node.at_ns),
        )],
    );
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
        pod_rows(&|u| secs(u.cpu_core_ns).to_string()),
    );
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
        pod_rows(&|u| u.memory_working_set.to_string()),
    );
    out.push_str("# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE scrape_error gauge\nscrape_error 0\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_usage_from_proc() {
        let stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 1 2 3\n";
        let meminfo = "MemTotal:       1000 kB\nMemFree:         300 kB\nMemAvailable:    600 kB\n";
        let u = node_usage(stat, meminfo, 7);
        assert_eq!(u.cpu_core_ns, (100 + 5 + 50 + 3 + 2) * 10_000_000);
        assert_eq!(u.memory_working_set, 400 * 1024);
        assert_eq!(u.memory_usage, 700 * 1024);
        assert_eq!(u.memory_available, Some(600 * 1024));
    }

    #[test]
    fn rates_need_two_readings() {
        let h = CpuHistory::default();
        assert_eq!(h.rate("c", 1_000_000_000, 1_000_000_000), None);
        // Half a core over two seconds.
        assert_eq!(h.rate("c", 2_000_000_000, 3_000_000_000), Some(500_000_000));
        // A restarted container (counter went down) has no rate.
        assert_eq!(h.rate("c", 10, 4_000_000_000), None);
    }

    #[test]
    fn summary_and_metrics_name_pods_and_containers() {
        let u = Usage {
            at_ns: 2_000_000_000,
            cpu_core_ns: 1_500_000_000,
            cpu_nano_cores: Some(1000),
            memory_working_set: 4096,
            ..Default::default()
        };
        let pods = vec![PodUsage {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
            containers: vec![("a".into(), u.clone()), ("b".into(), u.clone())],
        }];
        let s = summary_json("n1", &u, &pods);
        assert_eq!(s["node"]["nodeName"], "n1");
        assert_eq!(s["pods"][0]["podRef"]["uid"], "u");
        assert_eq!(s["pods"][0]["containers"][1]["name"], "b");
        assert_eq!(s["pods"][0]["memory"]["workingSetBytes"], 8192);
        assert_eq!(s["pods"][0]["cpu"]["usageNanoCores"], 2000);
        assert_eq!(s["pods"][0]["cpu"]["time"], "1970-01-01T00:00:02Z");
        let m = resource_metrics(&u, &pods);
        assert!(m.contains("container_cpu_usage_seconds_total{container=\"a\",namespace=\"ns\",pod=\"p\"} 1.5 2000\n"), "{m}");
        assert!(
            m.contains("pod_memory_working_set_bytes{namespace=\"ns\",pod=\"p\"} 8192 2000\n"),
            "{m}"
        );
        assert!(
            m.contains("node_memory_working_set_bytes 4096 2000\n"),
            "{m}"
        );
    }
}
