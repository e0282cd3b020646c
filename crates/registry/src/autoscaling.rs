//! HorizontalPodAutoscalers: one store in `autoscaling/v2` form, served as v2 and v1
//! (`apis::conversion::hpa_v2_to_v1` / `hpa_v1_to_v2`). Objects written through v1
//! before conversion existed are read as v2 too.

use std::sync::Arc;

use apis::{FieldErrors, ResourceInfo};
use serde_json::Value;

use crate::cacher::ObjectAttrs;
use crate::strategy::{BuiltinStrategy, Strategy};

pub struct HorizontalPodAutoscalerStrategy {
    inner: BuiltinStrategy,
    v1: bool,
}

impl HorizontalPodAutoscalerStrategy {
    pub fn new(info: Arc<ResourceInfo>) -> Self {
        let v1 = info.version == "v1";
        HorizontalPodAutoscalerStrategy {
            inner: BuiltinStrategy::new(info),
            v1,
        }
    }
}

impl Strategy for HorizontalPodAutoscalerStrategy {
    fn info(&self) -> &Arc<ResourceInfo> {
        self.inner.info()
    }
    fn default(&self, obj: &mut Value) {
        self.inner.default(obj)
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        self.inner.prepare_for_create(obj)
    }
    fn validate(&self, obj: &Value) -> FieldErrors {
        self.inner.validate(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors {
        self.inner.validate_update(new, old)
    }
    fn has_generation(&self) -> bool {
        self.inner.has_generation()
    }
    fn attrs(&self, obj: &Value) -> ObjectAttrs {
        self.inner.attrs(obj)
    }
    fn allow_create_on_update(&self) -> bool {
        self.inner.allow_create_on_update()
    }
    fn converts(&self) -> bool {
        true
    }
    fn to_served(&self, obj: &mut Value) {
        if self.v1 {
            apis::conversion::hpa_v2_to_v1(obj);
        } else {
            apis::conversion::hpa_v1_to_v2(obj);
        }
    }
    fn to_storage(&self, obj: &mut Value) {
        apis::conversion::hpa_v1_to_v2(obj);
    }
}
