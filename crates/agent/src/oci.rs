//! Writing OCI image layout tarballs (`oci-layout`, `index.json`, `blobs/sha256/…`) with one
//! uncompressed layer, the format `ctr images import` and `rkube images import` read. Used
//! for the pause image rkube builds itself and for test images.

use std::collections::BTreeMap;

use serde_json::json;
use sha2::{Digest, Sha256};

/// One entry of a layer (paths are relative to the image root, without a leading `/`).
#[derive(Clone, Debug)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

/// What an image runs and how it is named.
#[derive(Clone, Debug, Default)]
pub struct ImageConfig {
    /// Full reference, e.g. `docker.io/library/nginx:1.17`.
    pub name: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub exposed_ports: Vec<String>,
    /// `amd64`, `arm64`: defaults to this machine's.
    pub architecture: Option<String>,
}

/// The OCI architecture name of this machine.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A tar archive in ustar format.
#[derive(Default)]
pub struct TarWriter {
    buf: Vec<u8>,
}

impl TarWriter {
    pub fn new() -> Self {
        TarWriter::default()
    }

    fn header(&mut self, path: &str, mode: u32, size: usize, kind: u8, link: &str) {
        let mut h = [0u8; 512];
        let (prefix, name) = split_name(path);
        put(&mut h[0..100], name.as_bytes());
        put(&mut h[100..108], format!("{mode:07o}\0").as_bytes());
        put(&mut h[108..116], b"0000000\0");
        put(&mut h[116..124], b"0000000\0");
        put(&mut h[124..136], format!("{size:011o}\0").as_bytes());
        put(&mut h[136..148], b"00000000000\0");
        h[156] = kind;
        put(&mut h[157..257], link.as_bytes());
        put(&mut h[257..263], b"ustar\0");
        put(&mut h[263..265], b"00");
        put(&mut h[345..500], prefix.as_bytes());
        // The checksum is computed with its own field as spaces.
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        put(&mut h[148..156], format!("{sum:06o}\0 ").as_bytes());
        self.buf.extend_from_slice(&h);
    }

    pub fn dir(&mut self, path: &str, mode: u32) {
        let p = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        self.header(&p, mode, 0, b'5', "");
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.header(path, mode, data.len(), b'0', "");
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.header(path, 0o777, 0, b'2', target);
    }

    pub fn entry(&mut self, e: &Entry) {
        match e {
            Entry::Dir { path, mode } => self.dir(path, *mode),
            Entry::File { path, mode, data } => self.file(path, *mode, data),
            Entry::Symlink { path, target } => self.symlink(path, target),
        }
    }

    /// The archive with its two closing zero blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend(std::iter::repeat_n(0u8, 1024));
        self.buf
    }
}

fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// ustar keeps names over 100 bytes by splitting them at a `/` into prefix and name.
fn split_name(path: &str) -> (&str, &str) {
    if path.len() <= 100 {
        return ("", path);
    }
    match path[..path.len().min(155)].rfind('/') {
        Some(i) if path.len() - i - 1 <= 100 => (&path[..i], &path[i + 1..]),
        _ => ("", path),
    }
}

/// One single-layer image as content-addressed blobs (what an OCI layout or a registry
/// holds).
pub struct OciImage {
    pub name: String,
    pub architecture: String,
    pub layer: (String, Vec<u8>),
    pub config: (String, Vec<u8>),
    pub manifest: (String, Vec<u8>),
}

impl OciImage {
    /// The image's tag (`latest` when the name has none).
    pub fn tag(&self) -> &str {
        self.name
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .map(|(_, t)| t)
            .unwrap_or("latest")
    }

    /// The name without its tag.
    pub fn repository(&self) -> &str {
        match self.name.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => r,
            _ => &self.name,
        }
    }
}

/// Builds an OCI image layout tarball holding one image with one layer of `entries`.
pub fn image_tarball(config: &ImageConfig, entries: &[Entry]) -> Vec<u8> {
    layout_tarball(&build_image(config, entries))
}

