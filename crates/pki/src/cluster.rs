//! The server's TLS material on disk: CA, apiserver serving certificate, admin client cert.
//!
//! Layout of the directory (`<data-dir>/server/tls/`, as in k3s):
//!
//! | file                        | what                                             |
//! |-----------------------------|--------------------------------------------------|
//! | `ca.crt` / `ca.key`         | self-signed cluster CA (trust root for everyone) |
//! | `serving.crt`/`serving.key` | apiserver serving certificate                    |
//! | `admin.crt` / `admin.key`   | `system:admin` in group `system:masters`         |
//!
//! Keys are written 0600 before their certificate, and every file atomically, so the
//! certificate acts as the commit marker: a crash leaves either a complete pair or a pair that
//! fails the key check and is re-issued on the next start. The CA is never replaced
//! automatically once `ca.crt` exists — that would invalidate every kubeconfig and node.
//!
//! On every start the leaves are checked against the CA; a leaf that does not chain, does not
//! match its key, is near expiry, or (serving) lacks a wanted SAN is re-issued from the same CA.
//! Serving SANs accumulate: names clients already use are kept when a new one appears. Delete
//! `serving.crt` to drop stale names.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use tracing::info;

use crate::fsutil::write_atomic;
use crate::issue::{self, LeafSpec, Signer, SignerError, Usage, RENEW_BEFORE};
use crate::{PkiError, ServingSans};

pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
pub const SERVING_CERT_FILE: &str = "serving.crt";
pub const SERVING_KEY_FILE: &str = "serving.key";
pub const ADMIN_CERT_FILE: &str = "admin.crt";
pub const ADMIN_KEY_FILE: &str = "admin.key";

/// Common name of the apiserver's serving certificate.
pub const APISERVER_CN: &str = "kube-apiserver";
pub const ADMIN_USER: &str = "system:admin";
pub const MASTERS_GROUP: &str = "system:masters";

const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

/// The cluster's CA plus the certificates the server itself needs, as PEM.
#[derive(Clone)]
pub struct ClusterPki {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    pub dir: PathBuf,
}

impl fmt::Debug for ClusterPki {
    // Private keys must never end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ClusterPki {
    /// Loads the TLS material from `dir`, creating or re-issuing whatever is missing or stale
    /// (see the module docs).
    pub fn load_or_create(dir: &Path, sans: &ServingSans) -> Result<ClusterPki, PkiError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| PkiError::io("creating directory", dir, e))?;
        let now = OffsetDateTime::now_utc();
        let (ca_cert_pem, ca_key_pem) = load_or_create_ca(dir, now)?;
        let signer = load_signer(dir, &ca_cert_pem, &ca_key_pem, now)?;

        let (serving_cert_pem, serving_key_pem) = ensure_leaf(
            dir,
            (SERVING_CERT_FILE, SERVING_KEY_FILE),
            &signer,
            now,
            sans,
            |info| info.cn == APISERVER_CN && info.sans.contains_all(sans),
            |want| LeafSpec {
                cn: APISERVER_CN,
                orgs: &[],
                sans: Some(want),
                usage: Usage::ServerAuth,
            },
        )?;

        let (admin_cert_pem, admin_key_pem) = ensure_leaf(
            dir,
            (ADMIN_CERT_FILE, ADMIN_KEY_FILE),
            &signer,
            now,
            &ServingSans::default(),
            |info| info.cn == ADMIN_USER && info.orgs == [MASTERS_GROUP],
            |_| LeafSpec {
                cn: ADMIN_USER,
                orgs: &[MASTERS_GROUP],
                sans: None,
                usage: Usage::ClientAuth,
            },
        )?;

        Ok(ClusterPki {
            ca_cert_pem,
            ca_key_pem,
            serving_cert_pem,
            serving_key_pem,
            admin_cert_pem,
            admin_key_pem,
            dir: dir.to_path_buf(),
        })
    }

    /// Issues a client certificate (`cn` is the user name, each of `orgs` a group); returns
    /// `(cert_pem, key_pem)`. Nothing is written to disk.
    pub fn issue_client_cert(&self, cn: &str, orgs: &[&str]) -> Result<(String, String), PkiError> {
        let now = OffsetDateTime::now_utc();
        let spec = LeafSpec {
            cn,
            orgs,
            sans: None,
            usage: Usage::ClientAuth,
        };
        self.signer(now)?.issue(&spec, now)
    }

    /// Issues a serving certificate (e.g. for a kubelet: `cn` is the node name); returns
    /// `(cert_pem, key_pem)`. Nothing is written to disk.
    pub fn issue_serving_cert(
        &self,
        cn: &str,
        sans: &ServingSans,
    ) -> Result<(String, String), PkiError> {
        let now = OffsetDateTime::now_utc();
        let spec = LeafSpec {
            cn,
            orgs: &[],
            sans: Some(sans),
            usage: Usage::ServerAuth,
        };
        self.signer(now)?.issue(&spec, now)
    }

    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    pub fn serving_cert_path(&self) -> PathBuf {
        self.dir.join(SERVING_CERT_FILE)
    }

    pub fn serving_key_path(&self) -> PathBuf {
        self.dir.join(SERVING_KEY_FILE)
    }

    fn signer(&self, now: OffsetDateTime) -> Result<Signer, PkiError> {
        load_signer(&self.dir, &self.ca_cert_pem, &self.ca_key_pem, now)
    }
}

