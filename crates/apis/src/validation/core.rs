//! core/v1 kinds other than pods: services, config maps, secrets, namespaces, nodes,
//! persistent volumes and claims, endpoints, replication controllers, pod templates.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, PodTemplate, ReplicationController, Secret, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::containers::port_num_or_name;
use super::meta::{self, go_quote, immutable_str, nonnegative};
use super::names;
use super::pod::validate_pod_template_spec;
use crate::field_error::{FieldError, FieldErrorType, FieldErrors, Path};

/// The largest ConfigMap or Secret payload.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;
/// The default `--service-node-port-range`.
pub const NODE_PORT_RANGE: (i32, i32) = (30000, 32767);
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

fn root(field: &str) -> Path {
    Path::new(field)
}

pub fn validate_service(svc: &Service) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &svc.metadata,
        true,
        names::name_is_dns1035_label,
        &root("metadata"),
    );
    let spec_path = root("spec");
    let spec = svc.spec.clone().unwrap_or_default();
    let ty = spec.type_.as_deref().unwrap_or("");
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    let cluster_ips: Vec<String> = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ips.clone(),
        (_, Some(ip)) if !ip.is_empty() => vec![ip.clone()],
        _ => Vec::new(),
    };
    let headless = cluster_ips.first().is_some_and(|ip| ip == "None");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(spec_path.child("ports"), ""));
    }
    match ty {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            spec_path.child("clusterIPs").index(0),
            "None",
            format!("may not be set to 'None' for {ty} services"),
        )),
        "ExternalName" => {
            if !cluster_ips.is_empty() {
                errs.push(FieldError::forbidden(
                    spec_path.child("clusterIPs"),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_families.as_ref().is_some_and(|f| !f.is_empty()) {
                errs.push(FieldError::forbidden(
                    spec_path.child("ipFamilies"),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(FieldError::forbidden(
                    spec_path.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            let cname = spec
                .external_name
                .as_deref()
                .unwrap_or("")
                .trim_end_matches('.');
            if cname.is_empty() {
                errs.push(FieldError::required(spec_path.child("externalName"), ""));
            } else {
                for msg in names::is_dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid(
                        spec_path.child("externalName"),
                        cname,
                        msg,
                    ));
                }
            }
        }
        _ => {}
    }
    let mut port_names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        errs.extend(validate_service_port(
            port,
            ports.len() > 1,
            &mut port_names,
            &spec_path.child("ports").index(i),
        ));
    }
    errs.extend(meta::validate_labels(
        spec.selector.as_ref(),
        &spec_path.child("selector"),
    ));
    match spec.session_affinity.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(spec_path.child("sessionAffinity"), "")),
        "ClientIP" => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            match timeout {
                None => errs.push(FieldError::required(
                    spec_path
                        .child("sessionAffinityConfig")
                        .child("clientIP")
                        .child("timeoutSeconds"),
                    "",
                )),
                Some(t) if !(1..=86400).contains(&t) => errs.push(FieldError::invalid_raw(
                    spec_path
                        .child("sessionAffinityConfig")
                        .child("clientIP")
                        .child("timeoutSeconds"),
                    t,
                    "must be greater than 0 and less than 86400",
                )),
                Some(_) => {}
            }
        }
        "None" => {
            if spec.session_affinity_config.is_some() {
                errs.push(FieldError::forbidden(
                    spec_path.child("sessionAffinityConfig"),
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            spec_path.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
    for (i, ip) in cluster_ips.iter().enumerate() {
        if ip != "None" && !ip.is_empty() {
            for msg in names::is_valid_ip(ip) {
                errs.push(FieldError::invalid(
                    spec_path.child("clusterIPs").index(i),
                    ip,
                    msg,
                ));
            }
        }
    }
    if let (Some(ip), Some(first)) = (
        spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty()),
        spec.cluster_ips.as_ref().and_then(|c| c.first()),
    ) {
        if ip != first {
            errs.push(FieldError::invalid(
                spec_path.child("clusterIPs").index(0),
                first,
                "first value must match `clusterIP`",
            ));
        }
    }
    if let Some(policy) = spec.ip_family_policy.as_deref() {
        const POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(
                spec_path.child("ipFamilyPolicy"),
                policy,
                POLICIES,
            ));
        } else if policy == "SingleStack" && spec.ip_families.as_ref().is_some_and(|f| f.len() > 1)
        {
            errs.push(FieldError::invalid(
                spec_path.child("ipFamilyPolicy"),
                policy,
                "must be RequireDualStack or PreferDualStack when multiple IP families are specified",
            ));
        }
    }
    for (i, f) in spec.ip_families.iter().flatten().enumerate() {
        if !matches!(f.as_str(), "IPv4" | "IPv6") {
            errs.push(FieldError::not_supported(
                spec_path.child("ipFamilies").index(i),
                f,
                &["IPv4", "IPv6"],
            ));
        }
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        for msg in names::is_valid_ip(ip) {
            errs.push(FieldError::invalid(
                spec_path.child("externalIPs").index(i),
                ip,
                msg,
            ));
        }
    }
    match ty {
        "" => errs.push(FieldError::required(spec_path.child("type"), "")),
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort" => {}
        other => errs.push(FieldError::not_supported(
            spec_path.child("type"),
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    let mut node_ports = BTreeSet::new();
    let mut seen_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = spec_path.child("ports").index(i);
        let protocol = port.protocol.clone().unwrap_or_default();
        if let Some(np) = port.node_port.filter(|np| *np != 0) {
            if ty == "ClusterIP" {
                errs.push(FieldError::forbidden(
                    p.child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else if !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&np) {
                errs.push(FieldError::invalid_raw(
                    p.child("nodePort"),
                    np,
                    format!("provided port is not in the valid range. The range of valid ports is {}-{}", NODE_PORT_RANGE.0, NODE_PORT_RANGE.1),
                ));
            }
            if !node_ports.insert((protocol.clone(), np)) {
                errs.push(FieldError::duplicate(p.child("nodePort"), np));
            }
        }
        if !seen_ports.insert((protocol.clone(), port.port)) {
            errs.push(FieldError {
                kind: FieldErrorType::Duplicate,
                field: p.to_string(),
                bad_value: Some(format!(
                    "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    go_quote(&protocol),
                    port.port
                )),
                detail: String::new(),
            });
        }
    }
    if let Some(p) = spec.external_traffic_policy.as_deref() {
        let externally = ty == "LoadBalancer"
            || ty == "NodePort"
            || (ty == "ClusterIP" && spec.external_ips.as_ref().is_some_and(|e| !e.is_empty()));
        if !externally {
            errs.push(FieldError::invalid(
                spec_path.child("externalTrafficPolicy"),
                p,
                "may only be set for externally-accessible services",
            ));
        } else if !matches!(p, "Cluster" | "Local") {
            errs.push(FieldError::not_supported(
                spec_path.child("externalTrafficPolicy"),
                p,
                &["Cluster", "Local"],
            ));
        }
    }
    if let Some(p) = spec.internal_traffic_policy.as_deref() {
        if !matches!(p, "Cluster" | "Local") {
            errs.push(FieldError::not_supported(
                spec_path.child("internalTrafficPolicy"),
                p,
                &["Cluster", "Local"],
            ));
        }
    }
    errs
}

fn validate_service_port(
    port: &ServicePort,
    require_name: bool,
    seen: &mut BTreeSet<String>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let name = port.name.as_deref().unwrap_or("");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else if !name.is_empty() {
        for msg in names::is_dns1123_label(name) {
            errs.push(FieldError::invalid(path.child("name"), name, msg));
        }
        if !seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(path.child("name"), name));
        }
    }
    for msg in names::is_valid_port_num(port.port.into()) {
        errs.push(FieldError::invalid_raw(path.child("port"), port.port, msg));
    }
    match port.protocol.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(path.child("protocol"), "")),
        p if !PROTOCOLS.contains(&p) => errs.push(FieldError::not_supported(
            path.child("protocol"),
            p,
            PROTOCOLS,
        )),
        _ => {}
    }
    let target = port
        .target_port
        .clone()
        .unwrap_or(IntOrString::Int(port.port));
    errs.extend(port_num_or_name(&target, &path.child("targetPort")));
    if let Some(ap) = port.app_protocol.as_deref() {
        errs.extend(meta::validate_label_name(ap, &path.child("appProtocol")));
    }
    errs
}

pub fn validate_service_update(new: &Service, old: &Service) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    let (ns, os) = (
        new.spec.clone().unwrap_or_default(),
        old.spec.clone().unwrap_or_default(),
    );
    let external = |t: &Option<String>| t.as_deref() == Some("ExternalName");
    if !external(&ns.type_) && !external(&os.type_) {
        let old_first = os
            .cluster_ips
            .as_ref()
            .and_then(|c| c.first())
            .or(os.cluster_ip.as_ref())
            .filter(|ip| !ip.is_empty());
        let new_first = ns
            .cluster_ips
            .as_ref()
            .and_then(|c| c.first())
            .or(ns.cluster_ip.as_ref())
            .filter(|ip| !ip.is_empty());
        if let Some(o) = old_first {
            if new_first != Some(o) {
                errs.push(FieldError::invalid_raw(
                    root("spec").child("clusterIPs").index(0),
                    meta::go_string_slice(ns.cluster_ips.as_deref().unwrap_or(&[])),
                    "may not change once set",
                ));
            }
        }
    }
    errs.extend(validate_service(new));
    errs
}

fn data_keys<'a>(keys: impl Iterator<Item = &'a String>, field: &str) -> FieldErrors {
    let mut errs = Vec::new();
    for k in keys {
        for msg in names::is_config_map_key(k) {
            errs.push(FieldError::invalid(root(field).key(k), k, msg));
        }
    }
    errs
}

