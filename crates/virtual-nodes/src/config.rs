//! What a set of virtual nodes looks like (names, capacity, labels, taints, timings), and
//! the parsers for the CLI's `--labels k=v,…` and `--taints k=v:Effect,…`.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Taint;

/// The taint every virtual node carries unless told otherwise, so only pods that
/// tolerate virtual nodes land there (as Virtual Kubelet does).
pub const PROVIDER_TAINT_KEY: &str = "virtual-kubelet.io/provider";
/// The value of [`PROVIDER_TAINT_KEY`].
pub const PROVIDER_TAINT_VALUE: &str = "rkube";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid label {0:?}: want key=value")]
    Label(String),
    #[error("invalid taint {0:?}: want key[=value]:NoSchedule|PreferNoSchedule|NoExecute")]
    Taint(String),
    #[error("count must be at least 1")]
    NoNodes,
    #[error("pod CIDR mask size /{mask} does not fit inside {base}")]
    PodCidrMask { base: Ipv4Net, mask: u8 },
    #[error("{what} must be positive")]
    NotPositive { what: &'static str },
    #[error("a kubelet port needs node IPs on loopback (127.0.0.0/8), not {0}")]
    KubeletPortNeedsLoopback(Ipv4Net),
}

/// A set of `count` identical nodes named `<prefix>-<index>`.
#[derive(Clone, Debug)]
pub struct VirtualNodeConfig {
    pub count: usize,
    pub prefix: String,
    /// Capacity (= allocatable) as Kubernetes quantities.
    pub cpu: String,
    pub memory: String,
    pub ephemeral_storage: String,
    pub pods: u32,
    /// Extra labels, applied over the built-in ones (`type=virtual-kubelet`,
    /// `kubernetes.io/role=agent`, `kubernetes.io/hostname`, os/arch, instance type).
    pub labels: BTreeMap<String, String>,
    /// Taints set when a node is registered; the default is the provider taint.
    pub taints: Vec<Taint>,
    /// How often each node renews its Lease (upstream kubelet: 10 s).
    pub lease_interval: Duration,
    /// `leaseDurationSeconds` of the Leases (upstream kubelet: 40).
    pub lease_duration_seconds: i32,
    /// How often node status is posted when nothing changed (upstream: 5 min; we post
    /// every minute so `lastHeartbeatTime` stays readable).
    pub status_update_interval: Duration,
    /// Pod CIDRs for nodes without `spec.podCIDR` are carved from here …
    pub pod_cidr_base: Ipv4Net,
    /// … in blocks of this prefix length.
    pub pod_cidr_mask_size: u8,
    /// Fake InternalIPs come from here (never contacted).
    pub node_ip_base: Ipv4Net,
    /// Requests in flight at once for registration and heartbeats.
    pub concurrency: usize,
    /// Pods synced at once by the provider.
    pub pod_workers: usize,
    /// Record `Starting`/`NodeReady` events per node at registration.
    pub record_node_events: bool,
    /// Record a `Started` event per started container (off for large benchmarks).
    pub record_pod_events: bool,
    /// Serve a kubelet endpoint per node (`/stats/summary` with the usage pods ask for,
    /// see [`crate::stats`]) on `<InternalIP>:<port>` (0: a free port per node), reported
    /// as the node's `daemonEndpoints`; needs `node_ip_base` on loopback. Off: none.
    pub kubelet_port: Option<u16>,
}

impl Default for VirtualNodeConfig {
    fn default() -> Self {
        VirtualNodeConfig {
            count: 1,
            prefix: "rkube-virtual".to_string(),
            cpu: "8".to_string(),
            memory: "32Gi".to_string(),
            ephemeral_storage: "100Gi".to_string(),
            pods: 110,
            labels: BTreeMap::new(),
            taints: vec![default_taint()],
            lease_interval: Duration::from_secs(10),
            lease_duration_seconds: 40,
            status_update_interval: Duration::from_secs(60),
            pod_cidr_base: Ipv4Net::new([10, 42, 0, 0].into(), 16)
                .expect("invariant: /16 is a valid prefix"),
            pod_cidr_mask_size: 24,
            node_ip_base: Ipv4Net::new([100, 64, 0, 0].into(), 10)
                .expect("invariant: /10 is a valid prefix"),
            concurrency: 32,
            pod_workers: 16,
            record_node_events: true,
            record_pod_events: true,
            kubelet_port: None,
        }
    }
}

