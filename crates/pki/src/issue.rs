//! Issuing and inspecting certificates: the self-signed cluster CA and the leaves it signs.
//!
//! Keys are ECDSA P-256 (PKCS#8 PEM), which rustls, Go's crypto/tls (kubectl) and openssl all
//! accept. Validity periods follow k3s: a 10-year CA, 1-year leaves renewed on start-up once
//! they are within 90 days of expiry.
//!
//! rcgen keeps at most one value per attribute type in a subject, but Kubernetes encodes a
//! user's groups as repeated `O` attributes. For more than one organization the subject is
//! re-encoded by hand and the TBSCertificate re-signed ([`replace_subject`]).

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SigningKey,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::{PkiError, ServingSans};

pub(crate) const CA_VALIDITY: Duration = Duration::days(3650);
pub(crate) const LEAF_VALIDITY: Duration = Duration::days(365);
/// Leaves closer than this to expiry are re-issued when the server starts.
pub(crate) const RENEW_BEFORE: Duration = Duration::days(90);
/// Certificates start an hour in the past so that a node whose clock lags accepts them.
const BACKDATE: Duration = Duration::hours(1);

/// Which extended key usage a leaf gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    ServerAuth,
    ClientAuth,
}

/// What to put into a leaf certificate.
pub(crate) struct LeafSpec<'a> {
    pub cn: &'a str,
    pub orgs: &'a [&'a str],
    pub sans: Option<&'a ServingSans>,
    pub usage: Usage,
}

/// The fields of an issued leaf that decide whether it can be kept.
#[derive(Debug, Clone)]
pub(crate) struct LeafInfo {
    pub cn: String,
    pub orgs: Vec<String>,
    pub sans: ServingSans,
    pub not_after: OffsetDateTime,
}

/// Creates a self-signed CA; returns `(cert_pem, key_pem)`.
pub(crate) fn new_ca(now: OffsetDateTime) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("rkube-server-ca@{}", now.unix_timestamp()),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A loaded CA, ready to sign.
pub(crate) struct Signer {
    issuer: Issuer<'static, KeyPair>,
    ca_der: Vec<u8>,
}

impl Signer {
    /// Loads the CA and checks that the key belongs to the certificate and that it can sign.
    pub(crate) fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        now: OffsetDateTime,
    ) -> Result<Self, SignerError> {
        let ca_der = pem_to_der(cert_pem, "CA").map_err(SignerError::Pki)?;
        let key = parse_key(key_pem, "CA").map_err(SignerError::Pki)?;
        {
            let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
                .map_err(|e| SignerError::Pki(PkiError::parse_cert("CA", e)))?;
            if ca.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(SignerError::KeyMismatch);
            }
            if !ca.is_ca() {
                return Err(SignerError::Unusable("not a CA certificate".into()));
            }
            if ca.validity().not_after.timestamp() <= now.unix_timestamp() {
                return Err(SignerError::Unusable(format!(
                    "expired at {}",
                    ca.validity().not_after
                )));
            }
        }
        let issuer = Issuer::from_ca_cert_der(&ca_der.as_slice().into(), key)?;
        Ok(Signer { issuer, ca_der })
    }

    /// Issues a leaf with a fresh key; returns `(cert_pem, key_pem)`.
    pub(crate) fn issue(
        &self,
        spec: &LeafSpec<'_>,
        now: OffsetDateTime,
    ) -> Result<(String, String), PkiError> {
        if spec.cn.is_empty() {
            return Err(PkiError::InvalidSubject(String::new()));
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        // Organization before common name, the order Go's pkix.Name uses.
        if let Some(first) = spec.orgs.first() {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *first);
        }
        params.distinguished_name.push(DnType::CommonName, spec.cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match spec.usage {
            Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        params.serial_number = Some(random_serial());
        if let Some(sans) = spec.sans {
            for name in &sans.dns_names {
                let ia5 = name
                    .as_str()
                    .try_into()
                    .map_err(|_| PkiError::InvalidSan(name.clone()))?;
                params.subject_alt_names.push(SanType::DnsName(ia5));
            }
            for ip in &sans.ips {
                params.subject_alt_names.push(SanType::IpAddress(*ip));
            }
        }
        let cert = params.signed_by(&key, &self.issuer)?;
        let der = if spec.orgs.len() > 1 {
            replace_subject(
                cert.der(),
                &encode_name(spec.cn, spec.orgs),
                self.issuer.key(),
            )?
        } else {
            cert.der().to_vec()
        };
        Ok((der_to_pem(&der), key.serialize_pem()))
    }

    /// Parses a leaf and checks that this CA signed it and that `key_pem` is its key.
    /// The error is a human-readable reason to re-issue.
    pub(crate) fn inspect_leaf(&self, cert_pem: &str, key_pem: &str) -> Result<LeafInfo, String> {
        let der = pem_to_der(cert_pem, "leaf").map_err(|e| e.to_string())?;
        let (_, leaf) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| format!("unparsable: {e}"))?;
        let (_, ca) = x509_parser::parse_x509_certificate(&self.ca_der)
            .map_err(|e| format!("CA unparsable: {e}"))?;
        if leaf.issuer().as_raw() != ca.subject().as_raw()
            || leaf.verify_signature(Some(ca.public_key())).is_err()
        {
            return Err("not signed by the current CA".into());
        }
        let key = parse_key(key_pem, "leaf").map_err(|e| e.to_string())?;
        if leaf.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err("key does not match certificate".into());
        }
        leaf_info(&leaf).map_err(|e| e.to_string())
    }
}

