//! The Job and TTL-after-finished controllers against a real in-process server, with
//! virtual nodes running the pods to the exit codes the tests choose: completions and
//! parallelism (proved with a watch), backoffLimit, Indexed mode, activeDeadlineSeconds,
//! podFailurePolicy, suspend/resume, pod tracking finalizers, status, events, TTL.

use crate::batch_support;
use crate::common;

use batch_support::*;
use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const TRACKING: &str = "batch.kubernetes.io/job-tracking";
const INDEX: &str = "batch.kubernetes.io/job-completion-index";

fn finalizers(p: &Pod) -> Vec<String> {
    p.metadata.finalizers.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_completes_5_with_parallelism_2_never_more_than_2_active() -> anyhow::Result<()> {
    let cluster = Cluster::start(fast_options(), 2).await?;
    let client = cluster.client();
    let ns = "job-parallel";
    namespace(&client, ns).await?;
    let watch = ActiveWatch::start(&client, ns).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let manifest = job(
        "pi",
        json!({"completions": 5, "parallelism": 2}),
        pod_template(Some(0), 0.5),
    );
    let created = jobs.create(&PostParams::default(), &manifest).await?;
    let uid = created.metadata.uid.clone().unwrap_or_default();

    let done = wait_job(&client, ns, "pi", "job complete", |j| {
        is_true(j, "Complete")
    })
    .await?;
    let status = done.status.clone().unwrap_or_default();
    assert_eq!(status.succeeded, Some(5));
    assert_eq!(status.failed, None);
    assert_eq!(status.active, None);
    assert_eq!((status.ready, status.terminating), (Some(0), Some(0)));
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let uncounted = serde_json::to_value(&status.uncounted_terminated_pods)?;
    assert_eq!(uncounted, json!({}));
    for type_ in ["SuccessCriteriaMet", "Complete"] {
        let c = condition(&done, type_).unwrap_or_else(|| panic!("{type_} condition"));
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("CompletionsReached"));
        assert_eq!(
            c.message.as_deref(),
            Some("Reached expected number of succeeded pods")
        );
    }

    // Never more than parallelism at once, and parallelism was used.
    assert_eq!(watch.max_active(), 2, "most pods active at once");
    assert_eq!(watch.pods_seen(), 5, "one pod per completion");

    // Pods carry the Job's labels and owner; counted pods lose the tracking finalizer.
    let pods = wait_for("finalizers removed", || async {
        let pods = job_pods(&client, ns, "pi").await?;
        let clean = pods.len() == 5
            && pods
                .iter()
                .all(|p| !finalizers(p).iter().any(|f| f == TRACKING));
        Ok(clean.then_some(pods))
    })
    .await?;
    for p in &pods {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", uid.as_str()),
            ("controller-uid", uid.as_str()),
            ("batch.kubernetes.io/job-name", "pi"),
            ("job-name", "pi"),
        ] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
        }
        let owner = &p.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Job", uid.as_str())
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert!(p.metadata.name.as_deref().unwrap_or("").starts_with("pi-"));
    }

    // Events are recorded just after the status write that finished the Job.
    let events = wait_for("Completed event", || async {
        let events = events_for(&client, ns, "pi").await?;
        let done = events.contains(&("Completed".into(), "Job completed".into()));
        Ok(done.then_some(events))
    })
    .await?;
    let created: Vec<&(String, String)> = events
        .iter()
        .filter(|(r, _)| r == "SuccessfulCreate")
        .collect();
    assert_eq!(created.len(), 5, "{events:?}");
    assert!(created
        .iter()
        .all(|(_, m)| m.starts_with("Created pod: pi-")));
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_job_stops_at_backoff_limit() -> anyhow::Result<()> {
    let cluster = Cluster::start(fast_options(), 1).await?;
    let client = cluster.client();
    let ns = "job-backoff";
    namespace(&client, ns).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let manifest = job(
        "fail",
        json!({"backoffLimit": 2}),
        pod_template(Some(1), 0.0),
    );
    jobs.create(&PostParams::default(), &manifest).await?;

    let failed = wait_job(&client, ns, "fail", "job failed", |j| is_true(j, "Failed")).await?;
    let c = condition(&failed, "Failed").unwrap_or_default();
    assert_eq!(c.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        c.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    assert!(is_true(&failed, "FailureTarget"), "interim condition first");
    assert!(!is_true(&failed, "Complete"));
    let status = failed.status.clone().unwrap_or_default();
    // The first pod and two retries.
    assert_eq!(status.failed, Some(3));
    assert_eq!(status.succeeded, None);
    assert_eq!(job_pods(&client, ns, "fail").await?.len(), 3);
    wait_for("BackoffLimitExceeded event", || async {
        let events = events_for(&client, ns, "fail").await?;
        let want = (
            "BackoffLimitExceeded".to_string(),
            "Job has reached the specified backoff limit".to_string(),
        );
        Ok(events.contains(&want).then_some(()))
    })
    .await?;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_job_runs_each_index_once() -> anyhow::Result<()> {
    let cluster = Cluster::start(fast_options(), 2).await?;
    let client = cluster.client();
    let ns = "job-indexed";
    namespace(&client, ns).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let manifest = job(
        "idx",
        json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}),
        pod_template(Some(0), 0.2),
    );
    jobs.create(&PostParams::default(), &manifest).await?;
    let done = wait_job(&client, ns, "idx", "indexed job complete", |j| {
        is_true(j, "Complete")
    })
    .await?;
    let status = done.status.clone().unwrap_or_default();
    assert_eq!(status.completed_indexes.as_deref(), Some("0-3"));
    assert_eq!(status.succeeded, Some(4));

    let mut indexes = Vec::new();
    for p in job_pods(&client, ns, "idx").await? {
        let ix = p
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .get(INDEX)
            .cloned()
            .unwrap_or_default();
        let label = p
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .get(INDEX)
            .cloned();
        assert_eq!(
            label.as_deref(),
            Some(ix.as_str()),
            "index label matches annotation"
        );
        let name = p.metadata.name.clone().unwrap_or_default();
        assert!(name.starts_with(&format!("idx-{ix}-")), "{name}");
        let spec = p.spec.clone().unwrap_or_default();
        assert_eq!(spec.hostname, Some(format!("idx-{ix}")));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        let var = env
            .iter()
            .find(|e| e.name == "JOB_COMPLETION_INDEX")
            .expect("index env");
        let path = var
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.clone());
        assert_eq!(
            path.as_deref(),
            Some("metadata.labels['batch.kubernetes.io/job-completion-index']")
        );
        indexes.push(ix.parse::<u32>()?);
    }
    indexes.sort_unstable();
    assert_eq!(indexes, vec![0, 1, 2, 3]);
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_and_pod_failure_policy_fail_jobs() -> anyhow::Result<()> {
    let cluster = Cluster::start(fast_options(), 1).await?;
    let client = cluster.client();
    let ns = "job-fail-reasons";
    namespace(&client, ns).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    // Runs forever, but may be active for 1 s only.
    let slow = job(
        "slow",
        json!({"activeDeadlineSeconds": 1, "parallelism": 2, "completions": 2}),
        pod_template(None, 0.0),
    );
    jobs.create(&PostParams::default(), &slow).await?;
    // Exit code 42 fails the Job at once, whatever backoffLimit says.
    let policy = job(
        "policy",
        json!({
            "backoffLimit": 6,
            "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            ]},
        }),
        pod_template(Some(42), 0.0),
    );
    jobs.create(&PostParams::default(), &policy).await?;

    let slow = wait_job(&client, ns, "slow", "deadline exceeded", |j| {
        is_true(j, "Failed")
    })
    .await?;
    let c = condition(&slow, "Failed").unwrap_or_default();
    assert_eq!(c.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        c.message.as_deref(),
        Some("Job was active longer than specified deadline")
    );
    // Its running pods were stopped (and counted as failed).
    assert_eq!(slow.status.clone().unwrap_or_default().failed, Some(2));
    wait_for("deadline job pods gone", || async {
        let left = job_pods(&client, ns, "slow").await?;
        Ok(left.is_empty().then_some(()))
    })
    .await?;

    let policy = wait_job(&client, ns, "policy", "failed by policy", |j| {
        is_true(j, "Failed")
    })
    .await?;
    let c = condition(&policy, "Failed").unwrap_or_default();
    assert_eq!(c.reason.as_deref(), Some("PodFailurePolicy"));
    let pod = job_pods(&client, ns, "policy")
        .await?
        .pop()
        .expect("the failed pod");
    let want = format!(
        "Container main for pod {ns}/{} failed with exit code 42 matching FailJob rule at index 0",
        pod.metadata.name.clone().unwrap_or_default()
    );
    assert_eq!(c.message.as_deref(), Some(want.as_str()));
    assert_eq!(policy.status.clone().unwrap_or_default().failed, Some(1));
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_deletes_active_pods_and_resume_recreates_them() -> anyhow::Result<()> {
    let cluster = Cluster::start(fast_options(), 1).await?;
    let client = cluster.client();
    let ns = "job-suspend";
    namespace(&client, ns).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let manifest = job(
        "sleepy",
        json!({"parallelism": 2, "completions": 4}),
        pod_template(None, 0.0),
    );
    jobs.create(&PostParams::default(), &manifest).await?;
    wait_job(&client, ns, "sleepy", "2 active", |j| {
        j.status.as_ref().and_then(|s| s.active) == Some(2)
    })
    .await?;

    let suspend = |on: bool| json!({"spec": {"suspend": on}});
    jobs.patch(
        "sleepy",
        &PatchParams::default(),
        &Patch::Merge(&suspend(true)),
    )
    .await?;
    let suspended = wait_job(&client, ns, "sleepy", "suspended", |j| {
        is_true(j, "Suspended") && j.status.as_ref().and_then(|s| s.active).is_none()
    })
    .await?;
    let c = condition(&suspended, "Suspended").unwrap_or_default();
    assert_eq!(
        (c.reason.as_deref(), c.message.as_deref()),
        (Some("JobSuspended"), Some("Job suspended"))
    );
    wait_for("pods of the suspended job gone", || async {
        Ok(job_pods(&client, ns, "sleepy")
            .await?
            .is_empty()
            .then_some(()))
    })
    .await?;

    jobs.patch(
        "sleepy",
        &PatchParams::default(),
        &Patch::Merge(&suspend(false)),
    )
    .await?;
    let resumed = wait_job(&client, ns, "sleepy", "resumed", |j| {
        condition(j, "Suspended").is_some_and(|c| c.status == "False")
            && j.status.as_ref().and_then(|s| s.active) == Some(2)
    })
    .await?;
    let c = condition(&resumed, "Suspended").unwrap_or_default();
    assert_eq!(
        (c.reason.as_deref(), c.message.as_deref()),
        (Some("JobResumed"), Some("Job resumed"))
    );
    let events = events_for(&client, ns, "sleepy").await?;
    for want in [("Suspended", "Job suspended"), ("Resumed", "Job resumed")] {
        assert!(
            events.contains(&(want.0.into(), want.1.into())),
            "{want:?} in {events:?}"
        );
    }
    assert!(events
        .iter()
        .any(|(r, m)| r == "SuccessfulDelete" && m.starts_with("Deleted pod: sleepy-")));
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_job_is_deleted_after_its_ttl() -> anyhow::Result<()> {
    let cluster = Cluster::start(fast_options(), 1).await?;
    let client = cluster.client();
    let ns = "job-ttl";
    namespace(&client, ns).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let manifest = job(
        "short",
        json!({"ttlSecondsAfterFinished": 1}),
        pod_template(Some(0), 0.0),
    );
    jobs.create(&PostParams::default(), &manifest).await?;
    let done = wait_job(&client, ns, "short", "complete", |j| is_true(j, "Complete")).await?;
    let finished = condition(&done, "Complete")
        .and_then(|c| c.last_transition_time)
        .expect("finish time");
    wait_for("job deleted after its TTL", || async {
        match jobs.get_opt("short").await? {
            None => Ok(Some(())),
            Some(_) => Ok(None),
        }
    })
    .await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    assert!(
        now.duration_since(finished.0).as_secs_f64() >= 1.0,
        "deleted before the TTL ran out"
    );
    // Foreground deletion took the pods with it.
    wait_for("pods deleted with the job", || async {
        Ok(job_pods(&client, ns, "short")
            .await?
            .is_empty()
            .then_some(()))
    })
    .await?;
    cluster.stop().await;
    Ok(())
}

const KUBECTL: &str = "/usr/bin/kubectl";

/// Runs stock kubectl against the test server (stdin optional); fails on a non-zero exit.
async fn kubectl(
    kubeconfig: &std::path::Path,
    args: &[&str],
    stdin: Option<String>,
) -> anyhow::Result<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let (kc, args): (std::path::PathBuf, Vec<String>) = (
        kubeconfig.to_path_buf(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&kc)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        anyhow::ensure!(out.status.success(), "kubectl {args:?} failed: {text}");
        Ok(text)
    })
    .await?
}

