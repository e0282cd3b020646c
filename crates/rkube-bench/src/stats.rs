//! Percentiles and medians over samples, and the JSON line every result is printed as.

use serde_json::{json, Map, Value};

/// The `q`-quantile (0..=1) by nearest rank; `None` for no samples.
pub fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn median(samples: &[f64]) -> Option<f64> {
    percentile(samples, 0.5)
}

/// Rounds for printing (three decimals is finer than any of our clocks' meaning).
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Whether a result meets its target.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    AtLeast(f64),
    Below(f64),
}

impl Target {
    pub fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::Below(t) => value < t,
        }
    }

    fn describe(self) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {t}"),
            Target::Below(t) => format!("< {t}"),
        }
    }
}

/// One result line: `{"bench":<suite>,"metric":…,"value":…,"unit":…,"target":…,"met":…, extra…}`.
pub fn line(
    suite: &str,
    metric: &str,
    value: f64,
    unit: &str,
    target: Option<Target>,
    extra: Value,
) -> Value {
    let mut m = Map::new();
    m.insert("bench".into(), json!(suite));
    m.insert("metric".into(), json!(metric));
    m.insert("value".into(), json!(round3(value)));
    m.insert("unit".into(), json!(unit));
    if let Some(t) = target {
        m.insert("target".into(), json!(t.describe()));
        m.insert("met".into(), json!(t.met(value)));
    }
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            let v = match v.as_f64() {
                Some(f) if !v.is_i64() && !v.is_u64() => json!(round3(f)),
                _ => v,
            };
            m.insert(k, v);
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        for (q, want) in [
            (0.5, 50.0),
            (0.99, 99.0),
            (1.0, 100.0),
            (0.0, 1.0),
            (0.999, 100.0),
        ] {
            assert_eq!(percentile(&samples, q), Some(want), "q={q}");
        }
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    }

    #[test]
    fn targets_compare() {
        assert!(Target::AtLeast(5000.0).met(5000.0));
        assert!(!Target::AtLeast(5000.0).met(4999.0));
        assert!(Target::Below(20.0).met(19.9));
        assert!(!Target::Below(20.0).met(20.0));
    }

    #[test]
    fn line_has_fixed_fields_first() {
        let l = line(
            "api",
            "rss_idle",
            12.3456,
            "MiB",
            Some(Target::Below(40.0)),
            json!({"hwm": 20.12345}),
        );
        let text = l.to_string();
        assert!(
            text.starts_with(r#"{"bench":"api","metric":"rss_idle","value":12.346,"unit":"MiB""#),
            "{text}"
        );
        assert_eq!(l["met"], json!(true));
        assert_eq!(l["hwm"], json!(20.123));
    }
}
