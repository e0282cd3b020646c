//! ControllerRevision history, shared by the StatefulSet and DaemonSet controllers
//! (upstream `pkg/controller/history` and the `getPatch`/`ApplyRevision` helpers).
//!
//! A revision snapshots a workload's pod template as the patch that would restore it:
//! `{"spec":{"template":{…,"$patch":"replace"}}}`. Two revisions are the same when their
//! data is equal; a revision's `revision` number orders the history, and rolling back to an
//! older template bumps that revision's number instead of making a new object. Names are
//! `<owner>-<hash>`; a hash clash with a different template bumps the owner's
//! `collisionCount`, which is folded into the next hash.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

use crate::controller_utils::{controller_ref, is_already_exists, safe_encode};

/// The label carrying a revision's hash (upstream `ControllerRevisionHashLabel`).
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Longest owner-name prefix of a revision name (upstream keeps room for the hash).
const MAX_PREFIX: usize = 223;

/// FNV-1, 32 bits (Go's `hash/fnv.New32`, which upstream uses for revision names).
pub fn fnv32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(*b);
    }
    h
}

/// `v` with every object's keys sorted, so equal data always serialises the same way.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Upstream `HashControllerRevision`: the data, then the collision count if any.
pub fn hash_data(data: &Value, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(&canonical(data)).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    safe_encode(&fnv32(&bytes).to_string())
}

/// `<prefix>-<hash>`, the prefix cut so the name stays valid.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let mut p = prefix.to_string();
    if p.len() > MAX_PREFIX {
        let mut cut = MAX_PREFIX;
        while !p.is_char_boundary(cut) {
            cut -= 1;
        }
        p.truncate(cut);
    }
    format!("{p}-{hash}")
}

/// The patch that restores `template` (upstream `getPatch`).
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".to_string(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template a revision restores (upstream `ApplyRevision`, whose patch replaces
/// the whole template).
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

fn data_of(revision: &ControllerRevision) -> Option<&Value> {
    revision.data.as_ref().map(|d| &d.0)
}

/// A revision of `owner` holding `data` (upstream `NewControllerRevision`), named
/// `<owner>-<hash>` and labelled with the template's labels and the hash.
pub fn new_revision(
    owner: &ObjectMeta,
    kind: &str,
    template_labels: Option<&BTreeMap<String, String>>,
    data: Value,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let hash = hash_data(&data, collision_count);
    let mut labels = template_labels.cloned().unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.to_string(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(owner.name.as_deref().unwrap_or(""), &hash)),
            namespace: owner.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(owner, "apps/v1", kind)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// Upstream `EqualRevision`: hash labels (when both are numbers) and data agree.
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    let hash = |r: &ControllerRevision| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
            .and_then(|h| h.parse::<u32>().ok())
    };
    if let (Some(x), Some(y)) = (hash(a), hash(b)) {
        if x != y {
            return false;
        }
    }
    data_of(a) == data_of(b)
}

/// Revisions of `revisions` equal to `needle`, in the order given.
pub fn find_equal_revisions<'a>(
    revisions: &'a [ControllerRevision],
    needle: &ControllerRevision,
) -> Vec<&'a ControllerRevision> {
    revisions
        .iter()
        .filter(|r| equal_revision(r, needle))
        .collect()
}

