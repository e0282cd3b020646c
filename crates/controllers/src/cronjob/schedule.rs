//! Cron schedules as the CronJob controller reads them (robfig/cron v3
//! `ParseStandard`, which Kubernetes uses): five fields — minute, hour, day of month,
//! month, day of week — each a comma list of `*`/`?`, `n`, `a-b`, with an optional
//! `/step` (`n/step` runs to the field's maximum); month and weekday names
//! (`jan`…`dec`, `sun`…`sat`, any case). Descriptors `@yearly`/`@annually`,
//! `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`, and `@every <duration>`
//! (Go duration syntax) are accepted, as is a leading `TZ=<zone>`/`CRON_TZ=<zone>`.
//!
//! Day matching follows cron (and robfig): if either day field is `*` both must
//! match, otherwise either may. [`Schedule::next`] walks month, day, hour, minute in
//! the schedule's time zone as robfig does, so a time skipped by a DST jump never
//! fires and a repeated one fires twice; nothing within five years gives `None`.

use std::time::Duration;

use k8s_openapi::jiff::civil::Date;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{Timestamp, ToSpan, Zoned};

/// Set in a field when it was `*` or `?` (a step above one clears it).
const STAR: u64 = 1 << 63;

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Value of the first name.
    first_name: u32,
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
    first_name: 0,
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
    first_name: 0,
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    first_name: 1,
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    first_name: 0,
};

#[derive(Clone, Debug, PartialEq, Eq)]
struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Fields(Fields),
    /// `@every`: a fixed delay, whole seconds, at least one.
    Every(Duration),
}

/// A parsed schedule and the zone it is read in.
#[derive(Clone, Debug)]
pub struct Schedule {
    kind: Kind,
    tz: TimeZone,
}

/// A schedule that does not parse; the message is robfig/cron's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err<T>(msg: String) -> Result<T, ParseError> {
    Err(ParseError(msg))
}

/// The controller-manager's own zone, used when neither `timeZone` nor `TZ=` says.
fn local_zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

/// Looks up an IANA zone name in the system database (`/usr/share/zoneinfo`).
pub fn load_location(name: &str) -> Result<TimeZone, String> {
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    if name == "Local" {
        return Ok(local_zone());
    }
    TimeZone::get(name).map_err(|_| format!("unknown time zone {name}"))
}

/// Parses a schedule (robfig `ParseStandard`).
pub fn parse_standard(spec: &str) -> Result<Schedule, ParseError> {
    if spec.is_empty() {
        return err("empty spec string".into());
    }
    let mut spec = spec;
    let mut tz = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        let space = spec.find(' ').unwrap_or(spec.len());
        let name = &spec[eq + 1..space];
        match load_location(name) {
            Ok(z) => tz = Some(z),
            Err(e) => return err(format!("provided bad location {name}: {e}")),
        }
        spec = spec[space..].trim();
    }
    let tz = tz.unwrap_or_else(local_zone);
    if spec.starts_with('@') {
        return Ok(Schedule {
            kind: parse_descriptor(spec)?,
            tz,
        });
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    Ok(Schedule {
        kind: Kind::Fields(Fields {
            minute: parse_field(fields[0], &MINUTES)?,
            hour: parse_field(fields[1], &HOURS)?,
            dom: parse_field(fields[2], &DOM)?,
            month: parse_field(fields[3], &MONTHS)?,
            dow: parse_field(fields[4], &DOW)?,
        }),
        tz,
    })
}

fn all(b: &Bounds) -> u64 {
    bits(b.min, b.max, 1) | STAR
}

fn parse_descriptor(spec: &str) -> Result<Kind, ParseError> {
    let fields = |minute, hour, dom, month, dow| {
        Kind::Fields(Fields {
            minute,
            hour,
            dom,
            month,
            dow,
        })
    };
    let kind = match spec {
        "@yearly" | "@annually" => fields(1, 1, 1 << DOM.min, 1 << MONTHS.min, all(&DOW)),
        "@monthly" => fields(1, 1, 1 << DOM.min, all(&MONTHS), all(&DOW)),
        "@weekly" => fields(1, 1, all(&DOM), all(&MONTHS), 1 << DOW.min),
        "@daily" | "@midnight" => fields(1, 1, all(&DOM), all(&MONTHS), all(&DOW)),
        "@hourly" => fields(1, all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
        _ => {
            let Some(d) = spec.strip_prefix("@every ") else {
                return err(format!("unrecognized descriptor: {spec}"));
            };
            let delay = parse_go_duration(d)
                .map_err(|e| ParseError(format!("failed to parse duration {spec}: {e}")))?;
            let secs = delay.as_secs().max(1);
            Kind::Every(Duration::from_secs(secs))
        }
    };
    Ok(kind)
}

fn bits(min: u32, max: u32, step: u32) -> u64 {
    if step == 1 {
        return (!(u64::MAX << (max + 1))) & (u64::MAX << min);
    }
    let mut b = 0;
    let mut i = min;
    while i <= max {
        b |= 1 << i;
        i += step;
    }
    b
}

fn parse_field(field: &str, b: &Bounds) -> Result<u64, ParseError> {
    let mut out = 0;
    for range in field.split(',').filter(|r| !r.is_empty()) {
        out |= parse_range(range, b)?;
    }
    Ok(out)
}

fn parse_int(expr: &str) -> Result<u32, ParseError> {
    match expr.parse::<i64>() {
        Ok(n) if n < 0 => err(format!("negative number ({n}) not allowed: {expr}")),
        Ok(n) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
        Err(e) => {
            let why = if matches!(
                e.kind(),
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
            ) {
                "value out of range"
            } else {
                "invalid syntax"
            };
            err(format!(
                "failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: {why}"
            ))
        }
    }
}

fn parse_int_or_name(expr: &str, b: &Bounds) -> Result<u32, ParseError> {
    let lower = expr.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(u32::try_from(i).unwrap_or(0) + b.first_name);
    }
    parse_int(expr)
}

