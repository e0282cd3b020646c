//! From the metrics' recommendation to the replica count actually set (upstream
//! `normalizeDesiredReplicas` and `normalizeDesiredReplicasWithBehaviors`):
//!
//! 1. **Stabilize** — every recommendation is remembered with its time. Scaling down
//!    takes the highest recommendation within the scale-down window (default 300 s),
//!    scaling up the lowest within the scale-up window (default 0 s), so a brief dip or
//!    spike does not flap the target.
//! 2. **Limit** — clamp to `[minReplicas, maxReplicas]`, and to how fast the policies
//!    allow change: without `behavior`, at most `max(2 × current, 4)` on the way up; with
//!    it, each policy (`Pods`/`Percent` per `periodSeconds`) proposes a limit from the
//!    replicas the target had at the start of its period (the recorded scale events),
//!    and `selectPolicy` picks the largest change (`Max`), the smallest (`Min`), or
//!    none (`Disabled`).
//!
//! The reasons and messages become the `AbleToScale` and `ScalingLimited` conditions,
//! with upstream's texts.

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};
use k8s_openapi::jiff::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyType {
    Pods,
    Percent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub type_: PolicyType,
    pub value: i32,
    pub period: Duration,
}

/// One direction's rules with defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub window: Duration,
    pub select: Select,
    pub policies: Vec<Policy>,
}

impl Rules {
    /// `given` over the defaults of a direction (upstream `GenerateHPAScale*Rules`);
    /// a scale-down window left unset is the controller's
    /// `--horizontal-pod-autoscaler-downscale-stabilization`.
    pub fn resolve(given: Option<&HPAScalingRules>, up: bool, downscale_window: Duration) -> Rules {
        let default_policies = if up {
            vec![
                Policy {
                    type_: PolicyType::Pods,
                    value: 4,
                    period: Duration::from_secs(15),
                },
                Policy {
                    type_: PolicyType::Percent,
                    value: 100,
                    period: Duration::from_secs(15),
                },
            ]
        } else {
            vec![Policy {
                type_: PolicyType::Percent,
                value: 100,
                period: Duration::from_secs(15),
            }]
        };
        let default_window = if up { Duration::ZERO } else { downscale_window };
        let Some(g) = given else {
            return Rules {
                window: default_window,
                select: Select::Max,
                policies: default_policies,
            };
        };
        let policies: Vec<Policy> = g
            .policies
            .iter()
            .flatten()
            .map(|p| Policy {
                type_: if p.type_ == "Pods" {
                    PolicyType::Pods
                } else {
                    PolicyType::Percent
                },
                value: p.value,
                period: Duration::from_secs(u64::try_from(p.period_seconds).unwrap_or(0)),
            })
            .collect();
        Rules {
            window: g
                .stabilization_window_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(default_window, Duration::from_secs),
            select: match g.select_policy.as_deref() {
                Some("Min") => Select::Min,
                Some("Disabled") => Select::Disabled,
                _ => Select::Max,
            },
            policies: if g.policies.is_none() {
                default_policies
            } else {
                policies
            },
        }
    }
}

/// A past recommendation or scale change.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    value: i32,
    at: Timestamp,
}

/// What the controller remembers about one HPA between syncs.
#[derive(Clone, Debug, Default)]
pub struct History {
    recommendations: Vec<Sample>,
    scale_ups: Vec<Sample>,
    scale_downs: Vec<Sample>,
}

impl History {
    /// Upstream `recordInitialRecommendation`: a new HPA starts from the current count.
    pub fn seed(&mut self, current: i32, now: Timestamp) {
        if self.recommendations.is_empty() {
            self.recommendations.push(Sample {
                value: current,
                at: now,
            });
        }
    }
}

/// The outcome, with the reasons for the two conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: i32,
    /// `AbleToScale=True` reason and message.
    pub able_reason: &'static str,
    pub able_message: &'static str,
    /// `ScalingLimited`: whether the limits changed the stabilized recommendation.
    pub limited: bool,
    pub limited_reason: &'static str,
    pub limited_message: &'static str,
}

