//! Service-account tokens: JSON Web Tokens signed with the cluster's service-account key
//! (ES256, P-256), as kube-apiserver issues them for the TokenRequest API and projected
//! token volumes.
//!
//! The key lives next to the other TLS material (`service.key`, PKCS#8 PEM, as k3s keeps
//! it) and is created on first start. This module only signs and checks signatures and
//! times; whether the service account (and the pod a token is bound to) still exists is
//! the API server's check, since only it can read objects.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil::write_atomic;
use crate::{PkiError, UserInfo, AUTHENTICATED_GROUP};

/// File name of the signing key inside the TLS directory.
pub const SERVICE_ACCOUNT_KEY_FILE: &str = "service.key";
/// `iss` of every token, and the default audience (upstream's `--service-account-issuer`
/// default on k3s and kubeadm clusters).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Prefix of service-account user names.
pub const USER_PREFIX: &str = "system:serviceaccount:";

/// An object a token is bound to (`kubernetes.io.pod`, `.secret`, `.node`, `.serviceaccount`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundRef {
    pub name: String,
    pub uid: String,
}

/// The private `kubernetes.io` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: BoundRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<BoundRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<BoundRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<BoundRef>,
}

/// The claims of a service-account token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
    pub nbf: i64,
    pub sub: String,
}

impl Claims {
    /// Claims for `namespace/name` (uid `uid`) valid from `now` for `seconds`.
    pub fn new(
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: Vec<String>,
        now: i64,
        seconds: i64,
    ) -> Claims {
        Claims {
            aud: audiences,
            exp: now + seconds,
            iat: now,
            iss: ISSUER.to_string(),
            jti: random_id(),
            kubernetes: KubernetesClaims {
                namespace: namespace.to_string(),
                serviceaccount: BoundRef {
                    name: name.to_string(),
                    uid: uid.to_string(),
                },
                ..KubernetesClaims::default()
            },
            nbf: now,
            sub: format!("{USER_PREFIX}{namespace}:{name}"),
        }
    }

    /// The user the token authenticates as, with upstream's groups.
    pub fn user(&self) -> UserInfo {
        let ns = &self.kubernetes.namespace;
        UserInfo {
            name: format!("{USER_PREFIX}{ns}:{}", self.kubernetes.serviceaccount.name),
            uid: self.kubernetes.serviceaccount.uid.clone(),
            groups: vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
                AUTHENTICATED_GROUP.to_string(),
            ],
        }
    }
}

/// Why a token was refused (kept for logs; clients only ever see 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a JWT")]
    Malformed,
    #[error("unsupported signing algorithm or key")]
    UnknownKey,
    #[error("invalid signature")]
    BadSignature,
    #[error("token issued by {0:?}")]
    WrongIssuer(String),
    #[error("token audiences do not include an accepted one")]
    WrongAudience,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
}

