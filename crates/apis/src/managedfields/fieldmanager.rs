//! The field manager: server-side apply and managedFields bookkeeping for every write,
//! as upstream's `apimachinery/pkg/util/managedfields/internal` manager chain
//! (last-applied updater → last-applied manager → skip-non-applied → cap managers →
//! build manager info → managed-fields updater → strip meta → structured merge).
//!
//! Apply: merge the configuration into the live object, make the applier own exactly the
//! fields it applied, prune what it applied last time and nobody owns any more, then
//! detect conflicts: fields the merge changed that another manager owns. Update: the
//! writer takes the fields that changed; other managers lose them.

use serde_json::{Map, Value};

use super::error::{ApplyError, Conflict};
use super::fieldset::FieldSet;
use super::managers::{is_reset, Managed, ManagerId, Operation, VersionedSet};
use super::path::{value_eq, FieldPath};
use super::typed::{self, Comparison};
use super::typeinfo::TypeInfo;

/// The annotation `kubectl apply` (client-side) keeps its last configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Owner of fields that existed before the first apply to an untracked object.
pub const BEFORE_FIRST_APPLY_MANAGER: &str = "before-first-apply";
/// Owner the oldest `Update` entries are folded into beyond the cap.
pub const ANCIENT_CHANGES_MANAGER: &str = "ancient-changes";
/// Upstream's `DefaultMaxUpdateManagers`.
pub const DEFAULT_MAX_UPDATE_MANAGERS: usize = 10;
/// The manager `kubectl apply --server-side` uses, the only one upgraded from client-side apply.
const KUBECTL_MANAGER: &str = "kubectl";
/// Temporary identity of the current update while its fields are computed.
const CURRENT_OPERATION: &str = "current-operation";

/// Fields no manager ever owns (upstream `stripMetaManager`).
pub fn strip_set() -> FieldSet {
    FieldSet::from_field_paths(&[
        &["apiVersion"],
        &["kind"],
        &["metadata"],
        &["metadata", "name"],
        &["metadata", "namespace"],
        &["metadata", "creationTimestamp"],
        &["metadata", "selfLink"],
        &["metadata", "uid"],
        &["metadata", "clusterName"],
        &["metadata", "generation"],
        &["metadata", "managedFields"],
        &["metadata", "resourceVersion"],
    ])
}

/// Tracks field ownership for one resource (or subresource) at one API version.
pub struct FieldManager<'a> {
    type_info: &'a dyn TypeInfo,
    api_version: String,
    subresource: String,
    reset_fields: FieldSet,
    upgrade_client_side_apply: bool,
    max_update_managers: usize,
}

impl<'a> FieldManager<'a> {
    /// `api_version` is the request's group/version, e.g. `apps/v1` or `v1`.
    pub fn new(type_info: &'a dyn TypeInfo, api_version: &str) -> Self {
        FieldManager {
            type_info,
            api_version: api_version.into(),
            subresource: String::new(),
            reset_fields: FieldSet::new(),
            upgrade_client_side_apply: true,
            max_update_managers: DEFAULT_MAX_UPDATE_MANAGERS,
        }
    }

    /// Writes through a subresource (`status`, `scale`): entries record it, and managed
    /// fields in the request object are ignored.
    pub fn with_subresource(mut self, subresource: &str) -> Self {
        self.subresource = subresource.into();
        self
    }

    /// Fields the strategy resets for this endpoint (upstream `GetResetFields`), e.g.
    /// `status` for a main resource with a status subresource. Nobody gains them here.
    pub fn with_reset_fields(mut self, reset_fields: FieldSet) -> Self {
        self.reset_fields = reset_fields;
        self
    }

    /// Whether `kubectl apply --server-side` (manager `kubectl`) may take over fields
    /// that match the client-side `last-applied-configuration` without conflicts, as
    /// upstream does (default on).
    pub fn with_client_side_apply_upgrade(mut self, enabled: bool) -> Self {
        self.upgrade_client_side_apply = enabled;
        self
    }

    pub fn with_max_update_managers(mut self, max: usize) -> Self {
        self.max_update_managers = max;
        self
    }

