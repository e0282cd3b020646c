//! Prometheus metrics at `/metrics`, with upstream's names and labels so existing
//! dashboards and alerts work: `apiserver_request_total`,
//! `apiserver_request_duration_seconds`.

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::body::Body;
use crate::bytes_response;
use crate::request::RequestInfo;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    scope: String,
    component: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    verb: String,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    scope: String,
    component: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<DurationLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn buckets() -> impl Iterator<Item = f64> {
    [
        0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
        10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
    ]
    .into_iter()
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations =
            Family::<DurationLabels, Histogram>::new_with_constructor(|| Histogram::new(buckets()));
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
            durations.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            durations,
        }
    }

    pub fn observe(&self, info: &RequestInfo, code: u16, elapsed: Duration) {
        let verb = if info.is_resource {
            info.verb.to_ascii_uppercase()
        } else {
            "GET".to_string()
        };
        let scope = if !info.is_resource {
            String::new()
        } else if !info.name.is_empty() {
            "resource".to_string()
        } else if !info.namespace.is_empty() {
            "namespace".to_string()
        } else {
            "cluster".to_string()
        };
        let d = DurationLabels {
            verb,
            group: info.group.clone(),
            version: info.version.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone(),
            scope,
            component: "apiserver".to_string(),
        };
        if info.verb != "watch" {
            self.durations
                .get_or_create(&d)
                .observe(elapsed.as_secs_f64());
        }
        let r = RequestLabels {
            verb: d.verb,
            group: d.group,
            version: d.version,
            resource: d.resource,
            subresource: d.subresource,
            scope: d.scope,
            component: d.component,
            code: code.to_string(),
        };
        self.requests.get_or_create(&r).inc();
    }

    pub fn respond(&self) -> Response<Body> {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry.lock())
            .is_err()
        {
            out.clear();
        }
        // Components running in this process (controllers, scheduler, leader election).
        component_base::metrics::encode_into(&mut out);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        bytes_response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            Bytes::from(out),
        )
    }
}
