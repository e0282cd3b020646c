//! Node-level masquerade of pod egress (as flannel and k3s do), instead of the bridge
//! plugin's `ipMasq`: that one adds an iptables chain per pod, and every pod start and
//! stop then waits on the xtables lock. One chain per pod bridge,
//! `RKUBE-MASQ-<bridge>`, is jumped to from nat POSTROUTING for traffic from the node's
//! podCIDR; it returns for destinations inside the cluster CIDR (pod to pod keeps its
//! source) and multicast, and masquerades the rest. The jump goes first in POSTROUTING. Installed idempotently at start (the
//! chain is flushed and refilled, the jump added once); left in place on shutdown, so
//! running pods keep their egress across agent restarts.

use std::process::Output;

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum MasqueradeError {
    #[error("running iptables: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("iptables {args}: {stderr}")]
    Failed { args: String, stderr: String },
}

/// The chain of `bridge` (iptables chain names have at most 28 characters).
pub fn chain_name(bridge: &str) -> String {
    let mut name = format!("RKUBE-MASQ-{bridge}");
    name.truncate(28);
    name
}

fn comment(bridge: &str) -> String {
    format!("rkube: masquerade pod egress of {bridge}")
}

/// The jump from nat POSTROUTING (without the `-A`/`-C`/`-D`).
pub fn jump_rule(bridge: &str, pod_cidr: Ipv4Net) -> Vec<String> {
    [
        "-s",
        &pod_cidr.trunc().to_string(),
        "-m",
        "comment",
        "--comment",
        &comment(bridge),
        "-j",
        &chain_name(bridge),
    ]
    .map(str::to_string)
    .to_vec()
}

/// The rules of the chain, in order.
pub fn chain_rules(pod_cidr: Ipv4Net, cluster_cidr: Option<Ipv4Net>) -> Vec<Vec<String>> {
    let inside = cluster_cidr
        .filter(|c| c.contains(&pod_cidr))
        .unwrap_or(pod_cidr)
        .trunc();
    vec![
        vec![
            "-d".into(),
            inside.to_string(),
            "-j".into(),
            "RETURN".into(),
        ],
        vec![
            "-d".into(),
            "224.0.0.0/4".into(),
            "-j".into(),
            "RETURN".into(),
        ],
        vec!["-j".into(), "MASQUERADE".into()],
    ]
}

async fn iptables(args: &[String]) -> Result<Output, MasqueradeError> {
    Ok(tokio::process::Command::new("iptables")
        .arg("-w")
        .args(["-t", "nat"])
        .args(args)
        .output()
        .await?)
}

async fn must(args: Vec<String>) -> Result<(), MasqueradeError> {
    let out = iptables(&args).await?;
    if out.status.success() {
        return Ok(());
    }
    Err(MasqueradeError::Failed {
        args: args.join(" "),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Installs (or refreshes) the masquerade of `pod_cidr` on `bridge`.
pub async fn ensure(
    bridge: &str,
    pod_cidr: Ipv4Net,
    cluster_cidr: Option<Ipv4Net>,
) -> Result<(), MasqueradeError> {
    let chain = chain_name(bridge);
    // Creating fails when the chain exists; flushing it then must work.
    let _ = iptables(&["-N".into(), chain.clone()]).await?;
    must(vec!["-F".into(), chain.clone()]).await?;
    for rule in chain_rules(pod_cidr, cluster_cidr) {
        let mut args = vec!["-A".into(), chain.clone()];
        args.extend(rule);
        must(args).await?;
    }
    let jump = jump_rule(bridge, pod_cidr);
    let mut check = vec!["-C".into(), "POSTROUTING".into()];
    check.extend(jump.iter().cloned());
    if !iptables(&check).await?.status.success() {
        // First in POSTROUTING: ahead of per-pod chains an older config or a killed
        // runtime left behind.
        let mut add = vec!["-I".into(), "POSTROUTING".into(), "1".into()];
        add.extend(jump);
        must(add).await?;
    }
    tracing::info!(%chain, %pod_cidr, "pod egress masquerade installed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_keep_cluster_traffic_and_masquerade_the_rest() {
        assert_eq!(chain_name("cni0"), "RKUBE-MASQ-cni0");
        assert_eq!(chain_name("a-very-long-bridge-name").len(), 28);
        let pod: Ipv4Net = "10.42.3.0/24".parse().unwrap();
        let rules = chain_rules(pod, Some("10.42.0.0/16".parse().unwrap()));
        assert_eq!(rules[0], ["-d", "10.42.0.0/16", "-j", "RETURN"]);
        assert_eq!(rules[1], ["-d", "224.0.0.0/4", "-j", "RETURN"]);
        assert_eq!(rules[2], ["-j", "MASQUERADE"]);
        // A cluster CIDR that does not hold the podCIDR is ignored.
        let rules = chain_rules(pod, Some("10.99.0.0/16".parse().unwrap()));
        assert_eq!(rules[0][1], "10.42.3.0/24");
        assert_eq!(
            jump_rule("cni0", pod),
            [
                "-s",
                "10.42.3.0/24",
                "-m",
                "comment",
                "--comment",
                "rkube: masquerade pod egress of cni0",
                "-j",
                "RKUBE-MASQ-cni0"
            ]
        );
    }
}
