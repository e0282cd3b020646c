//! Authentication: a verified client certificate (CN = user, O = groups) or a bearer
//! token from the static token file. Anonymous requests are refused.

use http::HeaderMap;
use pki::{TokenFile, UserInfo};

pub struct Authenticator {
    pub tokens: Option<TokenFile>,
}

impl Authenticator {
    /// `cert_user` is the identity of the TLS client certificate, if one was presented.
    pub fn authenticate(&self, headers: &HeaderMap, cert_user: Option<&UserInfo>) -> Option<UserInfo> {
        if let Some(auth) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            if let Some(token) = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer ")) {
                if let Some(user) = self.tokens.as_ref().and_then(|t| t.authenticate(token.trim())) {
                    return Some(user);
                }
                return None;
            }
        }
        cert_user.cloned()
    }
}
