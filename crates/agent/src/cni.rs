//! The pod network: a CNI config list written from the node's podCIDR — a `bridge` (`cni0`,
//! the gateway at the CIDR's first address, so pod IPs are routable from the host) with
//! `host-local` addresses, then `portmap` for hostPorts. containerd adds the loopback
//! interface itself. Egress is masqueraded per node (`masquerade`), not per pod by the
//! bridge plugin's `ipMasq`.

use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde_json::json;

/// File name of the config list in the CNI config directory.
pub const CONFLIST: &str = "10-rkube.conflist";

/// The bridge the pods of a node attach to, unless configured otherwise.
pub const DEFAULT_BRIDGE: &str = "cni0";

/// The config list for `pod_cidr` on `bridge`; host-local keeps its leases in `ipam_dir`.
pub fn conflist(bridge: &str, pod_cidr: Ipv4Net, ipam_dir: &Path) -> serde_json::Value {
    json!({
        "cniVersion": "0.4.0",
        "name": "rkube",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr.trunc().to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir.display().to_string(),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
        ],
    })
}

/// Writes the config list (only if it changed) and returns its path.
pub fn write_conflist(
    conf_dir: &Path,
    bridge: &str,
    pod_cidr: Ipv4Net,
    ipam_dir: &Path,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(conf_dir)?;
    let path = conf_dir.join(CONFLIST);
    let text =
        serde_json::to_string_pretty(&conflist(bridge, pod_cidr, ipam_dir)).unwrap_or_default();
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        let tmp = conf_dir.join(format!(".{CONFLIST}.tmp"));
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &path)?;
        tracing::info!(path = %path.display(), %pod_cidr, "wrote CNI config");
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_with_host_local_range_and_portmap() {
        let c = conflist(
            DEFAULT_BRIDGE,
            "10.42.3.0/24".parse().unwrap(),
            Path::new("/d/ipam"),
        );
        assert_eq!(c["plugins"][0]["type"], "bridge");
        assert_eq!(c["plugins"][0]["bridge"], "cni0");
        assert_eq!(c["plugins"][0]["ipMasq"], false);
        assert_eq!(
            c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.42.3.0/24"
        );
        assert_eq!(c["plugins"][1]["type"], "portmap");
    }
}