    /// Server-side apply of `applied` by `manager` onto `live` (`None` to create).
    /// Returns the merged object with its managedFields; the caller still defaults,
    /// validates and stores it.
    pub fn apply(
        &self,
        live: Option<&Value>,
        applied: &Value,
        manager: &str,
        force: bool,
        now: &str,
    ) -> Result<Value, ApplyError> {
        self.check_applied(applied)?;
        let mut live_obj = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
        let managed = Managed::decode(managed_fields(&live_obj))
            .map_err(|e| ApplyError::Internal(format!("failed to decode managed fields: {e}")))?;
        remove_managed_fields(&mut live_obj);
        let is_create = live.is_none();

        let mut result = self.apply_tracked(
            &live_obj,
            is_create,
            applied,
            managed.clone(),
            manager,
            force,
            now,
        );
        if let Err(conflicts) = &result {
            if manager == KUBECTL_MANAGER && self.upgrade_client_side_apply {
                if let Some(allowed) = self.allowed_from_last_applied(&live_obj) {
                    let remaining: Vec<(ManagerId, FieldPath)> = conflicts
                        .iter()
                        .filter(|(_, p)| !allowed.has(p.elements()))
                        .cloned()
                        .collect();
                    result = if remaining.is_empty() {
                        self.apply_tracked(
                            &live_obj, is_create, applied, managed, manager, true, now,
                        )
                    } else {
                        Err(remaining)
                    };
                }
            }
        }
        let (mut obj, managed) = result.map_err(|conflicts| {
            ApplyError::Conflicts(
                conflicts
                    .into_iter()
                    .map(|(id, path)| Conflict::new(&id, &path))
                    .collect(),
            )
        })?;
        if manager == KUBECTL_MANAGER && last_applied(&obj).is_some() {
            set_last_applied(&mut obj, build_last_applied(applied));
        }
        set_managed_fields(&mut obj, &managed);
        Ok(obj)
    }

    /// Records the fields a create, update or patch by `manager` changed; `old` is
    /// `None` on create. Managed fields the request set explicitly are honoured (an empty
    /// list or `[{}]` clears them); otherwise the stored ones are carried over.
    pub fn update(&self, old: Option<&Value>, new: &mut Value, manager: &str, now: &str) {
        let decode_live = || Managed::decode(old.and_then(managed_fields)).unwrap_or_default();
        let mut managed = if !self.subresource.is_empty() {
            decode_live()
        } else if is_reset(managed_fields(new)) {
            Managed::default()
        } else {
            match Managed::decode(managed_fields(new)) {
                Ok(m) if !m.is_empty() => m,
                _ => decode_live(),
            }
        };
        remove_managed_fields(new);
        // Objects written before tracking started stay untracked until the first apply.
        if managed.is_empty() && old.is_some() {
            return;
        }
        let mut old_obj = old.cloned().unwrap_or_else(|| Value::Object(Map::new()));
        remove_managed_fields(&mut old_obj);
        let id = ManagerId::new(
            manager,
            Operation::Update,
            &self.api_version,
            &self.subresource,
        );
        self.record_update(&old_obj, new, &mut managed, id, now);
        managed.cap_update_managers(self.max_update_managers, ANCIENT_CHANGES_MANAGER);
        set_managed_fields(new, &managed);
    }

    fn check_applied(&self, applied: &Value) -> Result<(), ApplyError> {
        let Some(obj) = applied.as_object() else {
            return Err(ApplyError::BadRequest(
                "apply patch must be a JSON or YAML object".into(),
            ));
        };
        let version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if version != self.api_version {
            return Err(ApplyError::BadRequest(format!(
                "Incorrect version specified in apply patch. Specified patch version: {version}, expected: {}",
                self.api_version
            )));
        }
        if managed_fields(applied).is_some_and(|v| !v.is_null()) {
            return Err(ApplyError::BadRequest(
                "metadata.managedFields must be nil".into(),
            ));
        }
        typed::validate(applied, self.type_info).map_err(|e| {
            ApplyError::BadRequest(format!("failed to create typed patch object: {e}"))
        })
    }

    /// Apply with upstream's "skip non-applied" step: an existing object nobody tracks is
    /// first attributed to `before-first-apply`, so the apply can conflict with it.
    #[allow(clippy::too_many_arguments)]
    fn apply_tracked(
        &self,
        live: &Value,
        is_create: bool,
        applied: &Value,
        mut managed: Managed,
        manager: &str,
        force: bool,
        now: &str,
    ) -> Result<(Value, Managed), Vec<(ManagerId, FieldPath)>> {
        if managed.is_empty() && !is_create {
            let id = ManagerId::new(
                BEFORE_FIRST_APPLY_MANAGER,
                Operation::Update,
                &self.api_version,
                &self.subresource,
            );
            self.record_update(&Value::Object(Map::new()), live, &mut managed, id, now);
        }
        let id = ManagerId::new(
            manager,
            Operation::Apply,
            &self.api_version,
            &self.subresource,
        );
        let merged = typed::merge(live, applied, self.type_info);
        let last = managed.fields.get(&id).map(|vs| vs.set.clone());
        let set =
            FieldSet::from_object(applied, self.type_info).recursive_difference(&self.reset_fields);
        managed.fields.insert(
            id.clone(),
            VersionedSet {
                set,
                api_version: self.api_version.clone(),
                applied: true,
            },
        );
        let merged = self.prune(merged, &managed, last.as_ref());
        self.take_changes(live, &merged, &mut managed, &id, force)?;

        let strip = strip_set();
        if let Some(vs) = managed.fields.get_mut(&id) {
            vs.set = vs.set.difference(&strip);
        }
        managed.drop_empty();
        let changed = !value_eq(live, &merged);
        if changed && managed.fields.contains_key(&id) {
            managed.times.insert(id, now.to_string());
        }
        managed.cap_update_managers(self.max_update_managers, ANCIENT_CHANGES_MANAGER);
        Ok((if changed { merged } else { live.clone() }, managed))
    }

