//! Work queues for informer-driven controllers: handlers push object keys into a
//! [`Queue`], and [`run`] feeds them to kube-runtime's `applier`, which deduplicates
//! keys, never reconciles one object twice at once, and requeues on `Action`s and
//! errors (with the delay the error policy picks).

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{StreamExt, TryFuture};
use kube::runtime::controller::{applier, Action, Config};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct QueueLabels {
    name: String,
}

/// client-go's workqueue metrics, labelled by controller name.
struct QueueMetrics {
    adds: Family<QueueLabels, Counter>,
    retries: Family<QueueLabels, Counter>,
}

fn metrics() -> &'static QueueMetrics {
    static METRICS: std::sync::OnceLock<QueueMetrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| {
        let m = QueueMetrics {
            adds: Family::default(),
            retries: Family::default(),
        };
        component_base::metrics::register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            m.adds.clone(),
        );
        component_base::metrics::register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            m.retries.clone(),
        );
        m
    })
}

/// The sending side of a controller's queue; cheap to clone into handlers.
pub struct Queue<K: Resource<DynamicType = ()>> {
    tx: mpsc::UnboundedSender<ObjectRef<K>>,
}

impl<K: Resource<DynamicType = ()>> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Queue {
            tx: self.tx.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Queue<K> {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<ObjectRef<K>>) {
        let (tx, rx) = mpsc::unbounded();
        (Queue { tx }, rx)
    }

    /// Asks for `namespace/name` to be reconciled.
    pub fn enqueue(&self, namespace: &str, name: &str) {
        let r = ObjectRef::new(name);
        let r = if namespace.is_empty() {
            r
        } else {
            r.within(namespace)
        };
        // A closed queue means the controller stopped; nothing left to do.
        let _ = self.tx.unbounded_send(r);
    }

    pub fn enqueue_obj(&self, obj: &K) {
        let m = obj.meta();
        self.enqueue(
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or(""),
        );
    }
}

/// Runs a controller until `cancel` fires. Keys wait in the queue until `ready`
/// (the caches the controller reads are synced) resolves.
#[allow(clippy::too_many_arguments)]
pub async fn run<K, C, R, RFut, E>(
    name: &'static str,
    store: Store<K>,
    ready: impl Future<Output = ()> + Send + 'static,
    rx: mpsc::UnboundedReceiver<ObjectRef<K>>,
    reconcile: R,
    error_policy: impl Fn(Arc<K>, &E, Arc<C>) -> Action,
    ctx: Arc<C>,
    cancel: CancellationToken,
) where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Debug + Eq + Hash + Clone + Unpin,
    R: FnMut(Arc<K>, Arc<C>) -> RFut,
    RFut: TryFuture<Ok = Action, Error = E> + Unpin,
    E: std::error::Error + 'static,
{
    let labels = QueueLabels {
        name: name.to_string(),
    };
    let adds = metrics().adds.get_or_create(&labels).clone();
    let retries = metrics().retries.get_or_create(&labels).clone();
    let queue = futures::stream::once(async move {
        ready.await;
        rx
    })
    .flatten()
    .inspect(move |_| {
        adds.inc();
    })
    .map(Ok::<_, Infallible>);
    let results = applier(
        reconcile,
        error_policy,
        ctx,
        store,
        queue,
        Config::default(),
    );
    futures::pin_mut!(results);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            next = results.next() => match next {
                None => break,
                Some(Ok(_)) => {}
                // Objects deleted before their turn come back as ObjectNotFound: expected.
                Some(Err(kube::runtime::controller::Error::ObjectNotFound(_))) => {}
                Some(Err(e)) => {
                    retries.inc();
                    tracing::debug!(controller = name, error = %e, "reconcile failed; requeued")
                }
            }
        }
    }
    tracing::debug!(controller = name, "stopped");
}
