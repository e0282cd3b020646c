//! The generic store: create/get/list/update/delete/watch of one resource over the
//! cluster store, with the resource's [`Strategy`] plugged in.
//!
//! Revision semantics: an object's `resourceVersion` is its store `mod_revision`; a
//! list's is the revision it was read at. Objects are stored *without*
//! `resourceVersion` (it is injected on read), as upstream does in etcd.
//!
//! Reads: GET goes to the store; LIST without paging is served from the watch cache
//! after it has caught up with the store (consistent read); paged LISTs (`limit`,
//! `continue`) and exact-revision reads go to the store at a fixed revision encoded in
//! the continue token, so every page is consistent with the first.

use std::sync::Arc;

use apis::ResourceInfo;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use storage::{KeyValue, Storage, StorageError};

use crate::cacher::{CacheHub, CachedObject, Cacher, ObjectAttrs, WatchStart, WatchSubscription};
use crate::error::{RegistryError, Result, OBJECT_MODIFIED};
use crate::meta;
use crate::strategy::Strategy;

/// Filter over an object's labels and fields (built by the API server from selectors).
pub type Filter = Arc<dyn Fn(&ObjectAttrs) -> bool + Send + Sync>;

pub fn match_all() -> Filter {
    Arc::new(|_| true)
}

#[derive(Clone)]
pub struct ListOptions {
    pub filter: Filter,
    /// Whether a selector is set (upstream omits remainingItemCount then).
    pub has_selector: bool,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            filter: match_all(),
            has_selector: false,
            limit: 0,
            continue_token: None,
            resource_version: None,
            resource_version_match: None,
        }
    }
}

/// Items of a list, each the object's JSON with its resourceVersion.
pub struct ObjectList {
    pub items: Vec<Bytes>,
    pub resource_version: i64,
    pub continue_token: Option<String>,
    pub remaining_item_count: Option<i64>,
}

#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub grace_period_seconds: Option<i64>,
    /// `Orphan`, `Background` or `Foreground`.
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

pub struct DeleteOutcome {
    /// The object as deleted, or as marked for deletion.
    pub object: Value,
    /// True if it is gone from the store; false if it now waits for finalizers or a grace period.
    pub deleted: bool,
}

/// Which part of an object an update may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateMode {
    /// The main resource: status is carried over when the resource has a status subresource.
    Main,
    /// The status subresource: everything but status is carried over.
    Status,
    /// A system update (finalize, internal bookkeeping): no strategy carry-over.
    Internal,
}

/// Validating admission for [`Store::create_admitted`] (upstream's `createValidation`):
/// runs once the object is complete, before it is written; an error refuses the create.
#[async_trait::async_trait]
pub trait CreateValidation: Send + Sync {
    async fn validate(&self, obj: &Value, dry_run: bool) -> Result<()>;
}

/// A mutation for [`Store::guaranteed_update`]: given the current object (None if absent),
/// returns the desired object.
pub type UpdateFn<'a> = dyn FnMut(Option<&Value>) -> Result<Value> + Send + 'a;

pub struct Store {
    pub info: Arc<ResourceInfo>,
    pub strategy: Arc<dyn Strategy>,
    storage: Arc<dyn Storage>,
    hub: Arc<CacheHub>,
    cacher: Arc<Cacher>,
    prefix: String,
}

const GENERATE_NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const MAX_UPDATE_RETRIES: usize = 16;

impl Store {
    pub async fn new(
        strategy: Arc<dyn Strategy>,
        storage: Arc<dyn Storage>,
        hub: Arc<CacheHub>,
    ) -> Result<Self> {
        let info = strategy.info().clone();
        let prefix = info.storage_prefix();
        let attrs_strategy = strategy.clone();
        let cacher = hub
            .register(
                &prefix,
                Arc::new(move |obj: &Value| attrs_strategy.attrs(obj)),
            )
            .await?;
        Ok(Store {
            info,
            strategy,
            storage,
            hub,
            cacher,
            prefix,
        })
    }

    pub fn cacher(&self) -> &Arc<Cacher> {
        &self.cacher
    }

