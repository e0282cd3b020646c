//! End-to-end kubectl suite: the real `rkube server` driven by stock `/usr/bin/kubectl`
//! (and `curl` for what kubectl cannot send), asserting on the text a user sees.
//! Each test starts its own server so the tests run in parallel.

use crate::common;

use std::time::Duration;

use common::{eventually, fixture, Rkube};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// Collapses runs of whitespace so table rows compare independently of column widths.
fn squash(s: &str) -> String {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[track_caller]
fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

#[track_caller]
fn assert_not_contains(haystack: &str, needle: &str) {
    assert!(
        !haystack.contains(needle),
        "did not expect {needle:?} in:\n{haystack}"
    );
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}):\n{s}"))
}

fn p(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// A Deployment, Service, ConfigMap and Secret in one file.
const WEB_STACK: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
          name: http
---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    app: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 8080
    targetPort: http
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  labels:
    app: web
data:
  greeting: hello
  mode: production
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
  labels:
    app: web
type: Opaque
stringData:
  password: s3cr3t
"#;

#[test]
fn discovery_version_cluster_info_and_health() {
    let r = Rkube::start();

    let version = r.k(&["version"]);
    assert_contains(&version, "Server Version: v1.33");

    // The kubernetes Service points at this API server.
    let endpoints = squash(&r.k(&["get", "endpoints", "kubernetes"]));
    assert_contains(&endpoints, &format!("kubernetes 127.0.0.1:{}", r.port));
    let slice = r.k(&[
        "get",
        "endpointslice",
        "kubernetes",
        "-o",
        "jsonpath={.endpoints[0].addresses[0]} {.ports[0].port}",
    ]);
    assert_eq!(slice, format!("127.0.0.1 {}", r.port));

    let resources = squash(&r.k(&["api-resources"]));
    assert_contains(&resources, "NAME SHORTNAMES APIVERSION NAMESPACED KIND");
    assert_contains(&resources, "deployments deploy apps/v1 true Deployment");
    assert_contains(&resources, "pods po v1 true Pod");
    assert_contains(&resources, "namespaces ns v1 false Namespace");
    assert_contains(
        &resources,
        "customresourcedefinitions crd,crds apiextensions.k8s.io/v1 false CustomResourceDefinition",
    );
    let namespaced = r.k(&["api-resources", "--namespaced=false", "-o", "name"]);
    assert!(
        namespaced.lines().any(|l| l == "namespaces"),
        "{namespaced}"
    );
    assert!(!namespaced.lines().any(|l| l == "pods"), "{namespaced}");

    let versions: Vec<String> = r.k(&["api-versions"]).lines().map(str::to_string).collect();
    for v in [
        "v1",
        "apps/v1",
        "batch/v1",
        "apiextensions.k8s.io/v1",
        "rbac.authorization.k8s.io/v1",
    ] {
        assert!(
            versions.iter().any(|l| l == v),
            "{v} missing from api-versions: {versions:?}"
        );
    }

    let info = r.k(&["cluster-info"]);
    assert_contains(
        &info,
        &format!(
            "Kubernetes control plane is running at https://127.0.0.1:{}",
            r.port
        ),
    );

    let ns = squash(&r.k(&["get", "ns"]));
    assert_contains(&ns, "NAME STATUS AGE");
    for name in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert_contains(&ns, &format!("{name} Active"));
    }
    let names = r.k(&["get", "ns", "-o", "name"]);
    assert_contains(&names, "namespace/kube-system");

    let explain = r.k(&["explain", "pods.spec.containers"]);
    assert_contains(&explain, "KIND:       Pod");
    assert_contains(&explain, "FIELD: containers <[]Container>");
    assert_contains(&explain, "image\t<string>");
    let explain = r.k(&["explain", "deployment.spec.replicas"]);
    assert_contains(&explain, "FIELD: replicas <integer>");

    let readyz = r.k(&["get", "--raw", "/readyz?verbose"]);
    assert_eq!(
        readyz.trim_end().lines().last(),
        Some("readyz check passed"),
        "{readyz}"
    );
    assert_contains(&readyz, "[+]ping ok");
    let livez = r.k(&["get", "--raw", "/livez"]);
    assert_eq!(livez.trim(), "ok");
    let metrics = r.k(&["get", "--raw", "/metrics"]);
    assert_contains(&metrics, "apiserver_request_total");
    let raw_version = json(&r.k(&["get", "--raw", "/version"]));
    assert_eq!(raw_version["major"], "1");
}

