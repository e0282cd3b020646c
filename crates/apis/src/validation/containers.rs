//! Containers of a pod spec: names, images, ports, env, probes, lifecycle hooks and
//! resources (upstream `validateContainers`, `validateInitContainers`,
//! `validateContainerCommon`, `ValidateResourceRequirements`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, ContainerPort, EnvVar, Probe, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::nonnegative;
use super::names;
use super::quantity::{parse_quantity, QUANTITY_FORMAT_ERROR};
use super::volumes::validate_volume_mounts;
use crate::field_error::{FieldError, FieldErrors, Path};

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

pub(crate) fn validate_containers(
    containers: &[Container],
    volumes: &BTreeSet<String>,
    path: &Path,
) -> FieldErrors {
    if containers.is_empty() {
        return vec![FieldError::required(path, "")];
    }
    let mut errs = Vec::new();
    let mut names_seen = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = path.index(i);
        errs.extend(validate_container_common(c, volumes, &p));
        if !names_seen.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(p.child("name"), &c.name));
        }
        errs.extend(validate_probes(c, &p));
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(
                p.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    errs.extend(host_port_conflicts(containers, path, &mut BTreeSet::new()));
    errs
}

pub(crate) fn validate_init_containers(
    inits: &[Container],
    regular: &[Container],
    volumes: &BTreeSet<String>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let mut names_seen: BTreeSet<String> = regular.iter().map(|c| c.name.clone()).collect();
    for (i, c) in inits.iter().enumerate() {
        let p = path.index(i);
        errs.extend(validate_container_common(c, volumes, &p));
        let mut restart_always = false;
        if let Some(rp) = c.restart_policy.as_deref() {
            if rp == "Always" {
                restart_always = true;
            } else {
                errs.push(FieldError::not_supported(
                    p.child("restartPolicy"),
                    rp,
                    &["Always"],
                ));
            }
        }
        if names_seen.contains(&c.name) {
            errs.push(FieldError::duplicate(p.child("name"), &c.name));
        } else if !c.name.is_empty() {
            names_seen.insert(c.name.clone());
        }
        // Init containers run one at a time, so only conflicts within one count.
        errs.extend(host_port_conflicts(
            std::slice::from_ref(c),
            path,
            &mut BTreeSet::new(),
        ));
        if restart_always {
            errs.extend(validate_probes(c, &p));
        } else {
            let forbidden = "may not be set for init containers without restartPolicy=Always";
            for (field, set) in [
                ("lifecycle", c.lifecycle.is_some()),
                ("livenessProbe", c.liveness_probe.is_some()),
                ("readinessProbe", c.readiness_probe.is_some()),
                ("startupProbe", c.startup_probe.is_some()),
            ] {
                if set {
                    errs.push(FieldError::forbidden(p.child(field), forbidden));
                }
            }
        }
    }
    errs
}

