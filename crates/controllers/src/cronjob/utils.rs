//! The CronJob controller's decisions that depend only on the CronJob, its schedule
//! and the time (upstream `utils.go` and the middle of `syncCronJob`), kept free of IO
//! so they can be tested against any clock.
//!
//! The schedule is walked from the last scheduled time (or the CronJob's creation):
//! only the most recent missed activation is started, never a backlog. When more than
//! 100 were missed the controller warns (`TooManyMissedTimes`) but still starts the
//! most recent one; `startingDeadlineSeconds` both bounds how far back to look and
//! skips an activation started too late (`MissSchedule`).

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::schedule::Schedule;
use crate::controller_utils::controller_ref;

/// Annotation on created Jobs with their scheduled time (RFC 3339, in the CronJob's zone).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Padding added to every requeue so the sync lands just after the activation
/// (upstream `nextScheduleDelta`).
pub const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// How many activations were missed since the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    /// More than 100.
    Many,
}

/// The outcome of [`most_recent_schedule_time`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recent {
    /// The last scheduled time, or the CronJob's creation, or the deadline bound.
    pub earliest: Timestamp,
    /// The latest activation in `(earliest, now]`, if any.
    pub most_recent: Option<Timestamp>,
    pub missed: Missed,
}

fn creation(cj: &CronJob) -> Timestamp {
    cj.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn secs(d: i64) -> Duration {
    Duration::from_secs(u64::try_from(d).unwrap_or(0))
}

/// Upstream `mostRecentScheduleTime`. `Err` for a schedule that parses but never
/// fires (less than a second between two activations, e.g. `0 0 30 2 *`).
pub fn most_recent_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    schedule: &Schedule,
    include_starting_deadline: bool,
) -> Result<Recent, String> {
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0)
        .unwrap_or_else(|| creation(cj));
    let deadline = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds);
    if let (true, Some(sds)) = (include_starting_deadline, deadline) {
        // Nothing older than the deadline will be started.
        let bound = now.checked_sub(secs(sds)).unwrap_or(Timestamp::MIN);
        if bound > earliest {
            earliest = bound;
        }
    }
    let none = |missed| Recent {
        earliest,
        most_recent: None,
        missed,
    };
    let invalid = || "time difference between two schedules is less than 1 second".to_string();
    let Some(t1) = schedule.next(earliest) else {
        return Err(invalid());
    };
    if now < t1 {
        return Ok(none(Missed::None));
    }
    let Some(t2) = schedule.next(t1) else {
        return Err(invalid());
    };
    if now < t2 {
        return Ok(Recent {
            earliest,
            most_recent: Some(t1),
            missed: Missed::None,
        });
    }
    let between = t2.duration_since(t1).as_secs_f64().round() as i64;
    if between < 1 {
        return Err(invalid());
    }
    // Estimate how many fit between t1 and now, jump close to the end, then walk.
    let elapsed = now.duration_since(t1).as_secs();
    let missed_count = elapsed / between + 1;
    let back = (missed_count - 2).max(0).saturating_mul(between);
    let mut t = t1
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(back))
        .unwrap_or(t1);
    let mut most_recent = None;
    while let Some(next) = schedule.next(t) {
        if next > now {
            break;
        }
        most_recent = Some(next);
        t = next;
    }
    let missed = if missed_count > 100 {
        Missed::Many
    } else if missed_count > 0 {
        Missed::Few
    } else {
        Missed::None
    };
    Ok(Recent {
        earliest,
        most_recent,
        missed,
    })
}

/// How long until the activation after the most recent one, plus
/// [`NEXT_SCHEDULE_DELTA`] (upstream `nextScheduleTimeDuration`).
pub fn next_schedule_time_duration(cj: &CronJob, now: Timestamp, schedule: &Schedule) -> Duration {
    let from = match most_recent_schedule_time(cj, now, schedule, false) {
        Err(_) => now,
        Ok(r) => match r.most_recent {
            Some(t) => t,
            None if r.missed == Missed::None => r.earliest,
            None => now,
        },
    };
    let Some(next) = schedule.next(from) else {
        // Never again: look once a day in case the spec changes meanwhile.
        return Duration::from_secs(24 * 3600);
    };
    let wait = if next > now {
        Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO)
    } else {
        Duration::ZERO
    };
    wait + NEXT_SCHEDULE_DELTA
}

