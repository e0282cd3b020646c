//! `metadata.managedFields`: ownership tracking for every write, and server-side apply.
//! The merge logic lives in `apis::managedfields`; this adapts it to requests: which
//! manager, which API version, and which fields the endpoint resets (a main-resource
//! write cannot own `status`, a status write owns nothing else).

use apis::managedfields::{FieldManager, FieldSet};
use registry::RegistryError;
use serde_json::Value;

use super::Ctx;

fn now() -> String {
    registry::meta::now_rfc3339()
}

fn reset_fields(ctx: &Ctx<'_>) -> Option<FieldSet> {
    if !ctx.served.info.has_subresource("status") || ctx.info.subresource == "status" {
        return None;
    }
    let mut set = FieldSet::new();
    set.insert(apis::managedfields::FieldPath::fields(&["status"]).elements());
    Some(set)
}

fn manager<'t>(
    ctx: &Ctx<'_>,
    type_info: &'t dyn apis::managedfields::TypeInfo,
) -> FieldManager<'t> {
    let info = &ctx.served.info;
    let mut fm = FieldManager::new(type_info, &info.api_version());
    if !ctx.info.subresource.is_empty() {
        fm = fm.with_subresource(&ctx.info.subresource);
    }
    if let Some(reset) = reset_fields(ctx) {
        fm = fm.with_reset_fields(reset);
    }
    fm
}

/// Records the request's field manager as owner of what it changed (operation Update).
pub fn record_update(ctx: &Ctx<'_>, old: Option<&Value>, new: &mut Value) {
    let info = &ctx.served.info;
    let type_info = apis::managedfields::type_info_for(&info.group, &info.version, &info.kind);
    manager(ctx, &*type_info).update(old, new, &ctx.field_manager(), &now());
}

/// Server-side apply of `applied` onto `live`; conflicts become a 409 with causes.
pub fn apply(
    ctx: &Ctx<'_>,
    live: Option<&Value>,
    applied: &Value,
    force: bool,
) -> Result<Value, RegistryError> {
    let info = &ctx.served.info;
    let type_info = apis::managedfields::type_info_for(&info.group, &info.version, &info.kind);
    manager(ctx, &*type_info)
        .apply(live, applied, &ctx.field_manager(), force, &now())
        .map_err(|e| match e {
            apis::managedfields::ApplyError::Conflicts(_) => RegistryError::ApplyConflict {
                message: e.status_message(),
                causes: e
                    .causes()
                    .into_iter()
                    .map(|c| (c.field.unwrap_or_default(), c.message.unwrap_or_default()))
                    .collect(),
            },
            other => RegistryError::BadRequest(other.to_string()),
        })
}
