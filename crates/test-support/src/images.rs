//! Test images and a local registry.
//!
//! No image can be pulled from the internet here, so tests build stand-ins under the
//! names the books' manifests use, from Debian's `busybox-static`
//! (../shared/scenarios/SCENARIOS.md): the `nginx` ones serve a page containing
//! `Welcome to nginx!` on port 80 with busybox's httpd (each version says which it is,
//! so a rollout is visible), `busybox` runs a shell. [`Registry`] runs Debian's
//! `docker-registry` on a loopback port, and [`Registry::push`] uploads an image with
//! the registry HTTP API v2, so pulls go through containerd exactly as from a real
//! registry.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::oci::{build_image, Entry, ImageConfig, OciImage};

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";
/// Where Debian's docker-registry installs the registry.
pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

/// Applets every stand-in links to busybox.
const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "cat", "ls", "hostname", "ip", "wget", "httpd", "tar", "mkdir", "rm",
    "touch", "env", "nc", "ps", "kill", "true", "false", "test", "grep", "head", "tail", "dd",
    "id", "date", "uname", "nslookup", "mount",
];

fn busybox_entries() -> std::io::Result<Vec<Entry>> {
    let data = std::fs::read(BUSYBOX)?;
    let mut entries = vec![
        Entry::Dir {
            path: "bin".into(),
            mode: 0o755,
        },
        Entry::Dir {
            path: "tmp".into(),
            mode: 0o1777,
        },
        Entry::Dir {
            path: "etc".into(),
            mode: 0o755,
        },
        Entry::Dir {
            path: "var".into(),
            mode: 0o755,
        },
        Entry::File {
            path: "bin/busybox".into(),
            mode: 0o755,
            data,
        },
        Entry::File {
            path: "etc/passwd".into(),
            mode: 0o644,
            data: b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
                .to_vec(),
        },
        Entry::File {
            path: "etc/group".into(),
            mode: 0o644,
            data: b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
        },
    ];
    for applet in APPLETS {
        entries.push(Entry::Symlink {
            path: format!("bin/{applet}"),
            target: "busybox".into(),
        });
    }
    Ok(entries)
}

/// A busybox image named `name` (e.g. `docker.io/library/busybox:latest`) running `sh`.
pub fn busybox(name: &str) -> std::io::Result<OciImage> {
    let config = ImageConfig {
        name: name.to_string(),
        cmd: vec!["sh".into()],
        env: vec!["PATH=/bin".into()],
        ..Default::default()
    };
    Ok(build_image(&config, &busybox_entries()?))
}

/// The page a stand-in web server serves.
pub fn welcome_page(version: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n<p>rkube stand-in image, version {version}.</p>\n</body>\n</html>\n"
    )
}

/// An "nginx" stand-in named `name` serving [`welcome_page`] of `version` on port 80.
pub fn nginx(name: &str, version: &str) -> std::io::Result<OciImage> {
    let mut entries = busybox_entries()?;
    for dir in [
        "usr",
        "usr/share",
        "usr/share/nginx",
        "usr/share/nginx/html",
    ] {
        entries.push(Entry::Dir {
            path: dir.into(),
            mode: 0o755,
        });
    }
    entries.push(Entry::File {
        path: "usr/share/nginx/html/index.html".into(),
        mode: 0o644,
        data: welcome_page(version).into_bytes(),
    });
    let config = ImageConfig {
        name: name.to_string(),
        // As nginx does, stop at once on SIGTERM (a shell as PID 1 would ignore it).
        cmd: [
            "sh",
            "-c",
            "trap 'exit 0' TERM; httpd -f -v -p 80 -h /usr/share/nginx/html & wait",
        ]
        .map(String::from)
        .to_vec(),
        env: vec!["PATH=/bin".into(), format!("NGINX_VERSION={version}")],
        exposed_ports: vec!["80/tcp".into()],
        ..Default::default()
    };
    Ok(build_image(&config, &entries))
}

/// Writes the OCI layout tarball of `image` to `path` (for `rkube images import`).
pub fn write_tarball(image: &OciImage, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, agent::oci::layout_tarball(image))
}