/// What one sync should do once the active list is reconciled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing due; sync again after the delay.
    Wait(Duration),
    /// The activation is past `startingDeadlineSeconds`.
    TooLate {
        scheduled: Timestamp,
        requeue: Duration,
    },
    /// The activation already has its Job.
    AlreadyStarted(Duration),
    /// `Forbid` and a Job is still running.
    ForbiddenByActive(Duration),
    /// Start a Job for `scheduled`, first deleting the active ones if `replace`.
    Start {
        scheduled: Timestamp,
        replace: bool,
        requeue: Duration,
    },
}

/// The scheduling part of upstream `syncCronJob`, for a CronJob that is not suspended
/// and whose schedule parsed. `Err` is the message of an `InvalidSchedule` event; the
/// flag says more than 100 activations were missed (`TooManyMissedTimes`).
pub fn decide(
    cj: &CronJob,
    now: Timestamp,
    schedule: &Schedule,
) -> (Result<Decision, String>, bool) {
    let recent = most_recent_schedule_time(cj, now, schedule, true);
    let requeue = next_schedule_time_duration(cj, now, schedule);
    let recent = match recent {
        Err(e) => return (Err(e), false),
        Ok(r) => r,
    };
    let many = recent.missed == Missed::Many;
    let Some(scheduled) = recent.most_recent.filter(|t| *t <= now) else {
        return (Ok(Decision::Wait(requeue)), false);
    };
    let spec = cj.spec.clone().unwrap_or_default();
    if let Some(sds) = spec.starting_deadline_seconds {
        let late = scheduled
            .checked_add(secs(sds))
            .map(|deadline| deadline < now)
            .unwrap_or(false);
        if late {
            return (Ok(Decision::TooLate { scheduled, requeue }), many);
        }
    }
    let status = cj.status.clone().unwrap_or_default();
    let name = job_name(cj, scheduled);
    let active = status.active.clone().unwrap_or_default();
    let in_active = active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()));
    let last = status.last_schedule_time.as_ref().map(|t| t.0);
    if in_active || last == Some(scheduled) {
        return (Ok(Decision::AlreadyStarted(requeue)), many);
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        return (Ok(Decision::ForbiddenByActive(requeue)), many);
    }
    (
        Ok(Decision::Start {
            scheduled,
            replace: policy == "Replace",
            requeue,
        }),
        many,
    )
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`: one name per activation, so
/// a Job is never created twice for it.
pub fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!(
        "{}-{}",
        cj.metadata.name.as_deref().unwrap_or(""),
        scheduled.as_second().div_euclid(60)
    )
}

/// The Job for one activation (upstream `getJobFromTemplate2`).
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp, schedule: &Schedule) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let template = spec.job_template;
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let stamp = scheduled.to_zoned(schedule.time_zone().clone());
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.to_string(),
        stamp
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            creation_timestamp: Some(Time(scheduled)),
            owner_references: Some(vec![controller_ref(&cj.metadata, "batch/v1", "CronJob")]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// The finished condition type (`Complete` or `Failed`) of a Job, if finished.
pub fn finished_type(job: &Job) -> Option<&str> {
    crate::job::finished_condition(job).map(|c| c.type_.as_str())
}

/// The oldest Jobs beyond `limit`, by start time (unstarted last), then name.
pub fn oldest_beyond_limit(mut jobs: Vec<&Job>, limit: i32) -> Vec<&Job> {
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    if jobs.len() <= limit {
        return Vec::new();
    }
    let start = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
    };
    jobs.sort_by(|a, b| match (start(a), start(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => a.metadata.name.cmp(&b.metadata.name),
    });
    let n = jobs.len() - limit;
    jobs.truncate(n);
    jobs
}

/// Go's `time.RFC1123Z` in UTC, as the `MissSchedule` event prints it.
pub fn rfc1123z(t: Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

#[cfg(test)]
#[path = "utils_tests.rs"]
mod tests;
