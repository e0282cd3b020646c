//! Node health bookkeeping (upstream `tryUpdateNodeHealth`).
//!
//! The controller keeps, per node, when it last saw a sign of life (the *probe time*):
//! a new `lastHeartbeatTime` on the `Ready` condition or a newer `renewTime` on the
//! node's Lease in `kube-node-lease`. Both are compared with what was seen before, never
//! with the wall clock, so clock skew between node and control plane does not matter.
//! A node silent for longer than the grace period (the startup grace period while it
//! has never posted `Ready`) gets `Ready`, `MemoryPressure`, `DiskPressure` and
//! `PIDPressure` set to `Unknown`; `NetworkUnavailable` belongs to the control plane
//! and is left alone.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

/// Reason of a condition turned `Unknown` because the kubelet went silent.
pub const NODE_STATUS_UNKNOWN: &str = "NodeStatusUnknown";
/// Reason of a condition the kubelet never posted.
pub const NODE_STATUS_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
const STOPPED_POSTING: &str = "Kubelet stopped posting node status.";
const NEVER_POSTED: &str = "Kubelet never posted node status.";

/// Conditions set to `Unknown` when a node goes silent.
pub const SILENT_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What the controller remembers about one node between passes.
#[derive(Clone, Debug)]
pub struct NodeHealth {
    /// The `Ready` condition as last seen (or written).
    ready: Option<NodeCondition>,
    /// Last sign of life.
    pub probe: Instant,
    /// When `Ready` last changed, as far as this controller knows.
    pub ready_transition: Instant,
    /// `renewTime` of the node's Lease as last seen.
    lease_renew: Option<Timestamp>,
}

impl NodeHealth {
    /// Records the conditions this controller just wrote.
    pub fn after_update(&mut self, ready: Option<NodeCondition>, now: Instant) {
        self.ready = ready;
        self.ready_transition = now;
    }

    /// Upstream resets probe times when leaving "master disruption mode".
    pub fn reset_probe(&mut self, now: Instant) {
        self.probe = now;
        self.ready_transition = now;
    }
}

/// The outcome of looking at one node.
#[derive(Debug)]
pub struct Assessment {
    pub grace_period: Duration,
    /// `Ready` as found on the node before this pass (a made-up `Unknown` one when the
    /// kubelet never posted it).
    pub observed_ready: NodeCondition,
    /// The node's full condition list to write through `nodes/status`, when it went
    /// silent and the conditions are not `Unknown` yet.
    pub silent_conditions: Option<Vec<NodeCondition>>,
}

pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    condition(node, "Ready")
}

/// The monotonic instant matching the node's creation time (never after `now`).
fn created_instant(node: &Node, now: Instant, wall: Timestamp) -> Instant {
    let age = node
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(wall.duration_since(t.0)).ok())
        .unwrap_or(Duration::ZERO);
    now.checked_sub(age).unwrap_or(now)
}

fn fresh(ready: Option<&NodeCondition>, lease: Option<Timestamp>, now: Instant) -> NodeHealth {
    NodeHealth {
        ready: ready.cloned(),
        probe: now,
        ready_transition: now,
        lease_renew: lease,
    }
}

