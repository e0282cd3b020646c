//! Serves `/openapi/v2` and `/openapi/v3[/<group-version path>]`. Each document is
//! generated once per set of served resources (they are large; kubectl fetches them for
//! `explain` and to find the `fieldValidation` parameter for server-side validation).
//! The v3 index links every document by the hash of its bytes, as upstream does, so
//! clients can cache them.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use parking_lot::Mutex;
use registry::Registry;

use crate::body::Body;
use crate::bytes_response;
use crate::request::Query;
use crate::status::ApiError;

#[derive(Default)]
pub struct Cache {
    /// (fingerprint of served resources, path) → (document bytes, hash).
    docs: Mutex<HashMap<(u64, String), (Bytes, String)>>,
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
    fn document(
        &self,
        fp: u64,
        path: &str,
        build: impl FnOnce() -> Option<serde_json::Value>,
    ) -> Result<Option<(Bytes, String)>, ApiError> {
        let key = (fp, path.to_string());
        if let Some(hit) = self.docs.lock().get(&key) {
            return Ok(Some(hit.clone()));
        }
        let Some(doc) = build() else { return Ok(None) };
        let hash = openapi::document_hash(&doc);
        let bytes = Bytes::from(openapi::document_bytes(&doc));
        self.docs.lock().insert(key, (bytes.clone(), hash.clone()));
        Ok(Some((bytes, hash)))
    }

    pub fn respond(
        &self,
        registry: &Registry,
        path: &str,
        _query: &Query,
        headers: &HeaderMap,
    ) -> Result<Response<Body>, ApiError> {
        let resources = registry.resources();
        let fp = fingerprint(&resources);
        let crds = registry.custom_resource_definitions();
        match path {
            "/openapi/v2" => {
                let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
                if !accept.is_empty() && !accept.contains("json") && !accept.contains("*/*") {
                    return Err(ApiError::NotAcceptable(
                        "only the following media types are accepted: application/json".to_string(),
                    ));
                }
                let (bytes, _) = self
                    .document(fp, path, || Some(openapi::v2_document(&resources, &crds)))?
                    .ok_or(ApiError::NotFoundPath)?;
                Ok(bytes_response(StatusCode::OK, "application/json", bytes))
            }
            "/openapi/v3" => {
                let mut entries = Vec::new();
                for p in openapi::v3_index_paths(&resources) {
                    if let Some((_, hash)) =
                        self.document(fp, &p, || openapi::v3_document_for_path(&p, &resources, &crds))?
                    {
                        entries.push((p, hash));
                    }
                }
                let index = openapi::v3_index_from_hashes(entries);
                Ok(crate::json_response(StatusCode::OK, &index))
            }
            p => {
                let gv = p.trim_start_matches("/openapi/v3/").to_string();
                let (bytes, _) = self
                    .document(fp, &gv, || openapi::v3_document_for_path(&gv, &resources, &crds))?
                    .ok_or(ApiError::NotFoundPath)?;
                Ok(bytes_response(StatusCode::OK, "application/json", bytes))
            }
        }
    }
}
