//! DefaultTolerationSeconds admission (upstream
//! `plugin/pkg/admission/defaulttolerationseconds`): a new pod that does not already
//! tolerate `node.kubernetes.io/not-ready:NoExecute` (resp. `unreachable`) gets a
//! toleration of it for 300 s, so taint-based eviction moves it off a dead node after
//! five minutes instead of at once.

use serde_json::{json, Value};

pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// Upstream `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Whether toleration `t` covers NoExecute taints with `key` (an empty key or effect
/// matches all, as upstream checks it).
fn covers(t: &Value, key: &str) -> bool {
    let k = t.get("key").and_then(Value::as_str).unwrap_or("");
    let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
    (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
}

/// Adds the missing default tolerations to a pod.
pub fn admit(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if tolerations.is_null() {
        *tolerations = Value::Array(Vec::new());
    }
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [NOT_READY_TAINT, UNREACHABLE_TAINT] {
        if !list.iter().any(|t| covers(t, key)) {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tolerations(pod: &Value) -> Vec<(String, Option<i64>)> {
        pod["spec"]["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["key"].as_str().unwrap_or("").to_string(),
                    t["tolerationSeconds"].as_i64(),
                )
            })
            .collect()
    }

    #[test]
    fn adds_both_defaults_once() {
        let mut pod = json!({"spec": {"containers": [{"name": "c"}]}});
        admit(&mut pod);
        admit(&mut pod);
        assert_eq!(
            tolerations(&pod),
            vec![
                (NOT_READY_TAINT.to_string(), Some(300)),
                (UNREACHABLE_TAINT.to_string(), Some(300))
            ]
        );
    }

    #[test]
    fn keeps_the_pods_own_tolerations() {
        let mut pod = json!({"spec": {"tolerations": [
            {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2},
        ]}});
        admit(&mut pod);
        assert_eq!(
            tolerations(&pod),
            vec![
                (UNREACHABLE_TAINT.to_string(), Some(2)),
                (NOT_READY_TAINT.to_string(), Some(300))
            ]
        );
        // Tolerating everything (empty key, Exists) needs no defaults.
        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        admit(&mut all);
        assert_eq!(tolerations(&all).len(), 1);
        // A NoSchedule toleration of the key does not count.
        let mut ns = json!({"spec": {"tolerations": [{"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoSchedule"}]}});
        admit(&mut ns);
        assert_eq!(tolerations(&ns).len(), 3);
    }
}
