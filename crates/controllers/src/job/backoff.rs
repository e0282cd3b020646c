//! The delay before a Job replaces failed pods (upstream `backoff_utils.go`): after
//! `n` consecutive failures (failures since the last success) the next pod waits
//! `base * 2^(n-1)`, capped, counted from when the last failed pod finished. The record
//! lives in memory only, like upstream's: a restarted controller starts over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;

/// Failures since the last success, and when the last of them finished.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    pub failures_after_last_success: u32,
    pub last_failure_time: Option<Timestamp>,
}

impl BackoffRecord {
    /// How long pod creation must still wait at `now`.
    pub fn remaining(&self, now: Timestamp, base: Duration, max: Duration) -> Duration {
        let Some(last) = self.last_failure_time else {
            return Duration::ZERO;
        };
        if self.failures_after_last_success == 0 {
            return Duration::ZERO;
        }
        let mut backoff = base;
        for _ in 1..self.failures_after_last_success {
            backoff = backoff.saturating_mul(2);
            if backoff >= max {
                backoff = max;
                break;
            }
        }
        let elapsed = if now > last {
            Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO)
        } else {
            Duration::ZERO
        };
        backoff.saturating_sub(elapsed)
    }
}

/// Backoff records by Job key.
#[derive(Debug, Default)]
pub struct BackoffStore {
    records: Mutex<HashMap<String, BackoffRecord>>,
}

impl BackoffStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BackoffRecord>> {
        self.records
            .lock()
            .expect("invariant: backoff store lock is never poisoned")
    }

    /// The record as it will be once the newly finished pods are counted (upstream
    /// `newBackoffRecord`); stored with [`BackoffStore::update`] after the status write.
    pub fn next_record(
        &self,
        key: &str,
        new_succeeded: &[Arc<Pod>],
        new_failed: &[Arc<Pod>],
    ) -> BackoffRecord {
        let old = self.lock().get(key).cloned().unwrap_or_default();
        compute_record(old, new_succeeded, new_failed)
    }

    pub fn update(&self, key: &str, record: BackoffRecord) {
        self.lock().insert(key.to_string(), record);
    }

    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Upstream `newBackoffRecord` without the store.
pub fn compute_record(
    old: BackoffRecord,
    new_succeeded: &[Arc<Pod>],
    new_failed: &[Arc<Pod>],
) -> BackoffRecord {
    let mut failed: Vec<Timestamp> = new_failed.iter().map(|p| finished_time(p)).collect();
    failed.sort();
    let last_success = new_succeeded.iter().map(|p| finished_time(p)).max();
    match last_success {
        None => {
            let Some(last) = failed.last().copied() else {
                return old;
            };
            BackoffRecord {
                failures_after_last_success: old
                    .failures_after_last_success
                    .saturating_add(u32::try_from(failed.len()).unwrap_or(u32::MAX)),
                last_failure_time: Some(last),
            }
        }
        Some(success) => {
            let after: Vec<Timestamp> = failed.into_iter().filter(|t| *t > success).collect();
            BackoffRecord {
                failures_after_last_success: u32::try_from(after.len()).unwrap_or(u32::MAX),
                last_failure_time: after.last().copied(),
            }
        }
    }
}

/// When a pod finished (upstream `getFinishedTime`): the latest container finish if all
/// containers terminated, else the `Ready=False` transition, else the deletion time
/// minus its grace period, else the creation time.
pub fn finished_time(p: &Pod) -> Timestamp {
    let status = p.status.as_ref();
    if let Some(t) = latest_finish(status.and_then(|s| s.container_statuses.as_deref())) {
        return t;
    }
    let ready_false = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    if let Some(t) = ready_false {
        return t;
    }
    if let Some(d) = &p.metadata.deletion_timestamp {
        let grace = p.metadata.deletion_grace_period_seconds.unwrap_or(0).max(0);
        let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        return d.0.checked_sub(grace).unwrap_or(d.0);
    }
    p.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn latest_finish(statuses: Option<&[ContainerStatus]>) -> Option<Timestamp> {
    let statuses = statuses?;
    let mut latest: Option<Timestamp> = None;
    for cs in statuses {
        let t = cs
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref())
            .map(|t| t.0)?;
        latest = Some(latest.map_or(t, |l| l.max(t)));
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    fn finished_at(s: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta::default(),
            spec: None,
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "c".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            finished_at: Some(Time(ts(s))),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn delay_doubles_from_the_base_and_is_capped() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(360);
        let rec = |n| BackoffRecord {
            failures_after_last_success: n,
            last_failure_time: Some(ts(100)),
        };
        assert_eq!(rec(0).remaining(ts(100), base, max), Duration::ZERO);
        assert_eq!(
            rec(1).remaining(ts(100), base, max),
            Duration::from_secs(10)
        );
        assert_eq!(rec(1).remaining(ts(104), base, max), Duration::from_secs(6));
        assert_eq!(rec(1).remaining(ts(200), base, max), Duration::ZERO);
        assert_eq!(
            rec(3).remaining(ts(100), base, max),
            Duration::from_secs(40)
        );
        assert_eq!(rec(30).remaining(ts(100), base, max), max);
    }

    #[test]
    fn records_count_failures_since_the_last_success() {
        let r = compute_record(
            BackoffRecord::default(),
            &[],
            &[finished_at(5), finished_at(3)],
        );
        assert_eq!(r.failures_after_last_success, 2);
        assert_eq!(r.last_failure_time, Some(ts(5)));
        let r = compute_record(r, &[], &[finished_at(9)]);
        assert_eq!(r.failures_after_last_success, 3);
        // A success resets; only failures after it count.
        let r = compute_record(r, &[finished_at(10)], &[finished_at(8), finished_at(12)]);
        assert_eq!(r.failures_after_last_success, 1);
        assert_eq!(r.last_failure_time, Some(ts(12)));
        let r = compute_record(r, &[finished_at(20)], &[]);
        assert_eq!(r, BackoffRecord::default());
    }

    #[test]
    fn finish_time_falls_back_to_conditions_deletion_and_creation() {
        let mut p = Pod::default();
        p.metadata.creation_timestamp = Some(Time(ts(1)));
        assert_eq!(finished_time(&p), ts(1));
        p.metadata.deletion_timestamp = Some(Time(ts(50)));
        p.metadata.deletion_grace_period_seconds = Some(30);
        assert_eq!(finished_time(&p), ts(20));
        p.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                last_transition_time: Some(Time(ts(7))),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(finished_time(&p), ts(7));
        assert_eq!(finished_time(&finished_at(9)), ts(9));
    }
}