/// What a user does: apply a Job, wait for it, read it back — against the server's own
/// controller manager with upstream's default settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_wait_get_and_describe_a_job() -> anyhow::Result<()> {
    if !std::path::Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} not found");
        return Ok(());
    }
    let cluster = Cluster::start_as_server(1).await?;
    let kc = cluster.server.kubeconfig().to_path_buf();
    let mut manifest = serde_json::to_value(job(
        "hello",
        json!({"completions": 2}),
        pod_template(Some(0), 0.0),
    ))?;
    manifest["metadata"]["namespace"] = json!("default");
    kubectl(&kc, &["apply", "-f", "-"], Some(manifest.to_string())).await?;
    kubectl(
        &kc,
        &[
            "wait",
            "--for=condition=complete",
            "job/hello",
            "--timeout=30s",
        ],
        None,
    )
    .await?;
    let get = kubectl(&kc, &["get", "job", "hello"], None).await?;
    let row = get.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("hello") && row.contains("Complete") && row.contains("2/2"),
        "{get}"
    );
    let describe = kubectl(&kc, &["describe", "job", "hello"], None).await?;
    for want in [
        "0 Active (0 Ready) / 2 Succeeded / 0 Failed",
        "2 Succeeded",
        "SuccessfulCreate",
        "Created pod: hello-",
        "Completed",
        "Job completed",
    ] {
        assert!(describe.contains(want), "{want:?} in:\n{describe}");
    }
    cluster.stop().await;
    Ok(())
}
