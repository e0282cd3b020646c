//! Zones and how fast their nodes get NoExecute taints (upstream
//! `nodelifecycle` zone states and `scheduler.RateLimitedTimedQueue`).
//!
//! Nodes are grouped by `topology.kubernetes.io/region` + `zone`. A zone whose nodes
//! are all not ready is in full disruption, one with at least three not ready making
//! up `--unhealthy-zone-threshold` of it in partial disruption. Each zone has a queue
//! of nodes to taint drained through a token bucket: `--node-eviction-rate` normally,
//! `--secondary-node-eviction-rate` (large zones) or nothing (small zones) in partial
//! disruption. When every zone is fully disrupted the control plane, not the nodes,
//! is the likely culprit: tainting stops altogether ("master disruption mode").

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use tokio::time::Instant;

/// Nodes with this label count for no zone's health.
pub const EXCLUDE_DISRUPTION_LABEL: &str = "node.kubernetes.io/exclude-disruption";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Initial,
    Normal,
    FullDisruption,
    PartialDisruption,
}

/// Upstream `GetZoneKey`: `region:\0:zone`, or `""` for an unlabelled node.
pub fn zone_key(node: &Node) -> String {
    let Some(labels) = node.metadata.labels.as_ref() else {
        return String::new();
    };
    let zone = labels
        .get("failure-domain.beta.kubernetes.io/zone")
        .or_else(|| labels.get("topology.kubernetes.io/zone"))
        .cloned()
        .unwrap_or_default();
    let region = labels
        .get("failure-domain.beta.kubernetes.io/region")
        .or_else(|| labels.get("topology.kubernetes.io/region"))
        .cloned()
        .unwrap_or_default();
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\0:{zone}")
}

pub fn excluded_from_disruption_checks(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(EXCLUDE_DISRUPTION_LABEL))
}