fn load_or_create_ca(dir: &Path, now: OffsetDateTime) -> Result<(String, String), PkiError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    match read_optional(&cert_path)? {
        Some(cert) => {
            let key = read_optional(&key_path)?.ok_or_else(|| PkiError::MissingCaKey {
                cert: cert_path.clone(),
                key: key_path.clone(),
            })?;
            Ok((cert, key))
        }
        None => {
            let (cert, key) = issue::new_ca(now)?;
            write_atomic(&key_path, key.as_bytes(), KEY_MODE)?;
            write_atomic(&cert_path, cert.as_bytes(), CERT_MODE)?;
            info!(dir = %dir.display(), "created cluster CA");
            Ok((cert, key))
        }
    }
}

fn load_signer(
    dir: &Path,
    cert_pem: &str,
    key_pem: &str,
    now: OffsetDateTime,
) -> Result<Signer, PkiError> {
    Signer::from_pem(cert_pem, key_pem, now).map_err(|e| match e {
        SignerError::KeyMismatch => PkiError::CaKeyMismatch {
            cert: dir.join(CA_CERT_FILE),
            key: dir.join(CA_KEY_FILE),
        },
        SignerError::Unusable(reason) => PkiError::UnusableCa {
            path: dir.join(CA_CERT_FILE),
            reason,
        },
        SignerError::Pki(e) => e,
    })
}

/// Reuses the leaf pair named `files` in `dir` if it chains to the CA, matches its key, is not
/// near expiry and `wanted` accepts it; else issues and writes a new one. A re-issued leaf
/// carries the union of the old SANs and `sans`.
fn ensure_leaf(
    dir: &Path,
    (cert_file, key_file): (&str, &str),
    signer: &Signer,
    now: OffsetDateTime,
    sans: &ServingSans,
    wanted: impl Fn(&issue::LeafInfo) -> bool,
    spec: impl for<'a> Fn(&'a ServingSans) -> LeafSpec<'a>,
) -> Result<(String, String), PkiError> {
    let cert_path = dir.join(cert_file);
    let key_path = dir.join(key_file);
    let (reason, issue_sans) = match (read_optional(&cert_path)?, read_optional(&key_path)?) {
        (Some(cert), Some(key)) => match signer.inspect_leaf(&cert, &key) {
            Ok(info) if !wanted(&info) => ("contents changed".to_owned(), info.sans.union(sans)),
            Ok(info) if info.not_after - now <= RENEW_BEFORE => {
                ("near expiry".to_owned(), info.sans.union(sans))
            }
            Ok(_) => return Ok((cert, key)),
            Err(reason) => (reason, sans.clone()),
        },
        _ => ("missing".to_owned(), sans.clone()),
    };
    let (cert, key) = signer.issue(&spec(&issue_sans), now)?;
    write_atomic(&key_path, key.as_bytes(), KEY_MODE)?;
    write_atomic(&cert_path, cert.as_bytes(), CERT_MODE)?;
    info!(cert = %cert_path.display(), %reason, "issued certificate");
    Ok((cert, key))
}

fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::io("reading", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ca_cert_hash, default_sans, user_from_client_cert};
    use std::net::IpAddr;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn sans(host_ips: &[&str]) -> ServingSans {
        let ips: Vec<IpAddr> = host_ips.iter().map(|s| s.parse().expect("ip")).collect();
        default_sans("node-a", &ips, "10.43.0.1".parse().expect("ip"), &[])
    }

    fn der(pem: &str) -> Vec<u8> {
        issue::pem_to_der(pem, "test").expect("pem")
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    /// `openssl verify` as an independent check of the chain; skipped where openssl is absent.
    fn openssl_verify(dir: &Path, ca_pem: &str, leaf_pem: &str) {
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("openssl not installed; skipping openssl verify");
            return;
        }
        let ca = dir.join("verify-ca.pem");
        let leaf = dir.join("verify-leaf.pem");
        fs::write(&ca, ca_pem).expect("write ca");
        fs::write(&leaf, leaf_pem).expect("write leaf");
        let out = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&ca)
            .arg(&leaf)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl verify failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn create_then_reload_gives_identical_certs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("server/tls");
        let first = ClusterPki::load_or_create(&dir, &sans(&["192.168.1.10"])).expect("create");
        let second = ClusterPki::load_or_create(&dir, &sans(&["192.168.1.10"])).expect("reload");
        assert_eq!(first.ca_cert_pem, second.ca_cert_pem);
        assert_eq!(first.ca_key_pem, second.ca_key_pem);
        assert_eq!(first.serving_cert_pem, second.serving_cert_pem);
        assert_eq!(first.serving_key_pem, second.serving_key_pem);
        assert_eq!(first.admin_cert_pem, second.admin_cert_pem);
        assert_eq!(first.admin_key_pem, second.admin_key_pem);

        for key in [CA_KEY_FILE, SERVING_KEY_FILE, ADMIN_KEY_FILE] {
            assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
        }
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(
            fs::read_to_string(dir.join(CA_CERT_FILE)).expect("read"),
            first.ca_cert_pem
        );
        assert!(
            !format!("{first:?}").contains("PRIVATE"),
            "Debug leaks keys"
        );
    }

    #[test]
    fn ca_and_serving_cert_have_expected_contents() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let want = sans(&["192.168.1.10", "fd00::10"]);
        let pki = ClusterPki::load_or_create(tmp.path(), &want).expect("create");

        let ca_der = der(&pki.ca_cert_pem);
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("ca");
        assert!(ca.is_ca());
        let ca_cn = ca
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .expect("ca cn");
        assert!(ca_cn.starts_with("rkube-server-ca@"), "{ca_cn}");
        let lifetime = ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp();
        assert!(lifetime > 9 * 365 * 86400, "CA lifetime {lifetime}s");
        ca.verify_signature(None).expect("self-signed");

        let serving_der = der(&pki.serving_cert_pem);
        let (_, serving) = x509_parser::parse_x509_certificate(&serving_der).expect("serving");
        serving
            .verify_signature(Some(ca.public_key()))
            .expect("serving chains to CA");
        assert_eq!(serving.issuer().as_raw(), ca.subject().as_raw());
        assert!(!serving.is_ca());
        let eku = serving
            .extended_key_usage()
            .expect("eku")
            .expect("eku present")
            .value;
        assert!(eku.server_auth && !eku.client_auth);
        let info = issue::leaf_info(&serving).expect("info");
        assert_eq!(info.cn, APISERVER_CN);
        assert_eq!(info.sans, want);
        for name in [
            "localhost",
            "kubernetes.default.svc.cluster.local",
            "node-a",
        ] {
            assert!(info.sans.dns_names.iter().any(|n| n == name), "{name}");
        }
        for ip in ["127.0.0.1", "::1", "10.43.0.1", "192.168.1.10", "fd00::10"] {
            assert!(info.sans.ips.contains(&ip.parse().expect("ip")), "{ip}");
        }
        openssl_verify(tmp.path(), &pki.ca_cert_pem, &pki.serving_cert_pem);
        // The on-disk names the brief's `openssl verify -CAfile ca.crt serving.crt` uses.
        openssl_verify(
            tmp.path(),
            &fs::read_to_string(tmp.path().join(CA_CERT_FILE)).expect("ca.crt"),
            &fs::read_to_string(tmp.path().join(SERVING_CERT_FILE)).expect("serving.crt"),
        );
    }

    #[test]
    fn admin_and_issued_client_certs_name_user_and_groups() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = ClusterPki::load_or_create(tmp.path(), &sans(&[])).expect("create");
        let admin = user_from_client_cert(&der(&pki.admin_cert_pem)).expect("admin");
        assert_eq!(admin.name, "system:admin");
        assert_eq!(admin.groups, vec!["system:masters", "system:authenticated"]);
        let admin_der = der(&pki.admin_cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&admin_der).expect("parse");
        let eku = cert
            .extended_key_usage()
            .expect("eku")
            .expect("present")
            .value;
        assert!(eku.client_auth && !eku.server_auth);
        openssl_verify(tmp.path(), &pki.ca_cert_pem, &pki.admin_cert_pem);

        let cases: &[(&str, &[&str])] = &[
            ("system:kube-proxy", &[]),
            ("system:node:node-a", &["system:nodes"]),
            ("alice", &["devs", "ops", "system:masters"]),
        ];
        for (cn, orgs) in cases {
            let (cert_pem, key_pem) = pki.issue_client_cert(cn, orgs).expect("issue");
            assert!(key_pem.contains("PRIVATE KEY"));
            let user = user_from_client_cert(&der(&cert_pem)).expect("user");
            assert_eq!(user.name, *cn);
            let mut want: Vec<&str> = orgs.to_vec();
            want.push("system:authenticated");
            assert_eq!(user.groups, want, "{cn}");
            openssl_verify(tmp.path(), &pki.ca_cert_pem, &cert_pem);
        }
        assert!(pki.issue_client_cert("", &[]).is_err());
    }

    #[test]
    fn issued_serving_cert_for_kubelet_chains() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = ClusterPki::load_or_create(tmp.path(), &sans(&[])).expect("create");
        let mut kubelet = ServingSans::default();
        kubelet.push("node-b");
        kubelet.push("192.168.1.11");
        let (cert_pem, _) = pki.issue_serving_cert("node-b", &kubelet).expect("issue");
        let cert_der = der(&cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).expect("parse");
        let info = issue::leaf_info(&cert).expect("info");
        assert_eq!((info.cn.as_str(), info.sans), ("node-b", kubelet));
        openssl_verify(tmp.path(), &pki.ca_cert_pem, &cert_pem);
    }

    #[test]
    fn new_host_ip_reissues_serving_cert_from_same_ca() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let first = ClusterPki::load_or_create(tmp.path(), &sans(&["192.168.1.10"])).expect("a");
        let second = ClusterPki::load_or_create(tmp.path(), &sans(&["192.168.1.20"])).expect("b");
        assert_eq!(first.ca_cert_pem, second.ca_cert_pem);
        assert_eq!(first.admin_cert_pem, second.admin_cert_pem);
        assert_ne!(first.serving_cert_pem, second.serving_cert_pem);
        let serving_der = der(&second.serving_cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&serving_der).expect("parse");
        let ips = issue::leaf_info(&cert).expect("info").sans.ips;
        for ip in ["192.168.1.10", "192.168.1.20"] {
            assert!(ips.contains(&ip.parse().expect("ip")), "{ip} kept/added");
        }
        openssl_verify(tmp.path(), &second.ca_cert_pem, &second.serving_cert_pem);
        // Going back to the old address needs no new certificate.
        let third = ClusterPki::load_or_create(tmp.path(), &sans(&["192.168.1.10"])).expect("c");
        assert_eq!(second.serving_cert_pem, third.serving_cert_pem);
    }

    #[test]
    fn broken_or_foreign_leaves_are_reissued() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let first = ClusterPki::load_or_create(tmp.path(), &sans(&[])).expect("create");
        // A key that does not match (e.g. crash between writing key and cert).
        let (_, other_key) = first.issue_client_cert("x", &[]).expect("issue");
        fs::write(tmp.path().join(SERVING_KEY_FILE), other_key).expect("write");
        fs::remove_file(tmp.path().join(ADMIN_KEY_FILE)).expect("rm");
        let second = ClusterPki::load_or_create(tmp.path(), &sans(&[])).expect("reload");
        assert_ne!(first.serving_cert_pem, second.serving_cert_pem);
        assert_ne!(first.admin_cert_pem, second.admin_cert_pem);
        assert_eq!(mode(&tmp.path().join(ADMIN_KEY_FILE)), 0o600);
        openssl_verify(tmp.path(), &second.ca_cert_pem, &second.serving_cert_pem);

        // A new CA (ca.crt removed) re-issues everything it signs.
        fs::remove_file(tmp.path().join(CA_CERT_FILE)).expect("rm");
        let third = ClusterPki::load_or_create(tmp.path(), &sans(&[])).expect("new ca");
        assert_ne!(second.ca_cert_pem, third.ca_cert_pem);
        assert_ne!(second.serving_cert_pem, third.serving_cert_pem);
        assert_ne!(second.admin_cert_pem, third.admin_cert_pem);
        openssl_verify(tmp.path(), &third.ca_cert_pem, &third.admin_cert_pem);
    }

    #[test]
    fn leaves_near_expiry_are_renewed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = ClusterPki::load_or_create(tmp.path(), &sans(&[])).expect("create");
        let later = OffsetDateTime::now_utc() + time::Duration::days(300);
        let signer = pki.signer(later).expect("signer");
        let (cert, _) = ensure_leaf(
            tmp.path(),
            (ADMIN_CERT_FILE, ADMIN_KEY_FILE),
            &signer,
            later,
            &ServingSans::default(),
            |_| true,
            |_| LeafSpec {
                cn: ADMIN_USER,
                orgs: &[MASTERS_GROUP],
                sans: None,
                usage: Usage::ClientAuth,
            },
        )
        .expect("renew");
        assert_ne!(cert, pki.admin_cert_pem);
    }

    #[test]
    fn ca_problems_are_errors_not_silent_replacement() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = ClusterPki::load_or_create(tmp.path(), &sans(&[])).expect("create");
        fs::remove_file(tmp.path().join(CA_KEY_FILE)).expect("rm");
        assert!(matches!(
            ClusterPki::load_or_create(tmp.path(), &sans(&[])),
            Err(PkiError::MissingCaKey { .. })
        ));
        fs::write(tmp.path().join(CA_KEY_FILE), &pki.serving_key_pem).expect("write");
        assert!(matches!(
            ClusterPki::load_or_create(tmp.path(), &sans(&[])),
            Err(PkiError::CaKeyMismatch { .. })
        ));
    }

    #[test]
    fn ca_cert_hash_is_sha256_of_spki() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = ClusterPki::load_or_create(tmp.path(), &sans(&[])).expect("create");
        let hash = ca_cert_hash(&pki.ca_cert_pem).expect("hash");
        let hex = hash.strip_prefix("sha256:").expect("prefix");
        assert_eq!(hex.len(), 64);
        assert!(hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // Cross-check with kubeadm's documented recipe when openssl is available:
        // openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum
        let ca_path = tmp.path().join(CA_CERT_FILE);
        let script = format!(
            "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | sha256sum",
            ca_path.display()
        );
        if Command::new("openssl").arg("version").output().is_ok() {
            let out = Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .expect("sh");
            assert!(out.status.success(), "{script}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(stdout.split_whitespace().next(), Some(hex));
        }
    }
}
