//! Taints the node lifecycle controller owns (upstream `TaintNodesByCondition` and the
//! NoExecute templates), toleration matching (upstream `Toleration.ToleratesTaint`),
//! and the one write path for node taints: read the node fresh, add/remove, replace
//! with its resourceVersion, retry on conflict (upstream `SwapNodeControllerTaint`).

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;

use crate::controller_utils::is_conflict;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

pub const NO_EXECUTE: &str = "NoExecute";
pub const NO_SCHEDULE: &str = "NoSchedule";

/// How many times a taint write is retried on conflict.
const RETRIES: usize = 5;

pub fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.to_string(),
        value: None,
        effect: effect.to_string(),
        time_added: None,
    }
}

/// `node.kubernetes.io/unreachable:NoExecute`.
pub fn unreachable_no_execute() -> Taint {
    taint(UNREACHABLE, NO_EXECUTE)
}

/// `node.kubernetes.io/not-ready:NoExecute`.
pub fn not_ready_no_execute() -> Taint {
    taint(NOT_READY, NO_EXECUTE)
}

/// Same key and effect (upstream `Taint.MatchTaint`).
pub fn matches(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

pub fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

pub fn has_taint(node: &Node, t: &Taint) -> bool {
    node_taints(node).iter().any(|x| matches(x, t))
}

/// The NoSchedule taint a condition calls for (upstream `nodeConditionToTaintKeyStatusMap`).
fn condition_taint_key(c: &NodeCondition) -> Option<&'static str> {
    match (c.type_.as_str(), c.status.as_str()) {
        ("Ready", "False") => Some(NOT_READY),
        ("Ready", "Unknown") => Some(UNREACHABLE),
        ("MemoryPressure", "True") => Some(MEMORY_PRESSURE),
        ("DiskPressure", "True") => Some(DISK_PRESSURE),
        ("NetworkUnavailable", "True") => Some(NETWORK_UNAVAILABLE),
        ("PIDPressure", "True") => Some(PID_PRESSURE),
        _ => None,
    }
}

/// Keys whose NoSchedule taints follow node conditions and `spec.unschedulable`.
const CONDITION_KEYS: [&str; 7] = [
    NOT_READY,
    UNREACHABLE,
    MEMORY_PRESSURE,
    DISK_PRESSURE,
    NETWORK_UNAVAILABLE,
    PID_PRESSURE,
    UNSCHEDULABLE,
];

/// The NoSchedule taints to add and remove so they match the node's conditions
/// (upstream `doNoScheduleTaintingPass`).
pub fn no_schedule_diff(node: &Node) -> (Vec<Taint>, Vec<Taint>) {
    let mut want: Vec<Taint> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter_map(condition_taint_key)
        .map(|k| taint(k, NO_SCHEDULE))
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        want.push(taint(UNSCHEDULABLE, NO_SCHEDULE));
    }
    let have: Vec<&Taint> = node_taints(node)
        .iter()
        .filter(|t| t.effect == NO_SCHEDULE && CONDITION_KEYS.contains(&t.key.as_str()))
        .collect();
    let add = want
        .iter()
        .filter(|w| !have.iter().any(|h| matches(h, w)))
        .cloned()
        .collect();
    let remove = have
        .into_iter()
        .filter(|h| !want.iter().any(|w| matches(h, w)))
        .cloned()
        .collect();
    (add, remove)
}

/// Upstream `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Upstream `GetMatchingTolerations`: whether every taint is tolerated, and the first
/// toleration found for each.
pub fn matching_tolerations<'a>(
    taints: &[Taint],
    tolerations: &'a [Toleration],
) -> (bool, Vec<&'a Toleration>) {
    let mut used = Vec::new();
    for t in taints {
        match tolerations.iter().find(|tol| tolerates(tol, t)) {
            Some(tol) => used.push(tol),
            None => return (false, Vec::new()),
        }
    }
    (true, used)
}

/// Upstream `getMinTolerationTime`: the shortest `tolerationSeconds` among `used`
/// (zero for none used or a non-positive one), `None` when all tolerate forever.
pub fn min_toleration(used: &[&Toleration]) -> Option<std::time::Duration> {
    if used.is_empty() {
        return Some(std::time::Duration::ZERO);
    }
    let mut min: Option<i64> = None;
    for t in used {
        if let Some(s) = t.toleration_seconds {
            if s <= 0 {
                return Some(std::time::Duration::ZERO);
            }
            min = Some(min.map_or(s, |m| m.min(s)));
        }
    }
    min.map(|s| std::time::Duration::from_secs(u64::try_from(s).unwrap_or(0)))
}