/// Looks at `node` (and its Lease) against what was `saved` from earlier passes;
/// returns the health to save and what to do.
pub fn assess(
    saved: Option<&NodeHealth>,
    node: &Node,
    lease: Option<&Lease>,
    now: Instant,
    wall: Timestamp,
    grace_period: Duration,
    startup_grace_period: Duration,
) -> (NodeHealth, Assessment) {
    let current = ready_condition(node);
    let creation = node.metadata.creation_timestamp.clone();
    let (observed_ready, grace_period) = match current {
        Some(c) => (c.clone(), grace_period),
        None => (
            NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                last_heartbeat_time: creation.clone(),
                last_transition_time: creation.clone(),
                ..Default::default()
            },
            startup_grace_period,
        ),
    };
    let saved_lease = saved.and_then(|s| s.lease_renew);
    let mut health = match (saved, current) {
        // Never posted: count from the node's creation.
        (None, None) => {
            let created = created_instant(node, now, wall);
            NodeHealth {
                ready: None,
                probe: created,
                ready_transition: created,
                lease_renew: None,
            }
        }
        (Some(s), None) if s.ready.is_none() => s.clone(),
        // First seen (e.g. the controller restarted), or Ready appeared or vanished:
        // assume a sign of life now.
        (None, Some(c)) => fresh(Some(c), None, now),
        (Some(_), Some(c)) if saved.is_some_and(|s| s.ready.is_none()) => {
            fresh(Some(c), saved_lease, now)
        }
        (Some(_), None) => {
            tracing::warn!(
                node = node.metadata.name.as_deref().unwrap_or(""),
                "ReadyCondition was removed from the status of the node"
            );
            fresh(None, saved_lease, now)
        }
        (Some(s), Some(c)) => {
            let before = s.ready.as_ref();
            if before.map(|b| &b.last_heartbeat_time) != Some(&c.last_heartbeat_time) {
                let transition =
                    if before.map(|b| &b.last_transition_time) != Some(&c.last_transition_time) {
                        now
                    } else {
                        s.ready_transition
                    };
                NodeHealth {
                    ready: Some(c.clone()),
                    probe: now,
                    ready_transition: transition,
                    lease_renew: s.lease_renew,
                }
            } else {
                s.clone()
            }
        }
    };
    // A renewed Lease is a sign of life, whether or not status was posted.
    if let Some(renew) = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0)
    {
        if saved_lease.is_none_or(|s| s < renew) {
            health.lease_renew = Some(renew);
            health.probe = now;
        }
    }
    let silent_conditions = if now > health.probe + grace_period {
        let conditions = unknown_conditions(node, Time(wall));
        let ready = conditions.iter().find(|c| c.type_ == "Ready");
        (ready != Some(&observed_ready)).then_some(conditions)
    } else {
        None
    };
    (
        health,
        Assessment {
            grace_period,
            observed_ready,
            silent_conditions,
        },
    )
}

