//! Cluster CA, serving and client certificates, kubeconfig files.
//!
//! `rkube server` keeps its TLS material under `<data-dir>/server/tls/` ([`ClusterPki`]),
//! writes kubeconfigs for kubectl ([`write_kubeconfig`]) and authenticates clients by
//! certificate or static token ([`user_from_client_cert`], [`TokenFile`]). Building rustls
//! configs from these PEM strings is the apiserver's job, not this crate's.

mod authn;
mod cluster;
mod error;
mod fsutil;
mod issue;
mod join;
mod kubeconfig;
mod sans;
mod service_account;

pub use authn::{user_from_client_cert, TokenFile, UserInfo, AUTHENTICATED_GROUP};
pub use cluster::{
    ClusterPki, ADMIN_CERT_FILE, ADMIN_KEY_FILE, ADMIN_USER, APISERVER_CN, CA_CERT_FILE,
    CA_KEY_FILE, MASTERS_GROUP, SERVING_CERT_FILE, SERVING_KEY_FILE,
};
pub use error::PkiError;
pub use fsutil::write_atomic;
pub use join::{ca_cert_hash, generate_token};
pub use kubeconfig::{write_kubeconfig, Kubeconfig};
pub use sans::{default_sans, ServingSans, KUBERNETES_SERVICE_NAMES};
pub use service_account::{
    BoundRef, Claims, KubernetesClaims, ServiceAccountKey, TokenError, ISSUER,
    SERVICE_ACCOUNT_KEY_FILE,
};
