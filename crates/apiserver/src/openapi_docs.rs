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

/// gnostic's `openapi.v2.Document` protobuf, which kubectl ≤ 1.28 asks for (as the
/// deprecated `…spec.v2@v1.0+protobuf`). Like upstream we answer with this spelling
/// either way: Go's `mime` parser rejects the `@` in a response's Content-Type.
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Negotiates `/openapi/v2`'s Accept header: `Some(true)` for protobuf,
/// `Some(false)` for JSON, `None` when neither is acceptable. The highest `q`
/// wins, then the earliest listed.
fn v2_wants_protobuf(accept: &str) -> Option<bool> {
    if accept.trim().is_empty() {
        return Some(false);
    }
    let mut best: Option<(f32, bool)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let protobuf = match media.as_str() {
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
            | "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" => true,
            "application/*" | "*/*" => false,
            m if m.contains("json") => false,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, protobuf));
        }
    }
    best.map(|(_, protobuf)| protobuf)
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
                let accept = headers
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let Some(protobuf) = v2_wants_protobuf(accept) else {
                    return Err(ApiError::NotAcceptable(format!(
                        "only the following media types are accepted: application/json, {V2_PROTOBUF}"
                    )));
                };
                if protobuf {
                    let key = (fp, "/openapi/v2#protobuf".to_string());
                    let hit = self.docs.lock().get(&key).map(|(b, _)| b.clone());
                    let bytes = match hit {
                        Some(b) => b,
                        None => {
                            let doc = openapi::v2_document(&resources, &crds);
                            let b = Bytes::from(openapi::v2_protobuf(&doc));
                            self.docs.lock().insert(key, (b.clone(), String::new()));
                            b
                        }
                    };
                    return Ok(bytes_response(StatusCode::OK, V2_PROTOBUF, bytes));
                }
                let (bytes, _) = self
                    .document(fp, path, || Some(openapi::v2_document(&resources, &crds)))?
                    .ok_or(ApiError::NotFoundPath)?;
                Ok(bytes_response(StatusCode::OK, "application/json", bytes))
            }
            "/openapi/v3" => {
                let mut entries = Vec::new();
                for p in openapi::v3_index_paths(&resources) {
                    if let Some((_, hash)) = self.document(fp, &p, || {
                        openapi::v3_document_for_path(&p, &resources, &crds)
                    })? {
                        entries.push((p, hash));
                    }
                }
                let index = openapi::v3_index_from_hashes(entries);
                Ok(crate::json_response(StatusCode::OK, &index))
            }
            p => {
                let gv = p.trim_start_matches("/openapi/v3/").to_string();
                let (bytes, _) = self
                    .document(fp, &gv, || {
                        openapi::v3_document_for_path(&gv, &resources, &crds)
                    })?
                    .ok_or(ApiError::NotFoundPath)?;
                Ok(bytes_response(StatusCode::OK, "application/json", bytes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_accept_negotiation() {
        for (accept, want) in [
            ("", Some(false)),
            ("application/json", Some(false)),
            ("*/*", Some(false)),
            ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", Some(true)),
            ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf", Some(true)),
            ("application/json;q=0.9, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", Some(true)),
            ("application/json, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", Some(false)),
            ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=0, application/json", Some(false)),
            ("application/yaml", None),
            ("application/vnd.kubernetes.protobuf", None),
        ] {
            assert_eq!(v2_wants_protobuf(accept), want, "Accept: {accept}");
        }
    }
}