fn validate_container_common(
    c: &Container,
    volumes: &BTreeSet<String>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    if c.name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else {
        for msg in names::is_dns1123_label(&c.name) {
            errs.push(FieldError::invalid(path.child("name"), &c.name, msg));
        }
    }
    if c.image.as_deref().unwrap_or("").is_empty() {
        errs.push(FieldError::required(path.child("image"), ""));
    }
    match c.termination_message_policy.as_deref().unwrap_or("") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(
            path.child("terminationMessagePolicy"),
            "",
        )),
        other => errs.push(FieldError::not_supported(
            path.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    errs.extend(validate_container_ports(
        c.ports.as_deref().unwrap_or(&[]),
        &path.child("ports"),
    ));
    errs.extend(validate_env(
        c.env.as_deref().unwrap_or(&[]),
        &path.child("env"),
    ));
    let devices: BTreeSet<String> = c
        .volume_devices
        .iter()
        .flatten()
        .map(|d| d.name.clone())
        .collect();
    errs.extend(validate_volume_mounts(
        c.volume_mounts.as_deref().unwrap_or(&[]),
        volumes,
        &devices,
        &path.child("volumeMounts"),
    ));
    match c.image_pull_policy.as_deref().unwrap_or("") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(path.child("imagePullPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    if let Some(r) = &c.resources {
        errs.extend(validate_resources(r, &path.child("resources")));
    }
    errs
}

fn validate_container_ports(ports: &[ContainerPort], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let mut names_seen = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = names::is_valid_port_name(name);
            if !msgs.is_empty() {
                errs.extend(
                    msgs.into_iter()
                        .map(|m| FieldError::invalid(p.child("name"), name, m)),
                );
            } else if !names_seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(p.child("name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(p.child("containerPort"), ""));
        } else {
            for msg in names::is_valid_port_num(port.container_port.into()) {
                errs.push(FieldError::invalid_raw(
                    p.child("containerPort"),
                    port.container_port,
                    msg,
                ));
            }
        }
        if let Some(hp) = port.host_port.filter(|hp| *hp != 0) {
            for msg in names::is_valid_port_num(hp.into()) {
                errs.push(FieldError::invalid_raw(p.child("hostPort"), hp, msg));
            }
        }
        match port.protocol.as_deref().unwrap_or("") {
            "" => errs.push(FieldError::required(p.child("protocol"), "")),
            proto if !PROTOCOLS.contains(&proto) => errs.push(FieldError::not_supported(
                p.child("protocol"),
                proto,
                PROTOCOLS,
            )),
            _ => {}
        }
    }
    errs
}

fn host_port_conflicts(
    containers: &[Container],
    path: &Path,
    seen: &mut BTreeSet<String>,
) -> FieldErrors {
    let mut errs = Vec::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in c.ports.iter().flatten().enumerate() {
            let Some(hp) = port.host_port.filter(|hp| *hp != 0) else {
                continue;
            };
            let key = format!(
                "{}/{}/{}",
                port.host_ip.as_deref().unwrap_or(""),
                port.protocol.as_deref().unwrap_or(""),
                hp
            );
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    path.index(ci).child("ports").index(pi).child("hostPort"),
                    key,
                ));
            }
        }
    }
    errs
}

