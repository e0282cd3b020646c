//! Authentication building blocks: X.509 client certificates and static bearer tokens.
//!
//! Mirrors kube-apiserver: a verified client certificate maps CN → user name and each O →
//! group; `--token-auth-file` is a CSV of `token,user,uid[,"group1,group2"]`. Both add
//! `system:authenticated`, which upstream's authenticator union adds to every authenticated
//! user.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::PkiError;

/// Group every authenticated user is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// An authenticated user (Kubernetes `user.Info`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    fn with_authenticated_group(mut self) -> Self {
        if !self.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            self.groups.push(AUTHENTICATED_GROUP.to_owned());
        }
        self
    }
}

/// The user named by a client certificate (DER). The chain must already have been verified
/// by the TLS layer; this only reads the subject. With several CNs the last one wins, as in
/// Go's `pkix.Name`.
pub fn user_from_client_cert(der: &[u8]) -> Result<UserInfo, PkiError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::parse_cert("client", e))?;
    let info = crate::issue::leaf_info(&cert)?;
    if info.cn.is_empty() {
        return Err(PkiError::NoCommonName);
    }
    Ok(UserInfo {
        name: info.cn,
        uid: String::new(),
        groups: info.orgs,
    }
    .with_authenticated_group())
}

/// A static token file (`--token-auth-file`).
///
/// Only SHA-256 digests of the tokens are kept, and a lookup compares against every entry in
/// constant time, so neither memory dumps nor response timing reveal tokens.
#[derive(Debug, Clone, Default)]
pub struct TokenFile {
    entries: Vec<([u8; 32], UserInfo)>,
}

impl TokenFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<TokenFile, PkiError> {
        let text = std::fs::read_to_string(path).map_err(|e| PkiError::io("reading", path, e))?;
        TokenFile::parse(&path.display().to_string(), &text)
    }

    /// Parses CSV text; `file` only labels errors. Blank lines and lines starting with `#`
    /// are skipped, as are rows with an empty token (upstream warns and skips them). A row
    /// needs at least token, user and uid; the optional fourth column is a comma-separated
    /// group list, quoted when it has more than one group. A repeated token maps to its last row.
    pub fn parse(file: &str, text: &str) -> Result<TokenFile, PkiError> {
        let mut entries = Vec::new();
        for (idx, line) in text.lines().enumerate() {
            let line_no = idx + 1;
            let err = |reason: String| PkiError::TokenFile {
                file: file.to_owned(),
                line: line_no,
                reason,
            };
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let fields = split_csv_line(line).map_err(err)?;
            if fields.len() < 3 {
                return Err(err(format!(
                    "must have at least 3 columns (token, user name, user uid), found {}",
                    fields.len()
                )));
            }
            if fields[0].is_empty() {
                continue;
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let user = UserInfo {
                name: fields[1].clone(),
                uid: fields[2].clone(),
                groups,
            };
            let digest = digest(&fields[0]);
            entries.retain(|(d, _)| *d != digest);
            entries.push((digest, user.with_authenticated_group()));
        }
        Ok(TokenFile { entries })
    }

    /// The user `token` belongs to, if any.
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        let wanted = digest(token);
        let mut found = None;
        // No early exit: the time taken must not depend on which entry matched.
        for (d, user) in &self.entries {
            if constant_time_eq(d, &wanted) {
                found = Some(user);
            }
        }
        found.cloned()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits one CSV record (RFC 4180 quoting, `""` escapes a quote; leading and trailing blanks
/// around fields ignored). Quoted fields cannot span lines.
fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ' | '\t')) {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quoted field".into()),
                }
            }
            while matches!(chars.peek(), Some(' ' | '\t')) {
                chars.next();
            }
            match chars.peek() {
                None | Some(',') => {}
                Some(c) => return Err(format!("unexpected {c:?} after quoted field")),
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err("bare \" in unquoted field".into());
                }
                field.push(c);
                chars.next();
            }
            field.truncate(field.trim_end().len());
        }
        fields.push(field);
        match chars.next() {
            Some(',') => continue,
            None => return Ok(fields),
            Some(_) => unreachable!("invariant: fields end at a comma or the end of the line"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_csv_line_cases() {
        let cases: &[(&str, Result<Vec<&str>, ()>)] = &[
            ("a,b,c", Ok(vec!["a", "b", "c"])),
            ("a, b ,c", Ok(vec!["a", "b", "c"])),
            (r#"t,u,1,"g1,g2""#, Ok(vec!["t", "u", "1", "g1,g2"])),
            (r#"t,"u ""x""",1"#, Ok(vec!["t", "u \"x\"", "1"])),
            ("a,,c,", Ok(vec!["a", "", "c", ""])),
            (r#"t,u,1,"g1"#, Err(())),
            (r#"t,u"v,1"#, Err(())),
            (r#"t,"u"x,1"#, Err(())),
        ];
        for (line, want) in cases {
            let got = split_csv_line(line).map_err(|_| ());
            let want = want
                .clone()
                .map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(got, want, "line {line:?}");
        }
    }

    #[test]
    fn token_file_parses_and_authenticates() {
        let text = "\
# comment
secret1,alice,uid-1,\"system:masters,devs\"

secret2,bob,uid-2
secret3,carol,uid-3,ops
,nobody,uid-0
secret2,bob2,uid-22
";
        let tf = TokenFile::parse("tokens.csv", text).expect("parse");
        assert_eq!(tf.len(), 3);
        let alice = tf.authenticate("secret1").expect("alice");
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid, "uid-1");
        assert_eq!(
            alice.groups,
            vec!["system:masters", "devs", AUTHENTICATED_GROUP]
        );
        let carol = tf.authenticate("secret3").expect("carol");
        assert_eq!(carol.groups, vec!["ops", AUTHENTICATED_GROUP]);
        let bob = tf.authenticate("secret2").expect("bob");
        assert_eq!((bob.name.as_str(), bob.groups.len()), ("bob2", 1));
        assert_eq!(tf.authenticate("nope"), None);
        assert_eq!(tf.authenticate(""), None);
    }

    #[test]
    fn token_file_errors_name_the_line() {
        let cases = [
            ("tok,user,uid\ntok2,user2\n", 2),
            ("\n\ntok,user,uid,\"g1,g2\n", 3),
            ("onlyone\n", 1),
        ];
        for (text, want_line) in cases {
            match TokenFile::parse("t.csv", text) {
                Err(PkiError::TokenFile { line, file, .. }) => {
                    assert_eq!((line, file.as_str()), (want_line, "t.csv"), "{text:?}")
                }
                other => panic!("{text:?}: expected a token file error, got {other:?}"),
            }
        }
    }

    #[test]
    fn token_file_load_reports_missing_file() {
        let err = TokenFile::load(Path::new("/nonexistent/tokens.csv")).expect_err("missing");
        assert!(matches!(err, PkiError::Io { .. }));
    }
}
