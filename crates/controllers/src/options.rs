//! Settings of the controller manager that users tune with flags, named after
//! upstream's `kube-controller-manager` flags (`--node-monitor-grace-period`,
//! `--cluster-cidr`, …), with upstream's defaults; plus a parser for Go-style
//! durations (`40s`, `1m30s`, `500ms`) so the flags take the same values.

use std::time::Duration;

use ipnet::Ipv4Net;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("invalid duration {0:?}: want e.g. 40s, 1m30s, 500ms")]
    Duration(String),
}

/// What [`crate::run_all`] needs to know beyond a client.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// `--node-monitor-grace-period`: how long a node may go without renewing its
    /// Lease or posting status before its conditions become `Unknown`.
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`: the same for a node that never posted status.
    pub node_startup_grace_period: Duration,
    /// `--node-monitor-period`: how often node health is checked.
    pub node_monitor_period: Duration,
    /// `--node-eviction-rate`: nodes per second (per zone) that get NoExecute taints
    /// while the zone is healthy.
    pub node_eviction_rate: f64,
    /// `--secondary-node-eviction-rate`: the same while a large zone is partly down.
    pub secondary_node_eviction_rate: f64,
    /// `--unhealthy-zone-threshold`: share of not-ready nodes (at least 3) that makes
    /// a zone partly disrupted.
    pub unhealthy_zone_threshold: f64,
    /// `--large-cluster-size-threshold`: zones up to this size stop tainting when
    /// partly disrupted.
    pub large_cluster_size_threshold: usize,
    /// `--allocate-node-cidrs`: run node IPAM.
    pub allocate_node_cidrs: bool,
    /// `--cluster-cidr`: where node IPAM carves pod CIDRs from.
    pub cluster_cidr: Ipv4Net,
    /// `--node-cidr-mask-size`: prefix length of each node's pod CIDR.
    pub node_cidr_mask_size: u8,
    /// The cluster CA (PEM) that the `kube-root-ca.crt` ConfigMaps publish
    /// (`--root-ca-file`); `None` leaves the publisher off.
    pub root_ca: Option<String>,
    /// Job controller: the delay before recreating a failed pod (upstream
    /// `DefaultJobPodFailureBackOff`), doubling per failure …
    pub job_pod_failure_backoff: Duration,
    /// … up to this (upstream `MaxJobPodFailureBackOff`).
    pub job_pod_failure_backoff_max: Duration,
    /// Job controller: syncs of one Job are batched over this period (upstream
    /// `syncJobBatchPeriod`).
    pub job_sync_batch_period: Duration,
    /// Clock of the CronJob controller (tests run it faster than real time).
    pub clock: crate::clock::Clock,
    /// `--terminated-pod-gc-threshold`: terminated pods kept before PodGC deletes the
    /// oldest; 0 turns that part of PodGC off.
    pub terminated_pod_gc_threshold: usize,
    /// How often PodGC looks at all pods (upstream `gcCheckPeriod`).
    pub pod_gc_period: Duration,
    /// How long a node must stay missing before its pods count as orphaned (upstream
    /// `quarantineTime`).
    pub pod_gc_quarantine: Duration,
    /// `--resource-quota-sync-period`: how often every quota's usage is recounted.
    pub resource_quota_sync_period: Duration,
    /// `--horizontal-pod-autoscaler-sync-period`: how often each HPA is evaluated.
    pub hpa_sync_period: Duration,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`: scale-down looks back
    /// this far and takes the highest recommendation.
    pub hpa_downscale_stabilization: Duration,
    /// `--horizontal-pod-autoscaler-tolerance`: usage ratios this close to 1 do not scale.
    pub hpa_tolerance: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period`.
    pub hpa_cpu_initialization_period: Duration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay`.
    pub hpa_initial_readiness_delay: Duration,
    /// How long the PersistentVolume controller waits between full resyncs of volumes
    /// and claims (`--pvclaimbinder-sync-period`).
    pub pv_claim_binder_sync_period: Duration,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            node_monitor_period: Duration::from_secs(5),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_size_threshold: 50,
            allocate_node_cidrs: true,
            cluster_cidr: Ipv4Net::new([10, 42, 0, 0].into(), 16)
                .expect("invariant: /16 is a valid prefix"),
            node_cidr_mask_size: 24,
            root_ca: None,
            job_pod_failure_backoff: Duration::from_secs(10),
            job_pod_failure_backoff_max: Duration::from_secs(600),
            job_sync_batch_period: Duration::from_secs(1),
            clock: crate::clock::Clock::real(),
            terminated_pod_gc_threshold: 12500,
            pod_gc_period: Duration::from_secs(20),
            pod_gc_quarantine: Duration::from_secs(40),
            resource_quota_sync_period: Duration::from_secs(300),
            hpa_sync_period: Duration::from_secs(15),
            hpa_downscale_stabilization: Duration::from_secs(300),
            hpa_tolerance: 0.1,
            hpa_cpu_initialization_period: Duration::from_secs(300),
            hpa_initial_readiness_delay: Duration::from_secs(30),
            pv_claim_binder_sync_period: Duration::from_secs(15),
        }
    }
}

/// Parses a Go `time.Duration` string: a sequence of decimal numbers with units
/// `ns`, `us`/`µs`, `ms`, `s`, `m`, `h` (`"0"` alone is allowed).
pub fn parse_duration(s: &str) -> Result<Duration, OptionsError> {
    let bad = || OptionsError::Duration(s.to_string());
    let text = s.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        for (input, want) in [
            ("40s", Duration::from_secs(40)),
            ("0", Duration::ZERO),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            ("2h", Duration::from_secs(7200)),
        ] {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
        for bad in ["", "40", "s", "4x", "-1s", "1m30"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_upstreams() {
        let o = ControllerOptions::default();
        assert_eq!(o.node_monitor_grace_period, Duration::from_secs(40));
        assert_eq!(o.cluster_cidr.to_string(), "10.42.0.0/16");
        assert_eq!(o.node_cidr_mask_size, 24);
    }
}