fn older_than(at: Timestamp, now: Timestamp, d: Duration) -> bool {
    at.as_nanosecond() + (d.as_nanos() as i128) < now.as_nanosecond()
}

fn within(at: Timestamp, now: Timestamp, d: Duration) -> bool {
    at.as_nanosecond() + (d.as_nanos() as i128) > now.as_nanosecond()
}

const READY: (&str, &str) = ("ReadyForNewScale", "recommended size matches current size");
const DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const WITHIN: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);

fn normalized(
    replicas: i32,
    stabilized: i32,
    desired: i32,
    able: (&'static str, &'static str),
    limit: (&'static str, &'static str),
) -> Normalized {
    let able = if stabilized == desired { READY } else { able };
    Normalized {
        replicas,
        able_reason: able.0,
        able_message: able.1,
        limited: replicas != stabilized,
        limited_reason: limit.0,
        limited_message: limit.1,
    }
}

/// An HPA without `behavior`: the highest recommendation of the scale-down window, then
/// min/max and the fixed scale-up rate (upstream `normalizeDesiredReplicas`).
pub fn without_behavior(
    history: &mut History,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    downscale_window: Duration,
    now: Timestamp,
) -> Normalized {
    let mut stabilized = desired;
    let mut reuse = None;
    for (i, r) in history.recommendations.iter().enumerate() {
        if within(r.at, now, downscale_window) {
            stabilized = stabilized.max(r.value);
        } else {
            reuse = Some(i);
        }
    }
    let sample = Sample {
        value: desired,
        at: now,
    };
    match reuse {
        Some(i) => history.recommendations[i] = sample,
        None => history.recommendations.push(sample),
    }
    let scale_up_limit = (2 * current).max(4);
    let (upper, upper_reason) = if max > scale_up_limit {
        (scale_up_limit, UP_LIMIT)
    } else {
        (max, TOO_MANY)
    };
    let (replicas, reason) = if stabilized < min {
        (min, TOO_FEW)
    } else if stabilized > upper {
        (upper, upper_reason)
    } else {
        (stabilized, WITHIN)
    };
    normalized(replicas, stabilized, desired, DOWN_STABILIZED, reason)
}