fn parse_range(expr: &str, b: &Bounds) -> Result<u64, ParseError> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let mut extra = 0;
    let (start, mut end);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        start = b.min;
        end = b.max;
        extra = STAR;
    } else {
        start = parse_int_or_name(low_and_high[0], b)?;
        end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], b)?,
            _ => return err(format!("too many hyphens: {expr}")),
        };
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_int(range_and_step[1])?;
            // `n/step` means `n-max/step`.
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

/// Go's `time.ParseDuration`, with its error texts.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let mut rest = s;
    let mut negative = false;
    if let Some(r) = rest.strip_prefix('-') {
        negative = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        total_nanos += value * scale;
    }
    if negative || !total_nanos.is_finite() {
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_nanos(total_nanos.min(u64::MAX as f64) as u64))
}

impl Fields {
    fn day_matches(&self, z: &Zoned) -> bool {
        let dom = self.dom & (1 << z.day()) != 0;
        let dow = self.dow & (1 << z.weekday().to_sunday_zero_offset()) != 0;
        if self.dom & STAR != 0 || self.dow & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }
}

fn start_of(date: Date, tz: &TimeZone) -> Option<Zoned> {
    date.to_zoned(tz.clone()).ok()?.start_of_day().ok()
}

/// `z` moved back to the start of its minute (`unit_secs` 60) or hour (3600), in
/// absolute time.
fn truncate(z: &Zoned, unit_secs: i64) -> Option<Zoned> {
    let into = match unit_secs {
        3600 => i64::from(z.minute()) * 60 + i64::from(z.second()),
        _ => i64::from(z.second()),
    };
    let ts = z.timestamp();
    let back = ts
        .checked_sub(k8s_openapi::jiff::SignedDuration::new(
            into,
            ts.subsec_nanosecond(),
        ))
        .ok()?;
    Some(back.to_zoned(z.time_zone().clone()))
}

impl Schedule {
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The first activation strictly after `after`, or `None` if there is none within
    /// five years (e.g. `0 0 30 2 *`).
    pub fn next(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(d) => {
                let whole = Timestamp::from_second(after.as_second()).ok()?;
                whole.checked_add(*d).ok()
            }
            Kind::Fields(f) => self.next_fields(f, after),
        }
    }

    fn next_fields(&self, f: &Fields, after: Timestamp) -> Option<Timestamp> {
        let tz = &self.tz;
        // The upcoming whole second.
        let start = Timestamp::from_second(after.as_second().checked_add(1)?).ok()?;
        let mut t = start.to_zoned(tz.clone());
        let mut added = false;
        let year_limit = t.year() + 5;
        'wrap: loop {
            if t.year() > year_limit {
                return None;
            }
            while f.month & (1 << t.month()) == 0 {
                if !added {
                    added = true;
                    t = start_of(t.date().first_of_month(), tz)?;
                }
                let next_month = t.date().first_of_month().checked_add(1.month()).ok()?;
                t = start_of(next_month, tz)?;
                if t.month() == 1 {
                    continue 'wrap;
                }
            }
            while !f.day_matches(&t) {
                if !added {
                    added = true;
                    t = start_of(t.date(), tz)?;
                }
                t = start_of(t.date().checked_add(1.day()).ok()?, tz)?;
                if t.day() == 1 {
                    continue 'wrap;
                }
            }
            while f.hour & (1 << t.hour()) == 0 {
                if !added {
                    added = true;
                    t = truncate(&t, 3600)?;
                }
                t = t.checked_add(1.hour()).ok()?;
                if t.hour() == 0 {
                    continue 'wrap;
                }
            }
            while f.minute & (1 << t.minute()) == 0 {
                if !added {
                    added = true;
                    t = truncate(&t, 60)?;
                }
                t = t.checked_add(1.minute()).ok()?;
                if t.minute() == 0 {
                    continue 'wrap;
                }
            }
            // Standard schedules fire at second 0.
            if t.second() != 0 || t.subsec_nanosecond() != 0 {
                added = true;
                t = truncate(&t, 60)?.checked_add(1.minute()).ok()?;
                continue 'wrap;
            }
            return Some(t.timestamp());
        }
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
