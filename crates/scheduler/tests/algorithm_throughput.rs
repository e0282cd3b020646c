//! Scheduling-cycle cost without the API: 10,000 pods onto 5,000 nodes through the
//! cache, queue and default plugins, as the scheduling loop does it. Ignored by default;
//! run with `cargo test --release -p scheduler --test algorithm_throughput -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use scheduler::cache::Cache;
use scheduler::framework::Nominator;
use scheduler::plugins::default_framework;
use scheduler::queue::SchedulingQueue;
use scheduler::schedule_one::{Algorithm, CycleOutcome};
use serde_json::json;

fn virtual_node(i: usize) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": format!("vn-{i}"), "labels": {"kubernetes.io/hostname": format!("vn-{i}"), "type": "virtual-kubelet"}},
        "spec": {"taints": [{"key": "virtual-kubelet.io/provider", "value": "rkube", "effect": "NoSchedule"}]},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}},
    }))
    .expect("node")
}

fn pending_pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("p-{i}"), "namespace": "default", "uid": format!("uid-{i}"), "labels": {"app": "bench"}},
        "spec": {
            "containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }))
    .expect("pod")
}

#[test]
#[ignore]
fn ten_thousand_pods_onto_five_thousand_nodes() {
    for parallelism in [1, 2] {
        let mut cache = Cache::new();
        for i in 0..5000 {
            cache.upsert_node(Arc::new(virtual_node(i)));
        }
        let mut queue = SchedulingQueue::default();
        let now = Instant::now();
        for i in 0..10_000 {
            queue.add(cache.pod_info(Arc::new(pending_pod(i))), now);
        }
        let fw = default_framework();
        let nominator = Nominator::new();
        let mut algo = Algorithm::new(0, parallelism);
        let start = Instant::now();
        let mut bound = 0;
        while let Some(q) = queue.pop(now) {
            match algo.run_cycle(&fw, cache.snapshot(), &nominator, &q.pod) {
                CycleOutcome::Scheduled { node, .. } => {
                    cache.assume_pod(q.pod.clone(), &node);
                    queue.done(&q.pod.uid);
                    bound += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let max_pods = cache.snapshot().nodes().iter().map(|n| n.pods.len()).max().unwrap_or(0);
        println!("parallelism {parallelism}: {bound} pods in {secs:.3} s = {:.0} pods/s (max {max_pods} pods on a node)", bound as f64 / secs);
        assert_eq!(bound, 10_000);
    }
}
