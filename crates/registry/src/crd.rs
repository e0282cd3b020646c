//! CustomResourceDefinitions and the custom resources they declare.
//!
//! A CRD is accepted and Established as soon as it is stored (names are checked for
//! conflicts with what is already served); its versions are then served by a generic
//! store whose strategy validates and prunes objects against the version's schema.

use std::collections::HashMap;
use std::sync::Arc;

use apis::crd::SchemaValidator;
use apis::{FieldErrors, ResourceInfo};
use serde_json::Value;

use crate::cacher::ObjectAttrs;
use crate::error::{RegistryError, Result};
use crate::meta;
use crate::strategy::{default_attrs, Strategy};

pub struct CrdStrategy {
    info: Arc<ResourceInfo>,
}

impl CrdStrategy {
    pub fn new(info: Arc<ResourceInfo>) -> Self {
        CrdStrategy { info }
    }
}

impl Strategy for CrdStrategy {
    fn info(&self) -> &Arc<ResourceInfo> {
        &self.info
    }
    fn default(&self, obj: &mut Value) {
        apis::crd::default_crd(obj);
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        apis::crd::default_crd(obj);
        let status = apis::crd::established_status(obj, &meta::now_rfc3339());
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".to_string(), status);
        }
    }
    fn validate(&self, obj: &Value) -> FieldErrors {
        apis::crd::validate_crd(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors {
        apis::crd::validate_crd_update(new, old)
    }
    fn has_generation(&self) -> bool {
        true
    }
}

/// Strategy of one served version of a custom resource.
pub struct CustomResourceStrategy {
    info: Arc<ResourceInfo>,
    validator: Option<SchemaValidator>,
    /// Validators of the other served versions, for objects written through them.
    _versions: HashMap<String, SchemaValidator>,
}

impl CustomResourceStrategy {
    pub fn new(info: Arc<ResourceInfo>, crd: &Value) -> Result<Self> {
        let schema = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .and_then(|vs| {
                vs.iter()
                    .find(|v| v.get("name").and_then(Value::as_str) == Some(info.version.as_str()))
            })
            .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
            .cloned();
        let validator = match schema {
            Some(s) => Some(
                SchemaValidator::new(&s).map_err(|e| RegistryError::BadRequest(e.to_string()))?,
            ),
            None => None,
        };
        Ok(CustomResourceStrategy {
            info,
            validator,
            _versions: HashMap::new(),
        })
    }

    /// Drops fields the schema does not declare; returns their paths.
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        match &self.validator {
            Some(v) => v.prune(obj),
            None => Vec::new(),
        }
    }
}

impl Strategy for CustomResourceStrategy {
    fn info(&self) -> &Arc<ResourceInfo> {
        &self.info
    }
    fn default(&self, obj: &mut Value) {
        if let Some(v) = &self.validator {
            v.prune(obj);
            v.apply_defaults(obj);
        }
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        if self.info.has_subresource("status") {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
    }
    fn validate(&self, obj: &Value) -> FieldErrors {
        let mut errs = apis::validation::validate_create(
            &self.info.group,
            &self.info.version,
            &self.info.kind,
            obj,
        );
        if let Some(v) = &self.validator {
            errs.extend(v.validate(obj));
        }
        errs
    }
    fn has_generation(&self) -> bool {
        true
    }
    fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        let mut copy = obj.clone();
        self.prune(&mut copy)
    }
    fn attrs(&self, obj: &Value) -> ObjectAttrs {
        default_attrs(obj, &self.info.group, &self.info.resource)
    }
}