/// The node's conditions with [`SILENT_CONDITIONS`] set to `Unknown` (added when
/// missing), transition times `now`.
pub fn unknown_conditions(node: &Node, now: Time) -> Vec<NodeCondition> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for type_ in SILENT_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != "Unknown" {
                    c.status = "Unknown".into();
                    c.reason = Some(NODE_STATUS_UNKNOWN.into());
                    c.message = Some(STOPPED_POSTING.into());
                    c.last_transition_time = Some(now.clone());
                }
            }
            None => conditions.push(NodeCondition {
                type_: type_.into(),
                status: "Unknown".into(),
                reason: Some(NODE_STATUS_NEVER_UPDATED.into()),
                message: Some(NEVER_POSTED.into()),
                last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                last_transition_time: Some(now.clone()),
            }),
        }
    }
    conditions
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::NodeStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    const GRACE: Duration = Duration::from_secs(40);
    const STARTUP: Duration = Duration::from_secs(60);

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    fn node(ready: Option<(&str, i64)>) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some("n1".into());
        n.metadata.creation_timestamp = Some(Time(ts(1_000)));
        n.status = Some(NodeStatus {
            conditions: ready.map(|(status, heartbeat)| {
                vec![
                    NodeCondition {
                        type_: "Ready".into(),
                        status: status.into(),
                        reason: Some("KubeletReady".into()),
                        last_heartbeat_time: Some(Time(ts(heartbeat))),
                        last_transition_time: Some(Time(ts(1_000))),
                        ..Default::default()
                    },
                    NodeCondition {
                        type_: "NetworkUnavailable".into(),
                        status: "False".into(),
                        ..Default::default()
                    },
                ]
            }),
            ..Default::default()
        });
        n
    }

    fn lease(renew: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(ts(renew))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_node_becomes_unknown_after_the_grace_period() {
        let t0 = Instant::now();
        let n = node(Some(("True", 1_010)));
        let (h, a) = assess(None, &n, None, t0, ts(2_000), GRACE, STARTUP);
        assert!(a.silent_conditions.is_none());
        assert_eq!(a.grace_period, GRACE);
        // Same heartbeat, within grace: nothing.
        let (h, a) = assess(Some(&h), &n, None, t0 + GRACE, ts(2_040), GRACE, STARTUP);
        assert!(a.silent_conditions.is_none());
        // Past it: the four conditions become Unknown, NetworkUnavailable stays.
        let later = t0 + GRACE + Duration::from_secs(1);
        let (_, a) = assess(Some(&h), &n, None, later, ts(2_041), GRACE, STARTUP);
        let conds = a.silent_conditions.expect("silent");
        assert_eq!(a.observed_ready.status, "True");
        let by_type = |t: &str| {
            conds
                .iter()
                .find(|c| c.type_ == t)
                .cloned()
                .expect("condition")
        };
        let ready = by_type("Ready");
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_deref(),
                ready.message.as_deref()
            ),
            (
                "Unknown",
                Some("NodeStatusUnknown"),
                Some("Kubelet stopped posting node status.")
            )
        );
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts(1_010))));
        assert_eq!(ready.last_transition_time, Some(Time(ts(2_041))));
        let mem = by_type("MemoryPressure");
        assert_eq!(
            (mem.status.as_str(), mem.reason.as_deref()),
            ("Unknown", Some("NodeStatusNeverUpdated"))
        );
        assert_eq!(by_type("NetworkUnavailable").status, "False");
        assert_eq!(conds.len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn lease_renewals_and_heartbeats_keep_a_node_alive() {
        let t0 = Instant::now();
        let n = node(Some(("True", 1_010)));
        let (h, _) = assess(None, &n, Some(&lease(1_010)), t0, ts(2_000), GRACE, STARTUP);
        // A renewed lease without any status post.
        let t1 = t0 + Duration::from_secs(30);
        let (h, _) = assess(
            Some(&h),
            &n,
            Some(&lease(1_040)),
            t1,
            ts(2_030),
            GRACE,
            STARTUP,
        );
        assert_eq!(h.probe, t1);
        let (_, a) = assess(
            Some(&h),
            &n,
            Some(&lease(1_040)),
            t1 + GRACE,
            ts(2_070),
            GRACE,
            STARTUP,
        );
        assert!(a.silent_conditions.is_none());
        // A new heartbeat on the Ready condition counts too.
        let t2 = t1 + Duration::from_secs(35);
        let (h, _) = assess(
            Some(&h),
            &node(Some(("True", 1_100))),
            Some(&lease(1_040)),
            t2,
            ts(2_065),
            GRACE,
            STARTUP,
        );
        assert_eq!(h.probe, t2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_never_posted_gets_the_startup_grace_from_creation() {
        let t0 = Instant::now() + Duration::from_secs(1_000);
        let n = node(None);
        // Created 50 s ago: within the 60 s startup grace.
        let (h, a) = assess(None, &n, None, t0, ts(1_050), GRACE, STARTUP);
        assert_eq!(a.grace_period, STARTUP);
        assert!(a.silent_conditions.is_none());
        let (_, a) = assess(
            Some(&h),
            &n,
            None,
            t0 + Duration::from_secs(11),
            ts(1_061),
            GRACE,
            STARTUP,
        );
        let conds = a.silent_conditions.expect("silent");
        assert!(conds.iter().all(
            |c| c.status == "Unknown" && c.reason.as_deref() == Some("NodeStatusNeverUpdated")
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn already_unknown_needs_no_write() {
        let t0 = Instant::now();
        let n = node(Some(("Unknown", 1_010)));
        let (h, _) = assess(None, &n, None, t0, ts(2_000), GRACE, STARTUP);
        let mut n2 = n.clone();
        n2.status = Some(NodeStatus {
            conditions: Some(unknown_conditions(&n, Time(ts(2_000)))),
            ..Default::default()
        });
        let (_, a) = assess(
            Some(&h),
            &n2,
            None,
            t0 + GRACE * 2,
            ts(2_080),
            GRACE,
            STARTUP,
        );
        assert!(a.silent_conditions.is_none());
    }
}