/// Why a CA could not be loaded; mapped to [`PkiError`] by the caller, which knows the paths.
#[derive(Debug)]
pub(crate) enum SignerError {
    KeyMismatch,
    Unusable(String),
    Pki(PkiError),
}

impl From<rcgen::Error> for SignerError {
    fn from(e: rcgen::Error) -> Self {
        SignerError::Pki(e.into())
    }
}

pub(crate) fn leaf_info(cert: &X509Certificate<'_>) -> Result<LeafInfo, PkiError> {
    let attr_strings =
        |iter: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
            iter.map(|a| a.as_str().map(str::to_owned))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PkiError::parse_cert("subject", e))
        };
    let cn = attr_strings(&mut cert.subject().iter_common_name())?
        .pop()
        .unwrap_or_default();
    let orgs = attr_strings(&mut cert.subject().iter_organization())?;
    let mut sans = ServingSans::default();
    let san_ext = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::parse_cert("subjectAltName", e))?;
    if let Some(ext) = san_ext {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(dns) => sans.push_dns(dns),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        sans.push_ip(v4.into());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        sans.push_ip(v6.into());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(LeafInfo {
        cn,
        orgs,
        sans,
        not_after: cert.validity().not_after.to_datetime(),
    })
}

/// The DER of the first `CERTIFICATE` block in `pem`.
pub(crate) fn pem_to_der(pem: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| PkiError::parse_cert(what, e))?;
    if block.label != "CERTIFICATE" {
        return Err(PkiError::parse_cert(
            what,
            format!("expected a CERTIFICATE PEM block, found {:?}", block.label),
        ));
    }
    Ok(block.contents)
}

fn parse_key(key_pem: &str, what: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(key_pem).map_err(|e| PkiError::ParseKey {
        what: what.into(),
        reason: e.to_string(),
    })
}

fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A random 16-byte serial. The first byte is forced into 0x40..=0x7f: positive (no sign byte
/// needed) and non-zero (DER would otherwise shorten it).
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

// --- minimal DER, only what re-encoding a subject needs ---------------------------------------

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_BIT_STRING: u8 = 0x03;
const OID_COMMON_NAME: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
const OID_ORGANIZATION: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x0a];

fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// Length of the header and of the content of the TLV at the start of `der`.
fn tlv_lengths(der: &[u8]) -> Option<(usize, usize)> {
    let first = *der.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let len = der
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Some((2 + n, len))
}

/// A Name with one RDN per organization, then the common name.
fn encode_name(cn: &str, orgs: &[&str]) -> Vec<u8> {
    let mut rdns = Vec::new();
    let attrs = orgs
        .iter()
        .map(|o| (OID_ORGANIZATION, *o))
        .chain(std::iter::once((OID_COMMON_NAME, cn)));
    for (oid, value) in attrs {
        let mut atv = oid.to_vec();
        push_tlv(&mut atv, TAG_UTF8_STRING, value.as_bytes());
        let mut seq = Vec::new();
        push_tlv(&mut seq, TAG_SEQUENCE, &atv);
        push_tlv(&mut rdns, TAG_SET, &seq);
    }
    let mut name = Vec::new();
    push_tlv(&mut name, TAG_SEQUENCE, &rdns);
    name
}

