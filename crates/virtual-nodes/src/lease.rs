//! Node heartbeats: each node's Lease in `kube-node-lease` renewed every
//! `lease_interval`, and its status posted when due.
//!
//! Spreading: node *i* of *N* owns the slot `i × interval / N` in every interval, so
//! 5,000 nodes at 10 s make one renewal every 2 ms instead of a burst. A semaphore
//! bounds requests in flight; when the server is slow the scheduler waits for a permit
//! (renewals fall behind rather than pile up), and a node whose previous heartbeat is
//! still running skips its slot. Renewals update the cached Lease (one PUT, carrying
//! its resourceVersion) and fall back to GET/create on conflict or absence, as the
//! kubelet's lease controller does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::VirtualNodeConfig;
use crate::{api_code, node, NodeState, Shared};

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The Lease of `node`, renewed now; owned by its Node so it goes with it.
pub fn build_lease(
    config: &VirtualNodeConfig,
    name: &str,
    node_uid: Option<&str>,
    now: Timestamp,
) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(LEASE_NAMESPACE.to_string()),
            owner_references: node_uid.filter(|u| !u.is_empty()).map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".to_string(),
                    kind: "Node".to_string(),
                    name: name.to_string(),
                    uid: uid.to_string(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_string()),
            lease_duration_seconds: Some(config.lease_duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// Sets holder, duration and renewTime on a Lease someone else may have written.
fn renewed(config: &VirtualNodeConfig, name: &str, mut lease: Lease, now: Timestamp) -> Lease {
    let spec = lease.spec.get_or_insert_with(Default::default);
    spec.holder_identity = Some(name.to_string());
    spec.lease_duration_seconds = Some(config.lease_duration_seconds);
    spec.renew_time = Some(MicroTime(now));
    lease
}

fn remember(node: &NodeState, mut lease: Lease) {
    // Only resourceVersion and spec matter for the next PUT; managedFields would
    // multiply the memory of 5,000 cached Leases.
    lease.metadata.managed_fields = None;
    *node.lease.lock() = Some(lease);
}

/// Makes the node's Lease exist and be renewed now (GET, then update or create).
pub(crate) async fn ensure(
    client: &Client,
    config: &VirtualNodeConfig,
    node: &NodeState,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = Timestamp::now();
    let lease = match api.get_opt(&node.name).await? {
        Some(current) => {
            api.replace(
                &node.name,
                &PostParams::default(),
                &renewed(config, &node.name, current, now),
            )
            .await?
        }
        None => {
            let lease = build_lease(config, &node.name, node.uid.get().map(String::as_str), now);
            match api.create(&PostParams::default(), &lease).await {
                Ok(l) => l,
                // Created meanwhile (a concurrent retry): the next renewal updates it.
                Err(e) if api_code(&e) == Some(409) => api.get(&node.name).await?,
                Err(e) => return Err(e),
            }
        }
    };
    remember(node, lease);
    Ok(())
}

/// Renews the node's Lease from the cached copy; re-reads on conflict or absence.
pub(crate) async fn renew(
    client: &Client,
    config: &VirtualNodeConfig,
    node: &NodeState,
) -> Result<(), kube::Error> {
    let cached = node.lease.lock().clone();
    let Some(cached) = cached else {
        return ensure(client, config, node).await;
    };
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    match api
        .replace(
            &node.name,
            &PostParams::default(),
            &renewed(config, &node.name, cached, Timestamp::now()),
        )
        .await
    {
        Ok(l) => {
            remember(node, l);
            Ok(())
        }
        Err(e) if matches!(api_code(&e), Some(404 | 409)) => ensure(client, config, node).await,
        Err(e) => Err(e),
    }
}

/// One heartbeat: renew the Lease, post status if due or forced.
async fn heartbeat(client: &Client, config: &VirtualNodeConfig, node: &NodeState) {
    if let Err(e) = renew(client, config, node).await {
        tracing::warn!(node = %node.name, error = %e, "renewing lease failed");
    }
    let forced = node.force_status.swap(false, Ordering::AcqRel);
    let due = node
        .last_status
        .lock()
        .is_none_or(|t| t.elapsed() >= config.status_update_interval);
    if (forced || due) && !node.is_paused() {
        if let Err(e) = node::post_status(client, config, node).await {
            node.force_status.store(true, Ordering::Release);
            tracing::warn!(node = %node.name, error = %e, "posting node status failed");
        }
    }
}

/// The time slot of node `index` within each interval.
pub fn slot_offset(interval: Duration, index: usize, count: usize) -> Duration {
    let nanos = interval.as_nanos() * index as u128 / count.max(1) as u128;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Runs every node's heartbeat on its slot until `cancel`; `wake` asks for one now.
pub(crate) async fn run_heartbeats(
    client: Client,
    shared: Arc<Shared>,
    mut wake: mpsc::UnboundedReceiver<usize>,
    cancel: CancellationToken,
) {
    let config = &shared.config;
    let count = shared.nodes.len();
    let permits = Arc::new(Semaphore::new(config.concurrency));
    let tasks = TaskTracker::new();
    // Registration just renewed every Lease: the first round starts one interval later.
    let mut round_start = Instant::now() + config.lease_interval;
    let mut index = 0;
    loop {
        let due = round_start + slot_offset(config.lease_interval, index, count);
        let (target, from_slot) = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(i) = wake.recv() => (i, false),
            _ = tokio::time::sleep_until(due) => (index, true),
        };
        if from_slot {
            index += 1;
            if index == count {
                index = 0;
                round_start += config.lease_interval;
                // After a stall, start the next round from now instead of bursting.
                if round_start + config.lease_interval < Instant::now() {
                    round_start = Instant::now();
                }
            }
        }
        let node = &shared.nodes[target];
        if node.is_paused() || node.in_flight.swap(true, Ordering::AcqRel) {
            continue;
        }
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => p,
        };
        let Ok(permit) = permit else { break };
        let (client, shared) = (client.clone(), shared.clone());
        tasks.spawn(async move {
            let node = &shared.nodes[target];
            heartbeat(&client, &shared.config, node).await;
            node.in_flight.store(false, Ordering::Release);
            drop(permit);
        });
    }
    tasks.close();
    tasks.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_spread_over_the_interval() {
        let i = Duration::from_secs(10);
        assert_eq!(slot_offset(i, 0, 5000), Duration::ZERO);
        assert_eq!(slot_offset(i, 1, 5000), Duration::from_millis(2));
        assert_eq!(slot_offset(i, 2500, 5000), Duration::from_secs(5));
        assert!(slot_offset(i, 4999, 5000) < i);
        assert_eq!(slot_offset(i, 0, 1), Duration::ZERO);
    }

    #[test]
    fn lease_is_held_by_the_node_and_owned_by_it() {
        let now = Timestamp::from_second(1_700_000_000).expect("ts");
        let l = build_lease(&VirtualNodeConfig::default(), "n0", Some("uid-1"), now);
        assert_eq!(l.metadata.namespace.as_deref(), Some("kube-node-lease"));
        let spec = l.spec.clone().expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("n0"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
        let owner = &l.metadata.owner_references.clone().expect("owners")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "n0", "uid-1")
        );

        let later = Timestamp::from_second(1_700_000_010).expect("ts");
        let mut foreign = l;
        foreign.spec.as_mut().expect("spec").holder_identity = Some("someone".to_string());
        let r = renewed(&VirtualNodeConfig::default(), "n0", foreign, later)
            .spec
            .expect("spec");
        assert_eq!(r.holder_identity.as_deref(), Some("n0"));
        assert_eq!(r.renew_time, Some(MicroTime(later)));
    }
}
