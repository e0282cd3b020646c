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
    let has_domain = name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
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
pub async fn ensure_image(cri: &mut CriClient, image: &str, policy: &str) -> Result<(String, bool), PullError> {
    let spec = cri::v1::ImageSpec { image: image.to_string(), ..Default::default() };
    let present = cri
        .images
        .image_status(cri::v1::ImageStatusRequest { image: Some(spec.clone()), verbose: false })
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
        .pull_image(cri::v1::PullImageRequest { image: Some(spec), auth: None, sandbox_config: None })
        .await
        .call("PullImage");
    match res {
        Ok(r) => Ok((r.image_ref, true)),
        Err(e) => {
            let msg = e.status().map(|s| s.message().to_string()).unwrap_or_else(|| e.to_string());
            Err(PullError::Pull(format!("failed to pull and unpack image \"{}\": {msg}", normalize_image(image))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize_image("nginx:1.17"), "docker.io/library/nginx:1.17");
        assert_eq!(normalize_image("me/app"), "docker.io/me/app:latest");
        assert_eq!(normalize_image("tacracr.azurecr.io/tapp:latest"), "tacracr.azurecr.io/tapp:latest");
        assert_eq!(normalize_image("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(normalize_image("rkube.local/pause:3.10"), "rkube.local/pause:3.10");
    }

    #[test]
    fn default_pull_policy() {
        assert_eq!(pull_policy("nginx", None), "Always");
        assert_eq!(pull_policy("nginx:latest", None), "Always");
        assert_eq!(pull_policy("nginx:1.17", None), "IfNotPresent");
        assert_eq!(pull_policy("nginx", Some("Never")), "Never");
    }
}
