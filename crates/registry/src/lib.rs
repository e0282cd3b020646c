//! The registry: one [`Store`] per served resource, each with its [`Strategy`], over
//! the cluster store. The only crate besides `apiserver` that touches storage, and it
//! speaks no HTTP.
//!
//! Cluster-wide rules that span resources live here rather than in a store:
//! namespace lifecycle (no new content in a missing or terminating namespace),
//! protected namespaces, and installing/removing the resources a
//! CustomResourceDefinition declares.

pub mod admission;
pub mod apps;
pub mod autoscaling;
pub mod batch;
pub mod cacher;
pub mod core;
pub mod crd;
pub mod error;
pub mod meta;
pub mod store;
pub mod strategy;

use std::collections::HashMap;
use std::sync::Arc;

use apis::ResourceInfo;
use ipnet::Ipv4Net;
use parking_lot::RwLock;
use serde_json::{json, Value};
use storage::Storage;
use tokio_util::sync::CancellationToken;

pub use cacher::{
    CacheEvent, CacheHub, CachedObject, EventType, LiveError, LiveEvents, ObjectAttrs,
    WatchSubscription,
};
pub use error::{RegistryError, Result};
pub use store::{
    DeleteOptions, DeleteOutcome, Filter, ListOptions, ObjectList, Store, UpdateMode, WriteOptions,
};
pub use strategy::Strategy;

use crate::core::allocator::{IpAllocator, PortAllocator};

#[derive(Clone, Debug)]
pub struct RegistryConfig {
    pub service_cidr: Ipv4Net,
    pub node_port_range: (u16, u16),
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            service_cidr: "10.43.0.0/16".parse().expect("invariant: literal CIDR"),
            node_port_range: (30000, 32767),
        }
    }
}

/// A resource as served at one group/version.
#[derive(Clone)]
pub struct Served {
    pub info: Arc<ResourceInfo>,
    pub store: Arc<Store>,
}

pub struct Registry {
    storage: Arc<dyn Storage>,
    hub: Arc<CacheHub>,
    served: RwLock<Vec<Served>>,
    by_path: RwLock<HashMap<(String, String, String), Served>>,
    pub config: RegistryConfig,
    pub service_ips: Arc<IpAllocator>,
    pub node_ports: Arc<PortAllocator>,
    cancel: CancellationToken,
}

impl Registry {
    /// Loads every built-in resource (and installed CRDs) over `storage`.
    pub async fn new(
        storage: Arc<dyn Storage>,
        config: RegistryConfig,
        cancel: CancellationToken,
    ) -> Result<Arc<Registry>> {
        let hub = CacheHub::start_paused(
            storage.clone(),
            cancel.clone(),
            cacher::STARTUP_REPLAY_REVISIONS,
        )
        .await?;
        let service_ips = Arc::new(IpAllocator::new(config.service_cidr));
        let node_ports = Arc::new(PortAllocator::new(
            config.node_port_range.0,
            config.node_port_range.1,
        ));
        let registry = Arc::new(Registry {
            storage,
            hub,
            served: RwLock::new(Vec::new()),
            by_path: RwLock::new(HashMap::new()),
            config,
            service_ips,
            node_ports,
            cancel,
        });
        for info in apis::builtin_resources() {
            let strategy: Arc<dyn Strategy> = match (info.group.as_str(), info.resource.as_str()) {
                ("", "pods") => Arc::new(core::pod::PodStrategy::new(info.clone())),
                ("", "namespaces") => {
                    Arc::new(core::namespace::NamespaceStrategy::new(info.clone()))
                }
                ("", "services") => {
                    let s = core::service::ServiceStrategy::new(
                        info.clone(),
                        registry.service_ips.clone(),
                        registry.node_ports.clone(),
                    );
                    Arc::new(s)
                }
                ("events.k8s.io", "events") => Arc::new(strategy::EventsV1Strategy {
                    inner: strategy::BuiltinStrategy::new(info.clone()),
                }),
                ("apps", "daemonsets") => Arc::new(apps::DaemonSetStrategy::new(info.clone())),
                ("autoscaling", "horizontalpodautoscalers") => Arc::new(
                    autoscaling::HorizontalPodAutoscalerStrategy::new(info.clone()),
                ),
                ("batch", "jobs") => Arc::new(batch::JobStrategy::new(info.clone())),
                ("apiextensions.k8s.io", "customresourcedefinitions") => {
                    Arc::new(crd::CrdStrategy::new(info.clone()))
                }
                _ => Arc::new(strategy::BuiltinStrategy::new(info.clone())),
            };
            registry.install(info, strategy).await?;
        }
        // The built-in caches were loaded in the past to replay recent history into them
        // (watch resume across restarts); catch up before reading them.
        registry
            .hub
            .follow(std::time::Duration::from_secs(60))
            .await?;
        registry.restore_allocations()?;
        registry.install_existing_crds().await?;
        Ok(registry)
    }

