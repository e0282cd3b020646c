//! DefaultBinder: binds through `POST pods/{name}/binding`, which sets `spec.nodeName`
//! and `PodScheduled=True` in one write on the server (and fails if the pod is gone or
//! already bound, so two schedulers cannot both place it).

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use crate::framework::{BindPlugin, Plugin, PodInfo, Status};

pub const NAME: &str = "DefaultBinder";

#[derive(Debug, Default)]
pub struct DefaultBinder;

impl DefaultBinder {
    pub fn new() -> DefaultBinder {
        DefaultBinder
    }
}

/// The Binding object for `pod` → `node`; the uid makes the server refuse a recreated pod.
pub fn binding(pod: &PodInfo, node: &str) -> Binding {
    Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..ObjectReference::default()
        },
    }
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        NAME
    }
}

#[async_trait::async_trait]
impl BindPlugin for DefaultBinder {
    async fn bind(
        &self,
        client: &kube::Client,
        pod: &PodInfo,
        node: &str,
    ) -> Result<Status, kube::Error> {
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
        api.create_subresource::<_, serde_json::Value>(
            "binding",
            &pod.name,
            &PostParams::default(),
            &binding(pod, node),
        )
        .await?;
        Ok(Status::success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::pod;
    use serde_json::json;

    #[test]
    fn binding_targets_the_node_and_pins_the_uid() {
        let b =
            serde_json::to_value(binding(&pod("web", json!({}), json!({})), "n1")).expect("json");
        assert_eq!(
            b["target"],
            json!({"apiVersion": "v1", "kind": "Node", "name": "n1"})
        );
        assert_eq!(
            b["metadata"],
            json!({"name": "web", "namespace": "default", "uid": "uid-web"})
        );
    }
}