fn validate_env(vars: &[EnvVar], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (i, ev) in vars.iter().enumerate() {
        let p = path.index(i);
        if ev.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        for msg in names::is_env_var_name(&ev.name) {
            errs.push(FieldError::invalid(p.child("name"), &ev.name, msg));
        }
        let Some(from) = &ev.value_from else { continue };
        let vp = p.child("valueFrom");
        let sources = [
            from.field_ref.is_some(),
            from.resource_field_ref.is_some(),
            from.config_map_key_ref.is_some(),
            from.secret_key_ref.is_some(),
        ];
        let n = sources.iter().filter(|s| **s).count();
        if n == 0 {
            errs.push(FieldError::invalid(&vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"));
        } else if n > 1 {
            errs.push(FieldError::invalid(
                &vp,
                "",
                "may not have more than one field specified at a time",
            ));
        } else if ev.value.as_deref().is_some_and(|v| !v.is_empty()) {
            errs.push(FieldError::invalid(
                &vp,
                "",
                "may not be specified when `value` is not empty",
            ));
        }
        if let Some(f) = &from.field_ref {
            if f.field_path.is_empty() {
                errs.push(FieldError::required(
                    vp.child("fieldRef").child("fieldPath"),
                    "",
                ));
            }
        }
        for (field, key, name) in [
            (
                "configMapKeyRef",
                from.config_map_key_ref.as_ref().map(|r| r.key.clone()),
                from.config_map_key_ref.as_ref().map(|r| r.name.clone()),
            ),
            (
                "secretKeyRef",
                from.secret_key_ref.as_ref().map(|r| r.key.clone()),
                from.secret_key_ref.as_ref().map(|r| r.name.clone()),
            ),
        ] {
            let (Some(key), Some(name)) = (key, name) else {
                continue;
            };
            let rp = vp.child(field);
            if name.is_empty() {
                errs.push(FieldError::required(rp.child("name"), ""));
            }
            if key.is_empty() {
                errs.push(FieldError::required(rp.child("key"), ""));
            } else {
                for msg in names::is_config_map_key(&key) {
                    errs.push(FieldError::invalid(rp.child("key"), &key, msg));
                }
            }
        }
        if let Some(r) = &from.resource_field_ref {
            if r.resource.is_empty() {
                errs.push(FieldError::required(
                    vp.child("resourceFieldRef").child("resource"),
                    "",
                ));
            }
        }
    }
    errs
}

fn validate_probes(c: &Container, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if let Some(l) = &c.lifecycle {
        for (field, h) in [("postStart", &l.post_start), ("preStop", &l.pre_stop)] {
            if let Some(h) = h {
                let handlers = [
                    ("exec", h.exec.is_some()),
                    ("httpGet", h.http_get.is_some()),
                    ("tcpSocket", h.tcp_socket.is_some()),
                    ("sleep", h.sleep.is_some()),
                ];
                errs.extend(one_handler(
                    &handlers,
                    &path.child("lifecycle").child(field),
                ));
                if let Some(g) = &h.http_get {
                    errs.extend(port_num_or_name(
                        &g.port,
                        &path
                            .child("lifecycle")
                            .child(field)
                            .child("httpGet")
                            .child("port"),
                    ));
                }
            }
        }
    }
    for (field, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        let Some(probe) = probe else { continue };
        let p = path.child(field);
        errs.extend(validate_probe(probe, &p));
        if field != "readinessProbe" && probe.success_threshold.is_some_and(|s| s != 1) {
            errs.push(FieldError::invalid_raw(
                p.child("successThreshold"),
                probe.success_threshold.unwrap_or(0),
                "must be 1",
            ));
        }
        if field == "readinessProbe" && probe.termination_grace_period_seconds.is_some() {
            errs.push(FieldError::invalid_raw(
                p.child("terminationGracePeriodSeconds"),
                probe.termination_grace_period_seconds.unwrap_or(0),
                "must not be set for readinessProbes",
            ));
        }
    }
    errs
}

fn validate_probe(probe: &Probe, path: &Path) -> FieldErrors {
    let handlers = [
        ("exec", probe.exec.is_some()),
        ("httpGet", probe.http_get.is_some()),
        ("tcpSocket", probe.tcp_socket.is_some()),
        ("grpc", probe.grpc.is_some()),
    ];
    let mut errs = one_handler(&handlers, path);
    if let Some(e) = &probe.exec {
        if e.command.as_ref().is_none_or(|c| c.is_empty()) {
            errs.push(FieldError::required(
                path.child("exec").child("command"),
                "",
            ));
        }
    }
    if let Some(g) = &probe.http_get {
        errs.extend(port_num_or_name(
            &g.port,
            &path.child("httpGet").child("port"),
        ));
        if let Some(s) = g.scheme.as_deref() {
            if !matches!(s, "HTTP" | "HTTPS") {
                errs.push(FieldError::not_supported(
                    path.child("httpGet").child("scheme"),
                    s,
                    &["HTTP", "HTTPS"],
                ));
            }
        }
        for (i, h) in g.http_headers.iter().flatten().enumerate() {
            for msg in names::is_http_header_name(&h.name) {
                errs.push(FieldError::invalid(
                    path.child("httpGet")
                        .child("httpHeaders")
                        .index(i)
                        .child("name"),
                    &h.name,
                    msg,
                ));
            }
        }
    }
    if let Some(t) = &probe.tcp_socket {
        errs.extend(port_num_or_name(
            &t.port,
            &path.child("tcpSocket").child("port"),
        ));
    }
    if let Some(g) = &probe.grpc {
        for msg in names::is_valid_port_num(g.port.into()) {
            errs.push(FieldError::invalid_raw(
                path.child("grpc").child("port"),
                g.port,
                msg,
            ));
        }
    }
    for (field, v) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        errs.extend(nonnegative(v.unwrap_or(0).into(), &path.child(field)));
    }
    if let Some(t) = probe.termination_grace_period_seconds.filter(|t| *t <= 0) {
        errs.push(FieldError::invalid_raw(
            path.child("terminationGracePeriodSeconds"),
            t,
            "must be greater than 0",
        ));
    }
    errs
}

fn one_handler(handlers: &[(&str, bool)], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let mut count = 0;
    for (name, set) in handlers {
        if !*set {
            continue;
        }
        if count > 0 {
            errs.push(FieldError::forbidden(
                path.child(name),
                "may not specify more than 1 handler type",
            ));
        } else {
            count += 1;
        }
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
    errs
}

/// `ValidatePortNumOrName`.
pub fn port_num_or_name(port: &IntOrString, path: &Path) -> FieldErrors {
    match port {
        IntOrString::Int(n) => names::is_valid_port_num((*n).into())
            .into_iter()
            .map(|m| FieldError::invalid_raw(path, n, m))
            .collect(),
        IntOrString::String(s) => names::is_valid_port_name(s)
            .into_iter()
            .map(|m| FieldError::invalid(path, s, m))
            .collect(),
    }
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !name.starts_with("hugepages-")
}

/// `ValidateContainerResources`: names, non-negative quantities, requests ≤ limits.
pub fn validate_resources(r: &ResourceRequirements, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let (lim_path, req_path) = (path.child("limits"), path.child("requests"));
    let empty = Default::default();
    let limits = r.limits.as_ref().unwrap_or(&empty);
    let requests = r.requests.as_ref().unwrap_or(&empty);
    for (name, q) in limits {
        let p = lim_path.key(name);
        errs.extend(resource_name(name, &p));
        errs.extend(quantity_value(name, &q.0, &p));
    }
    for (name, q) in requests {
        let p = req_path.key(name);
        errs.extend(resource_name(name, &p));
        errs.extend(quantity_value(name, &q.0, &p));
        match limits.get(name) {
            Some(limit) => {
                let (Some(req), Some(lim)) = (parse_quantity(&q.0), parse_quantity(&limit.0))
                else {
                    continue;
                };
                if req != lim && !overcommit_allowed(name) {
                    errs.push(FieldError::invalid(
                        &req_path,
                        &q.0,
                        format!("must be equal to {name} limit of {}", limit.0),
                    ));
                } else if req > lim {
                    errs.push(FieldError::invalid(
                        &req_path,
                        &q.0,
                        format!("must be less than or equal to {name} limit of {}", limit.0),
                    ));
                }
            }
            None if !overcommit_allowed(name) => {
                errs.push(FieldError::required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                ));
            }
            None => {}
        }
    }
    errs
}

fn resource_name(name: &str, path: &Path) -> FieldErrors {
    let mut errs: FieldErrors = names::is_qualified_name(name)
        .into_iter()
        .map(|m| FieldError::invalid(path, name, m))
        .collect();
    if !name.contains('/') {
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage")
            && !name.starts_with("hugepages-")
        {
            errs.push(FieldError::invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && name.starts_with("requests.") {
        errs.push(FieldError::invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
    errs
}

/// `ValidateResourceQuantityValue`: parsable, non-negative, integral for extended resources.
pub fn quantity_value(name: &str, q: &str, path: &Path) -> FieldErrors {
    let Some(v) = parse_quantity(q) else {
        return vec![FieldError::invalid(path, q, QUANTITY_FORMAT_ERROR)];
    };
    let mut errs = Vec::new();
    if v < 0.0 {
        errs.push(FieldError::invalid(
            path,
            q,
            "must be greater than or equal to 0",
        ));
    }
    if !is_native_resource(name) && (v * 1000.0).round() % 1000.0 != 0.0 {
        errs.push(FieldError::invalid(path, q, "must be an integer"));
    }
    errs
}
