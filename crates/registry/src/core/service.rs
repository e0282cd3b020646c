//! Services: cluster IP and node port allocation on create and update, release on delete.
//!
//! Allocation happens before the write and is undone if the write fails, so a failed
//! create never leaks an address. ExternalName services get no IP; `clusterIP: None`
//! makes a headless service.

use std::net::Ipv4Addr;
use std::sync::Arc;

use apis::{FieldError, FieldErrors, ResourceInfo};
use serde_json::{json, Value};

use super::allocator::{IpAllocator, PortAllocator};
use crate::cacher::ObjectAttrs;
use crate::error::{RegistryError, Result};
use crate::meta;
use crate::strategy::{BuiltinStrategy, Strategy};

pub struct ServiceStrategy {
    inner: BuiltinStrategy,
    pub ips: Arc<IpAllocator>,
    pub ports: Arc<PortAllocator>,
}

impl ServiceStrategy {
    pub fn new(info: Arc<ResourceInfo>, ips: Arc<IpAllocator>, ports: Arc<PortAllocator>) -> Self {
        ServiceStrategy {
            inner: BuiltinStrategy::new(info),
            ips,
            ports,
        }
    }

    fn invalid(&self, obj: &Value, errors: FieldErrors) -> RegistryError {
        RegistryError::Invalid {
            group: String::new(),
            kind: "Service".to_string(),
            name: meta::name(obj).to_string(),
            errors,
        }
    }

    /// Records allocations of an existing service (used at start-up).
    pub fn restore(&self, obj: &Value) {
        for ip in cluster_ips(obj) {
            let _ = self.ips.allocate(ip);
        }
        for p in node_ports(obj) {
            let _ = self.ports.allocate(p);
        }
    }
}

fn svc_type(obj: &Value) -> &str {
    obj.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn cluster_ips(obj: &Value) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = obj
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    if out.is_empty() {
        if let Some(ip) = obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
        {
            out.push(ip);
        }
    }
    out
}

