//! Storage kinds: persistent volumes, persistent volume claims and storage classes.

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;

use super::meta::{self, immutable, json_value};
use super::names;
use super::pod::spec_diff;
use super::quantity::parse_quantity;
use crate::field_error::{FieldError, FieldErrors, Path};

fn root(field: &str) -> Path {
    Path::new(field)
}

fn object_meta(
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    namespaced: bool,
    name_fn: meta::NameFn,
) -> FieldErrors {
    meta::validate_object_meta(m, namespaced, name_fn, &root("metadata"))
}

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn access_modes(modes: &[String], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if modes.is_empty() {
        errs.push(FieldError::required(
            path,
            "at least 1 access mode is required",
        ));
    }
    for m in modes {
        if !ACCESS_MODES.contains(&m.as_str()) {
            errs.push(FieldError::not_supported(path, m, ACCESS_MODES));
        }
    }
    if modes.iter().any(|m| m == "ReadWriteOncePod")
        && modes
            .iter()
            .any(|m| m != "ReadWriteOncePod" && ACCESS_MODES.contains(&m.as_str()))
    {
        errs.push(FieldError::forbidden(
            path,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    errs
}

pub fn validate_pvc_spec(spec: &PersistentVolumeClaimSpec, path: &Path) -> FieldErrors {
    let mut errs = access_modes(
        spec.access_modes.as_deref().unwrap_or(&[]),
        &path.child("accessModes"),
    );
    errs.extend(meta::validate_label_selector(
        spec.selector.as_ref(),
        &path.child("selector"),
    ));
    let storage_path = path.child("resources").key("storage");
    match spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
    {
        None => errs.push(FieldError::required(&storage_path, "")),
        Some(q) => match parse_quantity(&q.0) {
            Some(v) if v <= 0.0 => errs.push(FieldError::invalid(
                &storage_path,
                &q.0,
                "must be greater than zero",
            )),
            None => errs.push(FieldError::invalid(
                &storage_path,
                &q.0,
                super::quantity::QUANTITY_FORMAT_ERROR,
            )),
            _ => {}
        },
    }
    if let Some(class) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
        for msg in names::name_is_dns_subdomain(class, false) {
            errs.push(FieldError::invalid(
                path.child("storageClassName"),
                class,
                msg,
            ));
        }
    }
    if let Some(mode) = spec.volume_mode.as_deref() {
        if !matches!(mode, "Block" | "Filesystem") {
            errs.push(FieldError::not_supported(
                path.child("volumeMode"),
                mode,
                &["Block", "Filesystem"],
            ));
        }
    }
    errs
}

pub fn validate_pvc(pvc: &PersistentVolumeClaim) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &pvc.metadata,
        true,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    errs.extend(validate_pvc_spec(
        &pvc.spec.clone().unwrap_or_default(),
        &root("spec"),
    ));
    errs
}

pub fn validate_pvc_update(
    new: &PersistentVolumeClaim,
    old: &PersistentVolumeClaim,
) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    errs.extend(validate_pvc_spec(
        &new.spec.clone().unwrap_or_default(),
        &root("spec"),
    ));
    let (mut ns, mut os) = (
        new.spec.clone().unwrap_or_default(),
        old.spec.clone().unwrap_or_default(),
    );
    // The binder fills volumeName in; requests may grow for bound claims.
    if os.volume_name.as_deref().unwrap_or("").is_empty() {
        os.volume_name = ns.volume_name.clone();
    }
    let bound = old.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if bound {
        let old_req = os
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| parse_quantity(&q.0));
        let new_req = ns
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| parse_quantity(&q.0));
        if let (Some(o), Some(n)) = (old_req, new_req) {
            if n < o {
                errs.push(FieldError::forbidden(
                    root("spec")
                        .child("resources")
                        .child("requests")
                        .key("storage"),
                    "field can not be less than status.capacity",
                ));
            }
        }
        if let (Some(nr), Some(or)) = (ns.resources.as_mut(), os.resources.as_ref()) {
            nr.requests = or.requests.clone();
        }
        ns.volume_attributes_class_name = os.volume_attributes_class_name.clone();
    }
    if ns != os {
        errs.push(FieldError::forbidden(
            "spec",
            format!("spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}", spec_diff(&os, &ns)),
        ));
    }
    errs
}

