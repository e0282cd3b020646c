//! The one error type of the PKI crate.
//!
//! The crate is small and its operations chain (load a CA, then issue from it, then write a
//! kubeconfig), so a single enum keeps callers' `?` simple.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong creating, loading or using cluster certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("parsing certificate {what}: {reason}")]
    ParseCert { what: String, reason: String },
    #[error("parsing private key {what}: {reason}")]
    ParseKey { what: String, reason: String },
    #[error("CA certificate {} exists but its key {} is missing; restore the key or remove both to create a new CA", cert.display(), key.display())]
    MissingCaKey { cert: PathBuf, key: PathBuf },
    #[error("CA key {} does not belong to CA certificate {}", key.display(), cert.display())]
    CaKeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("CA certificate {} is not usable: {reason}", path.display())]
    UnusableCa { path: PathBuf, reason: String },
    #[error("invalid subject alternative name {0:?}")]
    InvalidSan(String),
    #[error("invalid subject name {0:?}")]
    InvalidSubject(String),
    #[error("client certificate has no common name")]
    NoCommonName,
    #[error("token file {file}: line {line}: {reason}")]
    TokenFile {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("encoding kubeconfig: {0}")]
    Kubeconfig(#[from] serde_yaml::Error),
}

impl PkiError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        PkiError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse_cert(what: impl Into<String>, reason: impl ToString) -> Self {
        PkiError::ParseCert {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
