//! What an accepted CRD serves: one [`ResourceInfo`] per served version in
//! upstream's version priority order, the status the server sets on acceptance
//! (naming and establishing controllers), printer columns, and the JSON paths and
//! accessors of the scale subresource (`scaleFromCustomResource` upstream).

use std::cmp::Ordering;

use serde_json::{json, Map, Value};
use thiserror::Error;

use super::{storage_version, str_at, version_entry, versions};
use crate::resources::{ResourceInfo, Subresource, ALL_VERBS};

/// `v<major>[(alpha|beta)<minor>]` → (type rank, major, minor); GA ranks highest.
fn parse_kube_version(v: &str) -> Option<(u8, i64, i64)> {
    let rest = v.strip_prefix('v')?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let major: i64 = rest[..digits].parse().ok()?;
    let tail = &rest[digits..];
    if tail.is_empty() {
        return Some((2, major, 0));
    }
    let (rank, minor) = if let Some(m) = tail.strip_prefix("alpha") {
        (0, m)
    } else if let Some(m) = tail.strip_prefix("beta") {
        (1, m)
    } else {
        return None;
    };
    if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((rank, major, minor.parse().ok()?))
}

/// Upstream `CompareKubeAwareVersionStrings`: `Greater` when `a` has the higher
/// priority. GA before beta before alpha, then higher major, then higher minor;
/// kube-like versions before all others, which compare alphabetically.
pub fn compare_kube_aware_versions(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    match (parse_kube_version(a), parse_kube_version(b)) {
        (None, None) => b.cmp(a),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x.cmp(&y),
    }
}

/// Sorts highest priority first: `v2, v1, v1beta2, v1beta1, v1alpha1, bar, foo`.
pub fn sort_versions(versions: &mut [String]) {
    versions.sort_by(|a, b| compare_kube_aware_versions(b, a));
}

/// Names of the served versions, highest priority first.
pub fn served_versions(crd: &Value) -> Vec<String> {
    let spec = crd.get("spec").unwrap_or(&Value::Null);
    let mut out: Vec<String> = versions(spec)
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false))
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    sort_versions(&mut out);
    out
}

