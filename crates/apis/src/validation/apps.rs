//! apps/v1: deployments, replica sets, stateful sets and daemon sets
//! (upstream `pkg/apis/apps/validation/validation.go` plus the strategies' rule that
//! `spec.selector` is immutable in apps/v1).

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy,
    ReplicaSet, StatefulSet,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::core::workload_restart_rules;
use super::meta::{
    self, go_label_selector, go_string_map, nonnegative, selector_is_empty, selector_matches,
};
use super::names;
use super::pod::validate_pod_template_spec;
use super::storage::validate_pvc_spec;
use crate::field_error::{FieldError, FieldErrors, Path};

fn root(field: &str) -> Path {
    Path::new(field)
}

/// The template labels must satisfy the selector (`ValidatePodTemplateSpecForReplicaSet`).
fn template_matches(
    selector: Option<&LabelSelector>,
    template: &PodTemplateSpec,
    path: &Path,
) -> FieldErrors {
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    let empty_selector = selector.is_some_and(selector_is_empty);
    if empty_selector || selector_matches(selector, labels) != Some(false) {
        return Vec::new();
    }
    vec![FieldError::invalid_raw(
        path.child("metadata").child("labels"),
        go_string_map(labels),
        "`selector` does not match template `labels`",
    )]
}

/// Selector present, valid and not empty; then the template against it.
fn selector_and_template(
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    kind_lower: &str,
    spec: &Path,
) -> FieldErrors {
    let empty = PodTemplateSpec::default();
    let mut errs = selector_and_template_labels(selector, template, kind_lower, spec);
    errs.extend(validate_pod_template_spec(
        template.unwrap_or(&empty),
        &spec.child("template"),
    ));
    errs
}

/// Selector present, valid and not empty; the template's labels match it.
fn selector_and_template_labels(
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    kind_lower: &str,
    spec: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let Some(sel) = selector else {
        errs.push(FieldError::required(spec.child("selector"), ""));
        return errs;
    };
    errs.extend(meta::validate_label_selector(
        Some(sel),
        &spec.child("selector"),
    ));
    if selector_is_empty(sel) {
        errs.push(FieldError::invalid_raw(
            spec.child("selector"),
            go_label_selector(Some(sel)),
            format!("empty selector is invalid for {kind_lower}"),
        ));
    }
    let empty = PodTemplateSpec::default();
    let template = template.unwrap_or(&empty);
    if selector_matches(Some(sel), None).is_none() {
        errs.push(FieldError::invalid_raw(
            spec.child("selector"),
            go_label_selector(Some(sel)),
            "invalid label selector",
        ));
    } else {
        errs.extend(template_matches(
            Some(sel),
            template,
            &spec.child("template"),
        ));
    }
    errs
}

/// `ValidatePositiveIntOrPercent` (value printed bare, as `IntOrString` is a Stringer).
fn positive_int_or_percent(v: Option<&IntOrString>, path: &Path) -> FieldErrors {
    match v {
        Some(IntOrString::String(s)) => names::is_valid_percent(s)
            .into_iter()
            .map(|m| FieldError::invalid_raw(path, s, m))
            .collect(),
        Some(IntOrString::Int(i)) => nonnegative((*i).into(), path),
        None => Vec::new(),
    }
}

fn int_or_percent_value(v: Option<&IntOrString>) -> i64 {
    match v {
        Some(IntOrString::Int(i)) => (*i).into(),
        Some(IntOrString::String(s)) => s.trim_end_matches('%').parse().unwrap_or(0),
        None => 0,
    }
}

fn show(v: Option<&IntOrString>) -> String {
    match v {
        Some(IntOrString::Int(i)) => i.to_string(),
        Some(IntOrString::String(s)) => s.clone(),
        None => "null".to_string(),
    }
}

fn not_more_than_100_percent(v: Option<&IntOrString>, path: &Path) -> FieldErrors {
    match v {
        Some(IntOrString::String(s))
            if names::is_valid_percent(s).is_empty() && int_or_percent_value(v) > 100 =>
        {
            vec![FieldError::invalid_raw(
                path,
                s,
                "must not be greater than 100%",
            )]
        }
        _ => Vec::new(),
    }
}

