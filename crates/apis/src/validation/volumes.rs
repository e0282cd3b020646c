//! Pod volumes and volume mounts (upstream `validateVolumes`, `validateVolumeSource`,
//! `ValidateVolumeMounts`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{KeyToPath, Volume, VolumeMount};

use super::names;
use crate::field_error::{FieldError, FieldErrors, Path};

const MORE_THAN_ONE: &str = "may not specify more than 1 volume type";

/// Validates the pod's volumes; returns the names of the valid ones (mounts may only
/// refer to those) and the errors.
pub fn validate_volumes(volumes: &[Volume], path: &Path) -> (BTreeSet<String>, FieldErrors) {
    let mut all_names = BTreeSet::new();
    let mut errs = Vec::new();
    for (i, vol) in volumes.iter().enumerate() {
        let idx = path.index(i);
        let name_path = idx.child("name");
        let mut el = validate_volume_source(vol, &idx);
        if vol.name.is_empty() {
            el.push(FieldError::required(&name_path, ""));
        } else {
            el.extend(
                names::is_dns1123_label(&vol.name)
                    .into_iter()
                    .map(|m| FieldError::invalid(&name_path, &vol.name, m)),
            );
        }
        if all_names.contains(&vol.name) {
            el.push(FieldError::duplicate(&name_path, &vol.name));
        }
        if el.is_empty() {
            all_names.insert(vol.name.clone());
        } else {
            errs.extend(el);
        }
    }
    (all_names, errs)
}

/// Exactly one source, checked in upstream's order so the same field is reported.
fn validate_volume_source(v: &Volume, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let present: Vec<(&str, bool)> = vec![
        ("emptyDir", v.empty_dir.is_some()),
        ("hostPath", v.host_path.is_some()),
        ("gitRepo", v.git_repo.is_some()),
        ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
        ("secret", v.secret.is_some()),
        ("nfs", v.nfs.is_some()),
        ("iscsi", v.iscsi.is_some()),
        ("glusterfs", v.glusterfs.is_some()),
        ("flocker", v.flocker.is_some()),
        ("persistentVolumeClaim", v.persistent_volume_claim.is_some()),
        ("rbd", v.rbd.is_some()),
        ("cinder", v.cinder.is_some()),
        ("cephfs", v.cephfs.is_some()),
        ("downwardAPI", v.downward_api.is_some()),
        ("fc", v.fc.is_some()),
        ("flexVolume", v.flex_volume.is_some()),
        ("configMap", v.config_map.is_some()),
        ("azureFile", v.azure_file.is_some()),
        ("vsphereVolume", v.vsphere_volume.is_some()),
        ("quobyte", v.quobyte.is_some()),
        ("azureDisk", v.azure_disk.is_some()),
        ("photonPersistentDisk", v.photon_persistent_disk.is_some()),
        ("portworxVolume", v.portworx_volume.is_some()),
        ("scaleIO", v.scale_io.is_some()),
        ("projected", v.projected.is_some()),
        ("storageos", v.storageos.is_some()),
        ("csi", v.csi.is_some()),
        ("ephemeral", v.ephemeral.is_some()),
        ("image", v.image.is_some()),
    ];
    let mut count = 0;
    for (name, is_set) in present {
        if !is_set {
            continue;
        }
        if count > 0 {
            errs.push(FieldError::forbidden(path.child(name), MORE_THAN_ONE));
            continue;
        }
        count += 1;
        errs.extend(validate_one_source(v, name, &path.child(name)));
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a volume type"));
    }
    errs
}

fn required_str(value: &str, path: Path, errs: &mut FieldErrors) {
    if value.is_empty() {
        errs.push(FieldError::required(path, ""));
    }
}

