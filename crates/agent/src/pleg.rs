//! Pod lifecycle events: wakes the pod worker whose container changed state. containerd's
//! event service reports task exits as they happen (`/tasks/exit`), so a killed or
//! finished container is noticed at once; a relist of the runtime's containers (every
//! `relist_period`, short only when the runtime offers no events) catches anything missed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cri::v1 as c;
use cri::CallExt;
use futures::StreamExt;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::kuberuntime::{MANAGED_LABEL, POD_UID_LABEL};
use crate::worker::{Ctx, PodWorkers};

/// Relist period while runtime events flow.
const RELIST_WITH_EVENTS: Duration = Duration::from_secs(10);
/// Relist period without runtime events (upstream's generic PLEG relists every second).
const RELIST_WITHOUT_EVENTS: Duration = Duration::from_secs(1);

pub async fn run(ctx: Arc<Ctx>, workers: Arc<PodWorkers>, cancel: CancellationToken) {
    let events_ok = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ev = tokio::spawn(watch_events(
        ctx.clone(),
        workers.clone(),
        events_ok.clone(),
        cancel.clone(),
    ));
    let mut last: HashMap<String, (String, i32)> = HashMap::new();
    loop {
        let period = if events_ok.load(std::sync::atomic::Ordering::Relaxed) {
            RELIST_WITH_EVENTS
        } else {
            RELIST_WITHOUT_EVENTS
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(period) => {}
        }
        let mut cri = ctx.cri.clone();
        let list = cri
            .runtime
            .list_containers(c::ListContainersRequest {
                filter: Some(c::ContainerFilter {
                    label_selector: HashMap::from([(
                        MANAGED_LABEL.to_string(),
                        "true".to_string(),
                    )]),
                    ..Default::default()
                }),
            })
            .await
            .call("ListContainers");
        let Ok(list) = list else { continue };
        let mut now: HashMap<String, (String, i32)> = HashMap::new();
        for ctr in list.containers {
            let uid = ctr.labels.get(POD_UID_LABEL).cloned().unwrap_or_default();
            now.insert(ctr.id, (uid, ctr.state));
        }
        let mut wake: Vec<String> = Vec::new();
        for (id, (uid, state)) in &now {
            if last.get(id).map(|(_, s)| s) != Some(state) {
                wake.push(uid.clone());
            }
        }
        for (id, (uid, _)) in &last {
            if !now.contains_key(id) {
                wake.push(uid.clone());
            }
        }
        wake.sort();
        wake.dedup();
        if !last.is_empty() || !now.is_empty() {
            for uid in wake {
                workers.wake(&uid);
            }
        }
        last = now;
    }
    ev.abort();
}

async fn watch_events(
    ctx: Arc<Ctx>,
    workers: Arc<PodWorkers>,
    ok: Arc<std::sync::atomic::AtomicBool>,
    cancel: CancellationToken,
) {
    loop {
        let mut client = ctx.cri.events.clone();
        let req = cri::events::SubscribeRequest {
            filters: ["/tasks/exit", "/tasks/oom"]
                .iter()
                .map(|t| {
                    format!(
                        "topic==\"{t}\",namespace==\"{}\"",
                        crate::images::CRI_NAMESPACE
                    )
                })
                .collect(),
        };
        match client.subscribe(req).await {
            Ok(resp) => {
                ok.store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!("subscribed to containerd task events");
                let mut stream = resp.into_inner();
                loop {
                    let item = tokio::select! {
                        _ = cancel.cancelled() => return,
                        i = stream.next() => i,
                    };
                    let Some(Ok(env)) = item else { break };
                    let Some(any) = env.event else { continue };
                    // Every task event payload starts with container_id = 1.
                    let id = match cri::events::TaskExit::decode(any.value.as_slice()) {
                        Ok(e) => e.container_id,
                        Err(_) => continue,
                    };
                    let owner = ctx.owners.lock().get(&id).cloned();
                    match owner {
                        Some(uid) => workers.wake(&uid),
                        None => {
                            // Unknown container (created a moment ago): wake everyone cheaply.
                            for uid in workers.uids() {
                                workers.wake(&uid);
                            }
                        }
                    }
                }
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                tracing::info!("the container runtime offers no events; relisting every second");
                ok.store(false, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            Err(status) => tracing::debug!(error = %status, "subscribing to runtime events failed"),
        }
        ok.store(false, std::sync::atomic::Ordering::Relaxed);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