    /// Removes what the applier applied last time but no longer does, unless some
    /// manager (the applier's new configuration included) still owns it.
    fn prune(&self, merged: Value, managed: &Managed, last: Option<&FieldSet>) -> Value {
        let Some(last) = last.filter(|s| !s.is_empty()) else {
            return merged;
        };
        let ti = self.type_info;
        let owned = managed
            .fields
            .values()
            .fold(FieldSet::new(), |acc, vs| acc.union(&vs.set));
        let to_remove = last
            .ensure_named_fields_are_members(ti)
            .difference(&owned.ensure_named_fields_are_members(ti));
        typed::remove_items(&merged, &to_remove, ti)
    }

    /// Upstream `Updater.update`: other managers lose the fields `live → new` changed or
    /// removed. Changes to fields another manager owns are conflicts unless `force`.
    fn take_changes(
        &self,
        live: &Value,
        new: &Value,
        managed: &mut Managed,
        writer: &ManagerId,
        force: bool,
    ) -> Result<Comparison, Vec<(ManagerId, FieldPath)>> {
        let c = typed::compare(live, new, self.type_info).exclude(&self.reset_fields);
        let changed = c.modified.union(&c.added);
        if !force {
            let conflicts: Vec<(ManagerId, FieldPath)> = managed
                .fields
                .iter()
                .filter(|(id, _)| *id != writer)
                .flat_map(|(id, vs)| {
                    vs.set
                        .intersection(&changed)
                        .paths()
                        .into_iter()
                        .map(move |p| (id.clone(), p))
                })
                .collect();
            if !conflicts.is_empty() {
                return Err(conflicts);
            }
        }
        for (id, vs) in managed.fields.iter_mut() {
            if id != writer {
                vs.set = vs.set.difference(&changed).difference(&c.removed);
            }
        }
        managed.drop_empty();
        Ok(c)
    }

    /// Gives `id` the fields that changed from `old` to `new` (upstream's managed-fields
    /// updater around `Updater.Update`), merging with its earlier entry.
    fn record_update(
        &self,
        old: &Value,
        new: &Value,
        managed: &mut Managed,
        id: ManagerId,
        now: &str,
    ) {
        let current = ManagerId::new(CURRENT_OPERATION, Operation::Update, &self.api_version, "");
        let Ok(c) = self.take_changes(old, new, managed, &current, true) else {
            return; // force never conflicts
        };
        let set = c
            .modified
            .union(&c.added)
            .recursive_difference(&self.reset_fields)
            .difference(&strip_set());
        if set.is_empty() {
            return;
        }
        let set = match managed.fields.get(&id) {
            Some(prev) => prev.set.union(&set),
            None => set,
        };
        managed.fields.insert(
            id.clone(),
            VersionedSet {
                set,
                api_version: self.api_version.clone(),
                applied: false,
            },
        );
        managed.times.insert(id, now.to_string());
    }

    /// The fields client-side apply owns, inferred from the last-applied annotation:
    /// those it lists whose value the live object still has (upstream
    /// `lastAppliedManager.allowedConflictsFromLastApplied`).
    fn allowed_from_last_applied(&self, live: &Value) -> Option<FieldSet> {
        let text = last_applied(live)?;
        let last: Value = serde_json::from_str(text).ok()?;
        if last.get("apiVersion").and_then(Value::as_str) != Some(self.api_version.as_str()) {
            return None;
        }
        typed::validate(&last, self.type_info).ok()?;
        let c = typed::compare(&last, live, self.type_info);
        Some(
            FieldSet::from_object(&last, self.type_info)
                .difference(&c.modified)
                .difference(&c.added)
                .difference(&c.removed),
        )
    }
}

fn managed_fields(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

fn remove_managed_fields(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}

fn set_managed_fields(obj: &mut Value, managed: &Managed) {
    let entries = managed.encode();
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        if let Some(meta) = root.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        return;
    }
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("managedFields".into(), Value::Array(entries));
    }
}

fn last_applied(obj: &Value) -> Option<&str> {
    obj.get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()
}

fn set_last_applied(obj: &mut Value, text: String) {
    let annotations = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut);
    if let Some(annotations) = annotations {
        annotations.insert(LAST_APPLIED_ANNOTATION.into(), Value::String(text));
    }
}

/// The annotation value kubectl would write for `applied`: the configuration without
/// the annotation itself, keys sorted, newline-terminated (upstream `buildLastApplied`).
fn build_last_applied(applied: &Value) -> String {
    let mut obj = applied.clone();
    if let Some(annotations) = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
    let mut text = sorted(&obj).to_string();
    text.push('\n');
    text
}

/// A copy with object keys sorted, as Go's encoding/json writes maps.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}