/// `taints` with `add` put in (an existing taint with the same key, effect and value
/// is kept as is) and `remove` taken out.
pub fn apply_taints(taints: &[Taint], add: &[Taint], remove: &[Taint]) -> Vec<Taint> {
    let mut out: Vec<Taint> = taints
        .iter()
        .filter(|t| !remove.iter().any(|r| matches(t, r)))
        .cloned()
        .collect();
    for a in add {
        match out.iter_mut().find(|t| matches(t, a)) {
            Some(existing) if existing.value == a.value => {}
            Some(existing) => *existing = a.clone(),
            None => out.push(a.clone()),
        }
    }
    out
}

/// Adds `add` (stamped `timeAdded: now`) and removes `remove` on node `name`, reading
/// it fresh and retrying on conflicts. `Ok(false)` when nothing had to change or the
/// node is gone.
pub async fn swap_node_taints(
    client: &Client,
    name: &str,
    add: &[Taint],
    remove: &[Taint],
) -> Result<bool, kube::Error> {
    let now = Time(Timestamp::now());
    let add: Vec<Taint> = add
        .iter()
        .map(|t| Taint {
            time_added: Some(now.clone()),
            ..t.clone()
        })
        .collect();
    let api: Api<Node> = Api::all(client.clone());
    let mut attempt = 0;
    loop {
        let Some(mut node) = api.get_opt(name).await? else {
            return Ok(false);
        };
        let old = node_taints(&node).to_vec();
        let new = apply_taints(&old, &add, remove);
        if new == old {
            return Ok(false);
        }
        node.spec.get_or_insert_with(Default::default).taints = (!new.is_empty()).then_some(new);
        match api.replace(name, &PostParams::default(), &node).await {
            Ok(_) => return Ok(true),
            Err(e) if is_conflict(&e) && attempt + 1 < RETRIES => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};

    fn node(conditions: &[(&str, &str)], taints: Vec<Taint>, unschedulable: bool) -> Node {
        Node {
            metadata: Default::default(),
            spec: Some(NodeSpec {
                taints: Some(taints),
                unschedulable: Some(unschedulable),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| NodeCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    fn keys(ts: &[Taint]) -> Vec<String> {
        ts.iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect()
    }

    #[test]
    fn no_schedule_taints_follow_conditions() {
        let n = node(
            &[
                ("Ready", "Unknown"),
                ("MemoryPressure", "True"),
                ("DiskPressure", "False"),
            ],
            vec![
                taint(NOT_READY, NO_SCHEDULE),
                taint("custom", NO_SCHEDULE),
                unreachable_no_execute(),
            ],
            true,
        );
        let (add, remove) = no_schedule_diff(&n);
        assert_eq!(
            keys(&add),
            vec![
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/memory-pressure:NoSchedule",
                "node.kubernetes.io/unschedulable:NoSchedule"
            ]
        );
        assert_eq!(
            keys(&remove),
            vec!["node.kubernetes.io/not-ready:NoSchedule"]
        );
        let healthy = node(&[("Ready", "True")], vec![], false);
        assert_eq!(no_schedule_diff(&healthy), (vec![], vec![]));
    }

    fn tol(key: &str, op: &str, effect: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.to_string()),
            operator: Some(op.to_string()),
            effect: (!effect.is_empty()).then(|| effect.to_string()),
            toleration_seconds: secs,
            value: None,
        }
    }

    #[test]
    fn toleration_times_pick_the_shortest_matching_one() {
        let taints = vec![unreachable_no_execute()];
        let tols = vec![
            tol("virtual-kubelet.io/provider", "Exists", "", None),
            tol(UNREACHABLE, "Exists", NO_EXECUTE, Some(2)),
            tol(NOT_READY, "Exists", NO_EXECUTE, Some(300)),
        ];
        let (all, used) = matching_tolerations(&taints, &tols);
        assert!(all);
        assert_eq!(
            min_toleration(&used),
            Some(std::time::Duration::from_secs(2))
        );
        // Not tolerated at all: evict at once.
        let (all, _) = matching_tolerations(&[taint("dedicated", NO_EXECUTE)], &tols);
        assert!(!all);
        // Tolerated forever.
        let forever = vec![tol("", "Exists", "", None)];
        let (all, used) = matching_tolerations(&taints, &forever);
        assert!(all);
        assert_eq!(min_toleration(&used), None);
        // Equal needs the value.
        let mut valued = taint("k", NO_EXECUTE);
        valued.value = Some("v".into());
        let mut eq = tol("k", "Equal", NO_EXECUTE, None);
        assert!(!tolerates(&eq, &valued));
        eq.value = Some("v".into());
        assert!(tolerates(&eq, &valued));
    }

    #[test]
    fn swapping_replaces_the_opposite_taint() {
        let old = vec![taint("custom", NO_SCHEDULE), not_ready_no_execute()];
        let new = apply_taints(&old, &[unreachable_no_execute()], &[not_ready_no_execute()]);
        assert_eq!(
            keys(&new),
            vec![
                "custom:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        // Re-adding a present taint changes nothing.
        assert_eq!(apply_taints(&new, &[unreachable_no_execute()], &[]), new);
    }
}