/// Builds the blobs of a one-layer image of `entries`.
pub fn build_image(config: &ImageConfig, entries: &[Entry]) -> OciImage {
    let mut layer = TarWriter::new();
    for e in entries {
        layer.entry(e);
    }
    let layer = layer.finish();
    let layer_digest = format!("sha256:{}", sha256_hex(&layer));
    let arch = config
        .architecture
        .clone()
        .unwrap_or_else(|| host_architecture().to_string());

    let mut cfg = serde_json::Map::new();
    if !config.env.is_empty() {
        cfg.insert("Env".into(), json!(config.env));
    }
    if !config.entrypoint.is_empty() {
        cfg.insert("Entrypoint".into(), json!(config.entrypoint));
    }
    if !config.cmd.is_empty() {
        cfg.insert("Cmd".into(), json!(config.cmd));
    }
    if !config.working_dir.is_empty() {
        cfg.insert("WorkingDir".into(), json!(config.working_dir));
    }
    if !config.exposed_ports.is_empty() {
        let ports: BTreeMap<&str, serde_json::Value> = config
            .exposed_ports
            .iter()
            .map(|p| (p.as_str(), json!({})))
            .collect();
        cfg.insert("ExposedPorts".into(), json!(ports));
    }
    let image_config = json!({
        "architecture": arch,
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "rkube"}],
    });
    let config_bytes = serde_json::to_vec(&image_config).unwrap_or_default();
    let config_digest = format!("sha256:{}", sha256_hex(&config_bytes));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest_bytes));
    OciImage {
        name: config.name.clone(),
        architecture: arch,
        layer: (layer_digest, layer),
        config: (config_digest, config_bytes),
        manifest: (manifest_digest, manifest_bytes),
    }
}

/// The OCI image layout tarball of `image` (what `ctr images import` reads).
pub fn layout_tarball(image: &OciImage) -> Vec<u8> {
    let (manifest_digest, manifest_bytes) = (&image.manifest.0, &image.manifest.1);
    let arch = &image.architecture;
    let tag = image.tag();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {
                "io.containerd.image.name": image.name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    });

    let mut out = TarWriter::new();
    out.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#);
    out.file(
        "index.json",
        0o644,
        &serde_json::to_vec(&index).unwrap_or_default(),
    );
    out.dir("blobs", 0o755);
    out.dir("blobs/sha256", 0o755);
    for (digest, data) in [&image.layer, &image.config, &image.manifest] {
        let hex = digest.trim_start_matches("sha256:");
        out.file(&format!("blobs/sha256/{hex}"), 0o644, data);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_headers_have_valid_checksums_and_padding() {
        let mut t = TarWriter::new();
        t.file("a/b.txt", 0o644, b"hello");
        t.symlink("a/c", "b.txt");
        let out = t.finish();
        assert_eq!(out.len(), 512 + 512 + 512 + 1024);
        let h = &out[..512];
        assert_eq!(&h[0..7], b"a/b.txt");
        assert_eq!(&h[257..262], b"ustar");
        let stored = std::str::from_utf8(&h[148..154]).unwrap();
        let mut copy = h.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|b| u32::from(*b)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        assert_eq!(&out[512..517], b"hello");
    }

    #[test]
    fn long_names_use_the_prefix_field() {
        let long = format!("{}/{}", "d".repeat(80), "f".repeat(60));
        let (prefix, name) = split_name(&long);
        assert_eq!(prefix.len(), 80);
        assert_eq!(name.len(), 60);
    }

    #[test]
    fn image_tarball_names_the_image() {
        let tar = image_tarball(
            &ImageConfig {
                name: "docker.io/library/x:1.0".into(),
                cmd: vec!["sh".into()],
                ..Default::default()
            },
            &[Entry::Dir {
                path: "bin".into(),
                mode: 0o755,
            }],
        );
        let text = String::from_utf8_lossy(&tar);
        assert!(text.contains("\"io.containerd.image.name\":\"docker.io/library/x:1.0\""));
        assert!(text.contains("\"org.opencontainers.image.ref.name\":\"1.0\""));
    }
}
