//! `--kubelet-arg KEY=VALUE` (k3s's way of passing kubelet flags): the upstream kubelet
//! flags the agent honours, applied over [`AgentConfig`](crate::AgentConfig). Unknown
//! flags are refused rather than ignored, so a typo does not go unnoticed.
//!
//! Honoured: `max-pods`, `image-gc-high-threshold`, `image-gc-low-threshold`,
//! `image-minimum-gc-age`, `eviction-hard`, `node-status-report-frequency`, and rkube's
//! own `image-gc-period` (upstream collects every 5 minutes, fixed).

use std::time::Duration;

use crate::AgentConfig;

#[derive(Debug, thiserror::Error)]
pub enum KubeletArgError {
    #[error("kubelet argument {0:?}: want KEY=VALUE")]
    Syntax(String),
    #[error("unknown kubelet argument {0:?}")]
    Unknown(String),
    #[error("kubelet argument {key}: invalid value {value:?}: {reason}")]
    Value {
        key: String,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    ImageGc(#[from] crate::image_gc::GcError),
}

/// A Go-style duration: `90s`, `2m`, `1h30m`, `500ms`, `0`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "ns" => number / 1e9,
            "us" | "µs" => number / 1e6,
            "ms" => number / 1e3,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(secs).ok()?;
        rest = tail;
    }
    Some(total)
}

/// Applies `args` (each `KEY=VALUE`, a leading `--` allowed) to `config`.
pub fn apply(config: &mut AgentConfig, args: &[String]) -> Result<(), KubeletArgError> {
    for arg in args {
        let (key, value) = arg
            .trim_start_matches("--")
            .split_once('=')
            .ok_or_else(|| KubeletArgError::Syntax(arg.clone()))?;
        let invalid = |reason: &str| KubeletArgError::Value {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let percent = || {
            value
                .parse::<u32>()
                .map_err(|_| invalid("want a whole percentage"))
        };
        let duration = || parse_duration(value).ok_or_else(|| invalid("want a duration"));
        match key {
            "max-pods" => {
                config.max_pods = value.parse().map_err(|_| invalid("want a number"))?;
            }
            "image-gc-high-threshold" => config.image_gc.high_threshold_percent = percent()?,
            "image-gc-low-threshold" => config.image_gc.low_threshold_percent = percent()?,
            "image-minimum-gc-age" | "minimum-image-ttl-duration" => {
                config.image_gc.min_age = duration()?
            }
            "image-gc-period" => {
                let d = duration()?;
                if d.is_zero() {
                    return Err(invalid("must be positive"));
                }
                config.image_gc.period = d;
            }
            "eviction-hard" => {
                config.eviction_hard = value
                    .parse()
                    .map_err(|e: crate::eviction::ThresholdError| invalid(&e.to_string()))?;
            }
            "node-status-report-frequency" => config.node_status_report_frequency = duration()?,
            _ => return Err(KubeletArgError::Unknown(key.to_string())),
        }
    }
    config.image_gc.validate()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5d"), None);
    }

    fn config() -> AgentConfig {
        AgentConfig::new(
            "n",
            "10.0.0.1".parse().unwrap(),
            std::path::PathBuf::from("/d"),
        )
    }

    #[test]
    fn applies_known_flags_and_refuses_others() {
        let mut c = config();
        let args: Vec<String> = [
            "image-gc-high-threshold=1",
            "--image-gc-low-threshold=0",
            "image-minimum-gc-age=0s",
            "image-gc-period=2s",
            "eviction-hard=imagefs.available<1%",
            "max-pods=20",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        apply(&mut c, &args).unwrap();
        assert_eq!(c.image_gc.high_threshold_percent, 1);
        assert_eq!(c.image_gc.low_threshold_percent, 0);
        assert_eq!(c.image_gc.min_age, Duration::ZERO);
        assert_eq!(c.image_gc.period, Duration::from_secs(2));
        assert_eq!(c.eviction_hard.0.len(), 1);
        assert_eq!(c.max_pods, 20);

        let err = |a: &str| apply(&mut config(), &[a.to_string()]).unwrap_err();
        assert!(matches!(err("no-such-flag=1"), KubeletArgError::Unknown(_)));
        assert!(matches!(err("max-pods"), KubeletArgError::Syntax(_)));
        assert!(matches!(
            err("image-gc-high-threshold=x"),
            KubeletArgError::Value { .. }
        ));
        assert!(matches!(
            err("image-gc-low-threshold=90"),
            KubeletArgError::ImageGc(_)
        ));
        assert!(matches!(
            err("eviction-hard=disk<1"),
            KubeletArgError::Value { .. }
        ));
    }
}