    async fn install(
        &self,
        info: Arc<ResourceInfo>,
        strategy: Arc<dyn Strategy>,
    ) -> Result<Served> {
        let store = Arc::new(Store::new(strategy, self.storage.clone(), self.hub.clone()).await?);
        let served = Served {
            info: info.clone(),
            store,
        };
        let key = (
            info.group.clone(),
            info.version.clone(),
            info.resource.clone(),
        );
        self.served.write().push(served.clone());
        self.by_path.write().insert(key, served.clone());
        Ok(served)
    }

    fn uninstall(&self, group: &str, resource: &str) {
        self.served
            .write()
            .retain(|s| !(s.info.group == group && s.info.resource == resource));
        self.by_path
            .write()
            .retain(|(g, _, r), _| !(g == group && r == resource));
        self.hub
            .unregister(&apis::resources::storage_prefix(group, resource));
    }

    fn restore_allocations(&self) -> Result<()> {
        let svc = self
            .lookup("", "v1", "services")
            .ok_or_else(|| RegistryError::internal("services not served"))?;
        let strategy = core::service::ServiceStrategy::new(
            svc.info.clone(),
            self.service_ips.clone(),
            self.node_ports.clone(),
        );
        for obj in svc.store.cached() {
            strategy.restore(&obj.value()?);
        }
        Ok(())
    }

