//! kube-scheduler's metrics, with upstream's names: `scheduler_schedule_attempts_total`
//! by result and `scheduler_scheduling_attempt_duration_seconds`.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::schedule_one::CycleOutcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    result: &'static str,
    profile: &'static str,
}

struct Metrics {
    attempts: Family<AttemptLabels, Counter>,
    durations: Family<AttemptLabels, Histogram>,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = Metrics {
            attempts: Family::default(),
            // Upstream: 1 ms doubling over 15 buckets.
            durations: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 15))),
        };
        component_base::metrics::register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
            m.attempts.clone(),
        );
        component_base::metrics::register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            m.durations.clone(),
        );
        m
    })
}

/// Counts one scheduling cycle.
pub fn record_attempt(outcome: &CycleOutcome, elapsed: Duration) {
    let result = match outcome {
        CycleOutcome::Scheduled { .. } => "scheduled",
        CycleOutcome::Unschedulable { .. } => "unschedulable",
        CycleOutcome::Error(_) => "error",
    };
    let labels = AttemptLabels {
        result,
        profile: crate::DEFAULT_SCHEDULER_NAME,
    };
    metrics().attempts.get_or_create(&labels).inc();
    metrics()
        .durations
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
}
