//! The in-tree plugins, one module each, and the registry that assembles the default
//! profile in upstream's order and weights (`apis/config/v1/default_plugins.go`). Queue
//! ordering (PrioritySort) lives in the queue itself.

pub mod balanced_allocation;
pub mod default_binder;
pub mod default_preemption;
pub mod helper;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;

#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use crate::framework::Framework;

/// Every plugin of the default profile, in upstream's order.
pub const DEFAULT_PLUGINS: &[&str] = &[
    node_unschedulable::NAME,
    node_name::NAME,
    taint_toleration::NAME,
    node_affinity::NAME,
    node_ports::NAME,
    node_resources_fit::NAME,
    volume_binding::NAME,
    pod_topology_spread::NAME,
    inter_pod_affinity::NAME,
    default_preemption::NAME,
    balanced_allocation::NAME,
    image_locality::NAME,
    default_binder::NAME,
];

/// The default profile: every plugin at each extension point it implements.
pub fn default_framework() -> Framework {
    let mut fw = Framework::new();
    let node_unschedulable = Arc::new(node_unschedulable::NodeUnschedulable::new());
    let node_name = Arc::new(node_name::NodeName::new());
    let taint_toleration = Arc::new(taint_toleration::TaintToleration::new());
    let node_affinity = Arc::new(node_affinity::NodeAffinity::new());
    let node_ports = Arc::new(node_ports::NodePorts::new());
    let fit = Arc::new(node_resources_fit::NodeResourcesFit::new());
    let spread = Arc::new(pod_topology_spread::PodTopologySpread::new());
    let inter_pod = Arc::new(inter_pod_affinity::InterPodAffinity::new());
    let balanced = Arc::new(balanced_allocation::BalancedAllocation::new());
    let image = Arc::new(image_locality::ImageLocality::new());
    let volumes = Arc::new(volume_binding::VolumeBinding::new());

    fw.add_pre_filter(node_affinity.clone());
    fw.add_pre_filter(node_ports.clone());
    fw.add_pre_filter(fit.clone());
    fw.add_pre_filter(volumes.clone());
    fw.add_pre_filter(spread.clone());
    fw.add_pre_filter(inter_pod.clone());

    fw.add_filter(node_unschedulable);
    fw.add_filter(node_name);
    fw.add_filter(taint_toleration.clone());
    fw.add_filter(node_affinity.clone());
    fw.add_filter(node_ports);
    fw.add_filter(fit.clone());
    fw.add_filter(volumes.clone());
    fw.add_filter(spread.clone());
    fw.add_filter(inter_pod.clone());

    fw.add_post_filter(Arc::new(default_preemption::DefaultPreemption::new()));

    fw.add_pre_score(taint_toleration.clone());
    fw.add_pre_score(node_affinity.clone());
    fw.add_pre_score(fit.clone());
    fw.add_pre_score(spread.clone());
    fw.add_pre_score(inter_pod.clone());
    fw.add_pre_score(balanced.clone());
    fw.add_pre_score(image.clone());

    fw.add_score(taint_toleration, 3);
    fw.add_score(node_affinity, 2);
    fw.add_score(fit, 1);
    fw.add_score(spread, 2);
    fw.add_score(inter_pod, 2);
    fw.add_score(balanced, 1);
    fw.add_score(image, 1);

    fw.add_pre_bind(volumes.clone());
    fw.add_informed(volumes);
    fw.add_bind(Arc::new(default_binder::DefaultBinder::new()));
    fw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_matches_upstream_order_and_weights() {
        let fw = default_framework();
        assert_eq!(
            fw.filter_plugin_names(),
            vec![
                "NodeUnschedulable",
                "NodeName",
                "TaintToleration",
                "NodeAffinity",
                "NodePorts",
                "NodeResourcesFit",
                "VolumeBinding",
                "PodTopologySpread",
                "InterPodAffinity"
            ]
        );
        assert_eq!(
            fw.score_plugin_weights(),
            vec![
                ("TaintToleration", 3),
                ("NodeAffinity", 2),
                ("NodeResourcesFit", 1),
                ("PodTopologySpread", 2),
                ("InterPodAffinity", 2),
                ("NodeResourcesBalancedAllocation", 1),
                ("ImageLocality", 1)
            ]
        );
        assert!(fw.has_post_filter_plugins());
        assert_eq!(DEFAULT_PLUGINS.len(), 13);
    }
}