    pub fn hub(&self) -> &Arc<CacheHub> {
        &self.hub
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Every served resource, built-in first, in discovery order.
    pub fn resources(&self) -> Vec<Arc<ResourceInfo>> {
        self.served.read().iter().map(|s| s.info.clone()).collect()
    }

    pub fn lookup(&self, group: &str, version: &str, resource: &str) -> Option<Served> {
        self.by_path
            .read()
            .get(&(group.to_string(), version.to_string(), resource.to_string()))
            .cloned()
    }

    /// Checks that `namespace` exists and is not terminating (upstream NamespaceLifecycle).
    pub async fn admit_namespace(&self, namespace: &str) -> Result<()> {
        if namespace.is_empty() {
            return Ok(());
        }
        let ns = self
            .lookup("", "v1", "namespaces")
            .ok_or_else(|| RegistryError::internal("namespaces not served"))?;
        let key = ns.store.key("", namespace);
        let obj = match ns.store.cacher().get(&key) {
            Some(o) => o.value()?,
            None => match ns.store.get("", namespace).await {
                Ok(v) => v,
                Err(RegistryError::NotFound { .. }) => {
                    return Err(RegistryError::NotFound {
                        group: String::new(),
                        resource: "namespaces".to_string(),
                        name: namespace.to_string(),
                    })
                }
                Err(e) => return Err(e),
            },
        };
        if meta::deletion_timestamp(&obj).is_some()
            || obj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
        {
            return Err(RegistryError::Forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }

    pub async fn create(
        &self,
        served: &Served,
        namespace: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value> {
        if served.info.namespaced {
            self.admit_namespace(namespace).await?;
        }
        let created = if admission::validates(served) {
            admission::mutate(self, served, namespace, &mut obj).await?;
            let validation = admission::Validation {
                registry: self,
                served,
                namespace,
                display_name: admission::display_name(&obj),
            };
            served
                .store
                .create_admitted(namespace, obj, opts, Some(&validation))
                .await?
        } else {
            served.store.create(namespace, obj, opts).await?
        };
        if served.info.resource == "customresourcedefinitions" && !opts.dry_run {
            self.install_crd(&created).await?;
        }
        Ok(created)
    }

    pub async fn delete(
        &self,
        served: &Served,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<DeleteOutcome> {
        if served.info.group.is_empty()
            && served.info.resource == "namespaces"
            && core::namespace::PROTECTED.contains(&name)
        {
            return Err(RegistryError::Forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        let outcome = served.store.delete(namespace, name, opts).await?;
        if served.info.resource == "customresourcedefinitions" && outcome.deleted && !opts.dry_run {
            self.remove_crd(&outcome.object).await;
        }
        Ok(outcome)
    }

    /// PUT `/api/v1/namespaces/{name}/finalize`: only `spec.finalizers` changes.
    pub async fn finalize_namespace(&self, name: &str, body: Value) -> Result<Value> {
        let served = self
            .lookup("", "v1", "namespaces")
            .ok_or_else(|| RegistryError::internal("namespaces not served"))?;
        let fins = body
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or(json!([]));
        let (obj, _) = served
            .store
            .guaranteed_update(
                "",
                name,
                UpdateMode::Internal,
                &WriteOptions::default(),
                &mut |cur| {
                    let mut o = cur
                        .cloned()
                        .ok_or_else(|| RegistryError::internal("namespace vanished"))?;
                    if let Some(spec) = o
                        .as_object_mut()
                        .map(|m| m.entry("spec").or_insert_with(|| json!({})))
                    {
                        if let Some(s) = spec.as_object_mut() {
                            s.insert("finalizers".to_string(), fins.clone());
                        }
                    }
                    Ok(o)
                },
            )
            .await?;
        Ok(obj)
    }

    /// Whether `group/resource` is a custom resource.
    pub fn is_custom(&self, group: &str, _resource: &str) -> bool {
        !apis::resources::BUILTIN_GROUPS
            .iter()
            .any(|(g, _)| *g == group)
    }

    fn crd_for(&self, group: &str, resource: &str) -> Option<Value> {
        if !self.is_custom(group, resource) {
            return None;
        }
        let crds = self.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")?;
        let key = crds.store.key("", &format!("{resource}.{group}"));
        crds.store.cacher().get(&key).and_then(|o| o.value().ok())
    }

    /// `additionalPrinterColumns` of a custom resource version (None for built-ins).
    pub fn printer_columns(
        &self,
        group: &str,
        version: &str,
        resource: &str,
    ) -> Option<Vec<Value>> {
        let crd = self.crd_for(group, resource)?;
        Some(apis::crd::printer_columns(&crd, version))
    }

    /// Scale subresource paths of a custom resource version.
    pub fn custom_scale_paths(
        &self,
        group: &str,
        version: &str,
        resource: &str,
    ) -> Option<apis::crd::ScalePaths> {
        let crd = self.crd_for(group, resource)?;
        apis::crd::scale_paths(&crd, version)
    }

    /// Every stored CRD.
    pub fn custom_resource_definitions(&self) -> Vec<Value> {
        let Some(crds) = self.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        else {
            return Vec::new();
        };
        crds.store
            .cached()
            .iter()
            .filter_map(|o| o.value().ok())
            .collect()
    }

    async fn install_existing_crds(&self) -> Result<()> {
        let Some(crds) = self.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        else {
            return Ok(());
        };
        for obj in crds.store.cached() {
            let v = obj.value()?;
            if let Err(e) = self.install_crd(&v).await {
                tracing::warn!(crd = meta::name(&v), error = %e, "cannot serve custom resource");
            }
        }
        Ok(())
    }

    /// Serves the versions a CRD declares (idempotent).
    pub async fn install_crd(&self, crd_obj: &Value) -> Result<()> {
        for info in apis::crd::resource_infos(crd_obj) {
            if self
                .lookup(&info.group, &info.version, &info.resource)
                .is_some()
            {
                continue;
            }
            let info = Arc::new(info);
            let strategy = Arc::new(crd::CustomResourceStrategy::new(info.clone(), crd_obj)?);
            self.install(info, strategy).await?;
            tracing::info!(crd = meta::name(crd_obj), "serving custom resource");
        }
        Ok(())
    }

    /// Deletes every custom object of a removed CRD, then stops serving it.
    async fn remove_crd(&self, crd_obj: &Value) {
        let group = crd_obj
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let plural = crd_obj
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let prefix = apis::resources::storage_prefix(&group, &plural);
        if let Ok(list) = self.storage.list(&prefix, 0, None, 0).await {
            for kv in list.items {
                let _ = self.storage.delete(&kv.key, None).await;
            }
        }
        self.uninstall(&group, &plural);
    }
}
