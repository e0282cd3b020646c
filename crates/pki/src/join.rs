//! Helpers for joining nodes: bootstrap tokens and the CA pin that agents check.

use rand::Rng;
use sha2::{Digest, Sha256};

use crate::issue::pem_to_der;
use crate::PkiError;

const TOKEN_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A fresh bootstrap token in kubeadm's format `[a-z0-9]{6}.[a-z0-9]{16}` (id.secret),
/// drawn from the OS CSPRNG.
pub fn generate_token() -> String {
    let mut rng = rand::rngs::OsRng;
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| char::from(TOKEN_ALPHABET[rng.gen_range(0..TOKEN_ALPHABET.len())]))
            .collect()
    };
    let id = pick(6);
    let secret = pick(16);
    format!("{id}.{secret}")
}

/// `sha256:<hex>` of the CA certificate's SubjectPublicKeyInfo, as kubeadm's
/// `--discovery-token-ca-cert-hash` (the pin survives re-signing the CA with the same key).
pub fn ca_cert_hash(ca_pem: &str) -> Result<String, PkiError> {
    let der = pem_to_der(ca_pem, "CA")?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::parse_cert("CA", e))?;
    let digest = Sha256::digest(cert.public_key().raw);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_kubeadm_shape_and_differ() {
        let t = generate_token();
        let (id, secret) = t.split_once('.').expect("dot");
        assert_eq!(id.len(), 6);
        assert_eq!(secret.len(), 16);
        assert!(t
            .chars()
            .all(|c| c == '.' || c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_ne!(t, generate_token());
    }

    #[test]
    fn ca_cert_hash_rejects_garbage() {
        assert!(ca_cert_hash("not a pem").is_err());
    }
}