/// The service-account signing key.
pub struct ServiceAccountKey {
    pair: EcdsaKeyPair,
    key_id: String,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Loads `dir/service.key`, creating it (mode 0600) on first start.
    pub fn load_or_create(dir: &Path) -> Result<ServiceAccountKey, PkiError> {
        let path = dir.join(SERVICE_ACCOUNT_KEY_FILE);
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
                let pem = pair.serialize_pem();
                std::fs::create_dir_all(dir).map_err(|e| PkiError::io("creating", dir, e))?;
                write_atomic(&path, pem.as_bytes(), 0o600)?;
                pem
            }
            Err(e) => return Err(PkiError::io("reading", &path, e)),
        };
        Self::from_pem(&pem, &path.display().to_string())
    }

    fn from_pem(pem: &str, what: &str) -> Result<ServiceAccountKey, PkiError> {
        let parse_err = |reason: String| PkiError::ParseKey {
            what: what.to_string(),
            reason,
        };
        let pair = rcgen::KeyPair::from_pem(pem).map_err(|e| parse_err(e.to_string()))?;
        let der = pair.serialize_der();
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &der,
            &SystemRandom::new(),
        )
        .map_err(|e| parse_err(format!("not a P-256 PKCS#8 key: {e}")))?;
        // Upstream's key id: the unpadded base64url SHA-256 of the public key.
        let key_id = URL_SAFE_NO_PAD.encode(Sha256::digest(pair.public_key().as_ref()));
        Ok(ServiceAccountKey { pair, key_id })
    }

    /// The `kid` header of tokens signed with this key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs `claims` into a compact JWS.
    pub fn sign(&self, claims: &Claims) -> Result<String, PkiError> {
        let header = serde_json::json!({"alg": "ES256", "kid": self.key_id});
        let signing_input = format!("{}.{}", encode_json(&header)?, encode_json(claims)?);
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| PkiError::ParseKey {
                what: "service-account key".into(),
                reason: "signing failed".into(),
            })?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }

    /// Checks the signature, issuer, audiences (`accepted`) and validity window at `now`
    /// (seconds since the epoch), and returns the claims.
    pub fn verify(&self, token: &str, accepted: &[String], now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::Malformed);
        let header: serde_json::Value =
            serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        if header["alg"] != "ES256" || header.get("kid").is_some_and(|k| k != self.key_id.as_str())
        {
            return Err(TokenError::UnknownKey);
        }
        let signed_len = token.len() - sig.len() - 1;
        UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.pair.public_key().as_ref(),
        )
        .verify(&token.as_bytes()[..signed_len], &decode(sig)?)
        .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims =
            serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Malformed)?;
        if claims.iss != ISSUER {
            return Err(TokenError::WrongIssuer(claims.iss));
        }
        if !claims.aud.iter().any(|a| accepted.contains(a)) {
            return Err(TokenError::WrongAudience);
        }
        // Upstream allows a little clock skew on both ends.
        const LEEWAY: i64 = 60;
        if now > claims.exp + LEEWAY {
            return Err(TokenError::Expired);
        }
        if now + LEEWAY < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

fn encode_json<T: Serialize>(value: &T) -> Result<String, PkiError> {
    let bytes = serde_json::to_vec(value).map_err(|e| PkiError::ParseKey {
        what: "token claims".into(),
        reason: e.to_string(),
    })?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn random_id() -> String {
    use rand::RngCore as _;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        (u16::from_be_bytes([b[6], b[7]]) & 0x0fff) | 0x4000,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (tempfile::TempDir, ServiceAccountKey) {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = ServiceAccountKey::load_or_create(dir.path()).expect("key");
        (dir, key)
    }

    #[test]
    fn tokens_round_trip_and_the_key_survives_restarts() {
        let (dir, key) = key();
        let claims = Claims::new(
            "default",
            "builder",
            "uid-1",
            vec![ISSUER.into()],
            1_000,
            3_600,
        );
        let token = key.sign(&claims).expect("sign");
        let again = ServiceAccountKey::load_or_create(dir.path()).expect("reload");
        assert_eq!(again.key_id(), key.key_id());
        let got = again
            .verify(&token, &[ISSUER.into()], 1_100)
            .expect("verify");
        assert_eq!(got, claims);
        let user = got.user();
        assert_eq!(user.name, "system:serviceaccount:default:builder");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated"
            ]
        );
    }

    #[test]
    fn tampered_expired_and_foreign_tokens_are_refused() {
        let (_dir, key) = key();
        let claims = Claims::new("default", "a", "u", vec!["api".into()], 1_000, 600);
        let token = key.sign(&claims).expect("sign");
        assert_eq!(
            key.verify(&token, &["other".into()], 1_000),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            key.verify(&token, &["api".into()], 1_000 + 600 + 61),
            Err(TokenError::Expired)
        );
        assert_eq!(
            key.verify(&token, &["api".into()], 1_000 - 61),
            Err(TokenError::NotYetValid)
        );
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut forged = claims.clone();
        forged.kubernetes.namespace = "kube-system".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        assert_eq!(
            key.verify(&parts.join("."), &["api".into()], 1_000),
            Err(TokenError::BadSignature)
        );
        let (_dir2, other) = self::key();
        assert_eq!(
            other.verify(&token, &["api".into()], 1_000),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            key.verify("abc", &["api".into()], 1_000),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn jti_looks_like_a_uuid() {
        let id = random_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
    }
}