pub fn validate_pv(pv: &PersistentVolume) -> FieldErrors {
    let mut errs = meta::validate_object_meta(
        &pv.metadata,
        false,
        names::name_is_dns_subdomain,
        &root("metadata"),
    );
    let spec = pv.spec.clone().unwrap_or_default();
    let p = root("spec");
    errs.extend(access_modes(
        spec.access_modes.as_deref().unwrap_or(&[]),
        &p.child("accessModes"),
    ));
    let capacity = spec.capacity.clone().unwrap_or_default();
    if capacity.is_empty() {
        errs.push(FieldError::required(p.child("capacity"), ""));
    }
    for (k, q) in &capacity {
        if k != "storage" {
            errs.push(FieldError::not_supported(
                p.child("capacity"),
                k,
                &["storage"],
            ));
        } else if parse_quantity(&q.0).is_none_or(|v| v <= 0.0) {
            errs.push(FieldError::invalid(
                p.child("capacity").key(k),
                &q.0,
                "must be greater than zero",
            ));
        }
    }
    let sources = serde_json::to_value(&spec).unwrap_or_default();
    const PV_SOURCES: &[&str] = &[
        "hostPath",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "glusterfs",
        "nfs",
        "rbd",
        "quobyte",
        "cinder",
        "cephfs",
        "fc",
        "flocker",
        "flexVolume",
        "azureFile",
        "vsphereVolume",
        "azureDisk",
        "photonPersistentDisk",
        "portworxVolume",
        "scaleIO",
        "local",
        "storageos",
        "csi",
        "iscsi",
    ];
    let present: Vec<&str> = PV_SOURCES
        .iter()
        .copied()
        .filter(|s| sources.get(*s).is_some())
        .collect();
    match present.as_slice() {
        [] => errs.push(FieldError::required(&p, "must specify a volume type")),
        [_] => {}
        [_, rest @ ..] => {
            for s in rest {
                errs.push(FieldError::forbidden(
                    p.child(s),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    if let Some(h) = &spec.host_path {
        if h.path.is_empty() {
            errs.push(FieldError::required(p.child("hostPath").child("path"), ""));
        }
    }
    if let Some(policy) = spec.persistent_volume_reclaim_policy.as_deref() {
        if !matches!(policy, "Delete" | "Recycle" | "Retain") {
            errs.push(FieldError::not_supported(
                p.child("persistentVolumeReclaimPolicy"),
                policy,
                &["Delete", "Recycle", "Retain"],
            ));
        }
    }
    if let Some(class) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
        for msg in names::name_is_dns_subdomain(class, false) {
            errs.push(FieldError::invalid(p.child("storageClassName"), class, msg));
        }
    }
    errs
}

pub fn validate_pv_update(new: &PersistentVolume, old: &PersistentVolume) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    errs.extend(validate_pv(new));
    let strip = |pv: &PersistentVolume| {
        let mut v = serde_json::to_value(pv.spec.clone().unwrap_or_default()).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            for k in [
                "accessModes",
                "capacity",
                "claimRef",
                "mountOptions",
                "nodeAffinity",
                "persistentVolumeReclaimPolicy",
                "storageClassName",
                "volumeMode",
                "volumeAttributesClassName",
            ] {
                o.remove(k);
            }
        }
        v
    };
    if strip(new) != strip(old) {
        errs.push(FieldError::forbidden(
            root("spec").child("persistentvolumesource"),
            format!(
                "spec.persistentvolumesource is immutable after creation\n{}",
                spec_diff(&strip(old), &strip(new))
            ),
        ));
    }
    let mode = |pv: &PersistentVolume| pv.spec.as_ref().and_then(|s| s.volume_mode.clone());
    errs.extend(immutable(
        &mode(new),
        &mode(old),
        || json_value(&mode(new)),
        &root("spec").child("volumeMode"),
    ));
    errs
}

pub fn validate_storage_class(sc: &StorageClass) -> FieldErrors {
    let mut errs = object_meta(&sc.metadata, false, names::name_is_dns_subdomain);
    if sc.provisioner.is_empty() {
        errs.push(FieldError::required("provisioner", ""));
    } else {
        for msg in names::is_qualified_name(&sc.provisioner.to_lowercase()) {
            errs.push(FieldError::invalid("provisioner", &sc.provisioner, msg));
        }
    }
    if let Some(p) = sc.reclaim_policy.as_deref() {
        if !matches!(p, "Delete" | "Retain") {
            errs.push(FieldError::not_supported(
                "reclaimPolicy",
                p,
                &["Delete", "Retain"],
            ));
        }
    }
    if let Some(m) = sc.volume_binding_mode.as_deref() {
        if !matches!(m, "Immediate" | "WaitForFirstConsumer") {
            errs.push(FieldError::not_supported(
                "volumeBindingMode",
                m,
                &["Immediate", "WaitForFirstConsumer"],
            ));
        }
    }
    errs
}

pub fn validate_storage_class_update(new: &StorageClass, old: &StorageClass) -> FieldErrors {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &root("metadata"));
    if new.parameters != old.parameters {
        errs.push(FieldError::forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
    if new.provisioner != old.provisioner {
        errs.push(FieldError::forbidden(
            "provisioner",
            "updates to provisioner are forbidden.",
        ));
    }
    if new.reclaim_policy != old.reclaim_policy {
        errs.push(FieldError::forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    errs.extend(meta::immutable(
        &new.volume_binding_mode,
        &old.volume_binding_mode,
        || json_value(&new.volume_binding_mode),
        &root("volumeBindingMode"),
    ));
    errs
}
