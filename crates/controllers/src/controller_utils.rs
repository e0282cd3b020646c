//! Helpers the workload controllers share (upstream `pkg/controller/controller_utils.go`
//! and `pkg/api/v1/pod`): pod readiness and availability, the order in which surplus
//! pods are deleted, slow-start batches, names, JSON patches, events and retry backoff.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The characters of generated names (upstream `rand.String`): no vowels, no 0/1/3.
pub const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The first slow-start batch (upstream `SlowStartInitialBatchSize`).
pub const SLOW_START_INITIAL_BATCH_SIZE: usize = 1;

/// The most pods one sync creates or deletes (upstream `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// `n` random characters from [`SAFE_ALPHABET`].
pub fn random_suffix(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(SAFE_ALPHABET[rng.gen_range(0..SAFE_ALPHABET.len())]))
        .collect()
}

/// Upstream `rand.SafeEncodeString`: each byte mapped onto [`SAFE_ALPHABET`], so that
/// hashes in names can never spell words.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// FNV-1a, 32 bits (Go's `hash/fnv.New32a`).
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// `ns/name`.
pub fn meta_key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

/// A controller reference to `owner` (upstream `metav1.NewControllerRef`).
pub fn controller_ref(meta: &ObjectMeta, api_version: &str, kind: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Neither finished nor being deleted (upstream `IsPodActive`).
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    phase != "Succeeded" && phase != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Condition `Ready=True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod last became ready, if it is ready.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// Ready for at least `min_ready_seconds` (upstream `IsPodAvailable`).
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod) {
        Some(t) => t + Duration::from_secs(u64::try_from(min_ready_seconds).unwrap_or(0)) < now,
        None => false,
    }
}

/// How long until a ready pod becomes available; `None` if it is not ready or already is.
pub fn time_until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    if min_ready_seconds <= 0 || !is_pod_ready(pod) {
        return None;
    }
    let since = ready_since(pod)?;
    let at = since + Duration::from_secs(u64::try_from(min_ready_seconds).unwrap_or(0));
    if at < now {
        return None;
    }
    let d = at.duration_since(now);
    Some(Duration::try_from(d).unwrap_or(Duration::ZERO))
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
    {
        "Pending" | "" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i64 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// Upstream `ActivePodsWithRanks.Less`: the pod that should be deleted first sorts
/// first. `rank` counts the pod's siblings on the same node (more = delete sooner).
pub fn compare_for_deletion(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize) -> Ordering {
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    // 1. Unassigned before assigned.
    node(a)
        .cmp(&node(b))
        // 2. Pending, then Unknown, then Running.
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        // 3. Not ready before ready.
        .then_with(|| is_pod_ready(a).cmp(&is_pod_ready(b)))
        // 4. Lower deletion cost first.
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        // 5. Doubled-up pods first.
        .then_with(|| rank_b.cmp(&rank_a))
        // 6. Ready for less time first (both ready: later transition first).
        .then_with(|| match (ready_since(a), ready_since(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        // 7. More restarts first.
        .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
        // 8. Newer first (no timestamp counts as newest).
        .then_with(|| {
            let ts = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            match (ts(a), ts(b)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => y.cmp(&x),
            }
        })
}

/// Picks `n` pods to delete from `pods` (upstream `getPodsToDelete`): ranked by
/// [`compare_for_deletion`], with `related` (pods of sibling controllers) counted for
/// the doubled-up rule.
pub fn pods_to_delete<'a>(
    pods: &'a [std::sync::Arc<Pod>],
    related: &[std::sync::Arc<Pod>],
    n: usize,
) -> Vec<&'a Pod> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in related.iter().filter(|p| is_pod_active(p)) {
        if let Some(node) = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
        {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .and_then(|n| per_node.get(n).copied())
            .unwrap_or(0)
    };
    let mut ranked: Vec<(&Pod, usize)> = pods.iter().map(|p| (p.as_ref(), rank(p))).collect();
    ranked.sort_by(|(a, ra), (b, rb)| compare_for_deletion(a, *ra, b, *rb));
    ranked.into_iter().take(n).map(|(p, _)| p).collect()
}

/// Runs `count` calls of `f` in batches of 1, 2, 4, … (upstream `slowStartBatch`), so a
/// controller that keeps failing (quota, admission) fails after one call instead of
/// hundreds. Returns how many succeeded and the first error.
pub async fn slow_start_batch<F, Fut, E>(count: usize, initial: usize, f: F) -> (usize, Option<E>)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial.max(1));
    let mut started = 0;
    while batch > 0 {
        let results = join_all((started..started + batch).map(&f)).await;
        started += batch;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        if first_err.is_some() {
            return (successes, first_err);
        }
        remaining -= batch;
        batch = remaining.min(2 * batch);
    }
    (successes, None)
}

/// A pod for `template`, controlled by `owner_ref`, for the server to name
/// `<prefix><5 random>` through `generateName` (upstream `GetPodFromTemplate`).
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    prefix: &str,
    owner_ref: OwnerReference,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut generate_name = prefix.to_string();
    // Upstream: a prefix that would make an invalid name is cut back to a valid one.
    if generate_name.len() > 58 {
        generate_name.truncate(58);
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: Some(namespace.to_string()),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner_ref]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Upstream's name prefix for a controller's pods: `<name>-`.
pub fn pods_prefix(controller_name: &str) -> String {
    format!("{controller_name}-")
}

/// PATCH with an RFC 6902 JSON patch (kube's typed `Patch::Json` needs a feature this
/// workspace does not enable).
pub async fn json_patch<K>(
    client: &Client,
    api: &Api<K>,
    name: &str,
    ops: &Value,
) -> Result<K, kube::Error>
where
    K: Resource + DeserializeOwned,
{
    let url = format!("{}/{}", api.resource_url(), name);
    let body = serde_json::to_vec(ops).map_err(kube::Error::SerdeError)?;
    let req = http::Request::patch(url)
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(body)
        .map_err(kube::Error::HttpError)?;
    client.request::<K>(req).await
}

/// HTTP status of an API error, if it is one.
pub fn api_status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

pub fn is_not_found(err: &kube::Error) -> bool {
    api_status(err) == Some(404)
}

pub fn is_conflict(err: &kube::Error) -> bool {
    api_status(err) == Some(409)
}

pub fn is_already_exists(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Whether a create failed because the namespace is going away (nothing to retry).
pub fn is_namespace_terminating(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 403 && s.message.contains("because it is being terminated"))
}

/// Records core/v1 Events for one controller, as upstream's controllers do through
/// client-go's recorder: `kubectl describe` and `kubectl get events` read these.
///
/// (kube-runtime's `Recorder` writes events.k8s.io Events and folds every event with
/// the same reason for an object into one series that keeps the first note, so
/// "Created pod: a" and "Created pod: b" would show as one event.) Like upstream's
/// correlator, an identical event (same object, type, reason and message) seen again
/// bumps `count` and `lastTimestamp` instead of making a new object.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    component: String,
    seen: std::sync::Arc<Mutex<HashMap<EventKey, SeenEvent>>>,
}

/// (object uid, type, reason, message).
type EventKey = (String, String, String, String);
/// (namespace, name, count) of the Event recorded for a key.
type SeenEvent = (String, String, i32);

/// Identical events remembered for aggregation (upstream keeps an LRU of 4096).
const EVENT_CACHE_SIZE: usize = 4096;

impl EventRecorder {
    pub fn new(client: Client, component: &str) -> Self {
        EventRecorder {
            client,
            component: component.to_string(),
            seen: Default::default(),
        }
    }

    /// Publishes an event; failures are logged, never fatal (upstream drops them too).
    /// `_action` is kept for the events.k8s.io shape; core events have no such field.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        _action: &str,
        note: String,
    ) {
        let type_ = match type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let namespace = regarding
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), &namespace);
        let now = now_time();
        let key = (
            regarding.uid.clone().unwrap_or_default(),
            type_.to_string(),
            reason.to_string(),
            note.clone(),
        );
        let previous = self.lock_seen().get(&key).cloned();
        if let Some((ns, name, count)) = previous.filter(|(ns, _, _)| *ns == namespace) {
            let patch = serde_json::json!({"count": count + 1, "lastTimestamp": now});
            match api
                .patch(
                    &name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {
                    self.lock_seen().insert(key, (ns, name, count + 1));
                    return;
                }
                // Gone (events expire): record it afresh below.
                Err(e) => tracing::debug!(error = %e, reason, "could not update event"),
            }
        }
        let nanos = k8s_openapi::jiff::Timestamp::now().as_nanosecond();
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.component),
            nanos
        );
        let event = CoreEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: regarding.clone(),
            reason: Some(reason.to_string()),
            message: Some(note),
            type_: Some(type_.to_string()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            ..Default::default()
        };
        match api.create(&kube::api::PostParams::default(), &event).await {
            Ok(_) => {
                let mut seen = self.lock_seen();
                if seen.len() >= EVENT_CACHE_SIZE {
                    seen.clear();
                }
                seen.insert(key, (namespace, name, 1));
            }
            Err(e) => tracing::debug!(error = %e, reason, "could not record event"),
        }
    }

    fn lock_seen(&self) -> std::sync::MutexGuard<'_, HashMap<EventKey, SeenEvent>> {
        self.seen
            .lock()
            .expect("invariant: event cache lock is never poisoned")
    }
}

/// Per-object exponential retry delays (client-go's `ItemExponentialFailureRateLimiter`,
/// 5 ms doubling to 1000 s); [`ErrorBackoff::reset`] after a success.
#[derive(Debug, Default)]
pub struct ErrorBackoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl ErrorBackoff {
    const BASE: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1000);

    pub fn next_delay(&self, key: &str) -> Duration {
        let mut f = self
            .failures
            .lock()
            .expect("invariant: backoff lock is never poisoned");
        let n = f.entry(key.to_string()).or_default();
        let exp = (*n).min(30);
        *n = n.saturating_add(1);
        Self::BASE.saturating_mul(1u32 << exp).min(Self::MAX)
    }

    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .expect("invariant: backoff lock is never poisoned")
            .remove(key);
    }
}

/// Now, as the API's `Time`.
pub fn now_time() -> Time {
    Time(Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use std::sync::Arc;

    #[test]
    fn safe_encoding_matches_upstream_digits() {
        // Upstream maps '0'..'9' to "4", "5", "6", "7", "8", "9", "b", "c", "d", "f".
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        assert!(random_suffix(5).bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        assert_eq!(random_suffix(5).len(), 5);
    }

    #[test]
    fn fnv32a_matches_reference_vectors() {
        for (input, want) in [
            ("", 0x811c9dc5u32),
            ("a", 0xe40c292c),
            ("foobar", 0xbf9cf968),
        ] {
            assert_eq!(fnv32a(input.as_bytes()), want, "{input:?}");
        }
    }

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).expect("ts"))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(
                        Timestamp::from_second(created + 1).expect("ts"),
                    )),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn deletion_prefers_unscheduled_pending_unready_newest() {
        let pods = vec![
            pod("running-ready-old", "n1", "Running", true, 100),
            pod("running-ready-new", "n2", "Running", true, 200),
            pod("running-unready", "n1", "Running", false, 50),
            pod("pending", "n1", "Pending", false, 10),
            pod("unscheduled", "", "Pending", false, 5),
        ];
        let order: Vec<String> = pods_to_delete(&pods, &[], 5)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            order,
            vec![
                "unscheduled",
                "pending",
                "running-unready",
                "running-ready-new",
                "running-ready-old"
            ]
        );
        assert_eq!(pods_to_delete(&pods, &[], 2).len(), 2);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("a", "n", "Running", true, 100); // ready since 101
        let at = |s| Timestamp::from_second(s).expect("ts");
        assert!(is_pod_available(&p, 0, at(101)));
        assert!(!is_pod_available(&p, 10, at(105)));
        assert!(is_pod_available(&p, 10, at(112)));
        assert_eq!(
            time_until_available(&p, 10, at(105)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(time_until_available(&p, 10, at(112)), None);
    }

    #[tokio::test]
    async fn slow_start_doubles_and_stops_at_first_failing_batch() {
        let calls = Mutex::new(Vec::new());
        let (ok, err) = slow_start_batch(10, 1, |i| {
            calls.lock().expect("lock").push(i);
            async move {
                if i >= 5 {
                    Err("boom")
                } else {
                    Ok(())
                }
            }
        })
        .await;
        // Batches 1, 2, 4: the third batch (3..7) has failures, so 8..10 never run.
        assert_eq!(calls.lock().expect("lock").len(), 7);
        assert_eq!(ok, 5);
        assert_eq!(err, Some("boom"));
        let (ok, err) = slow_start_batch(7, 1, |_| async { Ok::<(), ()>(()) }).await;
        assert_eq!((ok, err), (7, None));
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let b = ErrorBackoff::default();
        assert_eq!(b.next_delay("k"), Duration::from_millis(5));
        assert_eq!(b.next_delay("k"), Duration::from_millis(10));
        assert_eq!(b.next_delay("k"), Duration::from_millis(20));
        b.reset("k");
        assert_eq!(b.next_delay("k"), Duration::from_millis(5));
    }
}
