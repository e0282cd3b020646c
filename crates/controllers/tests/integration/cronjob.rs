//! The CronJob controller against a real in-process server. Its clock runs 60 times
//! faster than real time, so `* * * * *` fires every real second: the schedule logic
//! itself is covered by unit tests against an injected `now`; these tests check the
//! Jobs it creates (names, annotation, owner, labels), status, history limits,
//! concurrency policies and events.

use crate::batch_support;
use crate::common;

use batch_support::*;
use common::*;
use controllers::clock::Clock;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

/// A minute of CronJob time per real second.
const RATE: u32 = 60;

async fn start() -> anyhow::Result<Cluster> {
    let options = controllers::options::ControllerOptions {
        clock: Clock::scaled(Timestamp::now(), RATE),
        ..fast_options()
    };
    Cluster::start(options, 1).await
}

fn cronjob(name: &str, spec: Value, template: Value) -> CronJob {
    let mut spec = spec;
    spec["schedule"] = json!(spec.get("schedule").cloned().unwrap_or(json!("* * * * *")));
    spec["jobTemplate"] = json!({
        "metadata": {"labels": {"cron": name}},
        "spec": {"backoffLimit": 0, "template": template},
    });
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("cronjob manifest")
}

async fn jobs_of(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<Vec<Job>> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default().labels(&format!("cron={name}")))
        .await?
        .items)
}

fn finished(j: &Job, type_: &str) -> bool {
    is_true(j, type_)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_minute_schedule_creates_jobs_and_keeps_history_limits() -> anyhow::Result<()> {
    let cluster = start().await?;
    let client = cluster.client();
    let ns = "cron-history";
    namespace(&client, ns).await?;
    let cjs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    let cj = cronjob(
        "tick",
        json!({"successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 1}),
        pod_template(Some(0), 0.0),
    );
    let created = cjs.create(&PostParams::default(), &cj).await?;
    let uid = created.metadata.uid.clone().unwrap_or_default();

    // The first Job: named after its scheduled minute, annotated with the time.
    let first = wait_for("first job", || async {
        Ok(jobs_of(&client, ns, "tick").await?.into_iter().next())
    })
    .await?;
    let name = first.metadata.name.clone().unwrap_or_default();
    let annotations = first.metadata.annotations.clone().unwrap_or_default();
    let stamp: Timestamp = annotations
        .get("batch.kubernetes.io/cronjob-scheduled-timestamp")
        .expect("scheduled-timestamp annotation")
        .parse()?;
    assert_eq!(stamp.as_second() % 60, 0, "activations are on the minute");
    assert_eq!(name, format!("tick-{}", stamp.as_second() / 60));
    let owner = &first.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("CronJob", uid.as_str(), Some(true))
    );

    // Several activations later, only the two newest successful Jobs are kept.
    wait_for("five jobs created", || async {
        let events = events_for(&client, ns, "tick").await?;
        let n = events
            .iter()
            .filter(|(r, _)| r == "SuccessfulCreate")
            .count();
        Ok((n >= 5).then_some(()))
    })
    .await?;
    cjs.patch(
        "tick",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"suspend": true}})),
    )
    .await?;
    let kept = wait_for("history trimmed to 2", || async {
        let jobs = jobs_of(&client, ns, "tick").await?;
        let all_done = jobs.iter().all(|j| finished(j, "Complete"));
        Ok((all_done && jobs.len() == 2).then_some(jobs))
    })
    .await?;
    // Events follow the deletions they report.
    let events = wait_for("deletion events", || async {
        let events = events_for(&client, ns, "tick").await?;
        let deleted = events.iter().any(|(r, _)| r == "SuccessfulDelete");
        let seen = events.iter().any(|(r, _)| r == "SawCompletedJob");
        Ok((deleted && seen).then_some(events))
    })
    .await?;
    let created: Vec<String> = events
        .iter()
        .filter(|(r, _)| r == "SuccessfulCreate")
        .map(|(_, m)| m.trim_start_matches("Created job ").to_string())
        .collect();
    let mut newest = created.clone();
    newest.sort();
    let newest: Vec<String> = newest.into_iter().rev().take(2).collect();
    let mut kept: Vec<String> = kept
        .iter()
        .map(|j| j.metadata.name.clone().unwrap_or_default())
        .collect();
    kept.sort();
    kept.reverse();
    assert_eq!(kept, newest, "the newest two are kept");
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "SuccessfulDelete" && m.starts_with("Deleted job tick-")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "SawCompletedJob" && m.ends_with(", condition: Complete")),
        "{events:?}"
    );

    let status = wait_for("status settles", || async {
        let s = cjs.get("tick").await?.status.unwrap_or_default();
        Ok(s.active.as_ref().is_none_or(Vec::is_empty).then_some(s))
    })
    .await?;
    let last = status.last_schedule_time.expect("lastScheduleTime").0;
    assert_eq!(last.as_second() % 60, 0);
    assert!(status.last_successful_time.is_some());
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_history_limit_and_forbid_policy() -> anyhow::Result<()> {
    let cluster = start().await?;
    let client = cluster.client();
    let ns = "cron-forbid";
    namespace(&client, ns).await?;
    let cjs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    // Every Job fails at once; only the newest failed one is kept.
    let failing = cronjob(
        "oops",
        json!({"failedJobsHistoryLimit": 1}),
        pod_template(Some(1), 0.0),
    );
    cjs.create(&PostParams::default(), &failing).await?;
    // Never finishes: Forbid keeps it the only one.
    let forbid = cronjob(
        "solo",
        json!({"concurrencyPolicy": "Forbid"}),
        pod_template(None, 0.0),
    );
    cjs.create(&PostParams::default(), &forbid).await?;

    wait_for("forbid skips activations", || async {
        let skipped = event_count(&client, ns, "solo", "JobAlreadyActive").await?;
        Ok((skipped >= 2).then_some(()))
    })
    .await?;
    let solo = jobs_of(&client, ns, "solo").await?;
    assert_eq!(solo.len(), 1, "Forbid never runs two at once");
    let events = events_for(&client, ns, "solo").await?;
    assert!(events.contains(&(
        "JobAlreadyActive".into(),
        "Not starting job because prior execution is running and concurrency policy is Forbid"
            .into()
    )));
    let status = cjs.get("solo").await?.status.unwrap_or_default();
    let active = status.active.unwrap_or_default();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].name, solo[0].metadata.name);
    assert_eq!(
        (active[0].kind.as_deref(), active[0].api_version.as_deref()),
        (Some("Job"), Some("batch/v1"))
    );

    wait_for("failed jobs trimmed to 1", || async {
        let events = events_for(&client, ns, "oops").await?;
        let created = events
            .iter()
            .filter(|(r, _)| r == "SuccessfulCreate")
            .count();
        let jobs = jobs_of(&client, ns, "oops").await?;
        let failed = jobs.iter().filter(|j| finished(j, "Failed")).count();
        Ok((created >= 3 && failed == 1).then_some(()))
    })
    .await?;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_policy_deletes_the_running_job() -> anyhow::Result<()> {
    let cluster = start().await?;
    let client = cluster.client();
    let ns = "cron-replace";
    namespace(&client, ns).await?;
    let cjs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    let cj = cronjob(
        "swap",
        json!({"concurrencyPolicy": "Replace", "timeZone": "Asia/Kolkata"}),
        pod_template(None, 0.0),
    );
    cjs.create(&PostParams::default(), &cj).await?;
    let first = wait_for("first job", || async {
        Ok(jobs_of(&client, ns, "swap").await?.into_iter().next())
    })
    .await?;
    let first_name = first.metadata.name.clone().unwrap_or_default();
    // The scheduled time is written in the CronJob's zone.
    let stamp = first
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .get("batch.kubernetes.io/cronjob-scheduled-timestamp")
        .cloned()
        .unwrap_or_default();
    assert!(stamp.ends_with("+05:30"), "{stamp}");
    wait_for("first job replaced", || async {
        let events = events_for(&client, ns, "swap").await?;
        let deleted = events.contains(&(
            "SuccessfulDelete".into(),
            format!("Deleted job {first_name}"),
        ));
        Ok(deleted.then_some(()))
    })
    .await?;
    // The status write follows the event: wait for it, then there is one active Job.
    wait_for("replacement in status", || async {
        let active = cjs
            .get("swap")
            .await?
            .status
            .unwrap_or_default()
            .active
            .unwrap_or_default();
        let replaced = active.len() == 1 && active[0].name.as_deref() != Some(first_name.as_str());
        Ok(replaced.then_some(()))
    })
    .await?;
    // A replaced Job is gone, not left running beside its successor.
    wait_for("at most one job running", || async {
        let running = jobs_of(&client, ns, "swap")
            .await?
            .into_iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .count();
        Ok((running <= 1).then_some(()))
    })
    .await?;
    cluster.stop().await;
    Ok(())
}

