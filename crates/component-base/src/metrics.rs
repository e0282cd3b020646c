//! The process-wide registry components register their metrics in.

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use prometheus_client::registry::{Metric, Registry};

static REGISTRY: Lazy<Mutex<Registry>> = Lazy::new(|| Mutex::new(Registry::default()));

/// Registers `metric` under `name` (a counter's `_total` suffix is added by the encoder).
/// Call once per metric, typically from a `Lazy` static.
pub fn register(name: &str, help: &str, metric: impl Metric) {
    REGISTRY.lock().register(name, help, metric);
}

/// Appends the registry in the Prometheus text format, without the trailing `# EOF`, so
/// callers can combine it with their own registry.
pub fn encode_into(out: &mut String) {
    if prometheus_client::encoding::text::encode_registry(out, &REGISTRY.lock()).is_err() {
        tracing::warn!("encoding component metrics failed");
    }
}

/// The registry as a complete exposition (`# EOF` included).
pub fn encode() -> String {
    let mut out = String::new();
    encode_into(&mut out);
    let _ = prometheus_client::encoding::text::encode_eof(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[test]
    fn registered_metrics_are_encoded() {
        let c = Counter::<u64>::default();
        register("component_base_test_events", "Test events.", c.clone());
        c.inc();
        let text = encode();
        assert!(
            text.contains("component_base_test_events_total 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
