//! Pod volumes on the host: each volume becomes a directory (or file) under
//! `<agent-dir>/pods/<uid>/volumes/<plugin>/<name>` that containers bind-mount. emptyDir,
//! hostPath, configMap, secret, downwardAPI, projected (configMap, secret, downwardAPI
//! and serviceAccountToken sources) and persistentVolumeClaim (bound to a hostPath or
//! local PersistentVolume) are supported; configMap and secret contents are
//! rewritten on every sync so updates reach running containers.
//!
//! A serviceAccountToken source is filled through the TokenRequest API with a token bound
//! to the pod (so it stops working once the pod is gone); tokens are cached per pod and
//! path and requested again once 80% of their lifetime has passed, as the kubelet does.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Secret, Volume};
use kube::api::Api;
use kube::Client;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("configmap references non-existent config key: {0}")]
    MissingKey(String),
    #[error("volume {volume}: {source}")]
    Io {
        volume: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Token(String),
    #[error("hostPath type check failed: {path} is not a {kind}")]
    HostPathType { path: String, kind: String },
    #[error("persistentvolumeclaim \"{0}\" not found")]
    ClaimNotFound(String),
    #[error(
        "PVC {claim} has non-bound phase ({phase:?}) or empty pvc.Spec.VolumeName ({volume:?})"
    )]
    ClaimNotBound {
        claim: String,
        phase: String,
        volume: String,
    },
    #[error("persistentvolume \"{0}\" not found")]
    PersistentVolumeNotFound(String),
    #[error(
        "persistentvolume \"{0}\": only hostPath and local volumes can be mounted on this node"
    )]
    UnsupportedPersistentVolume(String),
    #[error("path \"{0}\" does not exist")]
    LocalPathMissing(String),
}

/// Host paths of a pod's volumes, by volume name.
pub type VolumePaths = BTreeMap<String, PathBuf>;

pub fn pod_dir(agent_dir: &Path, uid: &str) -> PathBuf {
    agent_dir.join("pods").join(uid)
}

fn io(volume: &str) -> impl Fn(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        volume: volume.to_string(),
        source,
    }
}

/// Makes every volume of `pod` ready and returns their host paths.
pub async fn setup(
    client: &Client,
    agent_dir: &Path,
    pod: &Pod,
) -> Result<VolumePaths, VolumeError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let base = pod_dir(agent_dir, &uid).join("volumes");
    let fs_group = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.fs_group);
    let mut out = VolumePaths::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let fresh_empty_dir =
            v.empty_dir.is_some() && !base.join("kubernetes.io~empty-dir").join(&v.name).exists();
        let path = setup_one(client, &base, &ns, pod, v).await?;
        if let (Some(p), Some(gid)) = (&path, fs_group) {
            // Volumes the agent makes; hostPath and persistent volumes are left alone, as
            // upstream (their plugins do not manage ownership). An emptyDir is set up once.
            let read_only = if v.empty_dir.is_some() {
                fresh_empty_dir.then_some(false)
            } else if v.config_map.is_some()
                || v.secret.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
            {
                Some(true)
            } else {
                None
            };
            if let Some(read_only) = read_only {
                set_volume_ownership(p, gid, read_only).map_err(io(&v.name))?;
            }
        }
        if let Some(p) = path {
            out.insert(v.name.clone(), p);
        }
    }
    Ok(out)
}