    pub fn key(&self, namespace: &str, name: &str) -> String {
        if self.info.namespaced {
            format!("{}{}/{}", self.prefix, namespace, name)
        } else {
            format!("{}{}", self.prefix, name)
        }
    }

    /// Key prefix of one namespace (or of every object when `namespace` is empty).
    pub fn scope_prefix(&self, namespace: &str) -> String {
        if self.info.namespaced && !namespace.is_empty() {
            format!("{}{}/", self.prefix, namespace)
        } else {
            self.prefix.clone()
        }
    }

    fn not_found(&self, name: &str) -> RegistryError {
        RegistryError::NotFound {
            group: self.info.group.clone(),
            resource: self.info.resource.clone(),
            name: name.to_string(),
        }
    }

    fn storage_err(&self, e: StorageError, name: &str) -> RegistryError {
        RegistryError::from_storage(e, &self.info.group, &self.info.resource, name)
    }

    fn conflict(&self, name: &str, message: impl Into<String>) -> RegistryError {
        RegistryError::Conflict {
            group: self.info.group.clone(),
            resource: self.info.resource.clone(),
            name: name.to_string(),
            message: message.into(),
        }
    }

    fn invalid(&self, name: &str, errors: apis::FieldErrors) -> RegistryError {
        RegistryError::Invalid {
            group: self.info.group.clone(),
            kind: self.info.kind.clone(),
            name: name.to_string(),
            errors,
        }
    }

    /// Decodes a stored object into the served version.
    fn decode(&self, kv: &KeyValue) -> Result<Value> {
        let mut obj = decode_kv(kv)?;
        if self.strategy.converts() {
            self.strategy.to_served(&mut obj);
        }
        Ok(obj)
    }

    /// Encodes an object in its stored form.
    fn encode(&self, obj: &Value) -> Result<Bytes> {
        if self.strategy.converts() {
            let mut stored = obj.clone();
            self.strategy.to_storage(&mut stored);
            return encode(&stored);
        }
        encode(obj)
    }

