//! `/healthz`, `/livez`, `/readyz` (with `?verbose` and per-check paths) and `/version`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use parking_lot::RwLock;
use serde_json::{json, Value};

use crate::body::Body;
use crate::request::Query;
use crate::{bytes_response, KUBERNETES_VERSION};

/// Named checks; a check is healthy while its flag is true.
#[derive(Default)]
pub struct Health {
    checks: RwLock<Vec<(String, Arc<AtomicBool>)>>,
}

impl Health {
    /// Registers a check and returns its flag (initially `healthy`).
    pub fn register(&self, name: &str, healthy: bool) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(healthy));
        self.checks.write().push((name.to_string(), flag.clone()));
        flag
    }

    pub fn respond(&self, path: &str, query: &Query) -> Response<Body> {
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let endpoint = parts.next().unwrap_or("healthz");
        let only = parts.next();
        let mut checks = vec![("ping".to_string(), true), ("log".to_string(), true)];
        checks.extend(
            self.checks
                .read()
                .iter()
                .map(|(n, f)| (n.clone(), f.load(Ordering::Acquire))),
        );
        if let Some(name) = only {
            return match checks.iter().find(|(n, _)| n == name) {
                Some((_, true)) => text(StatusCode::OK, "ok"),
                Some((_, false)) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("internal server error: {name} failed"),
                ),
                None => text(StatusCode::NOT_FOUND, "404 page not found"),
            };
        }
        let healthy = checks.iter().all(|(_, ok)| *ok);
        let code = if healthy {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        if query.get("verbose").is_some() || !healthy {
            let mut out = String::new();
            for (name, ok) in &checks {
                if *ok {
                    out.push_str(&format!("[+]{name} ok\n"));
                } else {
                    out.push_str(&format!("[-]{name} failed: reason withheld\n"));
                }
            }
            if healthy {
                out.push_str(&format!("{endpoint} check passed\n"));
            } else {
                out.push_str(&format!("{endpoint} check failed\n"));
            }
            return text(code, &out);
        }
        text(code, "ok")
    }
}

fn text(code: StatusCode, body: &str) -> Response<Body> {
    bytes_response(
        code,
        "text/plain; charset=utf-8",
        Bytes::from(body.to_string()),
    )
}

pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": option_env!("RKUBE_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("linux/{}", match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}