/// Upstream `ComputeZoneState` over the zone's Ready condition statuses.
pub fn compute_zone_state(ready_statuses: &[String], unhealthy_threshold: f64) -> ZoneState {
    let ready = ready_statuses.iter().filter(|s| *s == "True").count();
    let not_ready = ready_statuses.len() - ready;
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / (ready + not_ready) as f64 >= unhealthy_threshold
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// A token bucket with a burst of one (upstream `EvictionRateLimiterBurst`); a rate of
/// zero never admits.
#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    const BURST: f64 = 1.0;

    /// A full bucket.
    pub fn new(qps: f64, now: Instant) -> Self {
        TokenBucket {
            qps,
            tokens: if qps > 0.0 { Self::BURST } else { 0.0 },
            last: now,
        }
    }

    pub fn qps(&self) -> f64 {
        self.qps
    }

    pub fn try_accept(&mut self, now: Instant) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(Self::BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Nodes of one zone waiting for a NoExecute taint, drained at the zone's rate.
#[derive(Debug)]
pub struct ZoneTainter {
    queue: VecDeque<(String, Instant)>,
    queued: HashSet<String>,
    limiter: TokenBucket,
}

impl ZoneTainter {
    pub fn new(qps: f64, now: Instant) -> Self {
        ZoneTainter {
            queue: VecDeque::new(),
            queued: HashSet::new(),
            limiter: TokenBucket::new(qps, now),
        }
    }

    /// Queues `node`; false if it already is.
    pub fn add(&mut self, node: &str, now: Instant) -> bool {
        if !self.queued.insert(node.to_string()) {
            return false;
        }
        self.queue.push_back((node.to_string(), now));
        true
    }

    pub fn remove(&mut self, node: &str) {
        if self.queued.remove(node) {
            self.queue.retain(|(n, _)| n != node);
        }
    }

    /// Upstream `SwapLimiter`: a new rate; a bucket that was empty stays empty.
    pub fn swap_limiter(&mut self, qps: f64, now: Instant) {
        if (self.limiter.qps() - qps).abs() < f64::EPSILON {
            return;
        }
        let was_empty = !self.limiter.try_accept(now);
        let mut next = TokenBucket::new(qps, now);
        if was_empty {
            next.try_accept(now);
        }
        self.limiter = next;
    }

    /// Nodes due now that the rate allows, removed from the queue (upstream `Try`
    /// hands them out one token each).
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((_, at)) = self.queue.front() {
            if *at > now || !self.limiter.try_accept(now) {
                break;
            }
            if let Some((node, _)) = self.queue.pop_front() {
                self.queued.remove(&node);
                out.push(node);
            }
        }
        out
    }

    /// Puts a node back to be retried after `delay`.
    pub fn retry(&mut self, node: &str, now: Instant, delay: Duration) {
        if self.queued.insert(node.to_string()) {
            self.queue.push_back((node.to_string(), now + delay));
        }
    }
}

/// Eviction rates the zone states call for (upstream `HealthyQPSFunc`/`ReducedQPSFunc`).
#[derive(Clone, Copy, Debug)]
pub struct EvictionRates {
    pub normal: f64,
    pub secondary: f64,
    pub large_cluster_size_threshold: usize,
}

impl EvictionRates {
    /// Upstream `setLimiterInZone`: the normal rate, or in a partial disruption the
    /// secondary rate for large zones and nothing for small ones. A fully disrupted
    /// zone (while others are not) keeps the normal rate.
    pub fn qps(&self, state: ZoneState, zone_size: usize) -> f64 {
        match state {
            ZoneState::PartialDisruption if zone_size > self.large_cluster_size_threshold => {
                self.secondary
            }
            ZoneState::PartialDisruption => 0.0,
            _ => self.normal,
        }
    }
}

/// What a pass over zone health means for tainting (upstream `handleDisruption`).
#[derive(Debug, PartialEq)]
pub enum DisruptionPlan {
    Unchanged,
    /// Every zone just became fully disrupted: untaint every node, stop tainting.
    EnterMasterDisruption,
    /// Some node answers again: reset probe times, give every zone its limiter.
    ExitMasterDisruption,
    /// These zones changed state and need a new limiter.
    Changed(Vec<String>),
}

/// Updates `states` from this pass's `new` states (zones no longer seen are dropped,
/// new ones start `Initial`) and says what to do.
pub fn plan_disruption(
    states: &mut HashMap<String, ZoneState>,
    new: &HashMap<String, ZoneState>,
) -> DisruptionPlan {
    let all_are_full = new.values().all(|s| *s == ZoneState::FullDisruption);
    for zone in new.keys() {
        states.entry(zone.clone()).or_insert(ZoneState::Initial);
    }
    states.retain(|zone, _| new.contains_key(zone));
    let all_were_full = states.values().all(|s| *s == ZoneState::FullDisruption);
    if all_are_full && all_were_full {
        return DisruptionPlan::Unchanged;
    }
    if all_are_full {
        for s in states.values_mut() {
            *s = ZoneState::FullDisruption;
        }
        return DisruptionPlan::EnterMasterDisruption;
    }
    if all_were_full {
        for (zone, s) in states.iter_mut() {
            *s = new[zone];
        }
        return DisruptionPlan::ExitMasterDisruption;
    }
    let mut changed: Vec<String> = Vec::new();
    for (zone, s) in states.iter_mut() {
        if *s != new[zone] {
            *s = new[zone];
            changed.push(zone.clone());
        }
    }
    changed.sort();
    if changed.is_empty() {
        DisruptionPlan::Unchanged
    } else {
        DisruptionPlan::Changed(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn zone_states_follow_upstream_thresholds() {
        assert_eq!(
            compute_zone_state(&statuses(&["True", "Unknown"]), 0.55),
            ZoneState::Normal
        );
        assert_eq!(
            compute_zone_state(&statuses(&["Unknown", "False"]), 0.55),
            ZoneState::FullDisruption
        );
        assert_eq!(
            compute_zone_state(&statuses(&["True", "Unknown", "Unknown", "False"]), 0.55),
            ZoneState::PartialDisruption
        );
        // Two not ready never make a partial disruption.
        assert_eq!(
            compute_zone_state(&statuses(&["True", "Unknown", "Unknown"]), 0.55),
            ZoneState::Normal
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tainting_is_rate_limited_per_zone() {
        let t0 = Instant::now();
        let mut z = ZoneTainter::new(0.1, t0);
        assert!(z.add("a", t0));
        assert!(!z.add("a", t0));
        assert!(z.add("b", t0));
        assert_eq!(z.take_due(t0), vec!["a"]);
        assert!(z.take_due(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(z.take_due(t0 + Duration::from_secs(10)), vec!["b"]);
        // A stopped zone hands out nothing.
        z.add("c", t0);
        z.swap_limiter(0.0, t0 + Duration::from_secs(100));
        assert!(z.take_due(t0 + Duration::from_secs(200)).is_empty());
        z.remove("c");
        z.swap_limiter(0.1, t0 + Duration::from_secs(300));
        z.add("d", t0 + Duration::from_secs(300));
        // Coming back from a stopped limiter starts with an empty bucket, as upstream.
        assert!(z.take_due(t0 + Duration::from_secs(300)).is_empty());
        assert_eq!(z.take_due(t0 + Duration::from_secs(310)), vec!["d"]);
    }

    #[test]
    fn zone_keys_join_region_and_zone() {
        let mut n = Node::default();
        assert_eq!(zone_key(&n), "");
        n.metadata.labels = Some(
            [
                ("topology.kubernetes.io/zone".to_string(), "z1".to_string()),
                (
                    "topology.kubernetes.io/region".to_string(),
                    "r1".to_string(),
                ),
            ]
            .into(),
        );
        assert_eq!(zone_key(&n), "r1:\0:z1");
    }

    #[test]
    fn all_zones_down_stops_tainting_until_one_node_answers() {
        let mut states = HashMap::new();
        let new = |v: &[(&str, ZoneState)]| -> HashMap<String, ZoneState> {
            v.iter().map(|(z, s)| (z.to_string(), *s)).collect()
        };
        assert_eq!(
            plan_disruption(
                &mut states,
                &new(&[("a", ZoneState::Normal), ("b", ZoneState::Normal)])
            ),
            DisruptionPlan::Changed(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            plan_disruption(
                &mut states,
                &new(&[("a", ZoneState::FullDisruption), ("b", ZoneState::Normal)])
            ),
            DisruptionPlan::Changed(vec!["a".into()])
        );
        assert_eq!(
            plan_disruption(
                &mut states,
                &new(&[
                    ("a", ZoneState::FullDisruption),
                    ("b", ZoneState::FullDisruption)
                ])
            ),
            DisruptionPlan::EnterMasterDisruption
        );
        assert_eq!(
            plan_disruption(
                &mut states,
                &new(&[
                    ("a", ZoneState::FullDisruption),
                    ("b", ZoneState::FullDisruption)
                ])
            ),
            DisruptionPlan::Unchanged
        );
        assert_eq!(
            plan_disruption(
                &mut states,
                &new(&[("a", ZoneState::FullDisruption), ("b", ZoneState::Normal)])
            ),
            DisruptionPlan::ExitMasterDisruption
        );
        assert_eq!(states["b"], ZoneState::Normal);
        // A zone that is gone is forgotten.
        plan_disruption(&mut states, &new(&[("b", ZoneState::Normal)]));
        assert!(!states.contains_key("a"));
        let rates = EvictionRates {
            normal: 0.1,
            secondary: 0.01,
            large_cluster_size_threshold: 50,
        };
        assert_eq!(rates.qps(ZoneState::PartialDisruption, 10), 0.0);
        assert_eq!(rates.qps(ZoneState::PartialDisruption, 51), 0.01);
        assert_eq!(rates.qps(ZoneState::FullDisruption, 3), 0.1);
    }
}