/// fsGroup ownership (upstream `SetVolumeOwnership`): everything under `dir` gets group
/// `gid`, group read (and write unless `read_only`) permission, and directories the
/// setgid bit so files created later inherit the group.
pub fn set_volume_ownership(dir: &Path, gid: i64, read_only: bool) -> std::io::Result<()> {
    let gid = u32::try_from(gid).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("fsGroup {gid} out of range"),
        )
    })?;
    let mask = if read_only { 0o440 } else { 0o660 };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        std::os::unix::fs::lchown(&path, None, Some(gid))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mut mode = meta.permissions().mode() & 0o7777 | mask;
        if meta.is_dir() {
            mode |= 0o2000 | 0o110;
            for e in std::fs::read_dir(&path)? {
                stack.push(e?.path());
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

async fn setup_one(
    client: &Client,
    base: &Path,
    ns: &str,
    pod: &Pod,
    v: &Volume,
) -> Result<Option<PathBuf>, VolumeError> {
    let name = v.name.as_str();
    if v.empty_dir.is_some() {
        let p = base.join("kubernetes.io~empty-dir").join(name);
        std::fs::create_dir_all(&p).map_err(io(name))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).map_err(io(name))?;
        return Ok(Some(p));
    }
    if let Some(hp) = &v.host_path {
        return host_path(name, hp).map(Some);
    }
    if let Some(c) = &v.persistent_volume_claim {
        return persistent_volume_path(client, ns, &c.claim_name, name)
            .await
            .map(Some);
    }
    if let Some(cm) = &v.config_map {
        let p = base.join("kubernetes.io~configmap").join(name);
        let files = config_map_files(
            client,
            ns,
            &cm.name,
            cm.items.as_deref(),
            cm.optional.unwrap_or(false),
        )
        .await?;
        write_files(&p, &files, cm.default_mode.unwrap_or(0o644)).map_err(io(name))?;
        return Ok(Some(p));
    }
    if let Some(s) = &v.secret {
        let p = base.join("kubernetes.io~secret").join(name);
        let sname = s.secret_name.clone().unwrap_or_default();
        let files = secret_files(
            client,
            ns,
            &sname,
            s.items.as_deref(),
            s.optional.unwrap_or(false),
        )
        .await?;
        write_files(&p, &files, s.default_mode.unwrap_or(0o644)).map_err(io(name))?;
        return Ok(Some(p));
    }
    if let Some(d) = &v.downward_api {
        let p = base.join("kubernetes.io~downward-api").join(name);
        let mut files = BTreeMap::new();
        for item in d.items.iter().flatten() {
            if let Some(f) = &item.field_ref {
                files.insert(
                    item.path.clone(),
                    crate::envvars::field_value(pod, &f.field_path)
                        .unwrap_or_default()
                        .into_bytes(),
                );
            }
        }
        write_files(&p, &files, d.default_mode.unwrap_or(0o644)).map_err(io(name))?;
        return Ok(Some(p));
    }
    if let Some(pr) = &v.projected {
        let p = base.join("kubernetes.io~projected").join(name);
        let mut files = BTreeMap::new();
        for src in pr.sources.iter().flatten() {
            if let Some(cm) = &src.config_map {
                files.extend(
                    config_map_files(
                        client,
                        ns,
                        &cm.name,
                        cm.items.as_deref(),
                        cm.optional.unwrap_or(false),
                    )
                    .await?,
                );
            }
            if let Some(s) = &src.secret {
                files.extend(
                    secret_files(
                        client,
                        ns,
                        &s.name,
                        s.items.as_deref(),
                        s.optional.unwrap_or(false),
                    )
                    .await?,
                );
            }
            if let Some(d) = &src.downward_api {
                for item in d.items.iter().flatten() {
                    if let Some(f) = &item.field_ref {
                        files.insert(
                            item.path.clone(),
                            crate::envvars::field_value(pod, &f.field_path)
                                .unwrap_or_default()
                                .into_bytes(),
                        );
                    }
                }
            }
            if let Some(t) = &src.service_account_token {
                files.insert(
                    t.path.clone(),
                    service_account_token(client, ns, pod, t)
                        .await?
                        .into_bytes(),
                );
            }
        }
        write_files(&p, &files, pr.default_mode.unwrap_or(0o644)).map_err(io(name))?;
        return Ok(Some(p));
    }
    // Other volume types are not supported yet: mount an empty directory so the pod runs.
    let p = base.join("unsupported").join(name);
    std::fs::create_dir_all(&p).map_err(io(name))?;
    tracing::warn!(
        volume = name,
        "volume type not supported; mounting an empty directory"
    );
    Ok(Some(p))
}

/// A hostPath volume's path, created or type-checked as its `type` says.
fn host_path(
    name: &str,
    hp: &k8s_openapi::api::core::v1::HostPathVolumeSource,
) -> Result<PathBuf, VolumeError> {
    let p = PathBuf::from(&hp.path);
    match hp.type_.as_deref().unwrap_or("") {
        "DirectoryOrCreate" => std::fs::create_dir_all(&p).map_err(io(name))?,
        "FileOrCreate" => {
            if !p.exists() {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(io(name))?;
                }
                std::fs::write(&p, b"").map_err(io(name))?;
            }
        }
        "Directory" if !p.is_dir() => {
            return Err(VolumeError::HostPathType {
                path: hp.path.clone(),
                kind: "directory".into(),
            })
        }
        "File" if !p.is_file() => {
            return Err(VolumeError::HostPathType {
                path: hp.path.clone(),
                kind: "file".into(),
            })
        }
        _ => {}
    }
    Ok(p)
}