/// An HPA with `behavior` (upstream `normalizeDesiredReplicasWithBehaviors`).
pub fn with_behavior(
    history: &mut History,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    up: &Rules,
    down: &Rules,
    now: Timestamp,
) -> Normalized {
    // Stabilize between the lowest recent (up) and highest recent (down) recommendation.
    let (mut up_rec, mut down_rec) = (desired, desired);
    let mut reuse = None;
    for (i, r) in history.recommendations.iter().enumerate() {
        if within(r.at, now, up.window) {
            up_rec = up_rec.min(r.value);
        }
        if within(r.at, now, down.window) {
            down_rec = down_rec.max(r.value);
        }
        if older_than(r.at, now, up.window) && older_than(r.at, now, down.window) {
            reuse = Some(i);
        }
    }
    let stabilized = current.max(up_rec).min(down_rec);
    let sample = Sample {
        value: desired,
        at: now,
    };
    match reuse {
        Some(i) => history.recommendations[i] = sample,
        None => history.recommendations.push(sample),
    }
    let able = if desired >= current {
        UP_STABILIZED
    } else {
        DOWN_STABILIZED
    };
    let (replicas, reason) = if stabilized > current {
        let limit = scale_up_limit(current, history, up, now).max(current);
        let (upper, reason) = if max > limit {
            (limit, UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        if stabilized > upper {
            (upper, reason)
        } else {
            (stabilized, WITHIN)
        }
    } else if stabilized < current {
        let limit = scale_down_limit(current, history, down, now).min(current);
        let (lower, reason) = if min < limit {
            (limit, DOWN_LIMIT)
        } else {
            (min, TOO_FEW)
        };
        if stabilized < lower {
            (lower, reason)
        } else {
            (stabilized, WITHIN)
        }
    } else {
        (stabilized, WITHIN)
    };
    normalized(replicas, stabilized, desired, able, reason)
}

fn changed_within(events: &[Sample], period: Duration, now: Timestamp) -> i32 {
    events
        .iter()
        .filter(|e| within(e.at, now, period))
        .map(|e| e.value)
        .sum()
}

fn period_start(current: i32, history: &History, period: Duration, now: Timestamp) -> i32 {
    current - changed_within(&history.scale_ups, period, now)
        + changed_within(&history.scale_downs, period, now)
}

fn scale_up_limit(current: i32, history: &History, rules: &Rules, now: Timestamp) -> i32 {
    let proposals = rules.policies.iter().map(|p| {
        let start = period_start(current, history, p.period, now);
        match p.type_ {
            PolicyType::Pods => start.saturating_add(p.value),
            PolicyType::Percent => {
                (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
            }
        }
    });
    match rules.select {
        Select::Disabled => current,
        Select::Min => proposals.min().unwrap_or(i32::MAX),
        Select::Max => proposals.max().unwrap_or(i32::MIN),
    }
}

fn scale_down_limit(current: i32, history: &History, rules: &Rules, now: Timestamp) -> i32 {
    let proposals = rules.policies.iter().map(|p| {
        let start = period_start(current, history, p.period, now);
        match p.type_ {
            PolicyType::Pods => start.saturating_sub(p.value),
            PolicyType::Percent => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        }
    });
    match rules.select {
        Select::Disabled => current,
        // The smallest change down is the highest proposal.
        Select::Min => proposals.max().unwrap_or(i32::MIN),
        Select::Max => proposals.min().unwrap_or(i32::MAX),
    }
}

/// Remembers a rescale from `previous` to `new` for the rate policies (only HPAs with
/// `behavior` use them), replacing events older than the longest period.
pub fn record_scale(
    history: &mut History,
    behavior: Option<&HorizontalPodAutoscalerBehavior>,
    downscale_window: Duration,
    previous: i32,
    new: i32,
    now: Timestamp,
) {
    let Some(b) = behavior else {
        return;
    };
    let (rules, events) = if new > previous {
        (
            Rules::resolve(b.scale_up.as_ref(), true, downscale_window),
            &mut history.scale_ups,
        )
    } else {
        (
            Rules::resolve(b.scale_down.as_ref(), false, downscale_window),
            &mut history.scale_downs,
        )
    };
    let longest = rules
        .policies
        .iter()
        .map(|p| p.period)
        .max()
        .unwrap_or_default();
    events.retain(|e| within(e.at, now, longest));
    events.push(Sample {
        value: (new - previous).abs(),
        at: now,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("ts")
    }

    const FIVE_MIN: Duration = Duration::from_secs(300);

    #[test]
    fn scale_down_waits_for_the_window_and_up_is_rate_limited() {
        let mut h = History::default();
        let n = without_behavior(&mut h, 5, 5, 1, 10, FIVE_MIN, ts(0));
        assert_eq!(
            (n.replicas, n.able_reason, n.limited),
            (5, "ReadyForNewScale", false)
        );
        // A lower recommendation a minute later is held at the recent high.
        let n = without_behavior(&mut h, 5, 2, 1, 10, FIVE_MIN, ts(60));
        assert_eq!((n.replicas, n.able_reason), (5, "ScaleDownStabilized"));
        // Once the window has passed, it goes through.
        let n = without_behavior(&mut h, 5, 2, 1, 10, FIVE_MIN, ts(400));
        assert_eq!(n.replicas, 2);
        // Up: at most max(2 × current, 4) at once, then maxReplicas.
        let n = without_behavior(&mut h, 2, 9, 1, 10, FIVE_MIN, ts(401));
        assert_eq!(
            (n.replicas, n.limited, n.limited_reason),
            (4, true, "ScaleUpLimit")
        );
        let n = without_behavior(&mut h, 8, 30, 1, 10, FIVE_MIN, ts(402));
        assert_eq!((n.replicas, n.limited_reason), (10, "TooManyReplicas"));
        let n = without_behavior(&mut h, 1, 0, 1, 10, Duration::ZERO, ts(403));
        assert_eq!((n.replicas, n.limited_reason), (1, "TooFewReplicas"));
    }

    #[test]
    fn behavior_windows_stabilize_both_ways() {
        let up = Rules {
            window: Duration::from_secs(60),
            ..Rules::resolve(None, true, FIVE_MIN)
        };
        let down = Rules::resolve(None, false, Duration::from_secs(30));
        let mut h = History::default();
        let n = with_behavior(&mut h, 3, 3, 1, 10, &up, &down, ts(0));
        assert_eq!(n.replicas, 3);
        // A spike within the scale-up window is held at the lowest recent recommendation.
        let n = with_behavior(&mut h, 3, 8, 1, 10, &up, &down, ts(10));
        assert_eq!((n.replicas, n.able_reason), (3, "ScaleUpStabilized"));
        // A dip within the scale-down window is held at the highest one.
        let n = with_behavior(&mut h, 3, 1, 1, 10, &up, &down, ts(20));
        assert_eq!((n.replicas, n.able_reason), (3, "ScaleDownStabilized"));
        // After both windows, a sustained recommendation goes through.
        let n = with_behavior(&mut h, 3, 1, 1, 10, &up, &down, ts(100));
        assert_eq!((n.replicas, n.limited), (1, false));
    }

    #[test]
    fn policies_limit_the_rate_from_the_period_start() {
        let up = Rules {
            window: Duration::ZERO,
            select: Select::Max,
            policies: vec![Policy {
                type_: PolicyType::Pods,
                value: 2,
                period: Duration::from_secs(60),
            }],
        };
        let down = Rules {
            window: Duration::ZERO,
            select: Select::Max,
            policies: vec![Policy {
                type_: PolicyType::Percent,
                value: 50,
                period: Duration::from_secs(60),
            }],
        };
        let mut h = History::default();
        let n = with_behavior(&mut h, 2, 10, 1, 20, &up, &down, ts(0));
        assert_eq!((n.replicas, n.limited_reason), (4, "ScaleUpLimit"));
        let behavior = HorizontalPodAutoscalerBehavior::default();
        record_scale(&mut h, Some(&behavior), FIVE_MIN, 2, 4, ts(0));
        // Within the same minute, 2 pods were already added: no more.
        let n = with_behavior(&mut h, 4, 10, 1, 20, &up, &down, ts(30));
        assert_eq!(n.replicas, 4);
        // A minute later the period starts afresh.
        let n = with_behavior(&mut h, 4, 10, 1, 20, &up, &down, ts(61));
        assert_eq!(n.replicas, 6);
        // Down by at most half; `Disabled` not at all.
        let n = with_behavior(&mut h, 8, 1, 1, 20, &up, &down, ts(200));
        assert_eq!((n.replicas, n.limited_reason), (4, "ScaleDownLimit"));
        let disabled = Rules {
            select: Select::Disabled,
            ..down.clone()
        };
        let n = with_behavior(&mut h, 8, 1, 1, 20, &up, &disabled, ts(300));
        assert_eq!(n.replicas, 8);
    }

    #[test]
    fn rules_default_as_upstream() {
        let up = Rules::resolve(None, true, FIVE_MIN);
        assert_eq!(up.window, Duration::ZERO);
        assert_eq!(up.policies.len(), 2);
        let given = HPAScalingRules {
            stabilization_window_seconds: None,
            select_policy: Some("Min".into()),
            policies: None,
            tolerance: None,
        };
        let down = Rules::resolve(Some(&given), false, Duration::from_secs(42));
        assert_eq!(down.window, Duration::from_secs(42));
        assert_eq!(down.select, Select::Min);
        assert_eq!(down.policies[0].value, 100);
    }
}