#[test]
fn apply_multi_document_files_and_get_in_every_output_format() {
    let r = Rkube::start();
    let out = r.k(&["apply", "-f", &fixture("nginx-server-with-services.yaml")]);
    for line in [
        "deployment.apps/nginx-server created",
        "service/nginx-service created",
        "service/nginx-lb created",
    ] {
        assert_contains(&out, line);
    }
    let stack = r.write("web-stack.yaml", WEB_STACK);
    let out = r.k(&["apply", "-f", p(&stack)]);
    for line in [
        "deployment.apps/web created",
        "service/web created",
        "configmap/web-config created",
        "secret/web-secret created",
    ] {
        assert_contains(&out, line);
    }
    // Applying the same files again changes nothing. (A Secret with stringData always
    // reports "configured": its last-applied stringData never appears in the live object,
    // so kubectl sends a non-empty patch, as against kube-apiserver.)
    let out = r.k(&["apply", "-f", p(&stack)]);
    for line in [
        "deployment.apps/web unchanged",
        "service/web unchanged",
        "configmap/web-config unchanged",
        "secret/web-secret configured",
    ] {
        assert_contains(&out, line);
    }

    let wide = squash(&r.k(&["get", "deploy", "nginx-server", "-o", "wide"]));
    assert_contains(
        &wide,
        "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR",
    );
    let row = wide.lines().nth(1).expect("row");
    assert!(row.starts_with("nginx-server "), "{wide}");
    assert!(
        row.ends_with(" nginx-server nginx app=nginx-server"),
        "{wide}"
    );

    let svc = squash(&r.k(&["get", "svc", "-o", "wide"]));
    assert_contains(
        &svc,
        "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR",
    );
    let lb = svc
        .lines()
        .find(|l| l.starts_with("nginx-lb "))
        .unwrap_or_else(|| panic!("{svc}"));
    assert!(
        lb.contains(" LoadBalancer 10.") && lb.contains(" <pending> 80:") && lb.contains("/TCP "),
        "{lb}"
    );
    assert!(lb.ends_with(" app=nginx-server"), "{lb}");
    let web = svc
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("{svc}"));
    assert!(
        web.contains(" ClusterIP 10.") && web.contains(" <none> 8080/TCP "),
        "{web}"
    );

    let yaml = r.k(&["get", "deploy", "nginx-server", "-o", "yaml"]);
    for needle in [
        "apiVersion: apps/v1",
        "kind: Deployment",
        "  name: nginx-server",
        "  replicas: 6",
        "  uid: ",
        "  resourceVersion: ",
    ] {
        assert_contains(&yaml, needle);
    }

    let obj = json(&r.k(&["get", "deploy", "nginx-server", "-o", "json"]));
    assert_eq!(obj["kind"], "Deployment");
    assert_eq!(obj["spec"]["replicas"], 6);
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"],
        "http"
    );
    // Defaults are filled in.
    assert_eq!(obj["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(obj["spec"]["template"]["spec"]["restartPolicy"], "Always");

    assert_eq!(
        r.k(&[
            "get",
            "deploy",
            "nginx-server",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "6"
    );
    assert_eq!(
        r.k(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "nginx:1.27"
    );

    let names = r.k(&["get", "deploy,svc,cm,secret", "-l", "app=web", "-o", "name"]);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [
            "deployment.apps/web",
            "service/web",
            "configmap/web-config",
            "secret/web-secret"
        ],
        "{names}"
    );

    let cm = squash(&r.k(&["get", "cm", "web-config"]));
    assert_contains(&cm, "NAME DATA AGE");
    assert_contains(&cm, "web-config 2 ");
    assert_eq!(
        r.k(&["get", "cm", "web-config", "-o", "jsonpath={.data.greeting}"]),
        "hello"
    );
    // stringData is folded into base64 data.
    let secret = json(&r.k(&["get", "secret", "web-secret", "-o", "json"]));
    assert_eq!(secret["data"]["password"], "czNjcjN0");
    assert!(secret.get("stringData").is_none(), "{secret}");
    let secrets = squash(&r.k(&["get", "secret", "web-secret"]));
    assert_contains(&secrets, "NAME TYPE DATA AGE");
    assert_contains(&secrets, "web-secret Opaque 1 ");

    let all = r.k(&["get", "all"]);
    for needle in [
        "deployment.apps/nginx-server",
        "deployment.apps/web",
        "service/nginx-service",
        "service/nginx-lb",
        "service/web",
        "service/kubernetes",
    ] {
        assert_contains(&all, needle);
    }
    let all_ns = squash(&r.k(&["get", "deploy", "-A"]));
    assert_contains(&all_ns, "NAMESPACE NAME READY UP-TO-DATE AVAILABLE AGE");
    assert_contains(&all_ns, "default web ");

    let yaml_list = r.k(&["get", "cm", "-l", "app=web", "-o", "yaml"]);
    assert_contains(&yaml_list, "kind: List");
    assert_contains(&yaml_list, "name: web-config");
}

const DRIFT_V1: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: drift
  labels:
    app: drift
    tier: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: drift
  template:
    metadata:
      labels:
        app: drift
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: 80
          name: http
        - containerPort: 443
          name: https
"#;

#[test]
fn reapply_drops_removed_fields_and_diff_reports_only_real_changes() {
    let r = Rkube::start();
    let file = r.write("drift.yaml", DRIFT_V1);
    assert_contains(
        &r.k(&["apply", "-f", p(&file)]),
        "deployment.apps/drift created",
    );
    let obj = json(&r.k(&["get", "deploy", "drift", "-o", "json"]));
    assert_eq!(obj["metadata"]["labels"]["tier"], "web");
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Drop the `tier` label and the https port.
    let v2 = DRIFT_V1
        .replace("    tier: web\n", "")
        .replace("        - containerPort: 443\n          name: https\n", "");
    std::fs::write(&file, &v2).expect("write");
    assert_contains(
        &r.k(&["apply", "-f", p(&file)]),
        "deployment.apps/drift configured",
    );
    let obj = json(&r.k(&["get", "deploy", "drift", "-o", "json"]));
    assert!(
        obj["metadata"]["labels"].get("tier").is_none(),
        "label kept: {}",
        obj["metadata"]["labels"]
    );
    assert_eq!(obj["metadata"]["labels"]["app"], "drift");
    let ports = &obj["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert_eq!(ports.as_array().map(Vec::len), Some(1), "{ports}");
    assert_eq!(ports[0]["containerPort"], 80);
    assert_eq!(
        r.k(&[
            "get",
            "deploy",
            "drift",
            "-o",
            "jsonpath={.metadata.labels.tier}"
        ]),
        ""
    );

    // Nothing to change: no output, exit 0.
    let out = r.kubectl(&["diff", "-f", p(&file)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");

    // A change: a unified diff, exit 1.
    std::fs::write(&file, v2.replace("replicas: 1", "replicas: 4")).expect("write");
    let out = r.kubectl(&["diff", "-f", p(&file)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains(&stdout, "-  replicas: 1");
    assert_contains(&stdout, "+  replicas: 4");
    assert_contains(&stdout, "apps.v1.Deployment.default.drift");
    // diff is a dry run: nothing changed on the server.
    assert_eq!(
        r.k(&["get", "deploy", "drift", "-o", "jsonpath={.spec.replicas}"]),
        "1"
    );
}

const SSA: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa
spec:
  replicas: 3
  selector:
    matchLabels:
      app: ssa
  template:
    metadata:
      labels:
        app: ssa
    spec:
      containers:
      - name: web
        image: nginx
"#;

#[test]
fn server_side_apply_conflicts_with_client_side_apply_until_forced() {
    let r = Rkube::start();
    let csa = r.write("ssa.yaml", SSA);
    assert_contains(
        &r.k(&["apply", "-f", p(&csa)]),
        "deployment.apps/ssa created",
    );
    let five = r.write("ssa5.yaml", &SSA.replace("replicas: 3", "replicas: 5"));

    let err = r.k_err(&[
        "apply",
        "--server-side",
        "--field-manager=e2e",
        "-f",
        p(&five),
    ]);
    assert_contains(
        &err,
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas",
    );
    assert_eq!(
        r.k(&["get", "deploy", "ssa", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );

    let out = r.k(&[
        "apply",
        "--server-side",
        "--field-manager=e2e",
        "--force-conflicts",
        "-f",
        p(&five),
    ]);
    assert_contains(&out, "deployment.apps/ssa serverside-applied");
    assert_eq!(
        r.k(&["get", "deploy", "ssa", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );
    let managers = r.k(&[
        "get",
        "deploy",
        "ssa",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
        "--show-managed-fields",
    ]);
    assert_contains(&managers, "e2e");
    assert_contains(&managers, "kubectl-client-side-apply");

    // Re-applying the same configuration as the owner is conflict-free.
    let out = r.k(&[
        "apply",
        "--server-side",
        "--field-manager=e2e",
        "-f",
        p(&five),
    ]);
    assert_contains(&out, "deployment.apps/ssa serverside-applied");
    // A fresh object through server-side apply only.
    let fresh = r.write("fresh.yaml", &SSA.replace("name: ssa", "name: fresh"));
    assert_contains(
        &r.k(&["apply", "--server-side", "-f", p(&fresh)]),
        "deployment.apps/fresh serverside-applied",
    );
    assert_eq!(
        r.k(&["get", "deploy", "fresh", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
}

const TWO_CONTAINERS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: two
  labels:
    app: two
spec:
  replicas: 1
  selector:
    matchLabels:
      app: two
  template:
    metadata:
      labels:
        app: two
    spec:
      containers:
      - name: web
        image: nginx:1.25
      - name: sidecar
        image: busybox:1.36
        command: ["sleep", "infinity"]
"#;

fn images(r: &Rkube) -> String {
    r.k(&[
        "get",
        "deploy",
        "two",
        "-o",
        "jsonpath={range .spec.template.spec.containers[*]}{.name}={.image} {end}",
    ])
    .trim()
    .to_string()
}

#[test]
fn label_annotate_patch_edit_and_scale() {
    let r = Rkube::start();
    let file = r.write("two.yaml", TWO_CONTAINERS);
    r.k(&["apply", "-f", p(&file)]);

    // label: add, refuse to overwrite, overwrite, select, remove.
    assert_contains(
        &r.k(&["label", "deploy", "two", "tier=web"]),
        "deployment.apps/two labeled",
    );
    let err = r.k_err(&["label", "deploy", "two", "tier=db"]);
    assert_contains(
        &err,
        "'tier' already has a value (web), and --overwrite is false",
    );
    assert_contains(
        &r.k(&["label", "deploy", "two", "tier=db", "--overwrite"]),
        "deployment.apps/two labeled",
    );
    let shown = squash(&r.k(&["get", "deploy", "two", "--show-labels"]));
    assert_contains(&shown, "app=two,tier=db");
    assert_eq!(
        r.k(&["get", "deploy", "-l", "tier=db", "-o", "name"])
            .trim(),
        "deployment.apps/two"
    );
    assert_contains(
        &r.k(&["label", "deploy", "two", "tier-"]),
        "deployment.apps/two unlabeled",
    );
    assert_eq!(
        r.k(&["get", "deploy", "two", "-o", "jsonpath={.metadata.labels}"]),
        r#"{"app":"two"}"#
    );

    // annotate: add, overwrite, remove.
    assert_contains(
        &r.k(&["annotate", "deploy", "two", "note=hi"]),
        "deployment.apps/two annotated",
    );
    let err = r.k_err(&["annotate", "deploy", "two", "note=bye"]);
    assert_contains(&err, "--overwrite is false but found the following declared annotation(s): 'note' already has a value (hi)");
    r.k(&["annotate", "deploy", "two", "note=bye", "--overwrite"]);
    assert_eq!(
        r.k(&[
            "get",
            "deploy",
            "two",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ]),
        "bye"
    );
    r.k(&["annotate", "deploy", "two", "note-"]);
    assert_eq!(
        r.k(&[
            "get",
            "deploy",
            "two",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ]),
        ""
    );

    // patch: JSON patch, merge patch, strategic merge patch.
    let out = r.k(&[
        "patch",
        "deploy",
        "two",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#,
    ]);
    assert_contains(&out, "deployment.apps/two patched");
    assert_eq!(
        r.k(&["get", "deploy", "two", "-o", "jsonpath={.spec.replicas}"]),
        "2"
    );
    let err = r.k_err(&[
        "patch",
        "deploy",
        "two",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":7}]"#,
    ]);
    // kubectl renders this 422 (no kind/name in its details) itself.
    assert_contains(&err, "The request is invalid: ");
    assert_contains(&err, "test failed");
    r.k(&[
        "patch",
        "deploy",
        "two",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"merged":"yes"}}}"#,
    ]);
    assert_eq!(
        r.k(&[
            "get",
            "deploy",
            "two",
            "-o",
            "jsonpath={.metadata.labels.merged}"
        ]),
        "yes"
    );
    let out = r.k(&[
        "patch",
        "deploy",
        "two",
        "--type=strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.27"}]}}}}"#,
    ]);
    assert_contains(&out, "deployment.apps/two patched");
    assert_eq!(images(&r), "web=nginx:1.27 sidecar=busybox:1.36");
    // The default patch type for built-ins is strategic, too.
    r.k(&["patch", "deploy", "two", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.37"}]}}}}"#]);
    assert_eq!(images(&r), "web=nginx:1.27 sidecar=busybox:1.37");
    // A merge patch replaces the whole list.
    r.k(&[
        "patch",
        "deploy",
        "two",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.27"}]}}}}"#,
    ]);
    assert_eq!(images(&r), "web=nginx:1.27");
    let out = r.k(&[
        "patch",
        "deploy",
        "two",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":2}}"#,
    ]);
    assert_contains(&out, "deployment.apps/two patched (no change)");
    // A resourceVersion in a patch is a precondition: a stale one conflicts.
    let stale = r.kubectl(&[
        "patch",
        "deploy",
        "two",
        "--type=merge",
        "-p",
        r#"{"metadata":{"resourceVersion":"1","labels":{"stale":"yes"}}}"#,
    ]);
    assert!(!stale.status.success());
    assert_contains(
        &String::from_utf8_lossy(&stale.stderr),
        "Operation cannot be fulfilled on deployments.apps \"two\": the object has been modified; please apply your changes to the latest version and try again",
    );
    let current = r.k(&[
        "get",
        "deploy",
        "two",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    let fresh =
        format!(r#"{{"metadata":{{"resourceVersion":"{current}","labels":{{"fresh":"yes"}}}}}}"#);
    r.k(&["patch", "deploy", "two", "--type=merge", "-p", &fresh]);

    // edit through KUBE_EDITOR and through EDITOR.
    let editor = r.write(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/image: nginx:1.27/image: nginx:1.28/' \"$1\"\n",
    );
    chmod_x(&editor);
    let out = r.kubectl_env(&["edit", "deploy", "two"], &[("KUBE_EDITOR", p(&editor))]);
    assert!(
        out.status.success(),
        "edit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains(
        &String::from_utf8_lossy(&out.stdout),
        "deployment.apps/two edited",
    );
    assert_eq!(images(&r), "web=nginx:1.28");
    let editor2 = r.write(
        "editor2.sh",
        "#!/bin/sh\nsed -i 's/merged: \"yes\"/merged: edited/' \"$1\"\n",
    );
    chmod_x(&editor2);
    let out = r.kubectl_env(&["edit", "deploy", "two"], &[("EDITOR", p(&editor2))]);
    assert!(
        out.status.success(),
        "edit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        r.k(&[
            "get",
            "deploy",
            "two",
            "-o",
            "jsonpath={.metadata.labels.merged}"
        ]),
        "edited"
    );
    // An editor that changes nothing cancels the edit.
    let out = r.kubectl_env(&["edit", "deploy", "two"], &[("KUBE_EDITOR", "true")]);
    assert!(
        out.status.success(),
        "edit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        "Edit cancelled, no changes made.",
    );

    // scale through the scale subresource.
    assert_contains(
        &r.k(&["scale", "deploy", "two", "--replicas=5"]),
        "deployment.apps/two scaled",
    );
    assert_eq!(
        r.k(&["get", "deploy", "two", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );
    let err = r.k_err(&[
        "scale",
        "deploy",
        "two",
        "--replicas=6",
        "--current-replicas=3",
    ]);
    assert_contains(&err, "Expected replicas to be 3, was 5");
    let scale = json(&r.k(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/two/scale",
    ]));
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["selector"], "app=two");
}

fn chmod_x(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `kubectl create secret|configmap|namespace` send protobuf bodies.
#[test]
fn kubectl_create_subcommands_send_protobuf() {
    let r = Rkube::start();
    assert_contains(&r.k(&["create", "ns", "e2e"]), "namespace/e2e created");
    assert_contains(&squash(&r.k(&["get", "ns", "e2e"])), "e2e Active");
    let err = r.k_err(&["create", "ns", "default"]);
    assert_contains(
        &err,
        "Error from server (AlreadyExists): namespaces \"default\" already exists",
    );

    let out = r.k(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "e2e",
        "--from-literal=user=admin",
        "--from-literal=password=pa55",
    ]);
    assert_contains(&out, "secret/creds created");
    assert_eq!(
        r.k(&[
            "get",
            "secret",
            "creds",
            "-n",
            "e2e",
            "-o",
            "jsonpath={.data.user}"
        ]),
        "YWRtaW4="
    );
    assert_eq!(
        r.k(&[
            "get",
            "secret",
            "creds",
            "-n",
            "e2e",
            "-o",
            "jsonpath={.type}"
        ]),
        "Opaque"
    );

    let file = r.write("app.properties", "color=blue\nsize=10\n");
    let out = r.k(&[
        "create",
        "configmap",
        "props",
        "-n",
        "e2e",
        &format!("--from-file={}", p(&file)),
    ]);
    assert_contains(&out, "configmap/props created");
    let cm = json(&r.k(&["get", "cm", "props", "-n", "e2e", "-o", "json"]));
    assert_eq!(cm["data"]["app.properties"], "color=blue\nsize=10\n");

    let out = r.k(&[
        "create",
        "deployment",
        "made",
        "-n",
        "e2e",
        "--image=nginx",
        "--replicas=2",
    ]);
    assert_contains(&out, "deployment.apps/made created");
    assert_eq!(
        r.k(&[
            "get",
            "deploy",
            "made",
            "-n",
            "e2e",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "2"
    );
    let out = r.k(&[
        "create",
        "service",
        "clusterip",
        "made",
        "-n",
        "e2e",
        "--tcp=80:8080",
    ]);
    assert_contains(&out, "service/made created");
}

const WATCHED: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: watched
spec:
  replicas: 1
  selector:
    matchLabels:
      app: watched
  template:
    metadata:
      labels:
        app: watched
    spec:
      containers:
      - name: web
        image: nginx
"#;

const HELD_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: held
  finalizers:
  - e2e.example.com/hold
spec:
  containers:
  - name: c
    image: nginx
"#;

const PLAIN_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: plain
spec:
  containers:
  - name: c
    image: nginx
"#;

#[test]
fn watch_sees_updates_and_deletes() {
    let r = Rkube::start();
    let file = r.write("watched.yaml", WATCHED);
    r.k(&["apply", "-f", p(&file)]);
    let watch = r.spawn_kubectl(&["get", "deploy", "watched", "-w", "--output-watch-events"]);
    let header = squash(&watch.expect_line("EVENT", WAIT));
    assert_eq!(header, "EVENT NAME READY UP-TO-DATE AVAILABLE AGE");
    let added = squash(&watch.expect_line("watched", WAIT));
    assert!(added.starts_with("ADDED watched 0/1 "), "{added}");
    r.k(&["scale", "deploy", "watched", "--replicas=3"]);
    // Controllers may report status first; wait for the row showing the new spec.
    watch.expect_line_where("MODIFIED watched 0/3", WAIT, |l| {
        squash(l).starts_with("MODIFIED watched 0/3 ")
    });
    r.k(&["delete", "deploy", "watched"]);
    let deleted = squash(&watch.expect_line("DELETED", WAIT));
    assert!(deleted.starts_with("DELETED watched "), "{deleted}");
    drop(watch);

    // A watch on a whole collection with JSON output shows each event's object.
    let cm_watch = r.spawn_kubectl(&[
        "get",
        "cm",
        "-w",
        "-o",
        "json",
        "--output-watch-events",
        "--watch-only",
    ]);
    // Give the watch something to report until it is established (it is --watch-only).
    let first = eventually("watch established", WAIT, || {
        r.k(&[
            "apply",
            "-f",
            p(&r.write(
                "cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: seen\n",
            )),
        ]);
        r.k(&[
            "label",
            "cm",
            "seen",
            "--overwrite",
            &format!("tick={}", std::process::id()),
        ]);
        cm_watch.next_line(Duration::from_millis(500))
    });
    assert!(first.starts_with('{'), "{first}");
    r.k(&["delete", "cm", "seen"]);
    cm_watch.expect_line("\"DELETED\"", WAIT);
}

#[test]
fn wait_for_delete_and_delete_from_file() {
    let r = Rkube::start();
    // A pod with no node is deleted at once, without a grace period.
    r.k(&["apply", "-f", p(&r.write("plain.yaml", PLAIN_POD))]);
    assert_contains(
        &squash(&r.k(&["get", "pod", "plain"])),
        "plain 0/1 Pending 0 ",
    );
    let mut waiter = r.spawn_kubectl(&["wait", "--for=delete", "pod/plain", "--timeout=30s"]);
    assert_contains(
        &r.k(&["delete", "pod", "plain", "--wait=false"]),
        "pod \"plain\" deleted",
    );
    let err = r.k_err(&["get", "pod", "plain"]);
    assert_contains(
        &err,
        "Error from server (NotFound): pods \"plain\" not found",
    );
    let (status, _) = waiter.wait_exit(Duration::from_secs(35));
    assert!(
        status.success(),
        "wait --for=delete failed: {}",
        waiter.stderr()
    );

    // A finalizer holds the pod until it is removed; `wait` returns when it is.
    r.k(&["apply", "-f", p(&r.write("held.yaml", HELD_POD))]);
    r.k(&["delete", "pod", "held", "--wait=false"]);
    let ts = r.k(&[
        "get",
        "pod",
        "held",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(!ts.is_empty(), "deletionTimestamp not set");
    let mut waiter = r.spawn_kubectl(&["wait", "--for=delete", "pod/held", "--timeout=30s"]);
    // `wait` must still be waiting while the finalizer is there.
    assert!(
        waiter.next_line(Duration::from_millis(500)).is_none(),
        "wait returned early"
    );
    let out = r.k(&[
        "patch",
        "pod",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert_contains(&out, "pod/held patched");
    assert_not_contains(&out, "no change");
    let (status, out) = waiter.wait_exit(Duration::from_secs(35));
    assert!(
        status.success(),
        "wait --for=delete failed: {}",
        waiter.stderr()
    );
    assert_contains(&out, "pod/held condition met");
    r.k_err(&["get", "pod", "held"]);

    // delete -f removes every object in the file.
    let stack = r.write("web-stack.yaml", WEB_STACK);
    r.k(&["apply", "-f", p(&stack)]);
    let out = r.k(&["delete", "-f", p(&stack)]);
    for line in [
        "deployment.apps \"web\" deleted",
        "service \"web\" deleted",
        "configmap \"web-config\" deleted",
        "secret \"web-secret\" deleted",
    ] {
        assert_contains(&out, line);
    }
    let out = r.kubectl(&["get", "deploy,svc,cm,secret", "-l", "app=web"]);
    assert!(out.status.success());
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        "No resources found in default namespace.",
    );
    let err = r.k_err(&["delete", "-f", p(&stack)]);
    assert_contains(&err, "Error from server (NotFound): error when deleting");
    assert_contains(&r.k(&["delete", "-f", p(&stack), "--ignore-not-found"]), "");
}

const CRONTAB_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                cronSpec:
                  type: string
                image:
                  type: string
                replicas:
                  type: integer
      additionalPrinterColumns:
      - name: Spec
        type: string
        description: The cron spec defining the interval a CronJob is run
        jsonPath: .spec.cronSpec
      - name: Replicas
        type: integer
        description: The number of jobs launched by the CronJob
        jsonPath: .spec.replicas
      - name: Age
        type: date
        jsonPath: .metadata.creationTimestamp
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames:
    - ct
"#;

const CRONTAB: &str = r#"apiVersion: "stable.example.com/v1"
kind: CronTab
metadata:
  name: my-new-cron-object
spec:
  cronSpec: "* * * * */5"
  image: my-awesome-cron-image
"#;

#[test]
fn custom_resource_definition_lifecycle() {
    let r = Rkube::start();
    let crd = r.write("crd.yaml", CRONTAB_CRD);
    assert_contains(
        &r.k(&["apply", "-f", p(&crd)]),
        "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com created",
    );
    let out = r.k(&[
        "wait",
        "--for=condition=Established",
        "crd/crontabs.stable.example.com",
        "--timeout=30s",
    ]);
    assert_contains(
        &out,
        "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com condition met",
    );
    assert_contains(
        &squash(&r.k(&["get", "crd"])),
        "crontabs.stable.example.com ",
    );
    let resources = squash(&r.k(&["api-resources", "--api-group=stable.example.com"]));
    assert_contains(&resources, "crontabs ct stable.example.com/v1 true CronTab");

    let obj = r.write("ct.yaml", CRONTAB);
    assert_contains(
        &r.k(&["apply", "-f", p(&obj)]),
        "crontab.stable.example.com/my-new-cron-object created",
    );
    for what in ["crontabs", "ct", "crontab", "crontabs.stable.example.com"] {
        let table = squash(&r.k(&["get", what]));
        assert_contains(&table, "NAME SPEC REPLICAS AGE");
        assert_contains(&table, "my-new-cron-object * * * * */5 ");
    }
    let got = json(&r.k(&["get", "ct", "my-new-cron-object", "-o", "json"]));
    assert_eq!(got["apiVersion"], "stable.example.com/v1");
    assert_eq!(got["kind"], "CronTab");
    assert_eq!(got["spec"]["image"], "my-awesome-cron-image");
    assert!(!got["metadata"]["uid"].as_str().unwrap_or("").is_empty());

    let out = r.k(&[
        "patch",
        "ct",
        "my-new-cron-object",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":3}}"#,
    ]);
    assert_contains(
        &out,
        "crontab.stable.example.com/my-new-cron-object patched",
    );
    assert_contains(
        &squash(&r.k(&["get", "ct"])),
        "my-new-cron-object * * * * */5 3 ",
    );
    r.k(&[
        "patch",
        "ct",
        "my-new-cron-object",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/image","value":"v2"}]"#,
    ]);
    assert_eq!(
        r.k(&[
            "get",
            "ct",
            "my-new-cron-object",
            "-o",
            "jsonpath={.spec.image}"
        ]),
        "v2"
    );
    // Custom resources have no strategic merge patch.
    let err = r.k_err(&[
        "patch",
        "ct",
        "my-new-cron-object",
        "--type=strategic",
        "-p",
        r#"{"spec":{"replicas":4}}"#,
    ]);
    assert_contains(&err, "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml");

    // Fields outside the schema: rejected on create and on update (kubectl asks for Strict).
    let bogus = r.write(
        "bogus.yaml",
        &CRONTAB
            .replace("my-new-cron-object", "bogus")
            .replace("  image:", "  bogus: 1\n  image:"),
    );
    let err = r.k_err(&["apply", "-f", p(&bogus)]);
    assert_contains(&err, "strict decoding error: unknown field \"spec.bogus\"");
    r.k_err(&["get", "ct", "bogus"]);
    // The same on update: kubectl sends a merge patch for custom resources (it learns from
    // the OpenAPI v3 PATCH operation that strategic merge patch is not accepted).
    let bogus_update = r.write(
        "bogus-update.yaml",
        &CRONTAB.replace("  image:", "  bogus: 1\n  image:"),
    );
    let update_err = r.k_err(&["apply", "-f", p(&bogus_update)]);

    assert_contains(
        &r.k(&["delete", "ct", "my-new-cron-object"]),
        "crontab.stable.example.com \"my-new-cron-object\" deleted",
    );
    let out = r.kubectl(&["get", "ct"]);
    assert!(out.status.success());
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        "No resources found in default namespace.",
    );

    // Deleting the CRD stops serving the resource and removes it from discovery (kubectl's
    // cached discovery may still map the name, then the list itself is a 404).
    r.k(&["apply", "-f", p(&obj)]);
    r.k(&["delete", "-f", p(&crd)]);
    eventually("crontabs no longer served", WAIT, || {
        let out = r.kubectl(&["get", "crontabs"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (!out.status.success()
            && (err.contains("the server doesn't have a resource type \"crontabs\"")
                || err.contains("the server could not find the requested resource")))
        .then_some(())
    });
    let resources = r.k(&[
        "api-resources",
        "--api-group=stable.example.com",
        "-o",
        "name",
    ]);
    assert_eq!(resources.trim(), "", "still discovered: {resources}");
    // Its objects went with it: a re-created CRD starts empty.
    r.k(&["apply", "-f", p(&crd)]);
    r.k(&[
        "wait",
        "--for=condition=Established",
        "crd/crontabs.stable.example.com",
        "--timeout=30s",
    ]);
    let out = r.kubectl(&["get", "crontabs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        "No resources found in default namespace.",
    );
    // Checked last so the steps above still run while this one fails.
    assert_contains(
        &update_err,
        "strict decoding error: unknown field \"spec.bogus\"",
    );
}

const CASCADE: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: doomed
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: one
  namespace: doomed
data:
  a: "1"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: two
  namespace: doomed
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: doomed
spec:
  selector:
    matchLabels:
      app: app
  template:
    metadata:
      labels:
        app: app
    spec:
      containers:
      - name: c
        image: nginx
---
apiVersion: v1
kind: Service
metadata:
  name: app
  namespace: doomed
spec:
  selector:
    app: app
  ports:
  - port: 80
"#;

#[test]
fn namespace_deletion_cascades_to_its_objects() {
    let r = Rkube::start();
    let file = r.write("cascade.yaml", CASCADE);
    let out = r.k(&["apply", "-f", p(&file)]);
    assert_contains(&out, "namespace/doomed created");
    assert_contains(&out, "service/app created");
    let names = r.k(&["get", "cm,deploy,svc", "-n", "doomed", "-o", "name"]);
    for n in [
        "configmap/one",
        "configmap/two",
        "deployment.apps/app",
        "service/app",
    ] {
        assert_contains(&names, n);
    }
    // An object elsewhere survives.
    r.k(&[
        "apply",
        "-f",
        p(&r.write(
            "keep.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n",
        )),
    ]);

    assert_contains(
        &r.k(&["delete", "ns", "doomed", "--wait=false"]),
        "namespace \"doomed\" deleted",
    );
    let err = eventually("namespace doomed gone", WAIT, || {
        let out = r.kubectl(&["get", "ns", "doomed"]);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert_contains(
        &err,
        "Error from server (NotFound): namespaces \"doomed\" not found",
    );
    let out = r.kubectl(&["get", "cm,deploy,svc", "-n", "doomed", "-o", "name"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "objects survived their namespace"
    );
    // Creating into a deleted namespace fails.
    let err = r.k_err(&[
        "apply",
        "-f",
        p(&r.write(
            "orphan.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: orphan\n  namespace: doomed\n",
        )),
    ]);
    assert_contains(&err, "namespaces \"doomed\" not found");
    assert_eq!(
        r.k(&["get", "cm", "keep", "-o", "name"]).trim(),
        "configmap/keep"
    );
    // System namespaces cannot be deleted.
    let err = r.k_err(&["delete", "ns", "kube-system"]);
    assert_contains(&err, "Error from server (Forbidden): namespaces \"kube-system\" is forbidden: this namespace may not be deleted");
}

const CONF: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf\ndata:\n  a: \"1\"\n";

const MISMATCHED_SELECTOR: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad
spec:
  selector:
    matchLabels:
      app: one
  template:
    metadata:
      labels:
        app: two
    spec:
      containers:
      - name: c
        image: nginx
"#;

#[test]
fn kubectl_prints_kube_apiserver_error_texts() {
    let r = Rkube::start();
    let err = r.k_err(&["get", "pod", "x"]);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): pods \"x\" not found"
    );
    let err = r.k_err(&["get", "deploy", "x"]);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): deployments.apps \"x\" not found"
    );
    // After a 404 kubectl checks the namespace and reports that instead.
    let err = r.k_err(&["get", "pod", "x", "-n", "nowhere"]);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): namespaces \"nowhere\" not found"
    );

    let default_ns = r.write(
        "default-ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n",
    );
    let err = r.k_err(&["create", "-f", p(&default_ns)]);
    assert_contains(
        &err,
        "Error from server (AlreadyExists): error when creating",
    );
    assert_contains(&err, "namespaces \"default\" already exists");

    // Conflict: replace with a stale resourceVersion.
    let conf = r.write("conf.yaml", CONF);
    r.k(&["apply", "-f", p(&conf)]);
    let old = r.k(&["get", "cm", "conf", "-o", "yaml"]);
    let old = r.write("old.yaml", &old);
    r.k(&[
        "patch",
        "cm",
        "conf",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ]);
    let err = r.k_err(&["replace", "-f", p(&old)]);
    assert_contains(&err, "Error from server (Conflict): ");
    assert_contains(
        &err,
        "Operation cannot be fulfilled on configmaps \"conf\": the object has been modified; please apply your changes to the latest version and try again",
    );

    // Invalid, with the field path. kubectl formats 422s with details itself.
    let bad = r.write("bad.yaml", MISMATCHED_SELECTOR);
    let err = r.k_err(&["apply", "-f", p(&bad)]);
    assert_contains(
        &err,
        "The Deployment \"bad\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"two\"}: `selector` does not match template `labels`",
    );
    let err = r.k_err(&[
        "create",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments",
        "-f",
        p(&r.write("bad.json", &yaml_deployment_as_json())),
    ]);
    assert_contains(&err, "spec.template.metadata.labels: Invalid value");
    assert_contains(&err, "selector` does not match template `labels`");
    let err = r.k_err(&["run", "Bad_Name", "--image=nginx"]);
    assert_contains(&err, "Invalid value: \"Bad_Name\"");

    // BadRequest: malformed bodies through --raw.
    let truncated = r.write(
        "truncated.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","#,
    );
    let err = r.k_err(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        p(&truncated),
    ]);
    assert_contains(&err, "Error from server (BadRequest): ");
    let err = r.k_err(&[
        "replace",
        "--raw",
        "/api/v1/namespaces/default/configmaps/conf",
        "-f",
        p(&truncated),
    ]);
    assert_contains(&err, "Error from server (BadRequest): ");
    let no_kind = r.write(
        "nokind.json",
        r#"{"apiVersion":"v1","metadata":{"name":"nokind"}}"#,
    );
    let err = r.k_err(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        p(&no_kind),
    ]);
    assert_contains(
        &err,
        "Error from server (BadRequest): Object 'Kind' is missing in",
    );
    let wrong_kind = r.write(
        "wrongkind.json",
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"w"}}"#,
    );
    let err = r.k_err(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        p(&wrong_kind),
    ]);
    assert_contains(&err, "Error from server (BadRequest): ");
    let renamed = r.write(
        "renamed.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other"}}"#,
    );
    let err = r.k_err(&[
        "replace",
        "--raw",
        "/api/v1/namespaces/default/configmaps/conf",
        "-f",
        p(&renamed),
    ]);
    assert_contains(&err, "Error from server (BadRequest): the name of the object (other) does not match the name on the URL (conf)");
    // A good --raw create prints the object.
    let good = r.write(
        "good.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"raw"},"data":{"k":"v"}}"#,
    );
    let out = json(&r.k(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        p(&good),
    ]));
    assert_eq!(out["metadata"]["name"], "raw");
    assert_eq!(r.k(&["get", "cm", "raw", "-o", "jsonpath={.data.k}"]), "v");
}

/// The mismatched-selector Deployment as JSON, for `--raw`.
fn yaml_deployment_as_json() -> String {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad-raw"},
        "spec": {
            "selector": {"matchLabels": {"app": "one"}},
            "template": {
                "metadata": {"labels": {"app": "two"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }
        }
    })
    .to_string()
}

#[test]
fn raw_http_status_codes_and_bodies() {
    let r = Rkube::start();
    let cms = "/api/v1/namespaces/default/configmaps";
    let good = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#;
    let (code, body) = r.curl(
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            good,
        ],
        cms,
    );
    assert_eq!(code, 201, "{body}");

    // 415: a body in a format the server does not read.
    let (code, body) = r.curl(
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: text/plain",
            "--data",
            good,
        ],
        cms,
    );
    assert_eq!(code, 415, "{body}");
    let status = json(&body);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "UnsupportedMediaType");
    assert_contains(
        status["message"].as_str().unwrap_or(""),
        "the body of the request was in an unknown format",
    );
    let (code, body) = r.curl(
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/json",
            "--data",
            "{}",
        ],
        &format!("{cms}/c"),
    );
    assert_eq!(code, 415, "{body}");

    // 405: POST to a named object, PUT and PATCH on a collection.
    for (method, path, ct) in [
        ("POST", format!("{cms}/c"), "application/json"),
        ("PUT", cms.to_string(), "application/json"),
        ("PATCH", cms.to_string(), "application/merge-patch+json"),
    ] {
        let (code, body) = r.curl(
            &[
                "-X",
                method,
                "-H",
                &format!("Content-Type: {ct}"),
                "--data",
                good,
            ],
            &path,
        );
        assert_eq!(code, 405, "{method} {path}: {body}");
        let status = json(&body);
        assert_eq!(status["reason"], "MethodNotAllowed", "{body}");
        assert_eq!(
            status["message"],
            "the server does not allow this method on the requested resource"
        );
    }

    // 413: a body over 3 MiB.
    let big = r.write("big.json", &format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#, "a".repeat(3 * 1024 * 1024 + 16)));
    let (code, body) = r.curl(
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", p(&big)),
        ],
        cms,
    );
    assert_eq!(code, 413, "{}", &body[..body.len().min(300)]);
    assert_eq!(json(&body)["reason"], "RequestEntityTooLarge");

    // 401: no credentials.
    let (code, body) = r.curl_anonymous(&[], "/api/v1/pods");
    assert_eq!(code, 401, "{body}");
    let status = json(&body);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(status["code"], 401);
    // Health endpoints are public.
    let (code, body) = r.curl_anonymous(&[], "/readyz");
    assert_eq!((code, body.as_str()), (200, "ok"));

    // 404 for an unknown resource, with a Status.
    let (code, body) = r.curl(&[], "/api/v1/namespaces/default/widgets");
    assert_eq!(code, 404, "{body}");
    assert_eq!(json(&body)["reason"], "NotFound");
    // 422 body carries the causes with field paths.
    let (code, body) = r.curl(
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            &yaml_deployment_as_json(),
        ],
        "/apis/apps/v1/namespaces/default/deployments",
    );
    assert_eq!(code, 422, "{body}");
    let status = json(&body);
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["kind"], "Deployment");
    let causes = status["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        causes
            .iter()
            .any(|c| c["field"] == "spec.template.metadata.labels"),
        "{body}"
    );
    // YAML bodies are accepted too.
    let (code, body) = r.curl(
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/yaml",
            "--data-binary",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\n",
        ],
        cms,
    );
    assert_eq!(code, 201, "{body}");
}
