//! Age formatting as upstream's `duration.HumanDuration` and `translateTimestampSince`.

use chrono::{DateTime, Utc};

/// A succinct duration with ~2-3 significant figures ("5s", "3m2s", "2d3h"), as
/// apimachinery's `HumanDuration`. `seconds` may be negative (clock skew).
pub fn human_duration_seconds(seconds: i64) -> String {
    // Upstream tolerates up to one second of skew before calling it invalid.
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{}h", hours / 24, h);
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{}d", hours / 24 / 365, dy);
    }
    format!("{}y", hours / 24 / 365)
}

/// [`human_duration_seconds`] of `to - from`.
pub fn human_duration(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    // chrono truncates toward zero like Go's int(d.Seconds()).
    human_duration_seconds((to - from).num_seconds())
}

/// Elapsed time since `timestamp`, or `<unknown>` for a missing one
/// (upstream `translateTimestampSince` on a zero time).
pub fn translate_timestamp(timestamp: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match timestamp {
        Some(t) => human_duration(t, now),
        None => "<unknown>".to_string(),
    }
}

/// Parses an RFC 3339 timestamp as Kubernetes serializes `Time` and `MicroTime`.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Converts a k8s-openapi (jiff) timestamp to chrono.
pub(crate) fn from_jiff(ts: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(
        ts.as_second(),
        u32::try_from(ts.subsec_nanosecond()).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_matches_upstream_table() {
        let cases: &[(i64, &str)] = &[
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (182, "3m2s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 25 * 60, "3h25m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (8 * 24 * 3600, "8d"),
            (729 * 24 * 3600, "729d"),
            (730 * 24 * 3600, "2y"),
            (731 * 24 * 3600, "2y1d"),
            (8 * 365 * 24 * 3600, "8y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration_seconds(*secs), *want, "{secs}s");
        }
    }

    #[test]
    fn missing_timestamp_is_unknown() {
        let now = Utc::now();
        assert_eq!(translate_timestamp(None, now), "<unknown>");
        let t = parse_timestamp("2024-01-01T00:00:00Z").expect("parse");
        let later = parse_timestamp("2024-01-01T00:00:05.123456Z").expect("parse micro");
        assert_eq!(translate_timestamp(Some(t), later), "5s");
    }
}
