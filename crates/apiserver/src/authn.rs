//! Authentication: a verified client certificate (CN = user, O = groups), a bearer token
//! from the static token file, or a service-account token (a JWT signed with the cluster's
//! service-account key). Anonymous requests are refused.
//!
//! A service-account token is only as good as the objects it names: once its signature
//! and times check out, [`service_account_user`] confirms that the ServiceAccount (and the
//! Pod, Secret or Node it is bound to) still exists with the uid in the token, as
//! upstream's legacy-lookup-free validator does.

use std::sync::Arc;

use http::HeaderMap;
use pki::{BoundRef, Claims, ServiceAccountKey, TokenFile, UserInfo};
use registry::Registry;
use serde_json::Value;

pub struct Authenticator {
    pub tokens: Option<TokenFile>,
    /// Signs and checks service-account tokens; `None` turns them off.
    pub service_accounts: Option<Arc<ServiceAccountKey>>,
    /// Audiences the API server accepts (`--api-audiences`; default the issuer).
    pub audiences: Vec<String>,
}

/// What a request's credentials say before any object is looked up.
pub enum Credential {
    User(UserInfo),
    ServiceAccount(Claims),
}

impl Authenticator {
    pub fn new(
        tokens: Option<TokenFile>,
        service_accounts: Option<Arc<ServiceAccountKey>>,
    ) -> Authenticator {
        Authenticator {
            tokens,
            service_accounts,
            audiences: vec![pki::ISSUER.to_string()],
        }
    }

    /// `cert_user` is the identity of the TLS client certificate, if one was presented.
    /// A bearer token that is present but invalid fails even with a certificate, as upstream.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        cert_user: Option<&UserInfo>,
    ) -> Option<Credential> {
        if let Some(auth) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            if let Some(token) = auth
                .strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
            {
                return self.authenticate_token(token.trim());
            }
        }
        cert_user.cloned().map(Credential::User)
    }

    /// A bearer token: the static file first, then a service-account JWT.
    pub fn authenticate_token(&self, token: &str) -> Option<Credential> {
        if let Some(user) = self.tokens.as_ref().and_then(|t| t.authenticate(token)) {
            return Some(Credential::User(user));
        }
        let key = self.service_accounts.as_ref()?;
        match key.verify(token, &self.audiences, now_unix()) {
            Ok(claims) => Some(Credential::ServiceAccount(claims)),
            Err(e) => {
                tracing::debug!(error = %e, "bearer token refused");
                None
            }
        }
    }
}

/// Resolves a credential to a user, checking that a service-account token's objects
/// still exist.
pub async fn resolve(registry: &Registry, credential: Option<Credential>) -> Option<UserInfo> {
    match credential? {
        Credential::User(u) => Some(u),
        Credential::ServiceAccount(claims) => service_account_user(registry, &claims).await,
    }
}

/// The service account's user if the ServiceAccount and every object the token is bound
/// to exist with the uids the token names.
pub async fn service_account_user(registry: &Registry, claims: &Claims) -> Option<UserInfo> {
    let ns = &claims.kubernetes.namespace;
    let k = &claims.kubernetes;
    let checks = [
        ("serviceaccounts", Some(&k.serviceaccount), ns.as_str()),
        ("pods", k.pod.as_ref(), ns.as_str()),
        ("secrets", k.secret.as_ref(), ns.as_str()),
        ("nodes", k.node.as_ref(), ""),
    ];
    for (resource, bound, namespace) in checks {
        let Some(bound) = bound else { continue };
        if !exists_with_uid(registry, resource, namespace, bound).await {
            tracing::debug!(resource, name = %bound.name, "service-account token names an object that is gone");
            return None;
        }
    }
    Some(claims.user())
}

async fn exists_with_uid(
    registry: &Registry,
    resource: &str,
    namespace: &str,
    bound: &BoundRef,
) -> bool {
    let Some(served) = registry.lookup("", "v1", resource) else {
        return false;
    };
    match served.store.get(namespace, &bound.name).await {
        Ok(obj) => {
            let uid = obj
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("");
            bound.uid.is_empty() || uid == bound.uid
        }
        Err(_) => false,
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
