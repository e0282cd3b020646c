//! networking.k8s.io/v1: ingresses and network policies.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, Ingress, IngressBackend, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::containers::port_num_or_name;
use super::meta::{self, json_value, validate_label_selector};
use super::names;
use crate::field_error::{FieldError, FieldErrors, Path};

/// The ports and peers of one ingress or egress rule.
type PeerRule = (
    Option<Vec<NetworkPolicyPort>>,
    Option<Vec<NetworkPolicyPeer>>,
);

fn root(field: &str) -> Path {
    Path::new(field)
}

fn object_meta(m: &ObjectMeta, namespaced: bool, name_fn: meta::NameFn) -> FieldErrors {
    meta::validate_object_meta(m, namespaced, name_fn, &root("metadata"))
}

fn backend(b: &IngressBackend, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    match (&b.service, &b.resource) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid_raw(
            path,
            json_value(b),
            "cannot set both resource and service backends",
        )),
        (None, None) => errs.push(FieldError::invalid_raw(
            path,
            json_value(b),
            "resource or service backend is required",
        )),
        (Some(svc), None) => {
            let sp = path.child("service");
            if svc.name.is_empty() {
                errs.push(FieldError::required(sp.child("name"), ""));
            } else {
                for msg in names::is_dns1035_label(&svc.name) {
                    errs.push(FieldError::invalid(sp.child("name"), &svc.name, msg));
                }
            }
            let port = svc.port.clone().unwrap_or_default();
            let (has_name, has_number) = (
                port.name.as_deref().is_some_and(|n| !n.is_empty()),
                port.number.is_some_and(|n| n != 0),
            );
            match (has_name, has_number) {
                (true, true) => errs.push(FieldError::invalid_raw(
                    sp.child("port"),
                    json_value(&port),
                    "cannot set both port name & port number",
                )),
                (false, false) => errs.push(FieldError::invalid_raw(
                    sp.child("port"),
                    json_value(&port),
                    "port name or number is required",
                )),
                (true, false) => {
                    let n = port.name.clone().unwrap_or_default();
                    for msg in names::is_valid_port_name(&n) {
                        errs.push(FieldError::invalid(sp.child("port").child("name"), &n, msg));
                    }
                }
                (false, true) => {
                    let n = port.number.unwrap_or(0);
                    for msg in names::is_valid_port_num(n.into()) {
                        errs.push(FieldError::invalid_raw(
                            sp.child("port").child("number"),
                            n,
                            msg,
                        ));
                    }
                }
            }
        }
        (None, Some(r)) => {
            if r.kind.is_empty() {
                errs.push(FieldError::required(
                    path.child("resource").child("kind"),
                    "",
                ));
            }
            if r.name.is_empty() {
                errs.push(FieldError::required(
                    path.child("resource").child("name"),
                    "",
                ));
            }
        }
    }
    errs
}

fn ingress_path(p: &HTTPIngressPath, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let value = p.path.as_deref().unwrap_or("");
    match p.path_type.as_str() {
        "" => errs.push(FieldError::required(
            path.child("pathType"),
            "pathType must be specified",
        )),
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                errs.push(FieldError::invalid(
                    path.child("path"),
                    value,
                    "must be an absolute path",
                ));
            }
            for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                if value.contains(bad) {
                    errs.push(FieldError::invalid(
                        path.child("path"),
                        value,
                        format!("must not contain '{bad}'"),
                    ));
                }
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(FieldError::invalid(
                    path.child("path"),
                    value,
                    "must be an absolute path",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            path.child("pathType"),
            other,
            &["Exact", "ImplementationSpecific", "Prefix"],
        )),
    }
    errs.extend(backend(&p.backend, &path.child("backend")));
    errs
}

