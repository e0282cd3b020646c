//! Scheduling decisions against an injected `now`.

use super::*;
use crate::cronjob::schedule::parse_standard;
use k8s_openapi::api::batch::v1::{CronJobSpec, CronJobStatus, JobStatus, JobTemplateSpec};
use k8s_openapi::api::core::v1::ObjectReference;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("timestamp {s}: {e}"))
}

fn cronjob(schedule: &str, created: &str) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            name: Some("hello".into()),
            namespace: Some("ns".into()),
            uid: Some("cj-uid".into()),
            creation_timestamp: Some(Time(ts(created))),
            ..Default::default()
        },
        spec: Some(CronJobSpec {
            schedule: schedule.into(),
            concurrency_policy: Some("Allow".into()),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([("app".to_string(), "hello".to_string())].into()),
                    annotations: Some([("note".to_string(), "x".to_string())].into()),
                    ..Default::default()
                }),
                spec: Some(Default::default()),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn sched(cj: &CronJob) -> Schedule {
    let spec = cj.spec.clone().unwrap_or_default();
    let tz = spec.time_zone.unwrap_or_else(|| "UTC".into());
    parse_standard(&format!("TZ={tz} {}", spec.schedule)).expect("schedule")
}

fn with_last(mut cj: CronJob, last: &str) -> CronJob {
    cj.status
        .get_or_insert_with(CronJobStatus::default)
        .last_schedule_time = Some(Time(ts(last)));
    cj
}

fn with_active(mut cj: CronJob, name: &str) -> CronJob {
    cj.status
        .get_or_insert_with(CronJobStatus::default)
        .active
        .get_or_insert_with(Vec::new)
        .push(ObjectReference {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            ..Default::default()
        });
    cj
}

fn with_policy(mut cj: CronJob, policy: &str) -> CronJob {
    if let Some(s) = cj.spec.as_mut() {
        s.concurrency_policy = Some(policy.into());
    }
    cj
}

#[test]
fn nothing_is_due_before_the_first_activation() {
    let cj = cronjob("* * * * *", "2024-05-01T10:00:30Z");
    let s = sched(&cj);
    let now = ts("2024-05-01T10:00:50Z");
    let r = most_recent_schedule_time(&cj, now, &s, true).expect("recent");
    assert_eq!(r.most_recent, None);
    assert_eq!(r.missed, Missed::None);
    // Next activation 10:01:00, 10 s away, plus the padding.
    assert_eq!(
        decide(&cj, now, &s).0,
        Ok(Decision::Wait(
            Duration::from_secs(10) + NEXT_SCHEDULE_DELTA
        ))
    );
}

#[test]
fn the_due_activation_starts_a_job_and_requeues_for_the_next() {
    let cj = cronjob("* * * * *", "2024-05-01T10:00:30Z");
    let s = sched(&cj);
    let now = ts("2024-05-01T10:01:05Z");
    let (d, many) = decide(&cj, now, &s);
    assert!(!many);
    assert_eq!(
        d,
        Ok(Decision::Start {
            scheduled: ts("2024-05-01T10:01:00Z"),
            replace: false,
            requeue: Duration::from_secs(55) + NEXT_SCHEDULE_DELTA,
        })
    );
    // Once recorded as last scheduled, the same activation is not started again.
    let done = with_last(cj.clone(), "2024-05-01T10:01:00Z");
    assert_eq!(
        decide(&done, now, &s).0,
        Ok(Decision::Wait(
            Duration::from_secs(55) + NEXT_SCHEDULE_DELTA
        ))
    );
    // A Job of that name in the active list also counts as started.
    let active = with_active(cj, "hello-28575961");
    assert!(matches!(
        decide(&active, now, &s).0,
        Ok(Decision::AlreadyStarted(_))
    ));
}

#[test]
fn only_the_most_recent_missed_activation_starts() {
    let cj = cronjob("*/5 * * * *", "2024-05-01T10:00:00Z");
    let s = sched(&cj);
    let now = ts("2024-05-01T10:23:00Z");
    let r = most_recent_schedule_time(&cj, now, &s, true).expect("recent");
    assert_eq!(r.most_recent, Some(ts("2024-05-01T10:20:00Z")));
    assert_eq!(r.missed, Missed::Few);
    assert!(matches!(
        decide(&cj, now, &s).0,
        Ok(Decision::Start { scheduled, .. }) if scheduled == ts("2024-05-01T10:20:00Z")
    ));
    // Requeue for 10:25 from now.
    assert_eq!(
        next_schedule_time_duration(&cj, now, &s),
        Duration::from_secs(120) + NEXT_SCHEDULE_DELTA
    );
}

#[test]
fn too_many_missed_times_still_start_the_latest_and_warn() {
    let cj = cronjob("* * * * *", "2024-05-01T00:00:00Z");
    let s = sched(&cj);
    let now = ts("2024-05-01T05:00:30Z");
    let r = most_recent_schedule_time(&cj, now, &s, true).expect("recent");
    assert_eq!(r.missed, Missed::Many);
    let (d, many) = decide(&cj, now, &s);
    assert!(many);
    assert!(
        matches!(d, Ok(Decision::Start { scheduled, .. }) if scheduled == ts("2024-05-01T05:00:00Z"))
    );
}