/// Debian's `docker-registry` on a free loopback port; killed (by PID) on drop.
pub struct Registry {
    pub address: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts the registry and waits until `/v2/` answers.
    pub fn start() -> anyhow::Result<Registry> {
        let dir = tempfile::tempdir()?;
        let port = crate::free_port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n  secret: rkube-test\n",
                dir.path().join("data").display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut reg = Registry {
            address,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = reg.child.try_wait() {
                anyhow::bail!("docker-registry exited ({status}): {}", reg.log());
            }
            if reg
                .request("GET", "/v2/", &[], &[])
                .is_ok_and(|(code, _, _)| code == 200)
            {
                return Ok(reg);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "docker-registry did not answer on {}: {}",
                    reg.address,
                    reg.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `http://<address>`, the endpoint to name in a registries.yaml.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Uploads `image` under `repository:tag` (`library/nginx`, `latest`).
    pub fn push_as(&self, image: &OciImage, repository: &str, tag: &str) -> anyhow::Result<()> {
        for (digest, data) in [&image.layer, &image.config] {
            let (code, headers, body) = self.request(
                "POST",
                &format!("/v2/{repository}/blobs/uploads/"),
                &[],
                &[],
            )?;
            anyhow::ensure!(
                code == 202,
                "starting an upload: {code} {}",
                String::from_utf8_lossy(&body)
            );
            let location = header(&headers, "location")
                .ok_or_else(|| anyhow::anyhow!("upload without a Location"))?;
            let path = location
                .split_once("://")
                .map(|(_, r)| &r[r.find('/').unwrap_or(r.len())..])
                .unwrap_or(&location)
                .to_string();
            let sep = if path.contains('?') { '&' } else { '?' };
            let (code, _, body) = self.request(
                "PUT",
                &format!("{path}{sep}digest={digest}"),
                &[("Content-Type", "application/octet-stream")],
                data,
            )?;
            anyhow::ensure!(
                code == 201,
                "uploading {digest}: {code} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let (code, _, body) = self.request(
            "PUT",
            &format!("/v2/{repository}/manifests/{tag}"),
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            &image.manifest.1,
        )?;
        anyhow::ensure!(
            code == 201,
            "putting the manifest: {code} {}",
            String::from_utf8_lossy(&body)
        );
        Ok(())
    }

    /// Uploads `image` under its own name minus the registry host
    /// (`docker.io/library/nginx:1.17` → `library/nginx:1.17`).
    pub fn push(&self, image: &OciImage) -> anyhow::Result<()> {
        let repo = image.repository();
        let repo = repo.split_once('/').map(|(_, r)| r).unwrap_or(repo);
        self.push_as(image, repo, image.tag())
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<(String, String)>, Vec<u8>)> {
        let mut tcp = TcpStream::connect(&self.address)?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes())?;
        tcp.write_all(body)?;
        let mut resp = Vec::new();
        tcp.read_to_end(&mut resp)?;
        let end = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("truncated response"))?;
        let head = String::from_utf8_lossy(&resp[..end]).into_owned();
        let mut lines = head.lines();
        let code = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Ok((code, headers, resp[end + 4..].to_vec()))
    }
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registries.yaml naming `endpoint` as the mirror of `docker.io` and
/// `tacracr.azurecr.io` (the registries the books' manifests use), written to `path`.
pub fn write_registries_yaml(path: &Path, endpoint: &str) -> std::io::Result<PathBuf> {
    std::fs::write(
        path,
        format!("mirrors:\n  docker.io:\n    endpoint:\n      - \"{endpoint}\"\n  tacracr.azurecr.io:\n    endpoint:\n      - \"{endpoint}\"\n"),
    )?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_ins_are_named_and_serve_the_page() {
        if !Path::new(BUSYBOX).exists() {
            eprintln!("skipping: {BUSYBOX} missing");
            return;
        }
        let img = nginx("docker.io/library/nginx:1.17", "1.17").unwrap();
        assert_eq!(img.tag(), "1.17");
        assert_eq!(img.repository(), "docker.io/library/nginx");
        let config = String::from_utf8_lossy(&img.config.1).into_owned();
        assert!(config.contains("httpd -f -v -p 80"), "{config}");
        assert!(welcome_page("1.17").contains("Welcome to nginx!"));
    }

    #[test]
    fn push_then_fetch_the_manifest() {
        if !Path::new(DOCKER_REGISTRY).exists() || !Path::new(BUSYBOX).exists() {
            eprintln!("skipping: docker-registry or busybox-static missing");
            return;
        }
        let reg = Registry::start().unwrap();
        let img = busybox("docker.io/library/busybox:latest").unwrap();
        reg.push(&img).unwrap();
        let (code, headers, body) = reg
            .request(
                "GET",
                "/v2/library/busybox/manifests/latest",
                &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
                &[],
            )
            .unwrap();
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(
            header(&headers, "docker-content-digest").as_deref(),
            Some(img.manifest.0.as_str())
        );
    }
}
