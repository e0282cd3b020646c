//! Container resources → CRI Linux resources (cgroup settings), as the kubelet computes
//! them: CPU shares from the request, CFS quota from the limit (period 100 ms), the memory
//! limit, and an OOM score adjustment by QoS class.

use cri::v1::LinuxContainerResources;
use k8s_openapi::api::core::v1::{Container, Pod};

const CPU_PERIOD: i64 = 100_000;
const MIN_SHARES: i64 = 2;

/// Millicores of a CPU quantity (`500m`, `1`, `0.5`).
pub fn cpu_millis(q: &str) -> i64 {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse::<f64>().map(|v| v.ceil() as i64).unwrap_or(0);
    }
    q.parse::<f64>()
        .map(|v| (v * 1000.0).ceil() as i64)
        .unwrap_or(0)
}

/// Bytes of a memory quantity (`64Mi`, `1G`, `128974848`, `129e6`).
pub fn bytes(q: &str) -> i64 {
    let q = q.trim();
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("m", 1e-3),
    ];
    for (s, mult) in suffixes {
        if let Some(n) = q.strip_suffix(s) {
            return n
                .parse::<f64>()
                .map(|v| (v * mult).ceil() as i64)
                .unwrap_or(0);
        }
    }
    q.parse::<f64>().map(|v| v.ceil() as i64).unwrap_or(0)
}

fn quantity(container: &Container, limits: bool, name: &str) -> Option<String> {
    let r = container.resources.as_ref()?;
    let m = if limits {
        r.limits.as_ref()?
    } else {
        r.requests.as_ref()?
    };
    m.get(name).map(|q| q.0.clone())
}

/// The pod's QoS class (from status if the API server set it, else computed).
pub fn qos_class(pod: &Pod) -> String {
    if let Some(q) = pod.status.as_ref().and_then(|s| s.qos_class.clone()) {
        return q;
    }
    let containers: Vec<&Container> = pod.spec.iter().flat_map(|s| s.containers.iter()).collect();
    let any = containers.iter().any(|c| {
        c.resources.as_ref().is_some_and(|r| {
            r.requests.as_ref().is_some_and(|m| !m.is_empty())
                || r.limits.as_ref().is_some_and(|m| !m.is_empty())
        })
    });
    if !any {
        return "BestEffort".into();
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let l = quantity(c, true, r);
            l.is_some() && (quantity(c, false, r).is_none() || quantity(c, false, r) == l)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
    .into()
}

pub fn linux_resources(
    pod: &Pod,
    container: &Container,
    machine_memory: i64,
) -> LinuxContainerResources {
    let cpu_request =
        quantity(container, false, "cpu").or_else(|| quantity(container, true, "cpu"));
    let cpu_limit = quantity(container, true, "cpu");
    let mem_limit = quantity(container, true, "memory");
    let mem_request = quantity(container, false, "memory").or_else(|| mem_limit.clone());
    let shares = cpu_request
        .map(|q| (cpu_millis(&q) * 1024 / 1000).max(MIN_SHARES))
        .unwrap_or(MIN_SHARES);
    let (period, quota) = match cpu_limit {
        Some(l) => (CPU_PERIOD, (cpu_millis(&l) * CPU_PERIOD / 1000).max(1000)),
        None => (0, 0),
    };
    let oom = match qos_class(pod).as_str() {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let req = mem_request.map(|q| bytes(&q)).unwrap_or(0);
            let adj = if machine_memory > 0 {
                1000 - (1000 * req) / machine_memory
            } else {
                1000
            };
            adj.clamp(3, 999)
        }
    };
    LinuxContainerResources {
        cpu_period: period,
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: mem_limit.map(|q| bytes(&q)).unwrap_or(0),
        oom_score_adj: oom,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quantities() {
        assert_eq!(cpu_millis("500m"), 500);
        assert_eq!(cpu_millis("1.5"), 1500);
        assert_eq!(bytes("64Mi"), 64 * 1024 * 1024);
        assert_eq!(bytes("1G"), 1_000_000_000);
        assert_eq!(bytes("1024"), 1024);
    }

    #[test]
    fn limits_become_cfs_quota_and_memory_limit() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "250m", "memory": "32Mi"}}}]}
        }))
        .unwrap();
        let r = linux_resources(&pod, &pod.spec.as_ref().unwrap().containers[0], 1 << 30);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.cpu_quota, 25_000);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.memory_limit_in_bytes, 32 * 1024 * 1024);
        assert_eq!(r.oom_score_adj, -997);
    }
}
