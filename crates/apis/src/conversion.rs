//! Conversion between versions of one stored kind. Core `v1` Events and
//! `events.k8s.io/v1` Events share one store (as upstream); the store holds the core
//! form and the `events.k8s.io` endpoints convert on the way in and out.

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
