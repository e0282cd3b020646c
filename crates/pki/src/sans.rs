//! Subject alternative names of the apiserver's serving certificate.
//!
//! Clients reach the apiserver as `localhost`, by host name or address, and in-cluster as the
//! `kubernetes` Service (by its DNS names or its ClusterIP, the first IP of the service CIDR),
//! so the certificate has to name all of them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The DNS names and IP addresses a serving certificate is valid for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServingSans {
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// DNS names of the `kubernetes` Service in the `default` namespace.
pub const KUBERNETES_SERVICE_NAMES: [&str; 4] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// The SANs the apiserver needs on this host. `extra` entries (from `--tls-san`) are IPs if
/// they parse as one, DNS names otherwise.
pub fn default_sans(
    hostname: &str,
    host_ips: &[IpAddr],
    first_service_ip: IpAddr,
    extra: &[String],
) -> ServingSans {
    let mut sans = ServingSans::default();
    sans.push_dns("localhost");
    sans.push_dns(hostname);
    for name in KUBERNETES_SERVICE_NAMES {
        sans.push_dns(name);
    }
    sans.push_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    sans.push_ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
    for ip in host_ips {
        sans.push_ip(*ip);
    }
    sans.push_ip(first_service_ip);
    for entry in extra {
        sans.push(entry);
    }
    sans
}

impl ServingSans {
    /// Adds `entry` as an IP if it parses as one, else as a DNS name.
    pub fn push(&mut self, entry: &str) {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) => self.push_ip(ip),
            Err(_) => self.push_dns(entry),
        }
    }

    /// Adds a DNS name (lower-cased, since DNS is case-insensitive) unless empty or present.
    pub fn push_dns(&mut self, name: &str) {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        if !name.is_empty() && !self.dns_names.contains(&name) {
            self.dns_names.push(name);
        }
    }

    /// Adds an IP unless present or unspecified (`0.0.0.0` names no host).
    pub fn push_ip(&mut self, ip: IpAddr) {
        if !ip.is_unspecified() && !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }

    /// Whether every name and address of `other` is also in `self`.
    pub fn contains_all(&self, other: &ServingSans) -> bool {
        other.dns_names.iter().all(|n| self.dns_names.contains(n))
            && other.ips.iter().all(|ip| self.ips.contains(ip))
    }

    /// `self` followed by whatever `other` adds, without duplicates.
    pub fn union(&self, other: &ServingSans) -> ServingSans {
        let mut out = self.clone();
        for name in &other.dns_names {
            out.push_dns(name);
        }
        for ip in &other.ips {
            out.push_ip(*ip);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sans_cover_local_host_and_service_names() {
        let host_ip: IpAddr = "192.168.1.10".parse().expect("ip");
        let svc_ip: IpAddr = "10.43.0.1".parse().expect("ip");
        let sans = default_sans(
            "Node-A",
            &[host_ip, host_ip],
            svc_ip,
            &["api.example.com".into(), "203.0.113.7".into(), "".into()],
        );
        assert_eq!(
            sans.dns_names,
            vec![
                "localhost",
                "node-a",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "api.example.com",
            ]
        );
        let ips: Vec<String> = sans.ips.iter().map(|ip| ip.to_string()).collect();
        assert_eq!(
            ips,
            vec![
                "127.0.0.1",
                "::1",
                "192.168.1.10",
                "10.43.0.1",
                "203.0.113.7"
            ]
        );
    }

    #[test]
    fn union_and_contains() {
        let a = default_sans("h", &[], "10.43.0.1".parse().expect("ip"), &[]);
        let mut b = ServingSans::default();
        b.push("10.0.0.5");
        b.push("extra.local");
        assert!(!a.contains_all(&b));
        let u = a.union(&b);
        assert!(u.contains_all(&a) && u.contains_all(&b));
        assert_eq!(u.union(&b), u, "union is idempotent");
        assert!(a.contains_all(&ServingSans::default()));
    }
}