pub fn validate_ingress(ing: &Ingress) -> FieldErrors {
    let mut errs = object_meta(&ing.metadata, true, names::name_is_dns_subdomain);
    let spec = ing.spec.clone().unwrap_or_default();
    let p = root("spec");
    let rules = spec.rules.clone().unwrap_or_default();
    if rules.is_empty() && spec.default_backend.is_none() {
        errs.push(FieldError::invalid_raw(
            &p,
            json_value(&rules),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = &spec.default_backend {
        errs.extend(backend(b, &p.child("defaultBackend")));
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = p.child("rules").index(i);
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
            if host.parse::<std::net::IpAddr>().is_ok() {
                errs.push(FieldError::invalid(
                    rp.child("host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            } else if host.contains('*') {
                for msg in names::is_wildcard_dns1123_subdomain(host) {
                    errs.push(FieldError::invalid(rp.child("host"), host, msg));
                }
            } else {
                for msg in names::is_dns1123_subdomain(host) {
                    errs.push(FieldError::invalid(rp.child("host"), host, msg));
                }
            }
        }
        if let Some(http) = &rule.http {
            if http.paths.is_empty() {
                errs.push(FieldError::required(rp.child("http").child("paths"), ""));
            }
            for (j, hp) in http.paths.iter().enumerate() {
                errs.extend(ingress_path(hp, &rp.child("http").child("paths").index(j)));
            }
        }
    }
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        for (j, host) in tls.hosts.iter().flatten().enumerate() {
            let msgs = if host.contains('*') {
                names::is_wildcard_dns1123_subdomain(host)
            } else {
                names::is_dns1123_subdomain(host)
            };
            for msg in msgs {
                errs.push(FieldError::invalid(
                    p.child("tls").index(i).child("hosts").index(j),
                    host,
                    msg,
                ));
            }
        }
    }
    errs
}

fn network_policy_port(port: &NetworkPolicyPort, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if let Some(proto) = port.protocol.as_deref() {
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            errs.push(FieldError::not_supported(
                path.child("protocol"),
                proto,
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
    if let Some(p) = &port.port {
        errs.extend(port_num_or_name(p, &path.child("port")));
        if let Some(end) = port.end_port {
            match p {
                IntOrString::String(_) => errs.push(FieldError::invalid_raw(
                    path.child("endPort"),
                    end,
                    "may not be specified when `port` is non-numeric",
                )),
                IntOrString::Int(start) if end < *start => errs.push(FieldError::invalid_raw(
                    path.child("endPort"),
                    end,
                    "must be greater than or equal to `port`",
                )),
                IntOrString::Int(_) => {}
            }
        }
    } else if let Some(end) = port.end_port {
        errs.push(FieldError::invalid_raw(
            path.child("endPort"),
            end,
            "may not be specified when `port` is not specified",
        ));
    }
    errs
}

pub fn validate_network_policy(np: &NetworkPolicy) -> FieldErrors {
    let mut errs = object_meta(&np.metadata, true, names::name_is_dns_subdomain);
    let spec = np.spec.clone().unwrap_or_default();
    let p = root("spec");
    errs.extend(validate_label_selector(
        spec.pod_selector.as_ref(),
        &p.child("podSelector"),
    ));
    let peers = |field: &str, rules: Vec<PeerRule>| {
        let mut errs = Vec::new();
        for (i, (ports, peers)) in rules.into_iter().enumerate() {
            let rp = p.child(field).index(i);
            for (j, port) in ports.iter().flatten().enumerate() {
                errs.extend(network_policy_port(port, &rp.child("ports").index(j)));
            }
            let peer_field = if field == "ingress" { "from" } else { "to" };
            for (j, peer) in peers.iter().flatten().enumerate() {
                let pp = rp.child(peer_field).index(j);
                let n = [
                    peer.pod_selector.is_some(),
                    peer.namespace_selector.is_some(),
                    peer.ip_block.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if n == 0 {
                    errs.push(FieldError::required(&pp, "must specify a peer"));
                } else if peer.ip_block.is_some() && n > 1 {
                    errs.push(FieldError::forbidden(
                        &pp,
                        "may not specify more than 1 peer type",
                    ));
                }
                errs.extend(validate_label_selector(
                    peer.pod_selector.as_ref(),
                    &pp.child("podSelector"),
                ));
                errs.extend(validate_label_selector(
                    peer.namespace_selector.as_ref(),
                    &pp.child("namespaceSelector"),
                ));
                if let Some(block) = &peer.ip_block {
                    if block.cidr.is_empty() {
                        errs.push(FieldError::required(pp.child("ipBlock").child("cidr"), ""));
                    } else {
                        for msg in names::is_valid_cidr(&block.cidr) {
                            errs.push(FieldError::invalid(
                                pp.child("ipBlock").child("cidr"),
                                &block.cidr,
                                msg,
                            ));
                        }
                    }
                }
            }
        }
        errs
    };
    errs.extend(peers(
        "ingress",
        spec.ingress
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.ports, r.from))
            .collect(),
    ));
    errs.extend(peers(
        "egress",
        spec.egress
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.ports, r.to))
            .collect(),
    ));
    let types = spec.policy_types.clone().unwrap_or_default();
    for (i, t) in types.iter().enumerate() {
        if !matches!(t.as_str(), "Ingress" | "Egress") {
            errs.push(FieldError::not_supported(
                p.child("policyTypes").index(i),
                t,
                &["Egress", "Ingress"],
            ));
        }
    }
    if types.len() > 2 {
        errs.push(FieldError::invalid_raw(
            p.child("policyTypes"),
            meta::go_string_slice(&types),
            "may not specify more than two policyTypes",
        ));
    }
    errs
}