    /// The current object, from the store.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Value> {
        let kv = self
            .storage
            .get(&self.key(namespace, name))
            .await
            .map_err(|e| self.storage_err(e, name))?
            .ok_or_else(|| self.not_found(name))?;
        self.decode(&kv)
    }

    async fn get_kv(&self, namespace: &str, name: &str) -> Result<Option<KeyValue>> {
        self.storage
            .get(&self.key(namespace, name))
            .await
            .map_err(|e| self.storage_err(e, name))
    }

    pub async fn list(&self, namespace: &str, opts: &ListOptions) -> Result<ObjectList> {
        let exact = opts.resource_version_match.as_deref() == Some("Exact");
        if opts.limit > 0 || opts.continue_token.is_some() || exact {
            return self.list_from_storage(namespace, opts).await;
        }
        let rv = match opts.resource_version.as_deref() {
            // "0": any cached state will do.
            Some("0") => self.hub.revision(),
            Some(s) if !s.is_empty() => {
                let want = parse_rv(s)?;
                self.hub
                    .wait_for(want, std::time::Duration::from_secs(3))
                    .await?;
                self.hub.revision()
            }
            _ => self.hub.sync().await?,
        };
        let filter = &opts.filter;
        let items = self
            .cacher
            .list(&self.scope_prefix(namespace), |o| filter(&o.attrs));
        Ok(ObjectList {
            items: items.iter().map(|o| o.json.clone()).collect(),
            resource_version: rv,
            continue_token: None,
            remaining_item_count: None,
        })
    }

    async fn list_from_storage(&self, namespace: &str, opts: &ListOptions) -> Result<ObjectList> {
        let scope = self.scope_prefix(namespace);
        let (mut revision, mut start_after) = match &opts.continue_token {
            Some(token) => {
                let (rv, start) = decode_continue(token)?;
                (rv, Some(format!("{scope}{start}")))
            }
            None => {
                let rv = match opts.resource_version.as_deref() {
                    Some(s) if !s.is_empty() && s != "0" => parse_rv(s)?,
                    _ => 0,
                };
                (rv, None)
            }
        };
        let limit = opts.limit;
        let mut items = Vec::new();
        let mut more = false;
        let mut last_key: Option<String> = None;
        loop {
            let chunk = limit;
            let page = self
                .storage
                .list(&scope, revision, start_after.as_deref(), chunk)
                .await
                .map_err(|e| match e {
                    StorageError::Compacted { .. } if opts.continue_token.is_some() => RegistryError::Expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".to_string(),
                    ),
                    e => self.storage_err(e, ""),
                })?;
            revision = page.revision;
            let page_len = page.items.len();
            let mut consumed = 0;
            for kv in page.items {
                consumed += 1;
                last_key = Some(kv.key.clone());
                let obj = self.decode(&kv)?;
                if !(opts.filter)(&self.strategy.attrs(&obj)) {
                    continue;
                }
                items.push(Bytes::from(
                    serde_json::to_vec(&obj).map_err(RegistryError::internal)?,
                ));
                if limit > 0 && items.len() >= limit {
                    break;
                }
            }
            let page_has_more = page.more || consumed < page_len;
            if limit > 0 && items.len() >= limit {
                more = page_has_more;
                break;
            }
            if !page_has_more {
                break;
            }
            start_after = last_key.clone();
        }
        let continue_token = match (more, &last_key) {
            (true, Some(k)) => Some(encode_continue(
                revision,
                k.strip_prefix(&scope).unwrap_or(k),
            )),
            _ => None,
        };
        let remaining_item_count = if more && !opts.has_selector {
            let total = self
                .storage
                .count(&scope)
                .await
                .map_err(|e| self.storage_err(e, ""))? as i64;
            // Approximate, like upstream: counts against the current state.
            let after = self
                .cacher
                .list(&scope, |o| {
                    last_key.as_deref().is_some_and(|lk| o.key.as_str() > lk)
                })
                .len() as i64;
            Some(after.min(total))
        } else {
            None
        };
        Ok(ObjectList {
            items,
            resource_version: revision,
            continue_token,
            remaining_item_count,
        })
    }

    /// Creates `obj` in `namespace` (empty for cluster-scoped resources).
    pub async fn create(&self, namespace: &str, obj: Value, opts: &WriteOptions) -> Result<Value> {
        self.create_admitted(namespace, obj, opts, None).await
    }

    /// [`Store::create`] with validating admission: `admit` sees the final object
    /// (defaulted, named, valid) before anything is reserved or written, and may refuse it.
    pub async fn create_admitted(
        &self,
        namespace: &str,
        mut obj: Value,
        opts: &WriteOptions,
        admit: Option<&dyn CreateValidation>,
    ) -> Result<Value> {
        self.prepare_new_object(namespace, &mut obj)?;
        self.strategy.prepare_for_create(&mut obj);
        self.strategy.default(&mut obj);
        let generate_name = meta::meta_str(&obj, "generateName").map(str::to_string);
        if meta::name(&obj).is_empty() {
            if let Some(base) = generate_name.as_deref().filter(|b| !b.is_empty()) {
                meta::set_meta(&mut obj, "name", Value::String(generate_name_from(base)));
            }
        }
        let errors = self.strategy.validate(&obj);
        if !errors.is_empty() {
            return Err(self.invalid(meta::name(&obj), errors));
        }
        if let Some(admit) = admit {
            admit.validate(&obj, opts.dry_run).await?;
        }
        self.strategy.allocate(&mut obj)?;
        if opts.dry_run {
            self.strategy.release(&obj);
            return Ok(obj);
        }
        let name = meta::name(&obj).to_string();
        let key = self.key(namespace, &name);
        let bytes = self.encode(&obj)?;
        match self.storage.create(&key, bytes).await {
            Ok(kv) => {
                meta::set_meta(
                    &mut obj,
                    "resourceVersion",
                    Value::String(kv.mod_revision.to_string()),
                );
                Ok(obj)
            }
            Err(e) => {
                self.strategy.release(&obj);
                Err(self.storage_err(e, &name))
            }
        }
    }

    /// System metadata for a new object: namespace, uid, timestamps, generation.
    fn prepare_new_object(&self, namespace: &str, obj: &mut Value) -> Result<()> {
        if !obj.is_object() {
            return Err(RegistryError::BadRequest(
                "the body of the request was in an unknown format".to_string(),
            ));
        }
        let body_ns = meta::namespace(obj).to_string();
        if self.info.namespaced {
            if !body_ns.is_empty() && body_ns != namespace {
                return Err(RegistryError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".to_string(),
                ));
            }
            meta::set_meta(obj, "namespace", Value::String(namespace.to_string()));
        } else {
            meta::remove_meta(obj, "namespace");
        }
        set_type_meta(obj, &self.info);
        meta::set_meta(obj, "uid", Value::String(uuid::Uuid::new_v4().to_string()));
        meta::set_meta(obj, "creationTimestamp", Value::String(meta::now_rfc3339()));
        meta::remove_meta(obj, "resourceVersion");
        meta::remove_meta(obj, "deletionTimestamp");
        meta::remove_meta(obj, "deletionGracePeriodSeconds");
        meta::remove_meta(obj, "selfLink");
        if self.strategy.has_generation() {
            meta::set_meta(obj, "generation", json!(1));
        } else {
            meta::remove_meta(obj, "generation");
        }
        Ok(())
    }

    /// PUT: replaces the object. Uses the body's resourceVersion as precondition if set.
    pub async fn update(
        &self,
        namespace: &str,
        name: &str,
        obj: Value,
        mode: UpdateMode,
        opts: &WriteOptions,
    ) -> Result<(Value, bool)> {
        let body_name = meta::name(&obj).to_string();
        if !body_name.is_empty() && body_name != name {
            return Err(RegistryError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let precondition = meta::resource_version(&obj).to_string();
        let mut obj = Some(obj);
        self.update_inner(
            namespace,
            name,
            mode,
            opts,
            Some(precondition).filter(|p| !p.is_empty()),
            &mut |_| {
                obj.take()
                    .ok_or_else(|| RegistryError::internal("update retried without precondition"))
            },
        )
        .await
    }

    /// Like [`Store::update`] with the mutation given as a function of the current object.
    pub async fn update_with_precondition(
        &self,
        namespace: &str,
        name: &str,
        mode: UpdateMode,
        opts: &WriteOptions,
        precondition_rv: Option<String>,
        update: &mut UpdateFn<'_>,
    ) -> Result<(Value, bool)> {
        self.update_inner(namespace, name, mode, opts, precondition_rv, update)
            .await
    }

    /// Read-modify-write with retries on conflict (PATCH, apply, internal updates).
    pub async fn guaranteed_update(
        &self,
        namespace: &str,
        name: &str,
        mode: UpdateMode,
        opts: &WriteOptions,
        update: &mut UpdateFn<'_>,
    ) -> Result<(Value, bool)> {
        self.update_inner(namespace, name, mode, opts, None, update)
            .await
    }

    async fn update_inner(
        &self,
        namespace: &str,
        name: &str,
        mode: UpdateMode,
        opts: &WriteOptions,
        precondition_rv: Option<String>,
        update: &mut UpdateFn<'_>,
    ) -> Result<(Value, bool)> {
        for _ in 0..MAX_UPDATE_RETRIES {
            let current = self.get_kv(namespace, name).await?;
            let Some(current) = current else {
                if !self.strategy.allow_create_on_update() || mode != UpdateMode::Main {
                    return Err(self.not_found(name));
                }
                let mut new = update(None)?;
                if meta::name(&new).is_empty() {
                    meta::set_meta(&mut new, "name", Value::String(name.to_string()));
                }
                return match self.create(namespace, new, opts).await {
                    Ok(v) => Ok((v, true)),
                    // Lost a race with another creator: retry as an update.
                    Err(RegistryError::AlreadyExists { .. }) if precondition_rv.is_none() => {
                        continue
                    }
                    Err(e) => Err(e),
                };
            };
            let old = self.decode(&current)?;
            if let Some(rv) = &precondition_rv {
                if rv != &current.mod_revision.to_string() {
                    return Err(self.conflict(name, OBJECT_MODIFIED));
                }
            }
            let mut new = update(Some(&old))?;
            if !new.is_object() {
                return Err(RegistryError::BadRequest(
                    "the body of the request was in an unknown format".to_string(),
                ));
            }
            match mode {
                UpdateMode::Main => self.strategy.prepare_for_update(&mut new, &old),
                UpdateMode::Status => self.strategy.prepare_for_status_update(&mut new, &old),
                UpdateMode::Internal => {}
            }
            self.carry_system_metadata(&mut new, &old)?;
            self.strategy.default(&mut new);
            // System updates (binding, finalize) set fields clients may not change.
            let mut errors = if mode == UpdateMode::Internal {
                Vec::new()
            } else {
                self.strategy.validate_update(&new, &old)
            };
            if errors.is_empty() && mode == UpdateMode::Main {
                errors = self.strategy.validate(&new);
            }
            if !errors.is_empty() {
                return Err(self.invalid(name, errors));
            }
            if self.strategy.has_generation()
                && mode == UpdateMode::Main
                && !meta::spec_equal(&new, &old)
            {
                meta::set_meta(&mut new, "generation", json!(meta::generation(&old) + 1));
            }
            self.strategy.reallocate(&mut new, &old)?;
            if strip_rv(&new) == strip_rv(&old) {
                // No-op updates do not write (upstream skips them too).
                return Ok((old, false));
            }
            if opts.dry_run {
                return Ok((new, false));
            }
            if meta::deletion_timestamp(&new).is_some()
                && meta::finalizers(&new).is_empty()
                && !self.strategy.deletion_pending(&new)
            {
                let (kv, _) = match self
                    .storage
                    .delete(&current.key, Some(current.mod_revision))
                    .await
                {
                    Ok(r) => r,
                    Err(StorageError::Conflict { .. }) if precondition_rv.is_none() => continue,
                    Err(e) => return Err(self.storage_err(e, name)),
                };
                self.strategy.release(&new);
                let mut gone = self.decode(&kv)?;
                gone = merge_last_state(gone, new);
                return Ok((gone, false));
            }
            match self
                .storage
                .update(&current.key, self.encode(&new)?, current.mod_revision)
                .await
            {
                Ok(kv) => {
                    meta::set_meta(
                        &mut new,
                        "resourceVersion",
                        Value::String(kv.mod_revision.to_string()),
                    );
                    return Ok((new, false));
                }
                Err(StorageError::Conflict { .. }) if precondition_rv.is_none() => continue,
                Err(e) => return Err(self.storage_err(e, name)),
            }
        }
        Err(self.conflict(name, OBJECT_MODIFIED))
    }

    /// uid, creationTimestamp, deletion state and generation are the server's.
    fn carry_system_metadata(&self, new: &mut Value, old: &Value) -> Result<()> {
        let old_meta = meta::metadata(old).cloned().unwrap_or_default();
        set_type_meta(new, &self.info);
        let new_uid = meta::uid(new).to_string();
        if !new_uid.is_empty() && new_uid != meta::uid(old) {
            return Err(self.conflict(
                meta::name(old),
                format!(
                    "Precondition failed: UID in precondition: {new_uid}, UID in object meta: {}",
                    meta::uid(old)
                ),
            ));
        }
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(field) {
                Some(v) => meta::set_meta(new, field, v.clone()),
                None => {
                    meta::remove_meta(new, field);
                }
            }
        }
        // Validation sees the version being replaced, as upstream; it is not stored.
        let old_rv = meta::resource_version(old).to_string();
        meta::set_meta(new, "resourceVersion", Value::String(old_rv));
        meta::remove_meta(new, "selfLink");
        // Finalizers cannot be added once deletion started.
        if meta::deletion_timestamp(old).is_some() {
            let old_f = meta::finalizers(old);
            let new_f = meta::finalizers(new);
            if new_f.iter().any(|f| !old_f.contains(f)) {
                return Err(RegistryError::Forbidden(format!(
                    "{} \"{}\" is forbidden: no new finalizers can be added if the object is being deleted",
                    self.info.kind,
                    meta::name(old)
                )));
            }
        }
        Ok(())
    }

    pub async fn delete(
        &self,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<DeleteOutcome> {
        for _ in 0..MAX_UPDATE_RETRIES {
            let current = self
                .get_kv(namespace, name)
                .await?
                .ok_or_else(|| self.not_found(name))?;
            let obj = self.decode(&current)?;
            if let Some(uid) = &opts.precondition_uid {
                if uid != meta::uid(&obj) {
                    return Err(self.conflict(
                        name,
                        format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta::uid(&obj)),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                if rv != &current.mod_revision.to_string() {
                    return Err(self.conflict(
                        name,
                        format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            current.mod_revision
                        ),
                    ));
                }
            }
            let mut finalizers = meta::finalizers(&obj);
            let policy = match opts.propagation_policy.as_deref() {
                None if self.strategy.orphans_dependents_by_default() => Some("Orphan"),
                p => p,
            };
            match policy {
                Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                    finalizers.push("foregroundDeletion".to_string())
                }
                Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
                    finalizers.push("orphan".to_string())
                }
                _ => {}
            }
            let grace = self
                .strategy
                .graceful_delete_period(&obj, opts.grace_period_seconds);
            let pending = self.strategy.deletion_pending(&obj);
            if !finalizers.is_empty() || grace.is_some() || pending {
                if meta::deletion_timestamp(&obj).is_some() && meta::finalizers(&obj) == finalizers
                {
                    // Already being deleted; a shorter grace period may still shorten the wait.
                    let shorten = match (
                        grace,
                        meta::metadata(&obj)
                            .and_then(|m| m.get("deletionGracePeriodSeconds"))
                            .and_then(Value::as_i64),
                    ) {
                        (Some(g), Some(cur)) => g < cur,
                        _ => false,
                    };
                    if !shorten {
                        return Ok(DeleteOutcome {
                            object: obj,
                            deleted: false,
                        });
                    }
                }
                let mut marked = obj.clone();
                let now = chrono::Utc::now();
                let grace_s = grace.unwrap_or(0);
                let ts = (now + chrono::Duration::seconds(grace_s))
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                if meta::deletion_timestamp(&obj).is_none() || grace.is_some() {
                    meta::set_meta(&mut marked, "deletionTimestamp", Value::String(ts));
                    meta::set_meta(&mut marked, "deletionGracePeriodSeconds", json!(grace_s));
                }
                if !finalizers.is_empty() {
                    meta::set_meta(&mut marked, "finalizers", json!(finalizers));
                }
                self.strategy.prepare_for_delete(&mut marked);
                if grace == Some(0) && finalizers.is_empty() && !pending {
                    return self.delete_now(&current, obj, opts).await;
                }
                if opts.dry_run {
                    return Ok(DeleteOutcome {
                        object: marked,
                        deleted: false,
                    });
                }
                match self
                    .storage
                    .update(&current.key, self.encode(&marked)?, current.mod_revision)
                    .await
                {
                    Ok(kv) => {
                        meta::set_meta(
                            &mut marked,
                            "resourceVersion",
                            Value::String(kv.mod_revision.to_string()),
                        );
                        return Ok(DeleteOutcome {
                            object: marked,
                            deleted: false,
                        });
                    }
                    Err(StorageError::Conflict { .. }) => continue,
                    Err(e) => return Err(self.storage_err(e, name)),
                }
            }
            match self.delete_now(&current, obj, opts).await {
                Err(RegistryError::Conflict { .. })
                    if opts.precondition_resource_version.is_none() =>
                {
                    continue
                }
                other => return other,
            }
        }
        Err(self.conflict(name, OBJECT_MODIFIED))
    }

    async fn delete_now(
        &self,
        current: &KeyValue,
        obj: Value,
        opts: &DeleteOptions,
    ) -> Result<DeleteOutcome> {
        if opts.dry_run {
            return Ok(DeleteOutcome {
                object: obj,
                deleted: true,
            });
        }
        let name = meta::name(&obj).to_string();
        self.storage
            .delete(&current.key, Some(current.mod_revision))
            .await
            .map_err(|e| self.storage_err(e, &name))?;
        self.strategy.release(&obj);
        Ok(DeleteOutcome {
            object: obj,
            deleted: true,
        })
    }

    /// Deletes every object in `namespace` matching `list_opts`; returns what was deleted.
    pub async fn delete_collection(
        &self,
        namespace: &str,
        list_opts: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Value>> {
        let list = self
            .list(
                namespace,
                &ListOptions {
                    limit: 0,
                    continue_token: None,
                    ..list_opts.clone()
                },
            )
            .await?;
        let mut out = Vec::new();
        for item in list.items {
            let obj: Value = serde_json::from_slice(&item).map_err(RegistryError::internal)?;
            match self
                .delete(meta::namespace(&obj), meta::name(&obj), opts)
                .await
            {
                Ok(o) => out.push(o.object),
                Err(RegistryError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Starts a watch in `namespace` (all namespaces if empty).
    pub async fn watch(
        &self,
        namespace: &str,
        resource_version: Option<&str>,
        send_initial_events: bool,
    ) -> Result<WatchSubscription> {
        let start = match resource_version {
            _ if send_initial_events => WatchStart::InitialEvents,
            None | Some("") | Some("0") => WatchStart::InitialEvents,
            Some(rv) => {
                let rv = parse_rv(rv)?;
                self.hub
                    .wait_for(rv, std::time::Duration::from_secs(3))
                    .await?;
                WatchStart::After(rv)
            }
        };
        let revision = if send_initial_events {
            self.hub.sync().await?
        } else {
            self.hub.revision()
        };
        self.cacher
            .watch(&self.scope_prefix(namespace), start, revision)
    }

    /// Objects in the cache (for controllers in the registry such as allocators).
    pub fn cached(&self) -> Vec<Arc<CachedObject>> {
        self.cacher.list(&self.prefix, |_| true)
    }
}

fn strip_rv(v: &Value) -> Value {
    let mut v = v.clone();
    meta::remove_meta(&mut v, "resourceVersion");
    meta::remove_meta(&mut v, "managedFields");
    v
}

/// The object an update that completed a deletion answers with: the update's result
/// (upstream returns the object as last written, e.g. with its finalizers removed) at
/// the resourceVersion the store reported for the deletion.
fn merge_last_state(stored: Value, mut last: Value) -> Value {
    if let Some(rv) = meta::metadata(&stored)
        .and_then(|m| m.get("resourceVersion"))
        .cloned()
    {
        meta::set_meta(&mut last, "resourceVersion", rv);
    }
    last
}

pub fn set_type_meta(obj: &mut Value, info: &ResourceInfo) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".to_string(), Value::String(info.api_version()));
        m.insert("kind".to_string(), Value::String(info.kind.clone()));
    }
}

fn parse_rv(s: &str) -> Result<i64> {
    s.parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| RegistryError::BadRequest(format!("invalid resource version: {s}")))
}

pub fn decode_kv(kv: &KeyValue) -> Result<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(RegistryError::internal)?;
    meta::set_meta(
        &mut obj,
        "resourceVersion",
        Value::String(kv.mod_revision.to_string()),
    );
    Ok(obj)
}

fn encode(obj: &Value) -> Result<Bytes> {
    let mut stored = obj.clone();
    meta::remove_meta(&mut stored, "resourceVersion");
    serde_json::to_vec(&stored)
        .map(Bytes::from)
        .map_err(RegistryError::internal)
}

pub(crate) fn generate_name_from(base: &str) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let suffix: String = (0..5)
        .map(|_| GENERATE_NAME_CHARS[rng.gen_range(0..GENERATE_NAME_CHARS.len())] as char)
        .collect();
    // Upstream truncates the base to keep the name within 63 characters.
    let max_base = 63 - 5;
    let base = if base.len() > max_base {
        &base[..max_base]
    } else {
        base
    };
    format!("{base}{suffix}")
}

fn encode_continue(rv: i64, start: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String)> {
    let bad = || RegistryError::BadRequest(format!("invalid continue token: {token}"));
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, start.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "default/web-1");
        assert_eq!(
            decode_continue(&t).expect("decodes"),
            (42, "default/web-1".to_string())
        );
        assert!(decode_continue("not-a-token").is_err());
    }

    #[test]
    fn generated_names_keep_the_base_and_fit() {
        let n = generate_name_from("web-");
        assert!(n.starts_with("web-") && n.len() == 9);
        assert!(generate_name_from(&"a".repeat(80)).len() <= 63);
    }
}
