//! Server-side apply and `metadata.managedFields`, as upstream's structured-merge-diff
//! (`fieldpath`, `typed`, `merge`) and apimachinery's `util/managedfields`.
//!
//! Every write records who owns which fields. An entry is a manager identity (name,
//! operation `Apply` or `Update`, subresource, and API version for updaters) with a
//! [`FieldSet`] serialized as `fieldsV1`.
//!
//! - Non-apply writes ([`FieldManager::update`]): the writer gains every field whose
//!   value it changed or added; other managers lose those and any removed fields.
//! - Apply ([`FieldManager::apply`]): the configuration is merged into the live object
//!   (associative lists by key, atomic ones replaced) and the applier owns exactly what
//!   it applied. What it applied before but not now is removed unless someone else owns
//!   it. Changing a field another manager owns is a conflict (409) unless forced, in which
//!   case ownership moves to the applier. Sharing a field with an equal value is not.
//! - `kubectl apply --server-side` (manager `kubectl`) takes over fields that still
//!   match the client-side `last-applied-configuration` without conflicts, as upstream
//!   does; other managers (or values changed since) do conflict with
//!   `kubectl-client-side-apply`.
//! - `apiVersion`, `kind`, `metadata.name`/`namespace`/`uid`/… are never owned; reset
//!   fields (e.g. `status` on the main resource) are given with
//!   [`FieldManager::with_reset_fields`].
//!
//! Objects are `serde_json::Value`; type knowledge comes from a [`TypeInfo`].

mod error;
mod fieldmanager;
mod fieldset;
mod managers;
mod path;
mod typed;
mod typeinfo;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use error::{ApplyError, Conflict, FIELD_MANAGER_CONFLICT};
pub use fieldmanager::{
    strip_set, FieldManager, ANCIENT_CHANGES_MANAGER, BEFORE_FIRST_APPLY_MANAGER,
    DEFAULT_MAX_UPDATE_MANAGERS, LAST_APPLIED_ANNOTATION,
};
pub use fieldset::{FieldSet, FieldSetError};
pub use managers::Operation;
pub use path::{FieldPath, PathElement, PathElementError};
pub use typeinfo::{type_info_for, ListKind, MapKind, SchemaType, TypeInfo, UnknownType};

/// The longest manager name upstream accepts (`FieldManagerMaxLength`).
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// Server-side apply with default options; see [`FieldManager::apply`].
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    type_info: &dyn TypeInfo,
    now: &str,
) -> Result<Value, ApplyError> {
    FieldManager::new(type_info, api_version).apply(live, applied, manager, force, now)
}

/// Records a create/update/patch by `manager` with default options; see
/// [`FieldManager::update`].
pub fn update_managed_fields(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    type_info: &dyn TypeInfo,
    now: &str,
) {
    FieldManager::new(type_info, api_version).update(old, new, manager, now)
}

/// The manager name for a request without `fieldManager`: the User-Agent up to the
/// first `/`, without unprintable characters, cut to 128 bytes (upstream
/// `prefixFromUserAgent`), e.g. `kubectl/v1.33.0 (linux/amd64)` → `kubectl`.
pub fn default_manager_from_user_agent(ua: &str) -> String {
    let prefix = ua.split('/').next().unwrap_or_default();
    let mut out = String::new();
    // Go's unicode.IsPrint: no control characters, and no spaces other than ' '.
    for c in prefix
        .chars()
        .filter(|c| !c.is_control() && (*c == ' ' || !c.is_whitespace()))
    {
        if out.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}