/// Upstream `byRevision`: revision number, then creation time, then name.
pub fn compare_revisions(a: &ControllerRevision, b: &ControllerRevision) -> Ordering {
    a.revision
        .cmp(&b.revision)
        .then_with(|| {
            let ts = |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ts(a).cmp(&ts(b))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

pub fn sort_revisions(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(compare_revisions);
}

/// One past the highest revision number of sorted `revisions` (1 for none).
pub fn next_revision(sorted: &[ControllerRevision]) -> i64 {
    sorted.last().map_or(1, |r| r.revision + 1)
}

/// Creates `revision` for `owner` (upstream `CreateControllerRevision`). An existing
/// object with the same name and data is the revision; one with other data is a hash
/// collision: `collision_count` goes up and the name is recomputed.
pub async fn create_revision(
    client: &Client,
    owner: &ObjectMeta,
    revision: &ControllerRevision,
    collision_count: &mut i32,
) -> Result<ControllerRevision, kube::Error> {
    let ns = owner.namespace.as_deref().unwrap_or("");
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let data = data_of(revision).cloned().unwrap_or(Value::Null);
    let mut candidate = revision.clone();
    loop {
        let hash = hash_data(&data, Some(*collision_count));
        candidate.metadata.name = Some(revision_name(owner.name.as_deref().unwrap_or(""), &hash));
        match api.create(&PostParams::default(), &candidate).await {
            Ok(created) => return Ok(created),
            Err(e) if is_already_exists(&e) => {
                let name = candidate.metadata.name.clone().unwrap_or_default();
                let existing = api.get(&name).await?;
                if data_of(&existing) == Some(&data) {
                    return Ok(existing);
                }
                *collision_count = collision_count.saturating_add(1);
                tracing::info!(revision = %name, "controller revision hash collision; retrying with a new name");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Gives an existing revision a new revision number (upstream `UpdateControllerRevision`).
pub async fn set_revision_number(
    client: &Client,
    revision: &ControllerRevision,
    number: i64,
) -> Result<ControllerRevision, kube::Error> {
    if revision.revision == number {
        return Ok(revision.clone());
    }
    let api: Api<ControllerRevision> = Api::namespaced(
        client.clone(),
        revision.metadata.namespace.as_deref().unwrap_or(""),
    );
    api.patch(
        revision.metadata.name.as_deref().unwrap_or(""),
        &PatchParams::default(),
        &Patch::Merge(&json!({"revision": number})),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn owner() -> ObjectMeta {
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("u".into()),
            ..Default::default()
        }
    }

    #[test]
    fn fnv32_matches_reference_vectors() {
        for (input, want) in [
            ("", 0x811c9dc5u32),
            ("a", 0x050c5d7e),
            ("foobar", 0x31f0b262),
        ] {
            assert_eq!(fnv32(input.as_bytes()), want, "{input:?}");
        }
    }

    #[test]
    fn patches_round_trip_and_hash_ignores_key_order() {
        let t = template("nginx:1");
        let data = template_patch(&t);
        assert_eq!(
            data.pointer("/spec/template/$patch"),
            Some(&json!("replace"))
        );
        let r = new_revision(&owner(), "StatefulSet", None, data.clone(), 1, None);
        assert_eq!(template_of(&r), Some(t));
        let name = r.metadata.name.clone().unwrap_or_default();
        let hash = &r.metadata.labels.as_ref().expect("labels")[CONTROLLER_REVISION_HASH_LABEL];
        assert_eq!(name, format!("web-{hash}"));
        // Key order does not change the hash; a collision count does.
        let reordered: Value = serde_json::from_str(r#"{"spec":{"template":{"$patch":"replace","spec":{"containers":[{"image":"nginx:1","name":"c"}]},"metadata":{"labels":{"app":"web"}}}}}"#).expect("json");
        assert_eq!(hash_data(&reordered, None), hash_data(&data, None));
        assert_ne!(hash_data(&data, Some(1)), hash_data(&data, None));
    }

    #[test]
    fn equality_sorting_and_next_revision() {
        let a = new_revision(
            &owner(),
            "StatefulSet",
            None,
            template_patch(&template("a")),
            1,
            None,
        );
        let b = new_revision(
            &owner(),
            "StatefulSet",
            None,
            template_patch(&template("b")),
            2,
            None,
        );
        let a2 = new_revision(
            &owner(),
            "StatefulSet",
            None,
            template_patch(&template("a")),
            3,
            None,
        );
        assert!(equal_revision(&a, &a2));
        assert!(!equal_revision(&a, &b));
        let mut all = vec![a2.clone(), b.clone(), a.clone()];
        sort_revisions(&mut all);
        assert_eq!(
            all.iter().map(|r| r.revision).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(next_revision(&all), 4);
        assert_eq!(next_revision(&[]), 1);
        assert_eq!(find_equal_revisions(&all, &a).len(), 2);
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), MAX_PREFIX + 2);
    }
}