#[test]
fn starting_deadline_bounds_the_look_back() {
    let mut cj = cronjob("0 * * * *", "2024-05-01T00:00:30Z");
    if let Some(s) = cj.spec.as_mut() {
        s.starting_deadline_seconds = Some(60);
    }
    let s = sched(&cj);
    // 12:00 was 30 s ago: within the deadline.
    let (d, many) = decide(&cj, ts("2024-05-01T12:00:30Z"), &s);
    assert!(!many, "the deadline keeps the missed count small");
    assert!(
        matches!(d, Ok(Decision::Start { scheduled, .. }) if scheduled == ts("2024-05-01T12:00:00Z"))
    );
    // 12:00 was 5 min ago: too old to start; wait for 13:00.
    let (d, _) = decide(&cj, ts("2024-05-01T12:05:00Z"), &s);
    assert_eq!(
        d,
        Ok(Decision::Wait(
            Duration::from_secs(55 * 60) + NEXT_SCHEDULE_DELTA
        ))
    );
}

#[test]
fn concurrency_policies() {
    let now = ts("2024-05-01T10:02:05Z");
    let base = with_last(
        cronjob("* * * * *", "2024-05-01T10:00:00Z"),
        "2024-05-01T10:01:00Z",
    );
    let s = sched(&base);
    let running = with_active(base.clone(), "hello-28575961");
    assert!(matches!(
        decide(&running, now, &s).0,
        Ok(Decision::Start { replace: false, .. })
    ));
    let forbid = with_policy(running.clone(), "Forbid");
    assert_eq!(
        decide(&forbid, now, &s).0,
        Ok(Decision::ForbiddenByActive(
            Duration::from_secs(55) + NEXT_SCHEDULE_DELTA
        ))
    );
    let replace = with_policy(running, "Replace");
    assert!(matches!(
        decide(&replace, now, &s).0,
        Ok(Decision::Start { replace: true, .. })
    ));
    // Forbid without an active Job starts normally.
    let idle = with_policy(base, "Forbid");
    assert!(matches!(
        decide(&idle, now, &s).0,
        Ok(Decision::Start { .. })
    ));
}

#[test]
fn schedules_that_never_fire_are_invalid() {
    let cj = cronjob("0 0 30 2 *", "2024-05-01T10:00:00Z");
    let s = sched(&cj);
    assert_eq!(
        decide(&cj, ts("2024-05-02T00:00:00Z"), &s).0,
        Err("time difference between two schedules is less than 1 second".into())
    );
}

#[test]
fn time_zone_schedules_fire_at_local_times() {
    let mut cj = cronjob("0 9 * * *", "2024-07-01T00:00:00Z");
    if let Some(s) = cj.spec.as_mut() {
        s.time_zone = Some("America/New_York".into());
    }
    let s = sched(&cj);
    let (d, _) = decide(&cj, ts("2024-07-01T13:00:10Z"), &s);
    let Ok(Decision::Start { scheduled, .. }) = d else {
        panic!("expected a start, got {d:?}");
    };
    assert_eq!(scheduled, ts("2024-07-01T13:00:00Z"));
    let job = job_from_template(&cj, scheduled, &s);
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get(SCHEDULED_TIMESTAMP_ANNOTATION)
            .map(String::as_str),
        Some("2024-07-01T09:00:00-04:00")
    );
}

#[test]
fn jobs_are_named_by_minute_and_carry_the_template() {
    let cj = cronjob("* * * * *", "2024-05-01T10:00:00Z");
    let s = sched(&cj);
    let t = ts("2024-05-01T10:01:00Z");
    assert_eq!(job_name(&cj, t), format!("hello-{}", t.as_second() / 60));
    assert_eq!(job_name(&cj, t), "hello-28575961");
    let job = job_from_template(&cj, t, &s);
    assert_eq!(job.metadata.name.as_deref(), Some("hello-28575961"));
    assert_eq!(job.metadata.namespace.as_deref(), Some("ns"));
    let labels = job.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("app").map(String::as_str), Some("hello"));
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("note").map(String::as_str), Some("x"));
    assert_eq!(
        annotations
            .get(SCHEDULED_TIMESTAMP_ANNOTATION)
            .map(String::as_str),
        Some("2024-05-01T10:01:00Z")
    );
    let owner = &job.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.api_version.as_str(),
            owner.uid.as_str(),
            owner.controller
        ),
        ("CronJob", "batch/v1", "cj-uid", Some(true))
    );
}

#[test]
fn history_cleanup_removes_the_oldest_started_first() {
    let job = |name: &str, start: Option<&str>| Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: None,
        status: Some(JobStatus {
            start_time: start.map(|s| Time(ts(s))),
            ..Default::default()
        }),
    };
    let jobs = [
        job("c", Some("2024-05-01T10:03:00Z")),
        job("never", None),
        job("a", Some("2024-05-01T10:01:00Z")),
        job("b", Some("2024-05-01T10:01:00Z")),
    ];
    let names = |v: Vec<&Job>| -> Vec<String> {
        v.iter()
            .map(|j| j.metadata.name.clone().unwrap_or_default())
            .collect()
    };
    assert_eq!(
        names(oldest_beyond_limit(jobs.iter().collect(), 2)),
        ["a", "b"]
    );
    assert_eq!(
        names(oldest_beyond_limit(jobs.iter().collect(), 0)),
        ["a", "b", "c", "never"]
    );
    assert!(oldest_beyond_limit(jobs.iter().collect(), 4).is_empty());
}

#[test]
fn miss_schedule_events_print_rfc1123z() {
    assert_eq!(
        rfc1123z(ts("2024-05-01T10:01:00Z")),
        "Wed, 01 May 2024 10:01:00 +0000"
    );
}