pub fn validate_config_map(cm: &ConfigMap) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &cm.metadata,
        true,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    let data = cm.data.clone().unwrap_or_default();
    let binary = cm.binary_data.clone().unwrap_or_default();
    for k in data.keys() {
        for msg in names::is_config_map_key(k) {
            errs.push(FieldError::invalid(root("data").key(k), k, msg));
        }
        if binary.contains_key(k) {
            errs.push(FieldError::invalid(
                root("data").key(k),
                k,
                "duplicate of key present in binaryData",
            ));
        }
    }
    errs.extend(data_keys(binary.keys(), "binaryData"));
    let total: usize = data.values().map(String::len).sum::<usize>()
        + binary.values().map(|b| b.0.len()).sum::<usize>();
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
    errs
}

pub fn validate_config_map_update(new: &ConfigMap, old: &ConfigMap) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    if old.immutable == Some(true) {
        if new.immutable != Some(true) {
            errs.push(FieldError::forbidden("immutable", IMMUTABLE_WHEN_SET));
        }
        if new.data != old.data {
            errs.push(FieldError::forbidden("data", IMMUTABLE_WHEN_SET));
        }
        if new.binary_data != old.binary_data {
            errs.push(FieldError::forbidden("binaryData", IMMUTABLE_WHEN_SET));
        }
    }
    errs.extend(validate_config_map(new));
    errs
}