/// `spec.names` with upstream's defaults applied (singular = lower-case kind,
/// listKind = kind + `List`), in the field order the API prints.
pub fn accepted_names(crd: &Value) -> Value {
    let names = crd.pointer("/spec/names").unwrap_or(&Value::Null);
    let s = |k: &str| {
        names
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let list = |k: &str| {
        names
            .get(k)
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .cloned()
    };
    let kind = s("kind");
    let singular = if s("singular").is_empty() {
        kind.to_lowercase()
    } else {
        s("singular")
    };
    let list_kind = if s("listKind").is_empty() && !kind.is_empty() {
        format!("{kind}List")
    } else {
        s("listKind")
    };
    let mut out = Map::new();
    out.insert("plural".into(), Value::String(s("plural")));
    if !singular.is_empty() {
        out.insert("singular".into(), Value::String(singular));
    }
    if let Some(short) = list("shortNames") {
        out.insert("shortNames".into(), Value::Array(short));
    }
    out.insert("kind".into(), Value::String(kind));
    if !list_kind.is_empty() {
        out.insert("listKind".into(), Value::String(list_kind));
    }
    if let Some(categories) = list("categories") {
        out.insert("categories".into(), Value::Array(categories));
    }
    Value::Object(out)
}

/// The names discovery serves: `status.acceptedNames` once the server accepted
/// them, else the defaulted `spec.names`.
fn served_names(crd: &Value) -> Value {
    match crd.pointer("/status/acceptedNames") {
        Some(n) if !str_at(n, &["plural"]).is_empty() => n.clone(),
        _ => accepted_names(crd),
    }
}

fn string_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// One entry per served version, highest priority first. Custom objects are stored
/// under their own group and plural; `status` and `scale` subresources appear when
/// the version declares them (status first, as upstream's discovery lists them).
pub fn resource_infos(crd: &Value) -> Vec<ResourceInfo> {
    let group = str_at(crd, &["spec", "group"]).to_string();
    let plural = str_at(crd, &["spec", "names", "plural"]).to_string();
    let namespaced = str_at(crd, &["spec", "scope"]) == "Namespaced";
    let names = served_names(crd);
    let kind = str_at(&names, &["kind"]).to_string();
    let subresource = |name: &str, kind: &str, group: &str, version: &str| Subresource {
        name: name.to_string(),
        kind: kind.to_string(),
        group: group.to_string(),
        version: version.to_string(),
        verbs: ["get", "patch", "update"]
            .iter()
            .map(|v| v.to_string())
            .collect(),
    };
    served_versions(crd)
        .into_iter()
        .map(|version| {
            let declared = version_entry(crd, &version)
                .and_then(|v| v.get("subresources"))
                .unwrap_or(&Value::Null);
            let mut subresources = Vec::new();
            if declared.get("status").is_some_and(|s| !s.is_null()) {
                subresources.push(subresource("status", &kind, "", ""));
            }
            if declared.get("scale").is_some_and(|s| !s.is_null()) {
                subresources.push(subresource("scale", "Scale", "autoscaling", "v1"));
            }
            ResourceInfo {
                group: group.clone(),
                version,
                resource: plural.clone(),
                singular: str_at(&names, &["singular"]).to_string(),
                kind: kind.clone(),
                list_kind: str_at(&names, &["listKind"]).to_string(),
                namespaced,
                verbs: ALL_VERBS.iter().map(|v| v.to_string()).collect(),
                short_names: string_list(&names, "shortNames"),
                categories: string_list(&names, "categories"),
                subresources,
                storage_group: group.clone(),
                storage_resource: plural.clone(),
            }
        })
        .collect()
}

/// The status the server sets once it accepts a CRD's names: `NamesAccepted` and
/// `Established` conditions, `acceptedNames`, and the storage version added to
/// `storedVersions`. Conditions that were already `True` keep their transition
/// time; other existing conditions are kept after these two.
pub fn established_status(crd: &Value, now: &str) -> Value {
    let existing: Vec<Value> = crd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let condition = |ty: &str, reason: &str, message: &str| {
        let since = existing
            .iter()
            .find(|c| str_at(c, &["type"]) == ty && str_at(c, &["status"]) == "True")
            .and_then(|c| c.get("lastTransitionTime").and_then(Value::as_str))
            .unwrap_or(now);
        json!({"type": ty, "status": "True", "lastTransitionTime": since, "reason": reason, "message": message})
    };
    let mut conditions = vec![
        condition("NamesAccepted", "NoConflicts", "no conflicts found"),
        condition(
            "Established",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        ),
    ];
    conditions.extend(
        existing
            .iter()
            .filter(|c| !matches!(str_at(c, &["type"]), "NamesAccepted" | "Established"))
            .cloned(),
    );
    let mut stored = string_list(crd.get("status").unwrap_or(&Value::Null), "storedVersions");
    if let Some(storage) = storage_version(crd) {
        if !stored.contains(&storage) {
            stored.push(storage);
        }
    }
    json!({"conditions": conditions, "acceptedNames": accepted_names(crd), "storedVersions": stored})
}

/// The version's `additionalPrinterColumns` as declared (empty if none).
pub fn printer_columns(crd: &Value, version: &str) -> Vec<Value> {
    version_entry(crd, version)
        .and_then(|v| v.get("additionalPrinterColumns"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The columns the server prints for the version: the declared ones, or — like
/// upstream's `serveDefaultColumnsIfEmpty` — a single `Age` column.
pub fn served_printer_columns(crd: &Value, version: &str) -> Vec<Value> {
    let declared = printer_columns(crd, version);
    if !declared.is_empty() {
        return declared;
    }
    vec![json!({
        "name": "Age",
        "type": "date",
        "description": "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        "jsonPath": ".metadata.creationTimestamp"
    })]
}

/// JSON paths (`.spec.replicas`) of a version's scale subresource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// The scale subresource of `version`, if declared.
pub fn scale_paths(crd: &Value, version: &str) -> Option<ScalePaths> {
    let scale = version_entry(crd, version)?
        .pointer("/subresources/scale")
        .filter(|s| s.is_object())?;
    let path = |k: &str| {
        scale
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Some(ScalePaths {
        spec_replicas: path("specReplicasPath"),
        status_replicas: path("statusReplicasPath"),
        label_selector: Some(path("labelSelectorPath")).filter(|p| !p.is_empty()),
    })
}

/// Errors reading or writing a scale path; texts follow apimachinery's
/// `unstructured.Nested*` helpers.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScaleError {
    #[error("invalid json path {0:?}: must be a simple json path starting with \".\"")]
    InvalidPath(String),
    #[error("{path} accessor error: {value} is of the type {found}, expected {expected}")]
    WrongType {
        path: String,
        value: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("value cannot be set because {0} is not a map[string]interface{{}}")]
    NotAMap(String),
}

fn split_path(path: &str) -> Result<Vec<&str>, ScaleError> {
    let fields: Vec<&str> = path
        .strip_prefix('.')
        .ok_or_else(|| ScaleError::InvalidPath(path.to_string()))?
        .split('.')
        .collect();
    if fields.iter().any(|f| f.is_empty()) {
        return Err(ScaleError::InvalidPath(path.to_string()));
    }
    Ok(fields)
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn wrong_type(fields: &[&str], v: &Value, expected: &'static str) -> ScaleError {
    let value = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    ScaleError::WrongType {
        path: format!(".{}", fields.join(".")),
        value,
        found: go_type(v),
        expected,
    }
}

/// The value at a simple JSON path; `Ok(None)` when a field on the way is missing.
pub fn get_path<'a>(obj: &'a Value, path: &str) -> Result<Option<&'a Value>, ScaleError> {
    let fields = split_path(path)?;
    let mut cur = obj;
    for (i, f) in fields.iter().enumerate() {
        let Some(map) = cur.as_object() else {
            return Err(wrong_type(&fields[..i], cur, "map[string]interface{}"));
        };
        match map.get(*f) {
            Some(next) => cur = next,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

/// Sets the value at a simple JSON path, creating missing objects on the way.
pub fn set_path(obj: &mut Value, path: &str, value: Value) -> Result<(), ScaleError> {
    let fields = split_path(path)?;
    let mut cur = obj;
    for (i, f) in fields.iter().enumerate() {
        let Some(map) = cur.as_object_mut() else {
            return Err(ScaleError::NotAMap(format!(".{}", fields[..i].join("."))));
        };
        if i == fields.len() - 1 {
            map.insert(f.to_string(), value);
            return Ok(());
        }
        cur = map
            .entry(f.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

/// An integer replica count at `path`; 0 when absent, as upstream.
pub fn read_replicas(obj: &Value, path: &str) -> Result<i64, ScaleError> {
    match get_path(obj, path)? {
        None => Ok(0),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| wrong_type(&split_path(path).unwrap_or_default(), v, "int64")),
    }
}

/// A label selector string at `path`; empty when absent.
pub fn read_selector(obj: &Value, path: &str) -> Result<String, ScaleError> {
    match get_path(obj, path)? {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(wrong_type(
            &split_path(path).unwrap_or_default(),
            v,
            "string",
        )),
    }
}

/// The `autoscaling/v1` Scale of a custom object.
pub fn scale_for(obj: &Value, paths: &ScalePaths) -> Result<Value, ScaleError> {
    let spec_replicas = read_replicas(obj, &paths.spec_replicas)?;
    let status_replicas = read_replicas(obj, &paths.status_replicas)?;
    let selector = match &paths.label_selector {
        Some(p) => read_selector(obj, p)?,
        None => String::new(),
    };
    let mut meta = Map::new();
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = obj
            .pointer(&format!("/metadata/{key}"))
            .filter(|v| !v.is_null())
        {
            meta.insert(key.to_string(), v.clone());
        }
    }
    let mut spec = Map::new();
    if spec_replicas != 0 {
        spec.insert("replicas".into(), json!(spec_replicas));
    }
    let mut status = Map::new();
    status.insert("replicas".into(), json!(status_replicas));
    if !selector.is_empty() {
        status.insert("selector".into(), json!(selector));
    }
    Ok(
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta, "spec": spec, "status": status}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::crontab_crd;

    #[test]
    fn versions_sort_in_kube_priority_order() {
        let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
            (
                vec![
                    "v1alpha1",
                    "foo10",
                    "v1",
                    "v2beta1",
                    "foo1",
                    "v2",
                    "v1beta2",
                    "v10",
                    "v11alpha2",
                    "v1beta1",
                ],
                vec![
                    "v10",
                    "v2",
                    "v1",
                    "v2beta1",
                    "v1beta2",
                    "v1beta1",
                    "v11alpha2",
                    "v1alpha1",
                    "foo1",
                    "foo10",
                ],
            ),
            (
                vec!["v1beta", "v1", "vbeta1"],
                vec!["v1", "v1beta", "vbeta1"],
            ),
        ];
        for (input, want) in cases {
            let mut v: Vec<String> = input.iter().map(|s| s.to_string()).collect();
            sort_versions(&mut v);
            assert_eq!(v, want);
        }
        assert_eq!(compare_kube_aware_versions("v1", "v1"), Ordering::Equal);
    }

    #[test]
    fn resource_infos_list_served_versions_with_subresources() {
        let mut crd = crontab_crd();
        let versions = crd["spec"]["versions"].as_array_mut().expect("versions");
        let mut beta = versions[0].clone();
        beta["name"] = json!("v1beta1");
        beta["storage"] = json!(false);
        beta.as_object_mut().map(|b| b.remove("subresources"));
        let mut off = beta.clone();
        off["name"] = json!("v2alpha1");
        off["served"] = json!(false);
        versions.insert(0, beta);
        versions.push(off);

        let infos = resource_infos(&crd);
        let summary: Vec<(String, Vec<String>)> = infos
            .iter()
            .map(|i| {
                (
                    i.version.clone(),
                    i.subresources.iter().map(|s| s.name.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "v1".to_string(),
                    vec!["status".to_string(), "scale".to_string()]
                ),
                ("v1beta1".to_string(), vec![])
            ]
        );
        let v1 = &infos[0];
        assert_eq!(v1.api_version(), "stable.example.com/v1");
        assert_eq!(v1.group_resource(), "crontabs.stable.example.com");
        assert_eq!(
            (
                v1.kind.as_str(),
                v1.list_kind.as_str(),
                v1.singular.as_str()
            ),
            ("CronTab", "CronTabList", "crontab")
        );
        assert_eq!(v1.short_names, vec!["ct"]);
        assert!(v1.namespaced);
        assert_eq!(v1.verbs.len(), ALL_VERBS.len());
        assert_eq!(
            v1.storage_prefix(),
            "/registry/stable.example.com/crontabs/"
        );
        let scale = &v1.subresources[1];
        assert_eq!(
            (
                scale.kind.as_str(),
                scale.group.as_str(),
                scale.version.as_str()
            ),
            ("Scale", "autoscaling", "v1")
        );
        assert_eq!(v1.subresources[0].kind, "CronTab");
    }

    #[test]
    fn established_status_accepts_names() {
        let now = "2024-05-01T10:00:00Z";
        let status = established_status(&crontab_crd(), now);
        assert_eq!(
            status,
            json!({
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now,
                     "reason": "NoConflicts", "message": "no conflicts found"},
                    {"type": "Established", "status": "True", "lastTransitionTime": now,
                     "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}
                ],
                "acceptedNames": {"plural": "crontabs", "singular": "crontab", "shortNames": ["ct"],
                                  "kind": "CronTab", "listKind": "CronTabList"},
                "storedVersions": ["v1"]
            })
        );
        // A later acceptance keeps the original transition time.
        let mut crd = crontab_crd();
        crd["status"] = status;
        let again = established_status(&crd, "2030-01-01T00:00:00Z");
        assert_eq!(again["conditions"][1]["lastTransitionTime"], now);
    }

    #[test]
    fn printer_columns_and_scale_paths() {
        let crd = crontab_crd();
        let cols = printer_columns(&crd, "v1");
        assert_eq!(
            cols.iter()
                .map(|c| c["name"].as_str().unwrap_or(""))
                .collect::<Vec<_>>(),
            vec!["Spec", "Replicas"]
        );
        assert!(printer_columns(&crd, "v9").is_empty());
        let mut bare = crd.clone();
        bare["spec"]["versions"][0]
            .as_object_mut()
            .map(|v| v.remove("additionalPrinterColumns"));
        assert_eq!(served_printer_columns(&bare, "v1")[0]["name"], "Age");

        let paths = scale_paths(&crd, "v1").expect("scale declared");
        assert_eq!(
            paths,
            ScalePaths {
                spec_replicas: ".spec.replicas".into(),
                status_replicas: ".status.replicas".into(),
                label_selector: Some(".status.labelSelector".into()),
            }
        );

        let mut obj = json!({"metadata": {"name": "c", "namespace": "default", "uid": "u1"}, "spec": {"replicas": 3}});
        assert_eq!(read_replicas(&obj, &paths.spec_replicas), Ok(3));
        assert_eq!(read_replicas(&obj, &paths.status_replicas), Ok(0));
        set_path(&mut obj, &paths.status_replicas, json!(2)).expect("set");
        set_path(&mut obj, ".status.labelSelector", json!("app=cron")).expect("set");
        assert_eq!(
            scale_for(&obj, &paths),
            Ok(json!({
                "kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": "c", "namespace": "default", "uid": "u1"},
                "spec": {"replicas": 3},
                "status": {"replicas": 2, "selector": "app=cron"}
            }))
        );
        obj["spec"]["replicas"] = json!("three");
        assert_eq!(
            read_replicas(&obj, ".spec.replicas").map_err(|e| e.to_string()),
            Err(
                ".spec.replicas accessor error: three is of the type string, expected int64"
                    .to_string()
            )
        );
        assert!(set_path(&mut obj, ".spec.replicas.x", json!(1)).is_err());
        assert!(matches!(
            get_path(&obj, "spec"),
            Err(ScaleError::InvalidPath(_))
        ));
    }
}