/// The host path of the volume bound to claim `claim_name`: a hostPath or local
/// PersistentVolume (the kinds a node can serve by itself). A directory the local-path
/// provisioner asked for is made writable by every user, as that provisioner does.
async fn persistent_volume_path(
    client: &Client,
    ns: &str,
    claim_name: &str,
    volume: &str,
) -> Result<PathBuf, VolumeError> {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim = claims
        .get_opt(claim_name)
        .await?
        .ok_or_else(|| VolumeError::ClaimNotFound(claim_name.to_string()))?;
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let pv_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if phase != "Bound" || pv_name.is_empty() {
        return Err(VolumeError::ClaimNotBound {
            claim: format!("{ns}/{claim_name}"),
            phase,
            volume: pv_name,
        });
    }
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = volumes
        .get_opt(&pv_name)
        .await?
        .ok_or_else(|| VolumeError::PersistentVolumeNotFound(pv_name.clone()))?;
    let spec = pv.spec.clone().unwrap_or_default();
    if let Some(hp) = &spec.host_path {
        let existed = Path::new(&hp.path).exists();
        let p = host_path(volume, hp)?;
        if !existed && crate::local_volumes::provisioned_locally(&pv) {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777))
                .map_err(io(volume))?;
        }
        return Ok(p);
    }
    if let Some(local) = &spec.local {
        let p = PathBuf::from(&local.path);
        if !p.exists() {
            return Err(VolumeError::LocalPathMissing(local.path.clone()));
        }
        return Ok(p);
    }
    Err(VolumeError::UnsupportedPersistentVolume(pv_name))
}

/// Cached tokens by (pod UID, file path): the token and when to request a new one.
type TokenCache =
    parking_lot::Mutex<std::collections::HashMap<(String, String), (String, std::time::Instant)>>;

fn token_cache() -> &'static TokenCache {
    static CACHE: std::sync::OnceLock<TokenCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Forgets the cached tokens of a pod that is gone.
pub fn forget_tokens(uid: &str) {
    token_cache().lock().retain(|(u, _), _| u != uid);
}

async fn service_account_token(
    client: &Client,
    ns: &str,
    pod: &Pod,
    source: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
) -> Result<String, VolumeError> {
    use k8s_openapi::api::authentication::v1::{
        BoundObjectReference, TokenRequest, TokenRequestSpec,
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let key = (uid.clone(), source.path.clone());
    if let Some((token, refresh_at)) = token_cache().lock().get(&key) {
        if std::time::Instant::now() < *refresh_at {
            return Ok(token.clone());
        }
    }
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let ttl = source.expiration_seconds.unwrap_or(3600).max(600);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: source.audience.iter().cloned().collect(),
            expiration_seconds: Some(ttl),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: Some(uid),
            }),
        },
        ..Default::default()
    };
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
    let resp: TokenRequest = api
        .create_subresource("token", &sa, &kube::api::PostParams::default(), &request)
        .await
        .map_err(|e| {
            VolumeError::Token(format!(
                "failed to fetch token for service account {ns}/{sa}: {e}"
            ))
        })?;
    let token = resp.status.map(|s| s.token).unwrap_or_default();
    let refresh_at =
        std::time::Instant::now() + std::time::Duration::from_secs((ttl as u64) * 8 / 10);
    token_cache()
        .lock()
        .insert(key, (token.clone(), refresh_at));
    Ok(token)
}