/// The real clock end to end (`rkube server` defaults): a `* * * * *` CronJob has its
/// first Job within 70 s. It can wait a whole minute, so it runs only when
/// `RKUBE_SLOW_TESTS` is set; the tests above cover the same path on a fast clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_minute_schedule_fires_on_the_real_clock() -> anyhow::Result<()> {
    if std::env::var_os("RKUBE_SLOW_TESTS").is_none() {
        eprintln!("skipping: set RKUBE_SLOW_TESTS to wait for a real minute");
        return Ok(());
    }
    let cluster = Cluster::start_as_server(1).await?;
    let client = cluster.client();
    let ns = "cron-real";
    namespace(&client, ns).await?;
    let cjs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    let cj = cronjob("minutely", json!({}), pod_template(Some(0), 0.0));
    cjs.create(&PostParams::default(), &cj).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(70);
    let job = loop {
        if let Some(j) = jobs_of(&client, ns, "minutely").await?.into_iter().next() {
            break j;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "no Job within 70 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let stamp: Timestamp = job
        .metadata
        .annotations
        .unwrap_or_default()
        .get("batch.kubernetes.io/cronjob-scheduled-timestamp")
        .cloned()
        .unwrap_or_default()
        .parse()?;
    let late = Timestamp::now().duration_since(stamp).as_secs_f64();
    assert!(
        (0.0..10.0).contains(&late),
        "created {late} s after its minute"
    );
    cluster.stop().await;
    Ok(())
}