impl VirtualNodeConfig {
    /// Checks what can be checked without the cluster.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.count == 0 {
            return Err(ConfigError::NoNodes);
        }
        if self.pod_cidr_mask_size < self.pod_cidr_base.prefix_len() || self.pod_cidr_mask_size > 30
        {
            return Err(ConfigError::PodCidrMask {
                base: self.pod_cidr_base,
                mask: self.pod_cidr_mask_size,
            });
        }
        let loopback =
            self.node_ip_base.addr().is_loopback() && self.node_ip_base.prefix_len() >= 8;
        if self.kubelet_port.is_some() && !loopback {
            return Err(ConfigError::KubeletPortNeedsLoopback(self.node_ip_base));
        }
        for (what, zero) in [
            ("lease interval", self.lease_interval.is_zero()),
            (
                "status update interval",
                self.status_update_interval.is_zero(),
            ),
            ("lease duration", self.lease_duration_seconds <= 0),
            ("concurrency", self.concurrency == 0),
            ("pod workers", self.pod_workers == 0),
        ] {
            if zero {
                return Err(ConfigError::NotPositive { what });
            }
        }
        Ok(())
    }

    /// The name of node `index`.
    pub fn node_name(&self, index: usize) -> String {
        format!("{}-{index}", self.prefix)
    }
}

/// `virtual-kubelet.io/provider=rkube:NoSchedule`.
pub fn default_taint() -> Taint {
    Taint {
        key: PROVIDER_TAINT_KEY.to_string(),
        value: Some(PROVIDER_TAINT_VALUE.to_string()),
        effect: "NoSchedule".to_string(),
        time_added: None,
    }
}

/// Parses `k=v,k2=v2` (empty → none).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| ConfigError::Label(item.to_string()))?;
        if k.is_empty() {
            return Err(ConfigError::Label(item.to_string()));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Parses `key=value:Effect,key:Effect` as kubelet's `--register-with-taints` (empty → none).
pub fn parse_taints(s: &str) -> Result<Vec<Taint>, ConfigError> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let bad = || ConfigError::Taint(item.to_string());
        let (kv, effect) = item.rsplit_once(':').ok_or_else(bad)?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(bad());
        }
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (kv, None),
        };
        if key.is_empty() {
            return Err(bad());
        }
        out.push(Taint {
            key: key.to_string(),
            value,
            effect: effect.to_string(),
            time_added: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse() {
        type Case<'a> = (&'a str, Result<Vec<(&'a str, &'a str)>, ConfigError>);
        let cases: &[Case] = &[
            ("", Ok(vec![])),
            ("a=b", Ok(vec![("a", "b")])),
            (
                "a=b, zone=z1 ,empty=",
                Ok(vec![("a", "b"), ("empty", ""), ("zone", "z1")]),
            ),
            ("novalue", Err(ConfigError::Label("novalue".to_string()))),
            ("=v", Err(ConfigError::Label("=v".to_string()))),
        ];
        for (input, want) in cases {
            let got = parse_labels(input).map(|m| m.into_iter().collect::<Vec<_>>());
            let want = want
                .as_ref()
                .map(|v| {
                    v.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<Vec<_>>()
                })
                .map_err(Clone::clone);
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn taints_parse() {
        let t = parse_taints("virtual-kubelet.io/provider=rkube:NoSchedule,dedicated:NoExecute")
            .expect("parse");
        assert_eq!(t[0], default_taint());
        assert_eq!(
            (
                t[1].key.as_str(),
                t[1].value.as_deref(),
                t[1].effect.as_str()
            ),
            ("dedicated", None, "NoExecute")
        );
        assert_eq!(parse_taints("").expect("empty"), vec![]);
        for bad in ["k=v", "k=v:Sometimes", ":NoSchedule"] {
            assert_eq!(
                parse_taints(bad),
                Err(ConfigError::Taint(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[test]
    fn validation_rejects_nonsense() {
        assert_eq!(VirtualNodeConfig::default().validate(), Ok(()));
        let c = VirtualNodeConfig {
            count: 0,
            ..Default::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::NoNodes));
        let c = VirtualNodeConfig {
            pod_cidr_mask_size: 8,
            ..Default::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::PodCidrMask { .. })));
        let c = VirtualNodeConfig {
            lease_interval: Duration::ZERO,
            ..Default::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::NotPositive {
                what: "lease interval"
            })
        );
        assert_eq!(VirtualNodeConfig::default().node_name(7), "rkube-virtual-7");
        let c = VirtualNodeConfig {
            kubelet_port: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::KubeletPortNeedsLoopback(_))
        ));
        let c = VirtualNodeConfig {
            kubelet_port: Some(0),
            node_ip_base: "127.1.0.0/16".parse().expect("cidr"),
            ..Default::default()
        };
        assert_eq!(c.validate(), Ok(()));
    }
}