pub fn validate_secret(s: &Secret) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &s.metadata,
        true,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    let data = s.data.clone().unwrap_or_default();
    errs.extend(data_keys(data.keys(), "data"));
    let total: usize = data.values().map(|b| b.0.len()).sum();
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    let data_path = root("data");
    let has = |k: &str| data.contains_key(k);
    match s.type_.as_deref().unwrap_or("") {
        "kubernetes.io/service-account-token" => {
            let sa = s
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/service-account.name"));
            if sa.is_none_or(|v| v.is_empty()) {
                errs.push(FieldError::required(
                    root("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        t @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
            let key = if t == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match data.get(key) {
                None => errs.push(FieldError::required(data_path.key(key), "")),
                Some(b) => {
                    if let Err(e) =
                        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&b.0)
                    {
                        errs.push(FieldError::invalid(
                            data_path.key(key),
                            "<secret contents redacted>",
                            e.to_string(),
                        ));
                    }
                }
            }
        }
        // Username or password may be empty, but one of the keys must be present.
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required(data_path.key("username"), ""));
            errs.push(FieldError::required(data_path.key("password"), ""));
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(|b| b.0.is_empty()) => {
            errs.push(FieldError::required(data_path.key("ssh-privatekey"), ""));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errs.push(FieldError::required(data_path.key(key), ""));
                }
            }
        }
        _ => {}
    }
    errs
}