/// Swaps the subject of `cert_der` for `subject` and re-signs with `ca_key`.
///
/// TBSCertificate ::= SEQUENCE { [0] version, serialNumber, signature, issuer, validity,
/// subject, ... } — the subject is the sixth element.
fn replace_subject(cert_der: &[u8], subject: &[u8], ca_key: &KeyPair) -> Result<Vec<u8>, PkiError> {
    let malformed = || PkiError::parse_cert("issued certificate", "malformed DER");
    let (cert_hdr, _) = tlv_lengths(cert_der).ok_or_else(malformed)?;
    let rest = &cert_der[cert_hdr..];
    let (tbs_hdr, tbs_len) = tlv_lengths(rest).ok_or_else(malformed)?;
    let tbs_content = rest.get(tbs_hdr..tbs_hdr + tbs_len).ok_or_else(malformed)?;
    let after_tbs = &rest[tbs_hdr + tbs_len..];

    let mut offset = 0;
    for _ in 0..5 {
        let (h, l) = tlv_lengths(&tbs_content[offset..]).ok_or_else(malformed)?;
        offset += h + l;
    }
    let (sh, sl) =
        tlv_lengths(tbs_content.get(offset..).ok_or_else(malformed)?).ok_or_else(malformed)?;
    let subject_end = offset + sh + sl;
    if tbs_content.first() != Some(&0xa0) || subject_end > tbs_content.len() {
        return Err(malformed());
    }
    let mut new_content = tbs_content[..offset].to_vec();
    new_content.extend_from_slice(subject);
    new_content.extend_from_slice(&tbs_content[subject_end..]);
    let mut new_tbs = Vec::new();
    push_tlv(&mut new_tbs, TAG_SEQUENCE, &new_content);

    let (ah, al) = tlv_lengths(after_tbs).ok_or_else(malformed)?;
    let sig_alg = after_tbs.get(..ah + al).ok_or_else(malformed)?;
    let signature = ca_key.sign(&new_tbs)?;
    let mut bits = vec![0u8]; // no unused bits
    bits.extend_from_slice(&signature);

    let mut body = new_tbs;
    body.extend_from_slice(sig_alg);
    push_tlv(&mut body, TAG_BIT_STRING, &bits);
    let mut out = Vec::new();
    push_tlv(&mut out, TAG_SEQUENCE, &body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn signer() -> Signer {
        let (c, k) = new_ca(now()).expect("ca");
        match Signer::from_pem(&c, &k, now()) {
            Ok(s) => s,
            Err(e) => panic!("signer: {e:?}"),
        }
    }

    #[test]
    fn tlv_lengths_short_and_long_forms() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let mut out = Vec::new();
            push_tlv(&mut out, TAG_SEQUENCE, &vec![0u8; len]);
            let (h, l) = tlv_lengths(&out).expect("lengths");
            assert_eq!(l, len);
            assert_eq!(h + l, out.len());
        }
    }

    #[test]
    fn leaf_with_many_orgs_parses_and_verifies() {
        let s = signer();
        let orgs = ["system:masters", "team-a", "team-b"];
        let spec = LeafSpec {
            cn: "alice",
            orgs: &orgs,
            sans: None,
            usage: Usage::ClientAuth,
        };
        let (cert, key) = s.issue(&spec, now()).expect("issue");
        let info = s.inspect_leaf(&cert, &key).expect("inspect");
        assert_eq!(info.cn, "alice");
        assert_eq!(info.orgs, orgs);
    }

    #[test]
    fn inspect_rejects_foreign_ca_and_wrong_key() {
        let a = signer();
        let b = signer();
        let spec = LeafSpec {
            cn: "x",
            orgs: &[],
            sans: None,
            usage: Usage::ClientAuth,
        };
        let (cert, key) = a.issue(&spec, now()).expect("issue");
        let (_, other_key) = a.issue(&spec, now()).expect("issue");
        assert!(a.inspect_leaf(&cert, &key).is_ok());
        assert!(b.inspect_leaf(&cert, &key).is_err());
        assert!(a.inspect_leaf(&cert, &other_key).is_err());
    }

    #[test]
    fn signer_rejects_mismatched_key() {
        let (c, _) = new_ca(now()).expect("ca");
        let (_, k) = new_ca(now()).expect("ca");
        assert!(matches!(
            Signer::from_pem(&c, &k, now()),
            Err(SignerError::KeyMismatch)
        ));
    }
}
