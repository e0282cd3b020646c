//! The decoded form of `metadata.managedFields`: one field set per manager identity,
//! as upstream's `fieldpath.ManagedFields` plus the entry timestamps
//! (`apimachinery/pkg/util/managedfields/internal/managedfields.go`).
//!
//! A manager's identity is its name, operation and subresource, plus the API version
//! for `Update` entries only: an applier keeps one entry whatever version it applies.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::fieldset::FieldSet;

/// The `operation` of a managedFields entry. `Apply` sorts before `Update`, as upstream
/// orders entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who owns a set of fields.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// Empty for `Apply`.
    pub api_version: String,
    /// Empty for the main resource.
    pub subresource: String,
}

impl ManagerId {
    pub fn new(manager: &str, operation: Operation, api_version: &str, subresource: &str) -> Self {
        let api_version = match operation {
            Operation::Apply => String::new(),
            Operation::Update => api_version.to_string(),
        };
        ManagerId {
            manager: manager.into(),
            operation,
            api_version,
            subresource: subresource.into(),
        }
    }

    /// How conflicts name the manager: `"kubectl" with subresource "scale" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut s = quote(&self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {}", quote(&self.subresource)));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// One manager's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VersionedSet {
    pub set: FieldSet,
    pub api_version: String,
    pub applied: bool,
}

/// All managers of one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Managed {
    pub fields: BTreeMap<ManagerId, VersionedSet>,
    /// RFC 3339 timestamps; a manager may have none.
    pub times: BTreeMap<ManagerId, String>,
}

impl Managed {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Drops managers that own nothing, with their times.
    pub fn drop_empty(&mut self) {
        self.fields.retain(|_, vs| !vs.set.is_empty());
        let fields = &self.fields;
        self.times.retain(|id, _| fields.contains_key(id));
    }

    /// Decodes `metadata.managedFields` (absent or null is empty).
    pub fn decode(entries: Option<&Value>) -> Result<Managed, String> {
        let entries = match entries {
            None | Some(Value::Null) => return Ok(Managed::default()),
            Some(Value::Array(a)) => a,
            Some(other) => return Err(format!("managedFields must be a list, got {other}")),
        };
        let mut out = Managed::default();
        for (i, entry) in entries.iter().enumerate() {
            let e = entry
                .as_object()
                .ok_or_else(|| format!("managed fields entry {i} is not an object"))?;
            let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
            let operation = match text("operation") {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return Err("operation must be `Apply` or `Update`".into()),
            };
            let api_version = text("apiVersion");
            if api_version.is_empty() {
                return Err("apiVersion must not be empty".into());
            }
            match text("fieldsType") {
                "FieldsV1" => {}
                "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
                other => {
                    return Err(format!(
                        "invalid fieldsType {other:?} in managed fields entry {i}"
                    ))
                }
            }
            let set = match e.get("fieldsV1") {
                Some(v) => FieldSet::from_fields_v1(v)
                    .map_err(|err| format!("error decoding versioned set from entry {i}: {err}"))?,
                None => FieldSet::new(),
            };
            let id = ManagerId::new(text("manager"), operation, api_version, text("subresource"));
            if let Some(t) = e.get("time").and_then(Value::as_str) {
                out.times.insert(id.clone(), t.to_string());
            }
            let vs = VersionedSet {
                set,
                api_version: api_version.into(),
                applied: operation == Operation::Apply,
            };
            out.fields.insert(id, vs);
        }
        Ok(out)
    }

    /// Encodes to `metadata.managedFields` entries, sorted as upstream: by operation,
    /// then time (seconds), manager, apiVersion and subresource. Empty sets are dropped.
    pub fn encode(&self) -> Vec<Value> {
        let mut rows: Vec<(&ManagerId, &VersionedSet, Option<&String>)> = self
            .fields
            .iter()
            .filter(|(_, vs)| !vs.set.is_empty())
            .map(|(id, vs)| (id, vs, self.times.get(id)))
            .collect();
        rows.sort_by(|a, b| {
            (
                a.0.operation,
                seconds(a.2),
                &a.0.manager,
                &a.1.api_version,
                &a.0.subresource,
            )
                .cmp(&(
                    b.0.operation,
                    seconds(b.2),
                    &b.0.manager,
                    &b.1.api_version,
                    &b.0.subresource,
                ))
        });
        rows.into_iter()
            .map(|(id, vs, time)| {
                let mut e = Map::new();
                e.insert("manager".into(), Value::String(id.manager.clone()));
                e.insert(
                    "operation".into(),
                    Value::String(id.operation.as_str().into()),
                );
                e.insert("apiVersion".into(), Value::String(vs.api_version.clone()));
                if let Some(t) = time {
                    e.insert("time".into(), Value::String(t.clone()));
                }
                e.insert("fieldsType".into(), Value::String("FieldsV1".into()));
                e.insert("fieldsV1".into(), vs.set.to_fields_v1());
                if !id.subresource.is_empty() {
                    e.insert("subresource".into(), Value::String(id.subresource.clone()));
                }
                Value::Object(e)
            })
            .collect()
    }