pub fn validate_secret_update(new: &Secret, old: &Secret) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    let t = |s: &Secret| s.type_.clone().unwrap_or_default();
    errs.extend(immutable_str(&t(new), &t(old), &root("type")));
    if old.immutable == Some(true) {
        if new.immutable != Some(true) {
            errs.push(FieldError::forbidden("immutable", IMMUTABLE_WHEN_SET));
        }
        if new.data != old.data {
            errs.push(FieldError::forbidden("data", IMMUTABLE_WHEN_SET));
        }
    }
    errs.extend(validate_secret(new));
    errs
}

pub fn validate_namespace(ns: &Namespace) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &ns.metadata,
        false,
        names::name_is_dns_label,
        &root("metadata"),
    );
    for f in ns.spec.iter().flat_map(|s| s.finalizers.iter().flatten()) {
        errs.extend(meta::validate_finalizers(
            std::slice::from_ref(f),
            &root("spec").child("finalizers"),
        ));
    }
    errs
}

pub fn validate_node(node: &Node) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &node.metadata,
        false,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    let spec = node.spec.clone().unwrap_or_default();
    for (i, t) in spec.taints.iter().flatten().enumerate() {
        let p = root("spec").child("taints").index(i);
        errs.extend(meta::validate_label_name(&t.key, &p.child("key")));
        if let Some(v) = t.value.as_deref() {
            for msg in names::is_valid_label_value(v) {
                errs.push(FieldError::invalid(p.child("value"), v, msg));
            }
        }
        if !matches!(
            t.effect.as_str(),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute"
        ) {
            if t.effect.is_empty() {
                errs.push(FieldError::required(p.child("effect"), ""));
            } else {
                errs.push(FieldError::not_supported(
                    p.child("effect"),
                    &t.effect,
                    &["NoExecute", "NoSchedule", "PreferNoSchedule"],
                ));
            }
        }
    }
    for (i, cidr) in spec.pod_cidrs.iter().flatten().enumerate() {
        for msg in names::is_valid_cidr(cidr) {
            errs.push(FieldError::invalid(
                root("spec").child("podCIDRs").index(i),
                cidr,
                msg,
            ));
        }
    }
    errs
}

