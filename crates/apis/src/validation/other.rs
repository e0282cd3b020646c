//! The smaller groups: rbac, scheduling, coordination, policy, autoscaling and
//! discovery.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{self, json_value, nonnegative, validate_label_selector};
use super::names;
use crate::field_error::{FieldError, FieldErrors, Path};

fn root(field: &str) -> Path {
    Path::new(field)
}

fn object_meta(m: &ObjectMeta, namespaced: bool, name_fn: meta::NameFn) -> FieldErrors {
    meta::validate_object_meta(m, namespaced, name_fn, &root("metadata"))
}

fn policy_rules(rules: &[PolicyRule], path: &Path, namespaced: bool) -> FieldErrors {
    let mut errs = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let p = path.index(i);
        if r.verbs.is_empty() {
            errs.push(FieldError::required(
                p.child("verbs"),
                "verbs must contain at least one value",
            ));
        }
        let non_resource = r.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty());
        if non_resource {
            if namespaced {
                errs.push(FieldError::invalid_raw(
                    p.child("nonResourceURLs"),
                    meta::go_string_slice(r.non_resource_urls.as_deref().unwrap_or(&[])),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            let has_resources = r.api_groups.as_ref().is_some_and(|g| !g.is_empty())
                || r.resources.as_ref().is_some_and(|g| !g.is_empty())
                || r.resource_names.as_ref().is_some_and(|g| !g.is_empty());
            if has_resources {
                errs.push(FieldError::invalid_raw(
                    p.child("nonResourceURLs"),
                    meta::go_string_slice(r.non_resource_urls.as_deref().unwrap_or(&[])),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if r.api_groups.as_ref().is_none_or(|g| g.is_empty()) {
            errs.push(FieldError::required(
                p.child("apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if r.resources.as_ref().is_none_or(|g| g.is_empty()) {
            errs.push(FieldError::required(
                p.child("resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    errs
}

pub fn validate_role(
    meta_: &ObjectMeta,
    rules: Option<&[PolicyRule]>,
    namespaced: bool,
) -> FieldErrors {
    let mut errs = object_meta(meta_, namespaced, names::is_path_segment_name);
    errs.extend(policy_rules(
        rules.unwrap_or(&[]),
        &root("rules"),
        namespaced,
    ));
    errs
}

pub fn validate_role_binding(
    meta_: &ObjectMeta,
    role_ref: &RoleRef,
    subjects: Option<&[Subject]>,
    namespaced: bool,
) -> FieldErrors {
    let mut errs = object_meta(meta_, namespaced, names::is_path_segment_name);
    let rp = root("roleRef");
    if role_ref.api_group != "rbac.authorization.k8s.io" {
        errs.push(FieldError::not_supported(
            rp.child("apiGroup"),
            &role_ref.api_group,
            &["rbac.authorization.k8s.io"],
        ));
    }
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&role_ref.kind.as_str()) {
        errs.push(FieldError::not_supported(
            rp.child("kind"),
            &role_ref.kind,
            kinds,
        ));
    }
    if role_ref.name.is_empty() {
        errs.push(FieldError::required(rp.child("name"), ""));
    } else {
        for msg in names::is_path_segment_name(&role_ref.name, false) {
            errs.push(FieldError::invalid(rp.child("name"), &role_ref.name, msg));
        }
    }
    for (i, s) in subjects.unwrap_or(&[]).iter().enumerate() {
        let sp = root("subjects").index(i);
        if s.name.is_empty() {
            errs.push(FieldError::required(sp.child("name"), ""));
        }
        let group = s.api_group.as_deref().unwrap_or("");
        match s.kind.as_str() {
            "ServiceAccount" => {
                if !s.name.is_empty() {
                    for msg in names::name_is_dns_subdomain(&s.name, false) {
                        errs.push(FieldError::invalid(sp.child("name"), &s.name, msg));
                    }
                }
                if !group.is_empty() {
                    errs.push(FieldError::not_supported(
                        sp.child("apiGroup"),
                        group,
                        &[""],
                    ));
                }
                if !namespaced && s.namespace.as_deref().unwrap_or("").is_empty() {
                    errs.push(FieldError::required(sp.child("namespace"), ""));
                }
            }
            "User" | "Group" => {
                if group != "rbac.authorization.k8s.io" {
                    errs.push(FieldError::not_supported(
                        sp.child("apiGroup"),
                        group,
                        &["rbac.authorization.k8s.io"],
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                sp.child("kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    errs
}

/// `roleRef` may never change (`cannot change roleRef`).
pub fn validate_role_ref_update(new: &RoleRef, old: &RoleRef) -> FieldErrors {
    if new == old {
        return Vec::new();
    }
    let shown = format!(
        "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
        meta::go_quote(&new.api_group),
        meta::go_quote(&new.kind),
        meta::go_quote(&new.name)
    );
    vec![FieldError::invalid_raw(
        "roleRef",
        shown,
        "cannot change roleRef",
    )]
}

const HIGHEST_USER_PRIORITY: i32 = 1_000_000_000;

pub fn validate_priority_class(pc: &PriorityClass) -> FieldErrors {
    let mut errs = object_meta(&pc.metadata, false, names::name_is_dns_subdomain);
    let name = pc.metadata.name.as_deref().unwrap_or("");
    let system = matches!(name, "system-cluster-critical" | "system-node-critical");
    if name.starts_with("system-") && !system {
        errs.push(FieldError::forbidden(
            root("metadata").child("name"),
            "priority class names with 'system-' prefix are reserved.",
        ));
    } else if !system && pc.value > HIGHEST_USER_PRIORITY {
        errs.push(FieldError::forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        ));
    }
    if let Some(p) = pc.preemption_policy.as_deref() {
        if !matches!(p, "Never" | "PreemptLowerPriority") {
            errs.push(FieldError::not_supported(
                "preemptionPolicy",
                p,
                &["Never", "PreemptLowerPriority"],
            ));
        }
    }
    errs
}

pub fn validate_priority_class_update(new: &PriorityClass, old: &PriorityClass) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    if new.value != old.value {
        errs.push(FieldError::forbidden(
            "value",
            "may not be changed in an update.",
        ));
    }
    errs.extend(meta::immutable(
        &new.preemption_policy,
        &old.preemption_policy,
        || json_value(&new.preemption_policy),
        &root("preemptionPolicy"),
    ));
    errs
}

pub fn validate_lease(lease: &Lease) -> FieldErrors {
    let mut errs = object_meta(&lease.metadata, true, names::name_is_dns_subdomain);
    let spec = lease.spec.clone().unwrap_or_default();
    if let Some(d) = spec.lease_duration_seconds.filter(|d| *d <= 0) {
        errs.push(FieldError::invalid_raw(
            root("spec").child("leaseDurationSeconds"),
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec.lease_transitions {
        errs.extend(nonnegative(
            t.into(),
            &root("spec").child("leaseTransitions"),
        ));
    }
    errs
}

pub fn validate_pdb(pdb: &PodDisruptionBudget) -> FieldErrors {
    let mut errs = object_meta(&pdb.metadata, true, names::name_is_dns_subdomain);
    let spec = pdb.spec.clone().unwrap_or_default();
    let p = root("spec");
    if spec.min_available.is_some() && spec.max_unavailable.is_some() {
        errs.push(FieldError::invalid_raw(
            &p,
            json_value(&spec),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (field, v) in [
        ("minAvailable", &spec.min_available),
        ("maxUnavailable", &spec.max_unavailable),
    ] {
        match v {
            Some(IntOrString::Int(i)) => errs.extend(nonnegative((*i).into(), &p.child(field))),
            Some(IntOrString::String(s)) => {
                let msgs = names::is_valid_percent(s);
                if !msgs.is_empty() {
                    errs.extend(
                        msgs.into_iter()
                            .map(|m| FieldError::invalid_raw(p.child(field), s, m)),
                    );
                } else if s
                    .trim_end_matches('%')
                    .parse::<i64>()
                    .is_ok_and(|v| v > 100)
                {
                    errs.push(FieldError::invalid_raw(
                        p.child(field),
                        s,
                        "must not be greater than 100%",
                    ));
                }
            }
            None => {}
        }
    }
    errs.extend(validate_label_selector(
        spec.selector.as_ref(),
        &p.child("selector"),
    ));
    if let Some(policy) = spec.unhealthy_pod_eviction_policy.as_deref() {
        if !matches!(policy, "AlwaysAllow" | "IfHealthyBudget") {
            errs.push(FieldError::not_supported(
                p.child("unhealthyPodEvictionPolicy"),
                policy,
                &["AlwaysAllow", "IfHealthyBudget"],
            ));
        }
    }
    errs
}

/// autoscaling/v2 (v1 objects are validated after conversion to v2 by the caller, or
/// through [`validate_hpa_v1`]).
pub fn validate_hpa(hpa: &HorizontalPodAutoscaler) -> FieldErrors {
    let mut errs = object_meta(&hpa.metadata, true, names::is_path_segment_name);
    let spec = hpa.spec.clone().unwrap_or_default();
    errs.extend(hpa_common(
        spec.min_replicas,
        spec.max_replicas,
        &spec.scale_target_ref.kind,
        &spec.scale_target_ref.name,
    ));
    errs
}

pub fn validate_hpa_v1(
    hpa: &k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler,
) -> FieldErrors {
    let mut errs = object_meta(&hpa.metadata, true, names::is_path_segment_name);
    let spec = hpa.spec.clone().unwrap_or_default();
    errs.extend(hpa_common(
        spec.min_replicas,
        spec.max_replicas,
        &spec.scale_target_ref.kind,
        &spec.scale_target_ref.name,
    ));
    if let Some(t) = spec.target_cpu_utilization_percentage.filter(|t| *t < 1) {
        errs.push(FieldError::invalid_raw(
            root("spec").child("targetCPUUtilizationPercentage"),
            t,
            "must be greater than 0",
        ));
    }
    errs
}

fn hpa_common(min: Option<i32>, max: i32, kind: &str, name: &str) -> FieldErrors {
    let mut errs = Vec::new();
    let p = root("spec");
    if let Some(min) = min.filter(|m| *m < 1) {
        errs.push(FieldError::invalid_raw(
            p.child("minReplicas"),
            min,
            "must be greater than or equal to 1",
        ));
    }
    if max < 1 {
        errs.push(FieldError::invalid_raw(
            p.child("maxReplicas"),
            max,
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|m| max < m) {
        errs.push(FieldError::invalid_raw(
            p.child("maxReplicas"),
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    let rp = p.child("scaleTargetRef");
    if kind.is_empty() {
        errs.push(FieldError::required(rp.child("kind"), ""));
    } else {
        for msg in names::is_path_segment_name(kind, false) {
            errs.push(FieldError::invalid(rp.child("kind"), kind, msg));
        }
    }
    if name.is_empty() {
        errs.push(FieldError::required(rp.child("name"), ""));
    } else {
        for msg in names::is_path_segment_name(name, false) {
            errs.push(FieldError::invalid(rp.child("name"), name, msg));
        }
    }
    errs
}

pub fn validate_endpoint_slice(es: &EndpointSlice) -> FieldErrors {
    let mut errs = object_meta(&es.metadata, true, names::name_is_dns_subdomain);
    if !matches!(es.address_type.as_str(), "IPv4" | "IPv6" | "FQDN") {
        errs.push(FieldError::not_supported(
            "addressType",
            &es.address_type,
            &["FQDN", "IPv4", "IPv6"],
        ));
    }
    for (i, ep) in es.endpoints.iter().enumerate() {
        let ap = root("endpoints").index(i).child("addresses");
        if ep.addresses.is_empty() {
            errs.push(FieldError::required(&ap, "must contain at least 1 address"));
        }
        for (j, a) in ep.addresses.iter().enumerate() {
            let msgs = match es.address_type.as_str() {
                "IPv4" | "IPv6" => names::is_valid_ip(a),
                _ => names::is_dns1123_subdomain(a),
            };
            for msg in msgs {
                errs.push(FieldError::invalid(ap.index(j), a, msg));
            }
        }
    }
    for (i, port) in es.ports.iter().flatten().enumerate() {
        let pp = root("ports").index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            for msg in names::is_dns1123_label(name) {
                errs.push(FieldError::invalid(pp.child("name"), name, msg));
            }
        }
        if let Some(proto) = port.protocol.as_deref() {
            if !matches!(proto, "TCP" | "UDP" | "SCTP") {
                errs.push(FieldError::not_supported(
                    pp.child("protocol"),
                    proto,
                    &["SCTP", "TCP", "UDP"],
                ));
            }
        }
    }
    errs
}

pub fn validate_endpoint_slice_update(new: &EndpointSlice, old: &EndpointSlice) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    errs.extend(
        validate_endpoint_slice(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    errs.extend(meta::immutable_str(
        &new.address_type,
        &old.address_type,
        &root("addressType"),
    ));
    errs
}