fn validate_one_source(v: &Volume, source: &str, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    match source {
        "hostPath" => {
            if let Some(h) = &v.host_path {
                required_str(&h.path, path.child("path"), &mut errs);
                errs.extend(path_no_backsteps(&h.path, &path.child("path")));
                if let Some(t) = h.type_.as_deref() {
                    const TYPES: &[&str] = &[
                        "",
                        "BlockDevice",
                        "CharDevice",
                        "Directory",
                        "DirectoryOrCreate",
                        "File",
                        "FileOrCreate",
                        "Socket",
                    ];
                    if !TYPES.contains(&t) {
                        errs.push(FieldError::not_supported(path.child("type"), t, TYPES));
                    }
                }
            }
        }
        "emptyDir" => {
            if let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
                if super::quantity::parse_quantity(&limit.0).is_some_and(|q| q < 0.0) {
                    errs.push(FieldError::forbidden(
                        path.child("sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    ));
                }
            }
        }
        "secret" => {
            if let Some(s) = &v.secret {
                required_str(
                    s.secret_name.as_deref().unwrap_or(""),
                    path.child("secretName"),
                    &mut errs,
                );
                errs.extend(default_mode(s.default_mode, &path.child("defaultMode")));
                errs.extend(key_to_paths(s.items.as_deref(), &path.child("items")));
            }
        }
        "configMap" => {
            if let Some(c) = &v.config_map {
                required_str(&c.name, path.child("name"), &mut errs);
                errs.extend(default_mode(c.default_mode, &path.child("defaultMode")));
                errs.extend(key_to_paths(c.items.as_deref(), &path.child("items")));
            }
        }
        "persistentVolumeClaim" => {
            if let Some(c) = &v.persistent_volume_claim {
                required_str(&c.claim_name, path.child("claimName"), &mut errs);
            }
        }
        "nfs" => {
            if let Some(n) = &v.nfs {
                required_str(&n.server, path.child("server"), &mut errs);
                required_str(&n.path, path.child("path"), &mut errs);
                if !n.path.starts_with('/') {
                    errs.push(FieldError::invalid(
                        path.child("path"),
                        &n.path,
                        "must be an absolute path",
                    ));
                }
            }
        }
        "gitRepo" => {
            if let Some(g) = &v.git_repo {
                required_str(&g.repository, path.child("repository"), &mut errs);
            }
        }
        "downwardAPI" => {
            if let Some(d) = &v.downward_api {
                errs.extend(default_mode(d.default_mode, &path.child("defaultMode")));
                for item in d.items.iter().flatten() {
                    required_str(&item.path, path.child("path"), &mut errs);
                    errs.extend(local_non_reserved_path(&item.path, &path.child("path")));
                }
            }
        }
        "projected" => {
            if let Some(p) = &v.projected {
                errs.extend(default_mode(p.default_mode, &path.child("defaultMode")));
                for (i, s) in p.sources.iter().flatten().enumerate() {
                    let sp = path.child("sources").index(i);
                    let set = [
                        s.secret.is_some(),
                        s.config_map.is_some(),
                        s.downward_api.is_some(),
                        s.service_account_token.is_some(),
                        s.cluster_trust_bundle.is_some(),
                    ];
                    if set.iter().filter(|b| **b).count() > 1 {
                        errs.push(FieldError::forbidden(
                            &sp,
                            "may not specify more than 1 volume type per source",
                        ));
                    }
                    if let Some(t) = &s.service_account_token {
                        if t.expiration_seconds.is_some_and(|e| e < 600) {
                            errs.push(FieldError::invalid_raw(
                                sp.child("serviceAccountToken").child("expirationSeconds"),
                                t.expiration_seconds.unwrap_or(0),
                                "may not specify a duration less than 10 minutes",
                            ));
                        }
                        required_str(
                            &t.path,
                            sp.child("serviceAccountToken").child("path"),
                            &mut errs,
                        );
                    }
                }
            }
        }
        "csi" => {
            if let Some(c) = &v.csi {
                required_str(&c.driver, path.child("driver"), &mut errs);
            }
        }
        "ephemeral"
            if v.ephemeral
                .as_ref()
                .is_some_and(|e| e.volume_claim_template.is_none()) =>
        {
            errs.push(FieldError::required(path.child("volumeClaimTemplate"), ""));
        }
        "image" => {
            if let Some(i) = &v.image {
                required_str(
                    i.reference.as_deref().unwrap_or(""),
                    path.child("reference"),
                    &mut errs,
                );
            }
        }
        _ => {}
    }
    errs
}

fn default_mode(mode: Option<i32>, path: &Path) -> FieldErrors {
    match mode {
        Some(m) if !(0..=0o777).contains(&m) => {
            vec![FieldError::invalid_raw(
                path,
                m,
                "must be a number between 0 and 0777 (octal), both inclusive",
            )]
        }
        _ => Vec::new(),
    }
}

fn key_to_paths(items: Option<&[KeyToPath]>, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (i, kp) in items.into_iter().flatten().enumerate() {
        let p = path.index(i);
        required_str(&kp.key, p.child("key"), &mut errs);
        required_str(&kp.path, p.child("path"), &mut errs);
        errs.extend(local_non_reserved_path(&kp.path, &p.child("path")));
        errs.extend(default_mode(kp.mode, &p.child("mode")));
    }
    errs
}

fn path_no_backsteps(target: &str, path: &Path) -> FieldErrors {
    if target.split('/').any(|part| part == "..") {
        vec![FieldError::invalid(path, target, "must not contain '..'")]
    } else {
        Vec::new()
    }
}

/// `validateLocalDescendingPath`: relative and without `..` steps.
pub fn local_descending_path(target: &str, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if target.starts_with('/') {
        errs.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    errs.extend(path_no_backsteps(target, path));
    errs
}

fn local_non_reserved_path(target: &str, path: &Path) -> FieldErrors {
    let mut errs = local_descending_path(target, path);
    if target.len() >= 2 && target.starts_with("..") {
        errs.push(FieldError::invalid(
            path,
            target,
            "must not start with '..'",
        ));
    }
    errs
}

/// `ValidateVolumeMounts` for one container.
pub fn validate_volume_mounts(
    mounts: &[VolumeMount],
    volumes: &BTreeSet<String>,
    device_names: &BTreeSet<String>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let mut mount_points = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let idx = path.index(i);
        if m.name.is_empty() {
            errs.push(FieldError::required(idx.child("name"), ""));
        }
        if !volumes.contains(&m.name) {
            errs.push(FieldError::not_found(idx.child("name"), &m.name));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(idx.child("mountPath"), ""));
        }
        if !mount_points.insert(m.mount_path.clone()) {
            errs.push(FieldError::invalid(
                idx.child("mountPath"),
                &m.mount_path,
                "must be unique",
            ));
        }
        if device_names.contains(&m.name) {
            errs.push(FieldError::invalid(
                idx.child("name"),
                &m.name,
                "must not already exist in volumeDevices",
            ));
        }
        let sub_path = m.sub_path.as_deref().unwrap_or("");
        if !sub_path.is_empty() {
            errs.extend(local_descending_path(sub_path, &path.child("subPath")));
        }
        let sub_path_expr = m.sub_path_expr.as_deref().unwrap_or("");
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(FieldError::invalid(
                    idx.child("subPathExpr"),
                    sub_path_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errs.extend(local_descending_path(
                sub_path_expr,
                &path.child("subPathExpr"),
            ));
        }
        if let Some(p) = m.mount_propagation.as_deref() {
            const MODES: &[&str] = &["Bidirectional", "HostToContainer", "None"];
            if !MODES.contains(&p) {
                errs.push(FieldError::not_supported(
                    path.child("mountPropagation"),
                    p,
                    MODES,
                ));
            }
        }
        if let Some(r) = m.recursive_read_only.as_deref() {
            const MODES: &[&str] = &["Disabled", "Enabled", "IfPossible"];
            if !MODES.contains(&r) {
                errs.push(FieldError::not_supported(
                    path.child("recursiveReadOnly"),
                    r,
                    MODES,
                ));
            } else if r != "Disabled" && m.read_only != Some(true) {
                errs.push(FieldError::forbidden(
                    path.child("recursiveReadOnly"),
                    "may only be specified when readOnly is true",
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vols(v: serde_json::Value) -> Vec<Volume> {
        serde_json::from_value(v).expect("volumes")
    }

    #[test]
    fn volume_errors_match_upstream() {
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (json!([{"name": "a", "emptyDir": {}}]), vec![]),
            (
                json!([{"name": "a"}]),
                vec!["spec.volumes[0]: Required value: must specify a volume type"],
            ),
            (
                json!([{"name": "a", "emptyDir": {}, "hostPath": {"path": "/x"}}]),
                vec![
                    "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
                ],
            ),
            (
                json!([{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]),
                vec![r#"spec.volumes[1].name: Duplicate value: "a""#],
            ),
            (
                json!([{"name": "A", "emptyDir": {}}]),
                vec![
                    r#"spec.volumes[0].name: Invalid value: "A": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#,
                ],
            ),
            (
                json!([{"name": "a", "configMap": {}}]),
                vec!["spec.volumes[0].configMap.name: Required value"],
            ),
            (
                json!([{"name": "a", "persistentVolumeClaim": {"claimName": ""}}]),
                vec!["spec.volumes[0].persistentVolumeClaim.claimName: Required value"],
            ),
            (
                json!([{"name": "a", "secret": {"secretName": "s", "items": [{"key": "k", "path": "../x"}]}}]),
                vec![
                    r#"spec.volumes[0].secret.items[0].path: Invalid value: "../x": must not contain '..'"#,
                    r#"spec.volumes[0].secret.items[0].path: Invalid value: "../x": must not start with '..'"#,
                ],
            ),
        ];
        for (v, want) in cases {
            let (_, errs) = validate_volumes(&vols(v.clone()), &Path::new("spec.volumes"));
            let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            assert_eq!(got, want, "{v}");
        }
    }

    #[test]
    fn mounts_must_name_a_volume_and_be_unique() {
        let mounts: Vec<VolumeMount> = serde_json::from_value(json!([
            {"name": "data", "mountPath": "/d"}, {"name": "nope", "mountPath": "/d"}
        ]))
        .expect("mounts");
        let volumes: BTreeSet<String> = ["data".to_string()].into();
        let got: Vec<String> = validate_volume_mounts(
            &mounts,
            &volumes,
            &BTreeSet::new(),
            &Path::new("spec.containers[0].volumeMounts"),
        )
        .iter()
        .map(|e| e.to_string())
        .collect();
        assert_eq!(
            got,
            vec![
                r#"spec.containers[0].volumeMounts[1].name: Not found: "nope""#,
                r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/d": must be unique"#
            ]
        );
    }
}
