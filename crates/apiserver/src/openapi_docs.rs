//! Serves `/openapi/v2` and `/openapi/v3[/<group-version path>]`, generating each
//! document once per set of served resources (documents are large; kubectl fetches
//! them for `explain` and for server-side field validation).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use parking_lot::Mutex;
use registry::Registry;

use crate::body::Body;
use crate::request::Query;
use crate::status::ApiError;
use crate::bytes_response;

#[derive(Default)]
pub struct Cache {
    /// (fingerprint of served resources, path) → document bytes.
    docs: Mutex<HashMap<(u64, String), Bytes>>,
}

fn fingerprint(resources: &[Arc<apis::ResourceInfo>]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in resources {
        r.group.hash(&mut h);
        r.version.hash(&mut h);
        r.resource.hash(&mut h);
    }
    h.finish()
}

impl Cache {
    pub fn respond(&self, registry: &Registry, path: &str, _query: &Query) -> Result<Response<Body>, ApiError> {
        let resources = registry.resources();
        let fp = fingerprint(&resources);
        let key = (fp, path.to_string());
        if let Some(b) = self.docs.lock().get(&key) {
            return Ok(bytes_response(StatusCode::OK, "application/json", b.clone()));
        }
        let crds = registry.custom_resource_definitions();
        let doc = match path {
            "/openapi/v2" => openapi::v2_document(&resources, &crds),
            "/openapi/v3" => openapi::v3_index(&resources, &crds),
            p => {
                let gv = p.trim_start_matches("/openapi/v3/");
                let parts: Vec<&str> = gv.split('/').collect();
                let (group, version) = match parts.as_slice() {
                    ["api", v] => ("", *v),
                    ["apis", g, v] => (*g, *v),
                    _ => return Err(ApiError::NotFoundPath),
                };
                if !resources.iter().any(|r| r.group == group && r.version == version) {
                    return Err(ApiError::NotFoundPath);
                }
                openapi::v3_document(group, version, &resources, &crds)
            }
        };
        let bytes = Bytes::from(serde_json::to_vec(&doc).map_err(ApiError::internal)?);
        self.docs.lock().insert(key, bytes.clone());
        Ok(bytes_response(StatusCode::OK, "application/json", bytes))
    }
}
