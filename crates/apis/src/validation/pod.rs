//! Pods, pod templates and pod specs (upstream `ValidatePodSpec`, `ValidatePodCreate`,
//! `ValidatePodUpdate`, `ValidatePodTemplateSpec`).
//!
//! Pod updates are the tricky part: a pod's spec is immutable except for container
//! images, `activeDeadlineSeconds` (may only shrink), additions to `tolerations`,
//! removals from `schedulingGates` and `terminationGracePeriodSeconds` (negative → 1).
//! Upstream "munges" those fields of the new spec back to the old values and compares
//! what remains; any difference is the one `spec: Forbidden: pod updates may not change
//! fields other than …` error, followed by a diff.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec, Toleration};
use serde_json::Value;

use super::containers::{validate_containers, validate_init_containers};
use super::meta::{self, validate_label_name};
use super::names;
use super::volumes::validate_volumes;
use crate::field_error::{FieldError, FieldErrors, Path};

const UPDATABLE_POD_SPEC_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodCreate`.
pub fn validate_pod_create(pod: &Pod) -> FieldErrors {
    let mut errs = pod_metadata_and_spec(pod);
    let spec_path = Path::new("spec");
    if let Some(spec) = &pod.spec {
        if spec
            .ephemeral_containers
            .as_ref()
            .is_some_and(|e| !e.is_empty())
        {
            errs.push(FieldError::forbidden(
                spec_path.child("ephemeralContainers"),
                "cannot be set on create",
            ));
        }
        if spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
            && spec
                .scheduling_gates
                .as_ref()
                .is_some_and(|g| !g.is_empty())
        {
            errs.push(FieldError::forbidden(
                spec_path.child("nodeName"),
                "cannot be set until all schedulingGates have been cleared",
            ));
        }
    }
    errs
}

fn pod_metadata_and_spec(pod: &Pod) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &pod.metadata,
        true,
        names::name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    let empty = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    errs.extend(validate_pod_spec(spec, &Path::new("spec")));
    // Only pods (not templates) check this, for backwards compatibility upstream.
    if spec
        .service_account_name
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        for (vi, v) in spec.volumes.iter().flatten().enumerate() {
            for (si, s) in v
                .projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
                .enumerate()
            {
                if s.service_account_token.is_some() {
                    let p = Path::new("spec")
                        .child("volumes")
                        .index(vi)
                        .child("projected")
                        .child("sources")
                        .index(si);
                    errs.push(FieldError::forbidden(
                        p.child("serviceAccountToken"),
                        "must not be specified when serviceAccountName is not set",
                    ));
                }
            }
        }
    }
    errs
}

/// `ValidatePodTemplateSpec` (labels and annotations are reported under `<path>.labels`).
pub fn validate_pod_template_spec(t: &PodTemplateSpec, path: &Path) -> FieldErrors {
    let meta = t.metadata.clone().unwrap_or_default();
    let mut errs = meta::validate_labels(meta.labels.as_ref(), &path.child("labels"));
    errs.extend(meta::validate_annotations(
        meta.annotations.as_ref(),
        &path.child("annotations"),
    ));
    let empty = PodSpec::default();
    let spec = t.spec.as_ref().unwrap_or(&empty);
    errs.extend(validate_pod_spec(spec, &path.child("spec")));
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

/// `ValidatePodSpec`.
pub fn validate_pod_spec(spec: &PodSpec, path: &Path) -> FieldErrors {
    let (volumes, mut errs) = validate_volumes(
        spec.volumes.as_deref().unwrap_or(&[]),
        &path.child("volumes"),
    );
    errs.extend(validate_containers(
        &spec.containers,
        &volumes,
        &path.child("containers"),
    ));
    errs.extend(validate_init_containers(
        spec.init_containers.as_deref().unwrap_or(&[]),
        &spec.containers,
        &volumes,
        &path.child("initContainers"),
    ));

    let restart = spec.restart_policy.as_deref().unwrap_or("");
    match restart {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required(path.child("restartPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("restartPolicy"),
            other,
            &["Always", "Never", "OnFailure"],
        )),
    }
    let dns_policy = spec.dns_policy.as_deref().unwrap_or("");
    match dns_policy {
        "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None" => {}
        "" => errs.push(FieldError::required(path.child("dnsPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("dnsPolicy"),
            other,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        )),
    }
    errs.extend(meta::validate_labels(
        spec.node_selector.as_ref(),
        &path.child("nodeSelector"),
    ));
    errs.extend(validate_dns_config(spec, &path.child("dnsConfig")));
    for (i, s) in spec.image_pull_secrets.iter().flatten().enumerate() {
        if s.name.is_empty() {
            errs.push(FieldError::required(
                path.child("imagePullSecrets").index(i).child("name"),
                "",
            ));
        }
    }
    errs.extend(validate_topology_spread(
        spec,
        &path.child("topologySpreadConstraints"),
    ));
    for (field, value) in [
        ("serviceAccountName", spec.service_account_name.as_deref()),
        ("nodeName", spec.node_name.as_deref()),
        ("priorityClassName", spec.priority_class_name.as_deref()),
        ("runtimeClassName", spec.runtime_class_name.as_deref()),
    ] {
        let v = value.unwrap_or("");
        if !v.is_empty() || (field == "runtimeClassName" && value.is_some()) {
            for msg in names::name_is_dns_subdomain(v, false) {
                errs.push(FieldError::invalid(path.child(field), v, msg));
            }
        }
    }
    if let Some(ads) = spec.active_deadline_seconds {
        if !(1..=i32::MAX as i64).contains(&ads) {
            errs.push(FieldError::invalid_raw(
                path.child("activeDeadlineSeconds"),
                ads,
                names::inclusive_range_error(1, i32::MAX as i64),
            ));
        }
    }
    for field in ["hostname", "subdomain"] {
        let v = if field == "hostname" {
            spec.hostname.as_deref()
        } else {
            spec.subdomain.as_deref()
        };
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            for msg in names::is_dns1123_label(v) {
                errs.push(FieldError::invalid(path.child(field), v, msg));
            }
        }
    }
    errs.extend(validate_tolerations(
        spec.tolerations.as_deref().unwrap_or(&[]),
        &path.child("tolerations"),
    ));
    if let Some(p) = spec.preemption_policy.as_deref() {
        if !matches!(p, "Never" | "PreemptLowerPriority") {
            errs.push(FieldError::not_supported(
                path.child("preemptionPolicy"),
                p,
                &["Never", "PreemptLowerPriority"],
            ));
        }
    }
    if let Some(os) = &spec.os {
        if !matches!(os.name.as_str(), "linux" | "windows") {
            errs.push(FieldError::not_supported(
                path.child("os").child("name"),
                &os.name,
                &["linux", "windows"],
            ));
        }
    }
    errs
}

fn validate_dns_config(spec: &PodSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let none = spec.dns_policy.as_deref() == Some("None");
    match &spec.dns_config {
        None if none => errs.push(FieldError::required(
            path,
            "must provide `dnsConfig` when `dnsPolicy` is None",
        )),
        None => {}
        Some(c) => {
            let servers = c.nameservers.as_deref().unwrap_or(&[]);
            if none && servers.is_empty() {
                errs.push(FieldError::required(
                    path.child("nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
            }
            if servers.len() > 3 {
                errs.push(FieldError::invalid_raw(
                    path.child("nameservers"),
                    meta::go_string_slice(servers),
                    "must not have more than 3 nameservers",
                ));
            }
            for (i, ns) in servers.iter().enumerate() {
                for msg in names::is_valid_ip(ns) {
                    errs.push(FieldError::invalid(
                        path.child("nameservers").index(i),
                        ns,
                        msg,
                    ));
                }
            }
            for (i, o) in c.options.iter().flatten().enumerate() {
                if o.name.as_deref().unwrap_or("").is_empty() {
                    errs.push(FieldError::required(
                        path.child("options").index(i),
                        "Option.Name must not be empty",
                    ));
                }
            }
        }
    }
    errs
}

fn validate_topology_spread(spec: &PodSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let constraints = spec.topology_spread_constraints.as_deref().unwrap_or(&[]);
    for (i, c) in constraints.iter().enumerate() {
        let p = path.index(i);
        if c.max_skew <= 0 {
            errs.push(FieldError::invalid_raw(
                p.child("maxSkew"),
                c.max_skew,
                "must be greater than zero",
            ));
        }
        if c.topology_key.is_empty() {
            errs.push(FieldError::required(
                p.child("topologyKey"),
                "can not be empty",
            ));
        } else {
            errs.extend(validate_label_name(
                &c.topology_key,
                &p.child("topologyKey"),
            ));
        }
        if !matches!(
            c.when_unsatisfiable.as_str(),
            "DoNotSchedule" | "ScheduleAnyway"
        ) {
            errs.push(FieldError::not_supported(
                p.child("whenUnsatisfiable"),
                &c.when_unsatisfiable,
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        let repeated = constraints[i + 1..].iter().any(|o| {
            o.topology_key == c.topology_key && o.when_unsatisfiable == c.when_unsatisfiable
        });
        if repeated {
            errs.push(FieldError::duplicate(
                p.child("{topologyKey, whenUnsatisfiable}"),
                format!("{}, {}", c.topology_key, c.when_unsatisfiable),
            ));
        }
        errs.extend(meta::validate_label_selector(
            c.label_selector.as_ref(),
            &p.child("labelSelector"),
        ));
    }
    errs
}

/// `ValidateTolerations`.
pub fn validate_tolerations(tolerations: &[Toleration], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let key = t.key.as_deref().unwrap_or("");
        let op = t.operator.as_deref().unwrap_or("");
        let effect = t.effect.as_deref().unwrap_or("");
        let value = t.value.as_deref().unwrap_or("");
        if !key.is_empty() {
            errs.extend(validate_label_name(key, &p.child("key")));
        }
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(p.child("operator"), op, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let msgs = names::is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        p.child("operator"),
                        value,
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid_raw(
                        p.child("operator"),
                        meta::json_value(t),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(FieldError::not_supported(
                p.child("effect"),
                effect,
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            ));
        }
    }
    errs
}

/// `ValidatePodUpdate` (the status subresource and ephemeral containers have their own paths).
pub fn validate_pod_update(new: &Pod, old: &Pod) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    errs.extend(pod_metadata_and_spec(new));
    let spec_path = Path::new("spec");
    let empty = PodSpec::default();
    let (ns, os) = (
        new.spec.as_ref().unwrap_or(&empty),
        old.spec.as_ref().unwrap_or(&empty),
    );

    for (field, n, o) in [
        (
            "containers",
            ns.containers.as_slice(),
            os.containers.as_slice(),
        ),
        (
            "initContainers",
            ns.init_containers.as_deref().unwrap_or(&[]),
            os.init_containers.as_deref().unwrap_or(&[]),
        ),
    ] {
        let p = spec_path.child(field);
        if n.len() != o.len() {
            errs.push(FieldError::forbidden(
                p,
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
        for (i, c) in n.iter().enumerate() {
            let image = c.image.as_deref().unwrap_or("");
            if image.is_empty() {
                errs.push(FieldError::required(p.index(i).child("image"), ""));
            }
            if image.trim() != image {
                errs.push(FieldError::invalid(
                    p.index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }

    match (ns.active_deadline_seconds, os.active_deadline_seconds) {
        (Some(n), o) => {
            if !(0..=i32::MAX as i64).contains(&n) {
                errs.push(FieldError::invalid_raw(
                    spec_path.child("activeDeadlineSeconds"),
                    n,
                    names::inclusive_range_error(0, i32::MAX as i64),
                ));
                return errs;
            }
            if o.is_some_and(|o| o < n) {
                errs.push(FieldError::invalid_raw(
                    spec_path.child("activeDeadlineSeconds"),
                    n,
                    "must be less than or equal to previous value",
                ));
                return errs;
            }
        }
        (None, Some(_)) => {
            errs.push(FieldError::invalid_raw(
                spec_path.child("activeDeadlineSeconds"),
                "null",
                "must not update from a positive integer to nil value",
            ));
        }
        (None, None) => {}
    }

    let new_tolerations = ns.tolerations.as_deref().unwrap_or(&[]);
    for old_t in os.tolerations.iter().flatten() {
        let found = new_tolerations.iter().any(|n| {
            let mut o = old_t.clone();
            o.toleration_seconds = n.toleration_seconds;
            &o == n
        });
        if !found {
            errs.push(FieldError::forbidden(
                spec_path.child("tolerations"),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }
    let old_gates = os.scheduling_gates.as_deref().unwrap_or(&[]);
    if ns
        .scheduling_gates
        .iter()
        .flatten()
        .any(|g| !old_gates.contains(g))
    {
        errs.push(FieldError::forbidden(
            spec_path.child("schedulingGates"),
            "only deletion is allowed, but found new scheduling gate",
        ));
    }

    if ns == os {
        return errs;
    }
    let mut munged = ns.clone();
    for (c, o) in munged.containers.iter_mut().zip(&os.containers) {
        c.image = o.image.clone();
    }
    for (c, o) in munged
        .init_containers
        .iter_mut()
        .flatten()
        .zip(os.init_containers.iter().flatten())
    {
        c.image = o.image.clone();
    }
    munged.active_deadline_seconds = os.active_deadline_seconds;
    munged.scheduling_gates = os.scheduling_gates.clone();
    munged.tolerations = os.tolerations.clone();
    if os.termination_grace_period_seconds.is_some_and(|t| t < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = os.termination_grace_period_seconds;
    }
    if &munged != os {
        let diff = spec_diff(os, &munged);
        errs.push(FieldError::forbidden(
            spec_path,
            format!(
                "pod updates may not change fields other than {UPDATABLE_POD_SPEC_FIELDS}\n{diff}"
            ),
        ));
    }
    errs
}

/// A short human-readable diff of two specs (upstream prints a `cmp.Diff`).
pub fn spec_diff<T: serde::Serialize>(old: &T, new: &T) -> String {
    let (o, n) = (
        serde_json::to_value(old).unwrap_or_default(),
        serde_json::to_value(new).unwrap_or_default(),
    );
    let mut lines = Vec::new();
    diff_values("spec", &o, &n, &mut lines);
    lines.join("\n")
}

fn diff_values(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                diff_values(
                    &format!("{path}.{k}"),
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_values(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (a, b) if a != b => {
            out.push(format!("  {path}: {a} -> {b}"));
        }
        _ => {}
    }
}
