//! Writing kubeconfig files that embed the CA and a client certificate.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;
use crate::PkiError;

/// The subset of client-go's `clientcmd/api/v1.Config` that rkube writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub clusters: Vec<NamedCluster>,
    pub users: Vec<NamedUser>,
    pub contexts: Vec<NamedContext>,
    pub current_context: String,
    #[serde(default)]
    pub preferences: serde_yaml::Mapping,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: Cluster,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    pub server: String,
    pub certificate_authority_data: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: AuthInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AuthInfo {
    pub client_certificate_data: String,
    pub client_key_data: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: Context,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    pub user: String,
}

impl Kubeconfig {
    /// A config with one cluster, user and context, all named `name` (k3s uses `default`).
    pub fn new(
        name: &str,
        server_url: &str,
        ca_pem: &str,
        client_cert_pem: &str,
        client_key_pem: &str,
    ) -> Kubeconfig {
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster {
                name: name.into(),
                cluster: Cluster {
                    server: server_url.into(),
                    certificate_authority_data: BASE64.encode(ca_pem),
                },
            }],
            users: vec![NamedUser {
                name: name.into(),
                user: AuthInfo {
                    client_certificate_data: BASE64.encode(client_cert_pem),
                    client_key_data: BASE64.encode(client_key_pem),
                },
            }],
            contexts: vec![NamedContext {
                name: name.into(),
                context: Context {
                    cluster: name.into(),
                    user: name.into(),
                },
            }],
            current_context: name.into(),
            preferences: serde_yaml::Mapping::new(),
        }
    }
}

/// Writes a kubeconfig for `server_url` to `path` (atomically, with `mode`, parents created).
/// `cluster_name` names the cluster, the user and the context.
pub fn write_kubeconfig(
    path: &Path,
    mode: u32,
    cluster_name: &str,
    server_url: &str,
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<(), PkiError> {
    let config = Kubeconfig::new(
        cluster_name,
        server_url,
        ca_pem,
        client_cert_pem,
        client_key_pem,
    );
    let yaml = serde_yaml::to_string(&config)?;
    write_atomic(path, yaml.as_bytes(), mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn kubeconfig_round_trips_with_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("etc/rkube/rkube.yaml");
        write_kubeconfig(
            &path,
            0o600,
            "default",
            "https://127.0.0.1:6443",
            "CA PEM",
            "CERT PEM",
            "KEY PEM",
        )
        .expect("write");
        let meta = std::fs::metadata(&path).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);

        let text = std::fs::read_to_string(&path).expect("read");
        let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Config");
        assert_eq!(v["current-context"], "default");
        assert_eq!(v["clusters"][0]["name"], "default");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        let ca = v["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .expect("ca data");
        assert_eq!(BASE64.decode(ca).expect("b64"), b"CA PEM");
        assert_eq!(v["users"][0]["name"], "default");
        let key = v["users"][0]["user"]["client-key-data"]
            .as_str()
            .expect("key");
        assert_eq!(BASE64.decode(key).expect("b64"), b"KEY PEM");
        let cert = v["users"][0]["user"]["client-certificate-data"]
            .as_str()
            .expect("cert");
        assert_eq!(BASE64.decode(cert).expect("b64"), b"CERT PEM");
        assert_eq!(v["contexts"][0]["name"], "default");
        assert_eq!(v["contexts"][0]["context"]["cluster"], "default");
        assert_eq!(v["contexts"][0]["context"]["user"], "default");

        let typed: Kubeconfig = serde_yaml::from_str(&text).expect("typed");
        assert_eq!(
            typed,
            Kubeconfig::new(
                "default",
                "https://127.0.0.1:6443",
                "CA PEM",
                "CERT PEM",
                "KEY PEM"
            )
        );
    }
}