fn validate_deployment_strategy(s: &DeploymentStrategy, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    match s.type_.as_deref().unwrap_or("") {
        "Recreate" => {
            if s.rolling_update.is_some() {
                errs.push(FieldError::forbidden(
                    path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match &s.rolling_update {
            None => errs.push(FieldError::required(
                path.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let p = path.child("rollingUpdate");
                let (mu, ms) = (ru.max_unavailable.as_ref(), ru.max_surge.as_ref());
                errs.extend(positive_int_or_percent(mu, &p.child("maxUnavailable")));
                errs.extend(positive_int_or_percent(ms, &p.child("maxSurge")));
                if int_or_percent_value(mu) == 0 && int_or_percent_value(ms) == 0 {
                    errs.push(FieldError::invalid_raw(
                        p.child("maxUnavailable"),
                        show(mu),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                errs.extend(not_more_than_100_percent(mu, &p.child("maxUnavailable")));
            }
        },
        other => errs.push(FieldError::not_supported(
            path.child("type"),
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
    errs
}

/// `selector_given`: whether the request carried `spec.selector` at all (k8s-openapi
/// decodes a missing selector as an empty one, but upstream words the two differently).
pub fn validate_deployment(d: &Deployment, selector_given: bool) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &d.metadata,
        true,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    let spec = d.spec.clone().unwrap_or_default();
    let p = root("spec");
    errs.extend(nonnegative(
        spec.replicas.unwrap_or(0).into(),
        &p.child("replicas"),
    ));
    errs.extend(selector_and_template(
        Some(&spec.selector).filter(|_| selector_given),
        Some(&spec.template),
        "deployment",
        &p,
    ));
    errs.extend(workload_restart_rules(
        &spec.template,
        &p.child("template"),
        "ReplicaSet",
    ));
    errs.extend(validate_deployment_strategy(
        &spec.strategy.clone().unwrap_or_default(),
        &p.child("strategy"),
    ));
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    errs.extend(nonnegative(min_ready.into(), &p.child("minReadySeconds")));
    if let Some(r) = spec.revision_history_limit {
        errs.extend(nonnegative(r.into(), &p.child("revisionHistoryLimit")));
    }
    if let Some(pd) = spec.progress_deadline_seconds {
        errs.extend(nonnegative(pd.into(), &p.child("progressDeadlineSeconds")));
        if pd <= min_ready {
            errs.push(FieldError::invalid_raw(
                p.child("progressDeadlineSeconds"),
                pd,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

fn selector_immutable(new: Option<&LabelSelector>, old: Option<&LabelSelector>) -> FieldErrors {
    meta::immutable(
        &new,
        &old,
        || go_label_selector(new),
        &root("spec").child("selector"),
    )
}

pub fn validate_deployment_update(
    new: &Deployment,
    old: &Deployment,
    selector_given: bool,
) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    errs.extend(validate_deployment_spec_only(new, selector_given));
    let sel = |d: &Deployment| d.spec.as_ref().map(|s| s.selector.clone());
    errs.extend(selector_immutable(sel(new).as_ref(), sel(old).as_ref()));
    errs
}

fn validate_deployment_spec_only(d: &Deployment, selector_given: bool) -> FieldErrors {
    let mut errs = validate_deployment(d, selector_given);
    errs.retain(|e| !e.field.starts_with("metadata."));
    errs
}

pub fn validate_replica_set(rs: &ReplicaSet, selector_given: bool) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &rs.metadata,
        true,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    let spec = rs.spec.clone().unwrap_or_default();
    let p = root("spec");
    errs.extend(nonnegative(
        spec.replicas.unwrap_or(0).into(),
        &p.child("replicas"),
    ));
    errs.extend(nonnegative(
        spec.min_ready_seconds.unwrap_or(0).into(),
        &p.child("minReadySeconds"),
    ));
    let template = spec.template.clone().unwrap_or_default();
    errs.extend(selector_and_template(
        Some(&spec.selector).filter(|_| selector_given),
        Some(&template),
        "deployment",
        &p,
    ));
    errs.extend(workload_restart_rules(
        &template,
        &p.child("template"),
        "ReplicaSet",
    ));
    errs
}

pub fn validate_replica_set_update(
    new: &ReplicaSet,
    old: &ReplicaSet,
    selector_given: bool,
) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    let mut spec_errs = validate_replica_set(new, selector_given);
    spec_errs.retain(|e| !e.field.starts_with("metadata."));
    errs.extend(spec_errs);
    let sel = |r: &ReplicaSet| r.spec.as_ref().map(|s| s.selector.clone());
    errs.extend(selector_immutable(sel(new).as_ref(), sel(old).as_ref()));
    errs
}

fn validate_stateful_set_spec(ss: &StatefulSet, selector_given: bool) -> FieldErrors {
    let mut errs = Vec::new();
    let spec = ss.spec.clone().unwrap_or_default();
    let p = root("spec");
    match spec.pod_management_policy.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(p.child("podManagementPolicy"), "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            p.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    match strategy.type_.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(p.child("updateStrategy"), "")),
        "OnDelete" => {
            if strategy.rolling_update.is_some() {
                errs.push(FieldError::invalid_raw(
                    p.child("updateStrategy").child("rollingUpdate"),
                    meta::json_value(&strategy.rolling_update),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = &strategy.rolling_update {
                let rp = p.child("updateStrategy").child("rollingUpdate");
                errs.extend(nonnegative(
                    ru.partition.unwrap_or(0).into(),
                    &rp.child("partition"),
                ));
                if let Some(mu) = &ru.max_unavailable {
                    errs.extend(positive_int_or_percent(
                        Some(mu),
                        &rp.child("maxUnavailable"),
                    ));
                    if int_or_percent_value(Some(mu)) == 0 {
                        errs.push(FieldError::invalid_raw(
                            rp.child("maxUnavailable"),
                            show(Some(mu)),
                            "must be greater than 0",
                        ));
                    }
                    errs.extend(not_more_than_100_percent(
                        Some(mu),
                        &rp.child("maxUnavailable"),
                    ));
                }
            }
        }
        _ => errs.push(FieldError::invalid_raw(
            p.child("updateStrategy"),
            meta::json_value(&strategy),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = &spec.persistent_volume_claim_retention_policy {
        for (field, v) in [
            ("whenDeleted", &policy.when_deleted),
            ("whenScaled", &policy.when_scaled),
        ] {
            if let Some(v) = v.as_deref() {
                if !matches!(v, "Retain" | "Delete") {
                    errs.push(FieldError::not_supported(
                        p.child("persistentVolumeClaimRetentionPolicy").child(field),
                        v,
                        &["Retain", "Delete"],
                    ));
                }
            }
        }
    }
    errs.extend(nonnegative(
        spec.replicas.unwrap_or(0).into(),
        &p.child("replicas"),
    ));
    errs.extend(nonnegative(
        spec.min_ready_seconds.unwrap_or(0).into(),
        &p.child("minReadySeconds"),
    ));
    if let Some(start) = spec.ordinals.as_ref().and_then(|o| o.start) {
        errs.extend(nonnegative(
            start.into(),
            &p.child("ordinals").child("start"),
        ));
    }
    // Upstream `ValidatePodTemplateSpecForStatefulSet` checks only the template's labels
    // and annotations: its volume mounts name volumes (the claim templates) that only
    // the pods will have.
    errs.extend(selector_and_template_labels(
        Some(&spec.selector).filter(|_| selector_given),
        Some(&spec.template),
        "statefulset",
        &p,
    ));
    let tmeta = spec.template.metadata.clone().unwrap_or_default();
    let tpath = p.child("template");
    errs.extend(meta::validate_labels(
        tmeta.labels.as_ref(),
        &tpath.child("labels"),
    ));
    errs.extend(meta::validate_annotations(
        tmeta.annotations.as_ref(),
        &tpath.child("annotations"),
    ));
    errs.extend(workload_restart_rules(
        &spec.template,
        &p.child("template"),
        "StatefulSet",
    ));
    for (i, pvc) in spec.volume_claim_templates.iter().flatten().enumerate() {
        let vp = p.child("volumeClaimTemplates").index(i);
        errs.extend(meta::validate_labels(
            pvc.metadata.labels.as_ref(),
            &vp.child("metadata").child("labels"),
        ));
        errs.extend(validate_pvc_spec(
            &pvc.spec.clone().unwrap_or_default(),
            &vp.child("spec"),
        ));
    }
    errs
}

pub fn validate_stateful_set(ss: &StatefulSet, selector_given: bool) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &ss.metadata,
        true,
        names::name_is_dns_label,
        &root("metadata"),
    );
    errs.extend(validate_stateful_set_spec(ss, selector_given));
    errs
}

pub fn validate_stateful_set_update(
    new: &StatefulSet,
    old: &StatefulSet,
    selector_given: bool,
) -> FieldErrors {
    // The name is not re-validated: older servers allowed DNS subdomains and such objects
    // must still be updatable (e.g. to drop a finalizer).
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    errs.extend(validate_stateful_set_spec(new, selector_given));
    let (Some(ns), Some(os)) = (&new.spec, &old.spec) else {
        return errs;
    };
    let mut clone = ns.clone();
    clone.replicas = os.replicas;
    clone.template = os.template.clone();
    clone.update_strategy = os.update_strategy.clone();
    clone.min_ready_seconds = os.min_ready_seconds;
    clone.ordinals = os.ordinals.clone();
    clone.revision_history_limit = os.revision_history_limit;
    clone.persistent_volume_claim_retention_policy =
        os.persistent_volume_claim_retention_policy.clone();
    if &clone != os {
        errs.push(FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
    errs
}

fn validate_daemon_set_strategy(s: &DaemonSetUpdateStrategy, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    match s.type_.as_deref().unwrap_or("") {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(ru) = &s.rolling_update else {
                errs.push(FieldError::required(path.child("rollingUpdate"), ""));
                return errs;
            };
            let p = path.child("rollingUpdate");
            let (mu, ms) = (ru.max_unavailable.as_ref(), ru.max_surge.as_ref());
            errs.extend(positive_int_or_percent(mu, &p.child("maxUnavailable")));
            errs.extend(positive_int_or_percent(ms, &p.child("maxSurge")));
            errs.extend(not_more_than_100_percent(mu, &p.child("maxUnavailable")));
            errs.extend(not_more_than_100_percent(ms, &p.child("maxSurge")));
            match (int_or_percent_value(mu) != 0, int_or_percent_value(ms) != 0) {
                (true, true) => errs.push(FieldError::invalid_raw(
                    p.child("maxSurge"),
                    show(ms),
                    "may not be set when maxUnavailable is non-zero",
                )),
                (false, false) => errs.push(FieldError::required(
                    p.child("maxUnavailable"),
                    "cannot be 0 when maxSurge is 0",
                )),
                _ => {}
            }
        }
        other => errs.push(FieldError::not_supported(
            path,
            other,
            &["RollingUpdate", "OnDelete"],
        )),
    }
    errs
}

fn validate_daemon_set_spec(ds: &DaemonSet, selector_given: bool) -> FieldErrors {
    let spec = ds.spec.clone().unwrap_or_default();
    let p = root("spec");
    let selector = Some(&spec.selector).filter(|_| selector_given);
    let mut errs = meta::validate_label_selector(selector, &p.child("selector"));
    // Upstream has no separate "required" check here: a missing selector matches nothing.
    if selector_matches(
        selector,
        spec.template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref()),
    ) == Some(false)
    {
        errs.push(FieldError::invalid_raw(
            p.child("template").child("metadata").child("labels"),
            go_string_map(
                spec.template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.as_ref()),
            ),
            "`selector` does not match template `labels`",
        ));
    }
    if let Some(sel) = selector.filter(|s| selector_is_empty(s)) {
        errs.push(FieldError::invalid_raw(
            p.child("selector"),
            go_label_selector(Some(sel)),
            "empty selector is invalid for daemonset",
        ));
    }
    errs.extend(validate_pod_template_spec(
        &spec.template,
        &p.child("template"),
    ));
    errs.extend(workload_restart_rules(
        &spec.template,
        &p.child("template"),
        "DaemonSet",
    ));
    errs.extend(nonnegative(
        spec.min_ready_seconds.unwrap_or(0).into(),
        &p.child("minReadySeconds"),
    ));
    errs.extend(validate_daemon_set_strategy(
        &spec.update_strategy.clone().unwrap_or_default(),
        &p.child("updateStrategy"),
    ));
    if let Some(r) = spec.revision_history_limit {
        errs.extend(nonnegative(r.into(), &p.child("revisionHistoryLimit")));
    }
    errs
}

pub fn validate_daemon_set(ds: &DaemonSet, selector_given: bool) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &ds.metadata,
        true,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    errs.extend(validate_daemon_set_spec(ds, selector_given));
    errs
}

pub fn validate_daemon_set_update(
    new: &DaemonSet,
    old: &DaemonSet,
    selector_given: bool,
) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    errs.extend(validate_daemon_set_spec(new, selector_given));
    let sel = |d: &DaemonSet| d.spec.as_ref().map(|s| s.selector.clone());
    errs.extend(selector_immutable(sel(new).as_ref(), sel(old).as_ref()));
    errs
}

/// `ValidateControllerRevision`: a valid name, data present, a non-negative revision.
pub fn validate_controller_revision(r: &ControllerRevision) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &r.metadata,
        true,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    if r.data.as_ref().is_none_or(|d| d.0.is_null()) {
        errs.push(FieldError::required("data", "data is mandatory"));
    }
    errs.extend(nonnegative(r.revision, &root("revision")));
    errs
}

/// `ValidateControllerRevisionUpdate`: the data never changes.
pub fn validate_controller_revision_update(
    new: &ControllerRevision,
    old: &ControllerRevision,
) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    errs.extend(validate_controller_revision(new));
    errs.extend(meta::immutable(
        &new.data,
        &old.data,
        || meta::json_value(&new.data),
        &root("data"),
    ));
    errs
}
