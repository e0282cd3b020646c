//! The HPA's client of the resource metrics API (upstream
//! `pkg/controller/podautoscaler/metrics`, `restMetricsClient.GetResourceMetric`):
//! PodMetrics of the target's pods from `metrics.k8s.io/v1beta1`, summed per pod.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::Client;
use serde_json::Value;

use super::replica_calculator::{PodMetric, PodMetrics};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("unable to fetch metrics from resource metrics API: {0}")]
    Fetch(String),
    #[error("no metrics returned from resource metrics API")]
    Empty,
}

fn pod_metrics_resource() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".to_string(),
        version: "v1beta1".to_string(),
        api_version: "metrics.k8s.io/v1beta1".to_string(),
        kind: "PodMetrics".to_string(),
        plural: "pods".to_string(),
    }
}

/// Usage of `resource` (milli-units) by each pod matching `selector`, summed over its
/// containers (or only `container`), and the timestamp of the first pod's sample. A pod
/// missing the resource in some container is left out, as upstream does.
pub async fn resource_metric(
    client: &Client,
    namespace: &str,
    selector: &str,
    resource: &str,
    container: Option<&str>,
) -> Result<(PodMetrics, Timestamp), MetricsError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &pod_metrics_resource());
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| MetricsError::Fetch(fetch_error(&e)))?;
    if list.items.is_empty() {
        return Err(MetricsError::Empty);
    }
    let mut first = None;
    let mut out = HashMap::new();
    for item in &list.items {
        let Some(name) = item.metadata.name.clone() else {
            continue;
        };
        let timestamp = item
            .data
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok())
            .unwrap_or_else(Timestamp::now);
        first.get_or_insert(timestamp);
        let window = item
            .data
            .get("window")
            .and_then(Value::as_str)
            .and_then(|w| crate::options::parse_duration(w).ok())
            .unwrap_or(Duration::ZERO);
        if let Some(value) = pod_sum(&item.data, resource, container) {
            out.insert(
                name,
                PodMetric {
                    timestamp,
                    window,
                    value,
                },
            );
        }
    }
    Ok((out, first.unwrap_or_else(Timestamp::now)))
}

/// Milli-units of `resource` over the pod's containers; `None` if one lacks it.
pub fn pod_sum(data: &Value, resource: &str, container: Option<&str>) -> Option<i64> {
    let containers = data.get("containers")?.as_array()?;
    let mut sum = 0i64;
    let mut found = false;
    for c in containers {
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        if container.is_some_and(|want| want != name) {
            continue;
        }
        let q = c
            .pointer(&format!("/usage/{resource}"))
            .and_then(Value::as_str)
            .and_then(|q| apis::resource::Quantity::parse(q).ok())?;
        sum += q.milli_value();
        found = true;
    }
    found.then_some(sum)
}

fn fetch_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pods_sum_their_containers() {
        let data = json!({"containers": [
            {"name": "a", "usage": {"cpu": "80m", "memory": "1Mi"}},
            {"name": "b", "usage": {"cpu": "20m", "memory": "1Mi"}},
        ]});
        assert_eq!(pod_sum(&data, "cpu", None), Some(100));
        assert_eq!(pod_sum(&data, "cpu", Some("b")), Some(20));
        assert_eq!(pod_sum(&data, "memory", None), Some(2 * 1_048_576_000));
        assert_eq!(pod_sum(&data, "gpu", None), None);
        assert_eq!(pod_sum(&data, "cpu", Some("c")), None);
    }
}
