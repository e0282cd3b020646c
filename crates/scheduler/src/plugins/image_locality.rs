//! ImageLocality: prefers nodes that already hold the pod's images, weighted by image
//! size and by how widely the image is spread (so one node is not always favoured).
//! Nodes report images in `status.images`; clusters without any skip the plugin.

use super::super::framework::types::normalized_image_name;
use crate::framework::{
    CycleState, NodeInfo, Plugin, PodInfo, PreScorePlugin, ScorePlugin, Snapshot, Status,
    MAX_NODE_SCORE,
};

pub const NAME: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

#[derive(Debug, Default)]
pub struct ImageLocality;

impl ImageLocality {
    pub fn new() -> ImageLocality {
        ImageLocality
    }
}

/// The pod's images, normalised, with the share of nodes holding each.
#[derive(Clone, Debug)]
struct PreScoreState {
    images: Vec<(String, f64)>,
    containers: usize,
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status {
        if !snapshot.has_images() || snapshot.num_nodes() == 0 {
            return Status::skip();
        }
        let Some(spec) = pod.spec() else {
            return Status::skip();
        };
        let total = snapshot.num_nodes() as f64;
        let containers: Vec<_> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .collect();
        let images = containers
            .iter()
            .filter_map(|c| c.image.as_deref())
            .map(|i| {
                let name = normalized_image_name(i);
                let spread = snapshot.image_num_nodes(&name) as f64 / total;
                (name, spread)
            })
            .collect();
        state.write(PreScoreState {
            images,
            containers: spec.containers.len(),
        });
        Status::success()
    }
}

/// Upstream `calculatePriority`: the summed score clamped between 23 MB and 1000 MB per
/// container, scaled to 0..=100.
fn calculate_priority(sum: i64, containers: usize) -> i64 {
    let max_threshold = MAX_CONTAINER_THRESHOLD * containers.max(1) as i64;
    let sum = sum.clamp(MIN_THRESHOLD, max_threshold.max(MIN_THRESHOLD));
    if max_threshold <= MIN_THRESHOLD {
        return 0;
    }
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = state.read::<PreScoreState>() else {
            return 0;
        };
        let sum: i64 = s
            .images
            .iter()
            .filter_map(|(name, spread)| {
                node.images
                    .get(name)
                    .map(|size| (*size as f64 * spread) as i64)
            })
            .sum();
        calculate_priority(sum, s.containers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_json, pod, score_all};
    use serde_json::json;

    #[test]
    fn nodes_holding_big_images_score_higher() {
        let with = |name: &str, images: serde_json::Value| {
            node_json(json!({"metadata": {"name": name}, "status": {"images": images}}))
        };
        let snapshot = Snapshot::from_parts(
            vec![
                with("big", json!([{"names": ["app:v1"], "sizeBytes": 500 * MB}])),
                with("none", json!([])),
            ],
            vec![],
        );
        let p = pod(
            "p",
            json!({}),
            json!({"containers": [{"name": "c", "image": "app:v1"}]}),
        );
        let scores = score_all(&ImageLocality, &p, &snapshot);
        assert!(scores[0] > 0 && scores[1] == 0, "{scores:?}");
        let untagged = pod(
            "p",
            json!({}),
            json!({"containers": [{"name": "c", "image": "other"}]}),
        );
        assert_eq!(score_all(&ImageLocality, &untagged, &snapshot), vec![0, 0]);
    }

    #[test]
    fn priority_is_clamped_between_thresholds() {
        assert_eq!(calculate_priority(0, 1), 0);
        assert_eq!(calculate_priority(MAX_CONTAINER_THRESHOLD * 5, 1), 100);
        assert_eq!(
            calculate_priority((MIN_THRESHOLD + MAX_CONTAINER_THRESHOLD) / 2, 1),
            50
        );
    }
}
