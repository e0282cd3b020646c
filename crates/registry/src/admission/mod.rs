//! Admission (upstream `plugin/pkg/admission`): the built-in plugins that look at a new
//! object in the light of other objects, run by [`crate::Registry::create`].
//!
//! Two phases, as upstream:
//!
//! 1. **Mutating**, on the decoded and defaulted object before the store prepares it:
//!    DefaultStorageClass (a claim without `storageClassName` gets the default class),
//!    DefaultTolerationSeconds (not-ready/unreachable tolerations of 300 s),
//!    LimitRanger's defaults (container requests/limits from `default`/`defaultRequest`)
//!    and ServiceAccount (the account, and the `kube-api-access` token volume).
//! 2. **Validating**, from inside [`crate::Store::create_admitted`] once the object is
//!    named and valid, before it is written: LimitRanger's min/max/ratio checks, then
//!    ResourceQuota, which refuses what would exceed a quota and otherwise *charges* the
//!    object to the quota's `status.used` at once (an optimistic update retried on
//!    conflict), so two creates racing for the last unit cannot both win.
//!
//! Plugins read LimitRanges, StorageClasses and ResourceQuotas from the registry's watch
//! cache; the charge itself reads and writes the quota in the store. Refusals are 403
//! Forbidden worded as upstream (`pods "x" is forbidden: exceeded quota: …`), naming the
//! object by `generateName` when it has no name yet.

pub mod default_toleration_seconds;
pub mod limit_ranger;
pub mod resource_quota;
pub mod service_account;
pub mod storage_class;

use serde_json::Value;

use crate::error::{qualified, RegistryError, Result};
use crate::store::CreateValidation;
use crate::{meta, Registry, Served};

/// Resources admission never looks at (upstream ignores events for quota too).
fn skipped(served: &Served) -> bool {
    let info = &served.info;
    !info.namespaced || info.resource == "events"
}

/// What a refusal calls the object: its name, else its `generateName`.
pub fn display_name(obj: &Value) -> String {
    let name = meta::name(obj);
    if !name.is_empty() {
        return name.to_string();
    }
    meta::meta_str(obj, "generateName")
        .unwrap_or("Unknown")
        .to_string()
}

/// Upstream `admission.NewForbidden`: `<resource> "<name>" is forbidden: <reason>`.
pub fn forbidden(served: &Served, name: &str, reason: impl std::fmt::Display) -> RegistryError {
    RegistryError::Forbidden(format!(
        "{} \"{name}\" is forbidden: {reason}",
        qualified(&served.info.group, &served.info.resource)
    ))
}

/// The mutating phase: may change `obj`. Plugins that act see it defaulted first, as
/// upstream's decoder leaves it (the store defaults again; defaulting is idempotent).
pub async fn mutate(
    registry: &Registry,
    served: &Served,
    namespace: &str,
    obj: &mut Value,
) -> Result<()> {
    if skipped(served) {
        return Ok(());
    }
    match (served.info.group.as_str(), served.info.resource.as_str()) {
        ("", "persistentvolumeclaims") => storage_class::admit(registry, served, obj),
        ("", "pods") => {
            default_toleration_seconds::admit(obj);
            limit_ranger::mutate(registry, namespace, obj, |o| {
                served.store.strategy.default(o)
            });
            service_account::admit(registry, served, namespace, obj).await
        }
        _ => Ok(()),
    }
}

/// Whether `served` has validating admission at all (so the store can skip the hook).
pub fn validates(served: &Served) -> bool {
    !skipped(served)
}

/// The validating phase, handed to [`crate::Store::create_admitted`].
pub struct Validation<'a> {
    pub registry: &'a Registry,
    pub served: &'a Served,
    pub namespace: &'a str,
    /// The object's name as the request gave it (`generateName` when unnamed).
    pub display_name: String,
}

#[async_trait::async_trait]
impl CreateValidation for Validation<'_> {
    async fn validate(&self, obj: &Value, dry_run: bool) -> Result<()> {
        limit_ranger::validate(self, obj)?;
        resource_quota::admit(self, obj, dry_run).await
    }
}
