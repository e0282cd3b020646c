//! batch/v1: jobs and cron jobs (upstream `pkg/apis/batch/validation/validation.go`).

use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec, JobTemplateSpec};

use super::meta::{
    self, go_label_selector, go_string_map, json_value, nonnegative, selector_matches,
};
use super::names;
use super::pod::validate_pod_template_spec;
use crate::field_error::{FieldError, FieldErrors, Path};

fn root(field: &str) -> Path {
    Path::new(field)
}

/// Rules shared by jobs and job templates (`validateJobSpec`).
fn validate_job_spec(spec: &JobSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (field, v) in [
        ("parallelism", spec.parallelism.map(i64::from)),
        ("completions", spec.completions.map(i64::from)),
        ("activeDeadlineSeconds", spec.active_deadline_seconds),
        ("backoffLimit", spec.backoff_limit.map(i64::from)),
        (
            "ttlSecondsAfterFinished",
            spec.ttl_seconds_after_finished.map(i64::from),
        ),
        (
            "backoffLimitPerIndex",
            spec.backoff_limit_per_index.map(i64::from),
        ),
    ] {
        if let Some(v) = v {
            errs.extend(nonnegative(v, &path.child(field)));
        }
    }
    if let Some(mode) = spec.completion_mode.as_deref() {
        if !matches!(mode, "NonIndexed" | "Indexed") {
            errs.push(FieldError::not_supported(
                path.child("completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
        if mode == "Indexed" {
            if spec.completions.is_none() {
                errs.push(FieldError::required(
                    path.child("completions"),
                    "when completion mode is Indexed",
                ));
            }
            if spec.parallelism.is_some_and(|p| p > 100_000) {
                errs.push(FieldError::invalid_raw(
                    path.child("parallelism"),
                    spec.parallelism.unwrap_or(0),
                    "must be less than or equal to 100000 when completion mode is Indexed",
                ));
            }
        }
    }
    if spec.backoff_limit_per_index.is_some() && spec.completion_mode.as_deref() != Some("Indexed")
    {
        errs.push(FieldError::invalid_raw(
            path.child("backoffLimitPerIndex"),
            spec.backoff_limit_per_index.unwrap_or(0),
            "requires indexed completion mode",
        ));
    }
    if let Some(p) = spec.pod_replacement_policy.as_deref() {
        if !matches!(p, "TerminatingOrFailed" | "Failed") {
            errs.push(FieldError::not_supported(
                path.child("podReplacementPolicy"),
                p,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    errs.extend(validate_pod_template_spec(
        &spec.template,
        &path.child("template"),
    ));
    let restart = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("");
    let restart_path = path.child("template").child("spec").child("restartPolicy");
    match restart {
        "" | "Always" => errs.push(FieldError::required(
            restart_path,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" | "Never" => {}
        other => errs.push(FieldError::not_supported(
            restart_path,
            other,
            &["OnFailure", "Never"],
        )),
    }
    errs
}

pub fn validate_job(job: &Job) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &job.metadata,
        true,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    errs.extend(validate_job_spec_with_selector(job));
    errs
}

fn validate_job_spec_with_selector(job: &Job) -> FieldErrors {
    let spec = job.spec.clone().unwrap_or_default();
    let p = root("spec");
    let mut errs = validate_job_spec(&spec, &p);
    match &spec.selector {
        None => errs.push(FieldError::required(p.child("selector"), "")),
        Some(sel) => {
            errs.extend(meta::validate_label_selector(
                Some(sel),
                &p.child("selector"),
            ));
            if spec.manual_selector != Some(true) {
                let uid = job.metadata.uid.as_deref().unwrap_or("");
                let generated = sel
                    .match_labels
                    .as_ref()
                    .and_then(|m| m.get("batch.kubernetes.io/controller-uid"));
                if !uid.is_empty() && generated.map(String::as_str) != Some(uid) {
                    errs.push(FieldError::invalid_raw(
                        p.child("selector"),
                        go_label_selector(Some(sel)),
                        "`selector` not auto-generated",
                    ));
                }
            }
        }
    }
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    if spec.selector.is_some() && selector_matches(spec.selector.as_ref(), labels) == Some(false) {
        errs.push(FieldError::invalid_raw(
            p.child("template").child("metadata").child("labels"),
            go_string_map(labels),
            "`selector` does not match template `labels`",
        ));
    }
    errs
}

pub fn validate_job_update(new: &Job, old: &Job) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    errs.extend(validate_job_spec_with_selector(new));
    let (ns, os) = (
        new.spec.clone().unwrap_or_default(),
        old.spec.clone().unwrap_or_default(),
    );
    let p = root("spec");
    let indexed = ns.completion_mode.as_deref() == Some("Indexed");
    if ns.completions != os.completions {
        if !indexed {
            errs.push(FieldError::invalid_raw(
                p.child("completions"),
                show_opt(ns.completions),
                meta::FIELD_IMMUTABLE,
            ));
        } else if ns.completions.is_some() && ns.completions != ns.parallelism {
            errs.push(FieldError::invalid_raw(
                p.child("completions"),
                show_opt(ns.completions),
                "can only be modified in tandem with spec.parallelism",
            ));
        }
    }
    errs.extend(meta::immutable(
        &ns.selector,
        &os.selector,
        || go_label_selector(ns.selector.as_ref()),
        &p.child("selector"),
    ));
    let mut old_template = os.template.clone();
    // A suspended job that never started may change its scheduling directives.
    let never_started = old
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .is_none();
    if ns.suspend == Some(true) && never_started {
        let (nt, ot) = (&ns.template, &mut old_template);
        if let (Some(nspec), Some(ospec)) = (&nt.spec, ot.spec.as_mut()) {
            ospec.node_selector = nspec.node_selector.clone();
            ospec.tolerations = nspec.tolerations.clone();
            ospec.scheduling_gates = nspec.scheduling_gates.clone();
            match (&nspec.affinity, ospec.affinity.as_mut()) {
                (Some(na), Some(oa)) => oa.node_affinity = na.node_affinity.clone(),
                (Some(na), None) => {
                    ospec.affinity = Some(k8s_openapi::api::core::v1::Affinity {
                        node_affinity: na.node_affinity.clone(),
                        ..Default::default()
                    })
                }
                (None, Some(oa)) => {
                    oa.node_affinity = None;
                    if oa == &k8s_openapi::api::core::v1::Affinity::default() {
                        ospec.affinity = None;
                    }
                }
                (None, None) => {}
            }
        }
        let nmeta = nt.metadata.clone().unwrap_or_default();
        let ometa = ot.metadata.get_or_insert_with(Default::default);
        ometa.labels = nmeta.labels;
        ometa.annotations = nmeta.annotations;
    }
    if normalize(&ns.template) != normalize(&old_template) {
        errs.push(FieldError::invalid_raw(
            p.child("template"),
            json_value(&ns.template),
            meta::FIELD_IMMUTABLE,
        ));
    }
    errs.extend(meta::immutable(
        &ns.completion_mode,
        &os.completion_mode,
        || show_str(&ns.completion_mode),
        &p.child("completionMode"),
    ));
    errs.extend(meta::immutable(
        &ns.pod_failure_policy,
        &os.pod_failure_policy,
        || json_value(&ns.pod_failure_policy),
        &p.child("podFailurePolicy"),
    ));
    errs.extend(meta::immutable(
        &ns.backoff_limit_per_index,
        &os.backoff_limit_per_index,
        || show_opt(ns.backoff_limit_per_index),
        &p.child("backoffLimitPerIndex"),
    ));
    errs.extend(meta::immutable(
        &ns.managed_by,
        &os.managed_by,
        || show_str(&ns.managed_by),
        &p.child("managedBy"),
    ));
    errs.extend(meta::immutable(
        &ns.success_policy,
        &os.success_policy,
        || json_value(&ns.success_policy),
        &p.child("successPolicy"),
    ));
    errs
}

/// Compares templates as JSON so that `null` and missing maps count as equal, as Go's
/// semantic equality does for empty maps.
fn normalize(t: &k8s_openapi::api::core::v1::PodTemplateSpec) -> serde_json::Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    strip_empty(&mut v);
    v
}

fn strip_empty(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(m) = v {
        m.values_mut().for_each(strip_empty);
        m.retain(|_, x| !(x.is_null() || x.as_object().is_some_and(|o| o.is_empty())));
    } else if let serde_json::Value::Array(a) = v {
        a.iter_mut().for_each(strip_empty);
    }
}

fn show_opt(v: Option<i32>) -> String {
    v.map(|v| v.to_string())
        .unwrap_or_else(|| "null".to_string())
}

fn show_str(v: &Option<String>) -> String {
    v.as_deref()
        .map(meta::go_quote)
        .unwrap_or_else(|| "null".to_string())
}

fn validate_job_template(t: &JobTemplateSpec, path: &Path) -> FieldErrors {
    let spec = t.spec.clone().unwrap_or_default();
    let sp = path.child("spec");
    let mut errs = validate_job_spec(&spec, &sp);
    if let Some(sel) = &spec.selector {
        errs.push(FieldError::invalid_raw(
            sp.child("selector"),
            go_label_selector(Some(sel)),
            "`selector` will be auto-generated",
        ));
    }
    if spec.manual_selector == Some(true) {
        errs.push(FieldError::not_supported(
            sp.child("manualSelector"),
            "true",
            &["nil", "false"],
        ));
    }
    errs
}

fn validate_cron_job_spec(cj: &CronJob, old: Option<&CronJob>) -> FieldErrors {
    let mut errs = Vec::new();
    let spec = cj.spec.clone().unwrap_or_default();
    let p = root("spec");
    if spec.schedule.is_empty() {
        errs.push(FieldError::required(p.child("schedule"), ""));
    } else {
        let old_had_tz = old
            .and_then(|o| o.spec.as_ref())
            .is_some_and(|s| s.schedule.contains("TZ"));
        if spec.schedule.contains("TZ") && !old_had_tz {
            errs.push(FieldError::invalid(
                p.child("schedule"),
                &spec.schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        } else if let Err(e) = parse_cron_schedule(&spec.schedule) {
            errs.push(FieldError::invalid(p.child("schedule"), &spec.schedule, e));
        }
    }
    if let Some(s) = spec.starting_deadline_seconds {
        errs.extend(nonnegative(s, &p.child("startingDeadlineSeconds")));
    }
    if let Some(tz) = spec.time_zone.as_deref() {
        if let Some(msg) = time_zone_error(tz) {
            errs.push(FieldError::invalid(p.child("timeZone"), tz, msg));
        }
    }
    match spec.concurrency_policy.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(p.child("concurrencyPolicy"), "")),
        "Allow" | "Forbid" | "Replace" => {}
        other => errs.push(FieldError::not_supported(
            p.child("concurrencyPolicy"),
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    errs.extend(validate_job_template(
        &spec.job_template,
        &p.child("jobTemplate"),
    ));
    if let Some(l) = spec.successful_jobs_history_limit {
        errs.extend(nonnegative(
            l.into(),
            &p.child("successfulJobsHistoryLimit"),
        ));
    }
    if let Some(l) = spec.failed_jobs_history_limit {
        errs.extend(nonnegative(l.into(), &p.child("failedJobsHistoryLimit")));
    }
    errs
}

/// Upstream `validateTimeZone` without the zone database lookup (validation does no
/// IO here; the CronJob controller reports an unknown zone with an `UnknownTimeZone`
/// event): IANA naming rules per `/`-separated component, and no `Local`.
fn time_zone_error(tz: &str) -> Option<String> {
    if tz.is_empty() {
        return Some("timeZone must be nil or non-empty string".to_string());
    }
    let component_ok = |c: &str| {
        c != "."
            && c != ".."
            && !c.starts_with('-')
            && (1..=14).contains(&c.len())
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_' | '+'))
    };
    if !tz.split('/').all(component_ok) {
        return Some(format!("unknown time zone {tz}"));
    }
    if tz.eq_ignore_ascii_case("Local") {
        return Some(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .to_string(),
        );
    }
    None
}

pub fn validate_cron_job(cj: &CronJob) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &cj.metadata,
        true,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    // Jobs are named `<cronjob>-<11 digit timestamp>` and must fit in 63 characters.
    let name = cj.metadata.name.as_deref().unwrap_or("");
    if name.len() > 52 {
        errs.push(FieldError::invalid(
            root("metadata").child("name"),
            name,
            "must be no more than 52 characters",
        ));
    }
    errs.extend(validate_cron_job_spec(cj, None));
    errs
}

pub fn validate_cron_job_update(new: &CronJob, old: &CronJob) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    errs.extend(validate_cron_job_spec(new, Some(old)));
    errs
}

/// Parses a standard 5-field cron schedule or a descriptor (`@hourly`, `@every 1h`), with
/// robfig/cron's error texts.
pub fn parse_cron_schedule(schedule: &str) -> Result<(), String> {
    let s = schedule.trim();
    if let Some(desc) = s.strip_prefix('@') {
        return match desc {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            d if d.starts_with("every ") => {
                let dur = d.trim_start_matches("every ").trim();
                let ok = !dur.is_empty()
                    && dur
                        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '.')
                    && dur.ends_with(['s', 'm', 'h']);
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "failed to parse duration @{d}: time: invalid duration {:?}",
                        dur
                    ))
                }
            }
            _ => Err(format!("unrecognized descriptor: {s}")),
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(u32, u32, &[&str], u32); 5] = [
        (0, 59, &[], 0),
        (0, 23, &[], 0),
        (1, 31, &[], 0),
        (1, 12, MONTHS, 1),
        (0, 6, DAYS, 0),
    ];
    for (field, (min, max, names_, offset)) in fields.iter().zip(bounds) {
        for part in field.split(',') {
            parse_cron_range(part, min, max, names_, offset)?;
        }
    }
    Ok(())
}

fn parse_cron_range(
    expr: &str,
    min: u32,
    max: u32,
    names_: &[&str],
    offset: u32,
) -> Result<(), String> {
    let (range, step) = match expr.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (expr, None),
    };
    let parse = |v: &str| -> Result<u32, String> {
        if let Some(i) = names_.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            return Ok(i as u32 + offset);
        }
        v.parse::<u32>().map_err(|_| {
            format!("failed to parse int from {v}: strconv.Atoi: parsing {v:?}: invalid syntax")
        })
    };
    let (start, end) = if range == "*" || range == "?" {
        (min, max)
    } else if let Some((a, b)) = range.split_once('-') {
        (parse(a)?, parse(b)?)
    } else {
        let v = parse(range)?;
        (v, if step.is_some() { max } else { v })
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if let Some(step) = step {
        match step.parse::<u32>() {
            Ok(0) => return Err(format!("step of range should be a positive number: {expr}")),
            Ok(_) => {}
            Err(_) => {
                return Err(format!(
                "failed to parse int from {step}: strconv.Atoi: parsing {step:?}: invalid syntax"
            ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod time_zone_tests {
    use super::time_zone_error;

    #[test]
    fn time_zone_names_follow_iana_rules() {
        for ok in [
            "UTC",
            "America/New_York",
            "Etc/GMT+5",
            "America/Argentina/Buenos_Aires",
        ] {
            assert_eq!(time_zone_error(ok), None, "{ok}");
        }
        let cases = [
            ("", "timeZone must be nil or non-empty string"),
            ("America//New_York", "unknown time zone America//New_York"),
            ("/etc/localtime", "unknown time zone /etc/localtime"),
            ("../etc", "unknown time zone ../etc"),
            ("Europe/-Berlin", "unknown time zone Europe/-Berlin"),
            ("America/Pleasant Valley", "unknown time zone America/Pleasant Valley"),
            ("Antarctica/ThisNameIsTooLong", "unknown time zone Antarctica/ThisNameIsTooLong"),
            (
                "local",
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            ),
        ];
        for (tz, want) in cases {
            assert_eq!(time_zone_error(tz).as_deref(), Some(want), "{tz:?}");
        }
    }
}