    /// Keeps at most `max` `Update` entries by folding the oldest into one
    /// `ancient-changes` entry per API version (upstream `capManagersManager`).
    pub fn cap_update_managers(&mut self, max: usize, bucket_name: &str) {
        loop {
            let mut updaters: Vec<ManagerId> = self
                .fields
                .iter()
                .filter(|(_, vs)| !vs.applied)
                .map(|(id, _)| id.clone())
                .collect();
            if updaters.len() <= max {
                return;
            }
            updaters.retain(|id| id.manager != bucket_name);
            let Some(oldest) = updaters.into_iter().min_by(|a, b| {
                (seconds(self.times.get(a)), a).cmp(&(seconds(self.times.get(b)), b))
            }) else {
                return;
            };
            let Some(vs) = self.fields.remove(&oldest) else {
                return;
            };
            let time = self.times.remove(&oldest);
            let bucket = ManagerId::new(bucket_name, Operation::Update, &vs.api_version, "");
            let set = match self.fields.get(&bucket) {
                Some(prev) => prev.set.union(&vs.set),
                None => vs.set.clone(),
            };
            let newest = match (time, self.times.get(&bucket)) {
                (Some(t), Some(prev)) if seconds(Some(prev)) > seconds(Some(&t)) => {
                    Some(prev.clone())
                }
                (Some(t), _) => Some(t),
                (None, prev) => prev.cloned(),
            };
            if let Some(t) = newest {
                self.times.insert(bucket.clone(), t);
            }
            self.fields.insert(
                bucket,
                VersionedSet {
                    set,
                    api_version: vs.api_version,
                    applied: false,
                },
            );
        }
    }
}

/// Seconds since the epoch of an RFC 3339 time; missing or unparsable times sort first.
pub(crate) fn seconds(t: Option<&String>) -> i64 {
    t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|d| d.timestamp())
        .unwrap_or(0)
}

/// Whether a request's managedFields ask for them to be cleared: an empty list, or a
/// list with one empty entry (upstream `isResetManagedFields`).
pub(crate) fn is_reset(entries: Option<&Value>) -> bool {
    match entries {
        Some(Value::Array(a)) => match a.as_slice() {
            [] => true,
            [only] => only.as_object().is_some_and(Map::is_empty),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_encode_round_trip_and_order() {
        let entries = json!([
            {"manager": "b", "operation": "Update", "apiVersion": "apps/v1", "time": "2024-01-01T00:00:02Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:paused": {}}}},
            {"manager": "a", "operation": "Update", "apiVersion": "apps/v1", "time": "2024-01-01T00:00:01Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}, "subresource": "scale"},
            {"manager": "z", "operation": "Apply", "apiVersion": "apps/v1", "time": "2024-01-01T00:00:09Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}}
        ]);
        let m = Managed::decode(Some(&entries)).expect("decodes");
        let apply_id = ManagerId::new("z", Operation::Apply, "apps/v1", "");
        assert!(
            m.fields.contains_key(&apply_id),
            "apply identity ignores the version"
        );
        let out = Value::Array(m.encode());
        assert_eq!(out[0]["manager"], "z");
        assert_eq!(out[1]["manager"], "a");
        assert_eq!(out[1]["subresource"], "scale");
        assert_eq!(out[2], entries[0]);
    }

    #[test]
    fn decode_errors() {
        let cases = [
            (
                json!([{"manager": "a", "operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}]),
                "operation must be",
            ),
            (
                json!([{"manager": "a", "operation": "Update", "fieldsType": "FieldsV1"}]),
                "apiVersion must not be empty",
            ),
            (
                json!([{"manager": "a", "operation": "Update", "apiVersion": "v1"}]),
                "missing fieldsType",
            ),
            (
                json!([{"manager": "a", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV2"}]),
                "invalid fieldsType",
            ),
            (json!({}), "must be a list"),
        ];
        for (v, want) in cases {
            let err = Managed::decode(Some(&v)).expect_err("fails");
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn describe_matches_upstream() {
        assert_eq!(
            ManagerId::new(
                "kubectl-client-side-apply",
                Operation::Update,
                "apps/v1",
                ""
            )
            .describe(),
            r#""kubectl-client-side-apply" using apps/v1"#
        );
        assert_eq!(
            ManagerId::new("kubectl", Operation::Apply, "apps/v1", "").describe(),
            r#""kubectl""#
        );
        assert_eq!(
            ManagerId::new("kcm", Operation::Update, "apps/v1", "scale").describe(),
            r#""kcm" with subresource "scale" using apps/v1"#
        );
    }

    #[test]
    fn reset_detection() {
        let cases = [
            (None, false),
            (Some(json!(null)), false),
            (Some(json!([])), true),
            (Some(json!([{}])), true),
            (Some(json!([{}, {}])), false),
            (Some(json!([{"manager": "a"}])), false),
        ];
        for (v, want) in cases {
            assert_eq!(is_reset(v.as_ref()), want, "{v:?}");
        }
    }

    #[test]
    fn caps_update_managers() {
        let mut m = Managed::default();
        for i in 0..12 {
            let id = ManagerId::new(&format!("m{i:02}"), Operation::Update, "v1", "");
            let mut set = FieldSet::new();
            set.insert(
                crate::managedfields::path::FieldPath::fields(&["data", &format!("k{i}")])
                    .elements(),
            );
            m.fields.insert(
                id.clone(),
                VersionedSet {
                    set,
                    api_version: "v1".into(),
                    applied: false,
                },
            );
            m.times.insert(id, format!("2024-01-01T00:00:{i:02}Z"));
        }
        m.cap_update_managers(10, "ancient-changes");
        assert_eq!(m.fields.len(), 10);
        let bucket = ManagerId::new("ancient-changes", Operation::Update, "v1", "");
        assert_eq!(
            m.fields[&bucket].set.paths().len(),
            3,
            "m00, m01 and m02 folded"
        );
        assert_eq!(m.times[&bucket], "2024-01-01T00:00:02Z");
    }
}