pub fn validate_node_update(new: &Node, old: &Node) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    errs.extend(validate_node(new));
    let (ns, os) = (
        new.spec.clone().unwrap_or_default(),
        old.spec.clone().unwrap_or_default(),
    );
    let old_cidrs = os.pod_cidrs.clone().unwrap_or_default();
    if !old_cidrs.is_empty() && ns.pod_cidrs.clone().unwrap_or_default() != old_cidrs {
        errs.push(FieldError::forbidden(
            root("spec").child("podCIDRs"),
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_provider = os.provider_id.clone().unwrap_or_default();
    if !old_provider.is_empty() && ns.provider_id.clone().unwrap_or_default() != old_provider {
        errs.push(FieldError::forbidden(
            root("spec").child("providerID"),
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    errs
}

pub fn validate_endpoints(ep: &Endpoints) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &ep.metadata,
        true,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    for (i, ss) in ep.subsets.iter().flatten().enumerate() {
        let sp = root("subsets").index(i);
        for (field, addrs) in [
            ("addresses", &ss.addresses),
            ("notReadyAddresses", &ss.not_ready_addresses),
        ] {
            for (j, a) in addrs.iter().flatten().enumerate() {
                for msg in names::is_valid_ip(&a.ip) {
                    errs.push(FieldError::invalid(
                        sp.child(field).index(j).child("ip"),
                        &a.ip,
                        msg,
                    ));
                }
            }
        }
        let ports = ss.ports.as_deref().unwrap_or(&[]);
        for (j, port) in ports.iter().enumerate() {
            let pp = sp.child("ports").index(j);
            let name = port.name.as_deref().unwrap_or("");
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(pp.child("name"), ""));
            } else if !name.is_empty() {
                for msg in names::is_dns1123_label(name) {
                    errs.push(FieldError::invalid(pp.child("name"), name, msg));
                }
            }
            for msg in names::is_valid_port_num(port.port.into()) {
                errs.push(FieldError::invalid_raw(pp.child("port"), port.port, msg));
            }
            match port.protocol.as_deref().unwrap_or("") {
                "" => errs.push(FieldError::required(pp.child("protocol"), "")),
                p if !PROTOCOLS.contains(&p) => errs.push(FieldError::not_supported(
                    pp.child("protocol"),
                    p,
                    PROTOCOLS,
                )),
                _ => {}
            }
        }
    }
    errs
}

pub fn validate_replication_controller(rc: &ReplicationController) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &rc.metadata,
        true,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    let spec = rc.spec.clone().unwrap_or_default();
    let p = root("spec");
    errs.extend(nonnegative(
        spec.replicas.unwrap_or(0).into(),
        &p.child("replicas"),
    ));
    errs.extend(nonnegative(
        spec.min_ready_seconds.unwrap_or(0).into(),
        &p.child("minReadySeconds"),
    ));
    let selector = spec.selector.clone().unwrap_or_default();
    if selector.is_empty() {
        errs.push(FieldError::required(p.child("selector"), ""));
    } else {
        errs.extend(meta::validate_labels(Some(&selector), &p.child("selector")));
    }
    match &spec.template {
        None => errs.push(FieldError::required(p.child("template"), "")),
        Some(t) => {
            let labels = t
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            if !selector.is_empty() && !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                errs.push(FieldError::invalid_raw(
                    p.child("template").child("metadata").child("labels"),
                    meta::go_string_map(t.metadata.as_ref().and_then(|m| m.labels.as_ref())),
                    "`selector` does not match template `labels`",
                ));
            }
            errs.extend(validate_pod_template_spec(t, &p.child("template")));
            errs.extend(workload_restart_rules(
                t,
                &p.child("template"),
                "ReplicationController",
            ));
        }
    }
    errs
}

/// Controllers of long-running pods require `restartPolicy: Always` and no deadline.
pub(crate) fn workload_restart_rules(
    t: &k8s_openapi::api::core::v1::PodTemplateSpec,
    path: &Path,
    kind: &str,
) -> FieldErrors {
    let mut errs = Vec::new();
    let spec = t.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.unwrap_or_default();
    if policy != "Always" {
        errs.push(FieldError::not_supported(
            path.child("spec").child("restartPolicy"),
            policy,
            &["Always"],
        ));
    }
    if spec.active_deadline_seconds.is_some() {
        errs.push(FieldError::forbidden(
            path.child("spec").child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
    errs
}

pub fn validate_pod_template(pt: &PodTemplate) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &pt.metadata,
        true,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    errs.extend(validate_pod_template_spec(
        &pt.template.clone().unwrap_or_default(),
        &root("template"),
    ));
    errs
}

/// Plain metadata validation for kinds without spec rules here.
pub fn validate_meta_only(
    meta_: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    namespaced: bool,
    name_fn: meta::NameFn,
) -> FieldErrors {
    meta::validate_object_meta(meta_, namespaced, name_fn, &root("metadata"))
}
