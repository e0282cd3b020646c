//! Service-account tokens end to end with stock kubectl: `kubectl create token` issues a
//! JWT through the TokenRequest API, the API server authenticates it as the service
//! account, and it stops working when the account (or the object it is bound to) goes.

use crate::common;

use common::*;

fn whoami(r: &Rkube, token: &str) -> std::process::Output {
    r.kubectl(&[
        "--token",
        token,
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
    ])
}

#[test]
fn service_account_tokens_authenticate_until_their_objects_are_gone() {
    let r = Rkube::start();
    let err = r.k_err(&["create", "token", "nobody"]);
    assert!(
        err.contains("serviceaccounts \"nobody\" not found"),
        "{err}"
    );

    r.k(&["create", "serviceaccount", "builder"]);
    let token = r.k(&["create", "token", "builder"]).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let out = whoami(&r, &token);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("system:serviceaccount:default:builder "),
        "{text}"
    );
    assert!(text.contains("system:serviceaccounts:default"), "{text}");

    // A tampered token and one from a too-short request are refused as upstream does.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let out = whoami(&r, &forged);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = r.k_err(&["create", "token", "builder", "--duration=5m"]);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );

    // Bound to a pod: deleting the pod ends the token.
    r.k(&["run", "holder", "--image=nginx:1.17", "--restart=Never"]);
    let bound = r
        .k(&[
            "create",
            "token",
            "builder",
            "--bound-object-kind=Pod",
            "--bound-object-name=holder",
        ])
        .trim()
        .to_string();
    assert!(whoami(&r, &bound).status.success());
    r.k(&["delete", "pod", "holder", "--grace-period=0", "--force"]);
    eventually(
        "the pod-bound token is refused",
        std::time::Duration::from_secs(30),
        || (!whoami(&r, &bound).status.success()).then_some(()),
    );

    // Deleting the account ends its tokens.
    r.k(&["delete", "serviceaccount", "builder"]);
    let out = whoami(&r, &token);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("You must be logged in to the server"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