fn node_ports(obj: &Value) -> Vec<u16> {
    obj.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| p.get("nodePort")?.as_u64())
                .filter_map(|p| u16::try_from(p).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn wants_node_ports(obj: &Value) -> bool {
    match svc_type(obj) {
        "NodePort" => true,
        "LoadBalancer" => obj
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

impl ServiceStrategy {
    fn allocate_ip(&self, obj: &mut Value, already: &[Ipv4Addr]) -> Result<Vec<Ipv4Addr>> {
        let mut taken = Vec::new();
        if svc_type(obj) == "ExternalName" {
            return Ok(taken);
        }
        let requested = obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if requested == "None" {
            set_spec(obj, "clusterIPs", json!(["None"]));
            return Ok(taken);
        }
        let ip = if requested.is_empty() {
            if let Some(ip) = already.first() {
                *ip
            } else {
                let ip = self.ips.allocate_next().map_err(|e| {
                    self.invalid(
                        obj,
                        vec![FieldError::invalid(
                            "spec.clusterIPs",
                            "",
                            format!("failed to allocate IP: {e}"),
                        )],
                    )
                })?;
                taken.push(ip);
                ip
            }
        } else {
            let ip: Ipv4Addr = requested.parse().map_err(|_| {
                self.invalid(
                    obj,
                    vec![FieldError::invalid(
                        "spec.clusterIPs[0]",
                        &requested,
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )],
                )
            })?;
            if !already.contains(&ip) {
                self.ips.allocate(ip).map_err(|e| {
                    self.invalid(
                        obj,
                        vec![FieldError::invalid_raw(
                            "spec.clusterIPs",
                            format!("[]string{{\"{ip}\"}}"),
                            format!("failed to allocate IP {ip}: {e}"),
                        )],
                    )
                })?;
                taken.push(ip);
            }
            ip
        };
        set_spec(obj, "clusterIP", json!(ip.to_string()));
        set_spec(obj, "clusterIPs", json!([ip.to_string()]));
        set_spec(obj, "ipFamilies", json!(["IPv4"]));
        if obj.pointer("/spec/ipFamilyPolicy").is_none() {
            set_spec(obj, "ipFamilyPolicy", json!("SingleStack"));
        }
        Ok(taken)
    }

    fn allocate_ports(&self, obj: &mut Value, already: &[u16]) -> Result<Vec<u16>> {
        let mut taken = Vec::new();
        if !wants_node_ports(obj) {
            return Ok(taken);
        }
        let name = meta::name(obj).to_string();
        let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
            return Ok(taken);
        };
        for (i, port) in ports.iter_mut().enumerate() {
            let requested = port
                .get("nodePort")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            let result = match requested {
                Some(p) if already.contains(&p) => Ok(p),
                Some(p) => self.ports.allocate(p).map(|_| p),
                None => self.ports.allocate_next(),
            };
            match result {
                Ok(p) => {
                    if !already.contains(&p) {
                        taken.push(p);
                    }
                    if let Some(m) = port.as_object_mut() {
                        m.insert("nodePort".to_string(), json!(p));
                    }
                }
                Err(e) => {
                    for p in &taken {
                        self.ports.release(*p);
                    }
                    let field = format!("spec.ports[{i}].nodePort");
                    let err = match requested {
                        Some(p) => FieldError::invalid_raw(field, p, e.to_string()),
                        None => FieldError::invalid(field, "", e.to_string()),
                    };
                    return Err(RegistryError::Invalid {
                        group: String::new(),
                        kind: "Service".to_string(),
                        name,
                        errors: vec![err],
                    });
                }
            }
        }
        Ok(taken)
    }
}

fn set_spec(obj: &mut Value, field: &str, v: Value) {
    if let Some(m) = obj.as_object_mut() {
        let spec = m.entry("spec").or_insert_with(|| json!({}));
        if let Some(s) = spec.as_object_mut() {
            s.insert(field.to_string(), v);
        }
    }
}

impl Strategy for ServiceStrategy {
    fn info(&self) -> &Arc<ResourceInfo> {
        &self.inner.info
    }
    fn default(&self, obj: &mut Value) {
        self.inner.default(obj);
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".to_string(), json!({"loadBalancer": {}}));
        }
    }
    fn validate(&self, obj: &Value) -> FieldErrors {
        self.inner.validate(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors {
        self.inner.validate_update(new, old)
    }
    fn attrs(&self, obj: &Value) -> ObjectAttrs {
        self.inner.attrs(obj)
    }
    fn allocate(&self, obj: &mut Value) -> Result<()> {
        let ips = self.allocate_ip(obj, &[])?;
        if let Err(e) = self.allocate_ports(obj, &[]) {
            for ip in ips {
                self.ips.release(ip);
            }
            return Err(e);
        }
        Ok(())
    }
    fn reallocate(&self, new: &mut Value, old: &Value) -> Result<()> {
        let old_ips = cluster_ips(old);
        if svc_type(new) != "ExternalName"
            && new
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        {
            if let Some(ip) = old.pointer("/spec/clusterIP").cloned() {
                set_spec(new, "clusterIP", ip);
            }
        }
        self.allocate_ip(new, &old_ips)?;
        // Keep node ports of ports that stay.
        let old_ports = node_ports(old);
        if wants_node_ports(new) {
            if let (Some(old_list), Some(new_list)) = (
                old.pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .cloned(),
                new.pointer_mut("/spec/ports").and_then(Value::as_array_mut),
            ) {
                for p in new_list.iter_mut() {
                    if p.get("nodePort").is_none() {
                        let same = old_list.iter().find(|o| {
                            o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol")
                        });
                        if let (Some(np), Some(m)) = (
                            same.and_then(|o| o.get("nodePort")).cloned(),
                            p.as_object_mut(),
                        ) {
                            m.insert("nodePort".to_string(), np);
                        }
                    }
                }
            }
        }
        self.allocate_ports(new, &old_ports)?;
        let kept = node_ports(new);
        for p in old_ports.into_iter().filter(|p| !kept.contains(p)) {
            self.ports.release(p);
        }
        Ok(())
    }
    fn release(&self, obj: &Value) {
        for ip in cluster_ips(obj) {
            self.ips.release(ip);
        }
        for p in node_ports(obj) {
            self.ports.release(p);
        }
    }
}
