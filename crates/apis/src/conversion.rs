//! Conversion between versions of one stored kind. Core `v1` Events and
//! `events.k8s.io/v1` Events share one store (as upstream); the store holds the core
//! form and the `events.k8s.io` endpoints convert on the way in and out.
//! HorizontalPodAutoscalers are stored as `autoscaling/v2` and served as
//! `autoscaling/v1` too: v1 has only the CPU target, so what it cannot say travels in
//! upstream's `autoscaling.alpha.kubernetes.io/*` annotations (other metrics, behavior,
//! conditions) and comes back when a v1 object is written.

use serde_json::{Map, Value};

/// Field renames: (events.k8s.io/v1 name, core/v1 name).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(
    obj: &mut Value,
    from_to: impl Iterator<Item = (&'static str, &'static str)>,
    api_version: &str,
) {
    let Some(m) = obj.as_object_mut() else { return };
    let mut out = Map::with_capacity(m.len());
    let renames: Vec<(&str, &str)> = from_to.collect();
    for (k, v) in std::mem::take(m) {
        let key = renames
            .iter()
            .find(|(from, _)| *from == k)
            .map(|(_, to)| to.to_string())
            .unwrap_or(k);
        out.insert(key, v);
    }
    out.insert("apiVersion".into(), Value::String(api_version.to_string()));
    out.insert("kind".into(), Value::String("Event".into()));
    *m = out;
}

/// `events.k8s.io/v1` Event → core `v1` Event (a core Event is returned unchanged).
pub fn event_to_core(obj: &mut Value) {
    if obj.get("apiVersion").and_then(Value::as_str) == Some("v1") {
        return;
    }
    rename(obj, EVENT_FIELDS.iter().copied(), "v1");
}

/// Core `v1` Event → `events.k8s.io/v1` Event.
pub fn event_from_core(obj: &mut Value) {
    if obj.get("apiVersion").and_then(Value::as_str) == Some("events.k8s.io/v1") {
        return;
    }
    rename(
        obj,
        EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)),
        "events.k8s.io/v1",
    );
}

const HPA_METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const HPA_BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const HPA_CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";

fn is_cpu_utilization(metric: &Value) -> bool {
    metric.get("type").and_then(Value::as_str) == Some("Resource")
        && metric.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        && metric
            .pointer("/resource/target/type")
            .and_then(Value::as_str)
            == Some("Utilization")
}

fn cpu_metric(utilization: &Value) -> Value {
    serde_json::json!({"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": utilization}}})
}

fn annotations(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let meta = obj
        .as_object_mut()?
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let ann = meta
        .as_object_mut()?
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    ann.as_object_mut()
}

fn drop_empty_annotations(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if meta
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            meta.remove("annotations");
        }
    }
}

/// `autoscaling/v2` HPA → `autoscaling/v1` (a v1 object is returned unchanged).
pub fn hpa_v2_to_v1(obj: &mut Value) {
    if obj.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v1") {
        return;
    }
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let status = obj.get("status").cloned();
    let mut v1_spec = Map::new();
    for k in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(v) = spec.get(k) {
            v1_spec.insert(k.to_string(), v.clone());
        }
    }
    let mut others = Vec::new();
    for m in spec
        .get("metrics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match m.pointer("/resource/target/averageUtilization") {
            Some(u)
                if is_cpu_utilization(m)
                    && !v1_spec.contains_key("targetCPUUtilizationPercentage") =>
            {
                v1_spec.insert("targetCPUUtilizationPercentage".into(), u.clone());
            }
            _ => others.push(m.clone()),
        }
    }
    let mut extra = Vec::new();
    if !others.is_empty() {
        extra.push((HPA_METRICS, Value::Array(others)));
    }
    if let Some(b) = spec.get("behavior").filter(|b| !b.is_null()) {
        extra.push((HPA_BEHAVIOR, b.clone()));
    }
    let mut v1_status = Map::new();
    if let Some(st) = &status {
        for k in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            if let Some(v) = st.get(k) {
                v1_status.insert(k.to_string(), v.clone());
            }
        }
        let cpu = st
            .get("currentMetrics")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|m| {
                m.get("type").and_then(Value::as_str) == Some("Resource")
                    && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
            })
            .and_then(|m| m.pointer("/resource/current/averageUtilization"));
        if let Some(u) = cpu {
            v1_status.insert("currentCPUUtilizationPercentage".into(), u.clone());
        }
        if let Some(c) = st
            .get("conditions")
            .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
        {
            extra.push((HPA_CONDITIONS, c.clone()));
        }
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), Value::String("autoscaling/v1".into()));
        m.insert("spec".into(), Value::Object(v1_spec));
        if status.is_some() {
            m.insert("status".into(), Value::Object(v1_status));
        }
    }
    if !extra.is_empty() {
        if let Some(ann) = annotations(obj) {
            for (k, v) in extra {
                ann.insert(k.to_string(), Value::String(v.to_string()));
            }
        }
    }
}

