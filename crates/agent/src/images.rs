//! Images on the node: importing tarballs (`rkube images import`, the airgap directory
//! `<data-dir>/agent/images/*.tar`, rkube's own pause image) into containerd's `k8s.io`
//! namespace, and making sure a container's image is present according to its
//! `imagePullPolicy` before the container is created.
//!
//! Imports go through containerd's `ctr` tool (shipped in Debian's containerd package),
//! which reads both OCI layout and docker-archive tarballs.

use std::path::{Path, PathBuf};

use cri::{CallExt, CriClient, CriError};

/// The containerd namespace CRI uses.
pub const CRI_NAMESPACE: &str = "k8s.io";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("`ctr` not found; install the Debian package containerd")]
    NoCtr,
    #[error("importing {path}: {message}")]
    Import { path: PathBuf, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Imports image tarballs into the runtime at `socket`.
pub async fn import(socket: &Path, files: &[PathBuf]) -> Result<(), ImageError> {
    let ctr = crate::containerd::find_binary("ctr").ok_or(ImageError::NoCtr)?;
    for file in files {
        let out = tokio::process::Command::new(&ctr)
            .arg("--address")
            .arg(socket)
            .args(["--namespace", CRI_NAMESPACE, "images", "import"])
            .arg(file)
            .output()
            .await?;
        if !out.status.success() {
            return Err(ImageError::Import {
                path: file.clone(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        tracing::info!(file = %file.display(), output = %String::from_utf8_lossy(&out.stdout).trim(), "imported images");
    }
    Ok(())
}

/// The `*.tar` files of the airgap images directory, sorted.
pub fn airgap_tarballs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "tar"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Imports rkube's pause image (written to `dir` first).
pub async fn import_pause_image(socket: &Path, dir: &Path) -> Result<(), ImageError> {
    let Some(tar) = crate::pause::pause_image_tarball() else {
        return Err(ImageError::Import {
            path: dir.to_path_buf(),
            message: format!("rkube has no pause program for {}", std::env::consts::ARCH),
        });
    };
    std::fs::create_dir_all(dir)?;
    let path = dir.join("pause.tar");
    std::fs::write(&path, tar)?;
    import(socket, &[path]).await
}

/// Normalises an image reference as the runtime names it: `nginx:1.17` →
/// `docker.io/library/nginx:1.17`, untagged → `:latest`.
pub fn normalize_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tagged = last.contains(':');
    let first = name.split('/').next().unwrap_or(name);
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_domain {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    if let Some(d) = digest {
        full.push('@');
        full.push_str(d);
    } else if !tagged {
        full.push_str(":latest");
    }
    full
}

/// The effective pull policy: as the API defaults it (Always for `:latest` or untagged).
pub fn pull_policy(image: &str, policy: Option<&str>) -> String {
    if let Some(p) = policy.filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    if normalize_image(image).ends_with(":latest") {
        "Always".into()
    } else {
        "IfNotPresent".into()
    }
}

/// Why an image could not be made present.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// `ErrImageNeverPull`: policy Never and the image is absent.
    #[error("Container image \"{0}\" is not present with pull policy of Never")]
    NeverPull(String),
    /// `ErrImagePull`.
    #[error("{0}")]
    Pull(String),
}

/// Makes sure `image` is present; returns the image reference (ID) the runtime uses.
pub async fn ensure_image(
    cri: &mut CriClient,
    image: &str,
    policy: &str,
    auth: Option<cri::v1::AuthConfig>,
) -> Result<(String, bool), PullError> {
    let spec = cri::v1::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    };
    let present = cri
        .images
        .image_status(cri::v1::ImageStatusRequest {
            image: Some(spec.clone()),
            verbose: false,
        })
        .await
        .call("ImageStatus")
        .map_err(|e| PullError::Pull(e.to_string()))?
        .image;
    if policy != "Always" {
        if let Some(img) = present {
            return Ok((img.id, false));
        }
        if policy == "Never" {
            return Err(PullError::NeverPull(image.to_string()));
        }
    }
    let res: Result<_, CriError> = cri
        .images
        .pull_image(cri::v1::PullImageRequest {
            image: Some(spec),
            auth,
            sandbox_config: None,
        })
        .await
        .call("PullImage");
    match res {
        Ok(r) => Ok((r.image_ref, true)),
        Err(e) => {
            let msg = e
                .status()
                .map(|s| s.message().to_string())
                .unwrap_or_else(|| e.to_string());
            Err(PullError::Pull(format!(
                "failed to pull and unpack image \"{}\": {msg}",
                normalize_image(image)
            )))
        }
    }
}

/// The user `image` runs as (uid 0 when the runtime cannot say, as upstream treats it).
pub async fn image_user(cri: &mut CriClient, image: &str) -> crate::security_context::ImageUser {
    let status = cri
        .images
        .image_status(cri::v1::ImageStatusRequest {
            image: Some(cri::v1::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .call("ImageStatus");
    let mut user = crate::security_context::ImageUser {
        uid: Some(0),
        username: String::new(),
    };
    match status.map(|s| s.image) {
        Ok(Some(img)) => {
            if let Some(uid) = img.uid {
                user.uid = Some(uid.value);
            } else if !img.username.is_empty() {
                user.uid = None;
                user.username = img.username;
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(%image, error = %e, "reading the image's user failed"),
    }
    user
}

/// The registry host of an image reference (`docker.io` for Docker Hub names).
pub fn registry_host(image: &str) -> String {
    normalize_image(image)
        .split('/')
        .next()
        .unwrap_or("docker.io")
        .to_string()
}

/// Whether a key of a docker config (`https://index.docker.io/v1/`, `host:port`,
/// `https://host/path`) names `host`.
fn key_matches(key: &str, host: &str) -> bool {
    let k = key.split_once("://").map(|(_, r)| r).unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    k == host || (hub(k) && hub(host))
}

/// Credentials for pulling `image` from the pod's `imagePullSecrets`
/// (`kubernetes.io/dockerconfigjson` and the older `kubernetes.io/dockercfg`): the first
/// secret with an entry for the image's registry, as the kubelet's keyring does.
pub fn pull_auth(
    image: &str,
    secrets: &[k8s_openapi::api::core::v1::Secret],
) -> Option<cri::v1::AuthConfig> {
    let host = registry_host(image);
    for secret in secrets {
        let data = secret.data.clone().unwrap_or_default();
        let auths = if let Some(b) = data.get(".dockerconfigjson") {
            serde_json::from_slice::<serde_json::Value>(&b.0)
                .ok()
                .and_then(|v| v.get("auths").cloned())
        } else if let Some(b) = data.get(".dockercfg") {
            serde_json::from_slice::<serde_json::Value>(&b.0).ok()
        } else {
            None
        };
        let Some(serde_json::Value::Object(auths)) = auths else {
            continue;
        };
        for (key, entry) in auths {
            if !key_matches(&key, &host) {
                continue;
            }
            let field = |k: &str| {
                entry
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let (mut username, mut password) = (field("username"), field("password"));
            let auth = field("auth");
            if username.is_empty() && !auth.is_empty() {
                use base64::Engine;
                if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&auth) {
                    let text = String::from_utf8_lossy(&decoded).into_owned();
                    if let Some((u, p)) = text.split_once(':') {
                        (username, password) = (u.to_string(), p.to_string());
                    }
                }
            }
            return Some(cri::v1::AuthConfig {
                username,
                password,
                server_address: host,
                identity_token: field("identitytoken"),
                registry_token: field("registrytoken"),
                ..Default::default()
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(key: &str, json: &str) -> k8s_openapi::api::core::v1::Secret {
        let mut s = k8s_openapi::api::core::v1::Secret::default();
        s.data = Some(
            [(
                key.to_string(),
                k8s_openapi::ByteString(json.as_bytes().to_vec()),
            )]
            .into(),
        );
        s
    }

    #[test]
    fn pull_secrets_match_the_registry() {
        let hub = secret(
            ".dockerconfigjson",
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"bWU6czNjcmV0"}}}"#,
        );
        let local = secret(
            ".dockerconfigjson",
            r#"{"auths":{"127.0.0.1:5000":{"username":"u","password":"p"}}}"#,
        );
        let old = secret(
            ".dockercfg",
            r#"{"registry.example":{"username":"o","password":"q"}}"#,
        );
        let a = pull_auth("nginx", &[local.clone(), hub.clone()]).expect("docker hub");
        assert_eq!(
            (
                a.username.as_str(),
                a.password.as_str(),
                a.server_address.as_str()
            ),
            ("me", "s3cret", "docker.io")
        );
        let a = pull_auth("127.0.0.1:5000/app:1", &[hub.clone(), local.clone()]).expect("local");
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
        assert_eq!(
            pull_auth("registry.example/x", &[old]).map(|a| a.username),
            Some("o".into())
        );
        assert!(pull_auth("quay.io/x", &[hub, local]).is_none());
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            normalize_image("nginx:1.17"),
            "docker.io/library/nginx:1.17"
        );
        assert_eq!(normalize_image("me/app"), "docker.io/me/app:latest");
        assert_eq!(
            normalize_image("tacracr.azurecr.io/tapp:latest"),
            "tacracr.azurecr.io/tapp:latest"
        );
        assert_eq!(
            normalize_image("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
        assert_eq!(
            normalize_image("rkube.local/pause:3.10"),
            "rkube.local/pause:3.10"
        );
    }

    #[test]
    fn default_pull_policy() {
        assert_eq!(pull_policy("nginx", None), "Always");
        assert_eq!(pull_policy("nginx:latest", None), "Always");
        assert_eq!(pull_policy("nginx:1.17", None), "IfNotPresent");
        assert_eq!(pull_policy("nginx", Some("Never")), "Never");
    }
}