fn select(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    what: &str,
) -> Result<BTreeMap<String, Vec<u8>>, VolumeError> {
    match items {
        None | Some([]) => Ok(data),
        Some(items) => {
            let mut out = BTreeMap::new();
            for i in items {
                match data.get(&i.key) {
                    Some(v) => {
                        out.insert(i.path.clone(), v.clone());
                    }
                    None => return Err(VolumeError::MissingKey(format!("{what}/{}", i.key))),
                }
            }
            Ok(out)
        }
    }
}

async fn config_map_files(
    client: &Client,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, VolumeError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let Some(cm) = api.get_opt(name).await? else {
        if optional {
            return Ok(BTreeMap::new());
        }
        return Err(VolumeError::ConfigMapNotFound(name.to_string()));
    };
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.unwrap_or_default() {
        data.insert(k, v.0);
    }
    select(data, items, name)
}

async fn secret_files(
    client: &Client,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, VolumeError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let Some(s) = api.get_opt(name).await? else {
        if optional {
            return Ok(BTreeMap::new());
        }
        return Err(VolumeError::SecretNotFound(name.to_string()));
    };
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in s.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    select(data, items, name)
}

/// Writes `files` under `dir`, replacing changed ones atomically and removing files no
/// longer present.
fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>, mode: i32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (rel, data) in files {
        let rel = rel.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            continue;
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::read(&path).ok().as_deref() == Some(data.as_slice()) {
            continue;
        }
        let tmp = path.with_extension("rkube-tmp");
        std::fs::write(&tmp, data)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode as u32 & 0o777))?;
        std::fs::rename(&tmp, &path)?;
    }
    // Top-level entries that are no longer wanted.
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let wanted = files
                .keys()
                .any(|k| k.trim_start_matches('/').split('/').next() == Some(name.as_str()));
            if !wanted {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
    Ok(())
}

/// The pod's `/etc/hosts` (managed by the agent for pods not on the host network).
pub fn write_etc_hosts(
    agent_dir: &Path,
    pod: &Pod,
    pod_ip: Option<&str>,
) -> std::io::Result<PathBuf> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = pod_dir(agent_dir, &uid);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("etc-hosts");
    let spec = pod.spec.clone().unwrap_or_default();
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    let mut text = String::from("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
    if let Some(ip) = pod_ip {
        match &spec.subdomain {
            Some(sub) if !sub.is_empty() => {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                text.push_str(&format!(
                    "{ip}\t{hostname}.{sub}.{ns}.svc.cluster.local\t{hostname}\n"
                ));
            }
            _ => text.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    for ha in spec.host_aliases.iter().flatten() {
        if !ha.ip.is_empty() {
            text.push_str(&format!(
                "\n# Entries added by HostAliases.\n{}\t{}\n",
                ha.ip,
                ha.hostnames.clone().unwrap_or_default().join("\t")
            ));
        }
    }
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&path, text)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ownership_sets_the_group_and_setgid() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("f"), b"x").unwrap();
        std::fs::set_permissions(sub.join("f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        // Our own group: allowed without privileges.
        let gid = std::fs::metadata(dir.path()).unwrap().gid() as i64;
        set_volume_ownership(dir.path(), gid, false).unwrap();
        let m = std::fs::metadata(&sub).unwrap();
        assert_eq!(m.mode() & 0o2070, 0o2070, "{:o}", m.mode());
        let f = std::fs::metadata(sub.join("f")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o660, "{:o}", f.mode());
        assert_eq!(f.gid() as i64, gid);
        set_volume_ownership(dir.path(), gid, true).unwrap();
        let f = std::fs::metadata(sub.join("f")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o660, "read-only only adds group read");
        assert!(set_volume_ownership(dir.path(), -1, false).is_err());
    }

    #[test]
    fn write_files_replaces_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        files.insert("a".to_string(), b"1".to_vec());
        files.insert("sub/b".to_string(), b"2".to_vec());
        write_files(dir.path(), &files, 0o644).unwrap();
        assert_eq!(std::fs::read(dir.path().join("sub/b")).unwrap(), b"2");
        files.remove("sub/b");
        files.insert("a".to_string(), b"3".to_vec());
        write_files(dir.path(), &files, 0o644).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"3");
        assert!(!dir.path().join("sub").exists());
    }
}