/// `autoscaling/v1` HPA → `autoscaling/v2` (a v2 object is returned unchanged).
pub fn hpa_v1_to_v2(obj: &mut Value) {
    if obj.get("apiVersion").and_then(Value::as_str) != Some("autoscaling/v1") {
        return;
    }
    let mut taken = |key: &str| -> Option<Value> {
        let ann = obj
            .get_mut("metadata")?
            .get_mut("annotations")?
            .as_object_mut()?;
        let text = ann.remove(key)?;
        serde_json::from_str(text.as_str()?).ok()
    };
    let other_metrics = taken(HPA_METRICS);
    let behavior = taken(HPA_BEHAVIOR);
    let conditions = taken(HPA_CONDITIONS);
    drop_empty_annotations(obj);
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let mut v2_spec = Map::new();
    for k in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(v) = spec.get(k) {
            v2_spec.insert(k.to_string(), v.clone());
        }
    }
    let mut metrics = Vec::new();
    if let Some(u) = spec
        .get("targetCPUUtilizationPercentage")
        .filter(|u| !u.is_null())
    {
        metrics.push(cpu_metric(u));
    }
    if let Some(Value::Array(others)) = other_metrics {
        metrics.extend(others);
    }
    if metrics.is_empty() {
        // v1's unset target means the default 80% CPU, as v2 defaulting spells it.
        metrics.push(cpu_metric(&Value::from(80)));
    }
    v2_spec.insert("metrics".into(), Value::Array(metrics));
    if let Some(b) = behavior {
        v2_spec.insert("behavior".into(), b);
    }
    let status = obj.get("status").cloned();
    let mut v2_status = Map::new();
    if let Some(st) = &status {
        for k in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            if let Some(v) = st.get(k) {
                v2_status.insert(k.to_string(), v.clone());
            }
        }
        if let Some(u) = st
            .get("currentCPUUtilizationPercentage")
            .filter(|u| !u.is_null())
        {
            v2_status.insert(
                "currentMetrics".into(),
                serde_json::json!([{"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": u}}}]),
            );
        }
        if let Some(c) = conditions {
            v2_status.insert("conditions".into(), c);
        }
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), Value::String("autoscaling/v2".into()));
        m.insert("spec".into(), Value::Object(v2_spec));
        if status.is_some() {
            m.insert("status".into(), Value::Object(v2_status));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hpas_round_trip_between_v1_and_v2() {
        let v2 = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "annotations": {"team": "a"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "64Mi"}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}},
            },
            "status": {
                "currentReplicas": 2, "desiredReplicas": 3,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 80, "averageValue": "80m"}}}],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "SucceededRescale"}],
            },
        });
        let mut v1 = v2.clone();
        hpa_v2_to_v1(&mut v1);
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 80);
        assert_eq!(v1["status"]["desiredReplicas"], 3);
        assert_eq!(v1["metadata"]["annotations"]["team"], "a");
        assert!(v1["metadata"]["annotations"][HPA_METRICS]
            .as_str()
            .is_some_and(|m| m.contains("memory")));
        let mut back = v1.clone();
        hpa_v1_to_v2(&mut back);
        assert_eq!(back["spec"], v2["spec"]);
        assert_eq!(back["status"]["conditions"], v2["status"]["conditions"]);
        assert_eq!(back["metadata"], v2["metadata"]);
        // A v1 object without a target gets the default 80% CPU.
        let mut bare = json!({"apiVersion": "autoscaling/v1", "metadata": {"name": "x"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 2}});
        hpa_v1_to_v2(&mut bare);
        assert_eq!(
            bare["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert!(bare.get("status").is_none());
    }

    #[test]
    fn events_round_trip_between_groups() {
        let mut e = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "x"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "Started", "reason": "Started",
            "reportingController": "kubelet", "type": "Normal"
        });
        let orig = e.clone();
        event_to_core(&mut e);
        assert_eq!(e["apiVersion"], "v1");
        assert_eq!(e["involvedObject"]["name"], "p");
        assert_eq!(e["message"], "Started");
        assert_eq!(e["reportingComponent"], "kubelet");
        event_from_core(&mut e);
        assert_eq!(e, orig);
    }
}
