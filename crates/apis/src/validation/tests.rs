//! Table-driven tests through the public entry points: objects are defaulted first, as
//! the registry does, then validated; the most common upstream texts are asserted exactly.

use serde_json::{json, Value};

use super::{validate_create, validate_update};
use crate::defaults;

fn gv(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

fn create_errors(obj: Value) -> Vec<String> {
    let mut obj = obj;
    let (group, version) = gv(obj["apiVersion"].as_str().expect("apiVersion"));
    let (group, version) = (group.to_string(), version.to_string());
    let kind = obj["kind"].as_str().expect("kind").to_string();
    defaults::apply(&group, &version, &kind, &mut obj);
    validate_create(&group, &version, &kind, &obj)
        .iter()
        .map(|e| e.to_string())
        .collect()
}

fn update_errors(old: Value, new: Value) -> Vec<String> {
    let (mut old, mut new) = (old, new);
    let (group, version) = gv(new["apiVersion"].as_str().expect("apiVersion"));
    let (group, version) = (group.to_string(), version.to_string());
    let kind = new["kind"].as_str().expect("kind").to_string();
    defaults::apply(&group, &version, &kind, &mut old);
    defaults::apply(&group, &version, &kind, &mut new);
    validate_update(&group, &version, &kind, &new, &old)
        .iter()
        .map(|e| e.to_string())
        .collect()
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn nginx() -> Value {
    json!({"name": "nginx", "image": "nginx:1.25"})
}

fn deployment(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"}, "spec": spec})
}

fn template(labels: Value) -> Value {
    json!({"metadata": {"labels": labels}, "spec": {"containers": [nginx()]}})
}

/// `(description, object, expected errors; a leading '~' means "contains")`.
fn check(cases: Vec<(&str, Vec<String>, Vec<&str>)>) {
    for (name, got, want) in cases {
        if want.len() == 1 && want[0].starts_with('~') {
            assert!(
                got.iter().any(|g| g.contains(&want[0][1..])),
                "{name}: {got:#?}"
            );
        } else {
            assert_eq!(got, want, "{name}");
        }
    }
}

const SUBDOMAIN_MSG: &str = r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

#[test]
fn pod_create() {
    let sub = format!(r#"metadata.name: Invalid value: "Web": {SUBDOMAIN_MSG}"#);
    check(vec![
        ("valid", create_errors(pod(json!({"containers": [nginx()]}))), vec![]),
        ("no containers", create_errors(pod(json!({}))), vec!["spec.containers: Required value"]),
        (
            "no name",
            create_errors(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "default"}, "spec": {"containers": [nginx()]}})),
            vec!["metadata.name: Required value: name or generateName is required"],
        ),
        (
            "bad name",
            create_errors(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Web", "namespace": "default"}, "spec": {"containers": [nginx()]}})),
            vec![sub.as_str()],
        ),
        ("no image", create_errors(pod(json!({"containers": [{"name": "c"}]}))), vec!["spec.containers[0].image: Required value"]),
        (
            "duplicate container",
            create_errors(pod(json!({"containers": [nginx(), nginx()]}))),
            vec![r#"spec.containers[1].name: Duplicate value: "nginx""#],
        ),
        (
            "bad port",
            create_errors(pod(json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 70000}]}]}))),
            vec!["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"],
        ),
        (
            "bad protocol",
            create_errors(pod(json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "protocol": "HTTP"}]}]}))),
            vec![r#"spec.containers[0].ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#],
        ),
        (
            "restart policy",
            create_errors(pod(json!({"containers": [nginx()], "restartPolicy": "Sometimes"}))),
            vec![r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure""#],
        ),
        (
            "dns policy",
            create_errors(pod(json!({"containers": [nginx()], "dnsPolicy": "Magic"}))),
            vec![r#"spec.dnsPolicy: Unsupported value: "Magic": supported values: "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None""#],
        ),
        (
            "mount of unknown volume",
            create_errors(pod(json!({"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}))),
            vec![r#"spec.containers[0].volumeMounts[0].name: Not found: "data""#],
        ),
        (
            "requests above limits",
            create_errors(pod(json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}))),
            vec![r#"spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1"#],
        ),
        (
            "negative quantity",
            create_errors(pod(json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"memory": "-1"}}}]}))),
            vec![r#"spec.containers[0].resources.requests[memory]: Invalid value: "-1": must be greater than or equal to 0"#],
        ),
        (
            "probe without handler",
            create_errors(pod(json!({"containers": [{"name": "c", "image": "x", "livenessProbe": {}}]}))),
            vec!["spec.containers[0].livenessProbe: Required value: must specify a handler type"],
        ),
        (
            "env var name",
            create_errors(pod(json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A=B"}]}]}))),
            vec![r#"spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#],
        ),
        (
            "toleration without key",
            create_errors(pod(json!({"containers": [nginx()], "tolerations": [{"operator": "Equal", "value": "x"}]}))),
            vec![r#"spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, which means "match all values and all keys""#],
        ),
        (
            "ephemeral containers on create",
            create_errors(pod(json!({"containers": [nginx()], "ephemeralContainers": [{"name": "dbg", "image": "busybox"}]}))),
            vec!["~spec.ephemeralContainers: Forbidden: cannot be set on create"],
        ),
        (
            "wrong type",
            create_errors(pod(json!({"containers": "nginx"}))),
            vec!["~spec.containers: Invalid value"],
        ),
    ]);
}

fn stored_pod(spec: Value) -> Value {
    let mut p = pod(spec);
    p["metadata"]["resourceVersion"] = json!("7");
    p["metadata"]["uid"] = json!("u1");
    p
}

#[test]
fn pod_update() {
    let old = stored_pod(
        json!({"containers": [nginx()], "tolerations": [{"key": "k", "operator": "Exists"}]}),
    );
    let mut image = old.clone();
    image["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    let mut labels = old.clone();
    labels["metadata"]["labels"] = json!({"a": "b"});
    let mut port = old.clone();
    port["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    let mut added = old.clone();
    added["spec"]["containers"] = json!([nginx(), {"name": "side", "image": "x"}]);
    let mut removed_toleration = old.clone();
    removed_toleration["spec"]["tolerations"] = json!([]);
    let mut renamed = old.clone();
    renamed["metadata"]["name"] = json!("other");
    let mut deadline = old.clone();
    deadline["spec"]["activeDeadlineSeconds"] = json!(30);

    check(vec![
        ("image change", update_errors(old.clone(), image), vec![]),
        ("label change", update_errors(old.clone(), labels), vec![]),
        ("deadline set", update_errors(old.clone(), deadline), vec![]),
        (
            "port change",
            update_errors(old.clone(), port),
            vec!["~spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"],
        ),
        ("container added", update_errors(old.clone(), added), vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]),
        (
            "toleration removed",
            update_errors(old.clone(), removed_toleration),
            vec!["~spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"],
        ),
        ("renamed", update_errors(old.clone(), renamed), vec!["~metadata.name: Invalid value: \"other\": field is immutable"]),
    ]);
}

#[test]
fn workloads() {
    let ok = json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))});
    let mismatch = json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "api"}))});
    let no_selector = json!({"template": template(json!({"app": "web"}))});
    let both_zero = json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"})),
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}});
    let negative = json!({"replicas": -1, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))});
    let empty_selector = json!({"selector": {}, "template": template(json!({"app": "web"}))});
    check(vec![
        ("deployment ok", create_errors(deployment(ok.clone())), vec![]),
        (
            "selector mismatch",
            create_errors(deployment(mismatch)),
            vec![r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"api"}: `selector` does not match template `labels`"#],
        ),
        ("selector missing", create_errors(deployment(no_selector)), vec!["spec.selector: Required value"]),
        (
            "empty selector",
            create_errors(deployment(empty_selector)),
            vec!["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"],
        ),
        ("both zero", create_errors(deployment(both_zero)), vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]),
        ("negative replicas", create_errors(deployment(negative)), vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]),
    ]);

    let mut changed = deployment(ok.clone());
    changed["spec"]["selector"] = json!({"matchLabels": {"app": "web2"}});
    changed["spec"]["template"]["metadata"]["labels"] = json!({"app": "web2"});
    check(vec![(
        "selector immutable",
        update_errors(deployment(ok.clone()), changed),
        vec![
            r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#,
        ],
    )]);

    let ss = |spec: Value| json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "default", "resourceVersion": "1"}, "spec": spec});
    let base = json!({"serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template(json!({"app": "db"}))});
    let mut scaled = ss(base.clone());
    scaled["spec"]["replicas"] = json!(3);
    let mut renamed_service = ss(base.clone());
    renamed_service["spec"]["serviceName"] = json!("other");
    check(vec![
        ("statefulset ok", create_errors(ss(base.clone())), vec![]),
        ("statefulset scale", update_errors(ss(base.clone()), scaled), vec![]),
        (
            "statefulset forbidden update",
            update_errors(ss(base.clone()), renamed_service),
            vec!["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"],
        ),
    ]);
    // Containers mount the claim templates by name; the pod template has no such volume.
    let mut with_claims = base.clone();
    with_claims["template"]["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "www", "mountPath": "/data"}]);
    with_claims["volumeClaimTemplates"] = json!([{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]);
    let cr = |data: Value, revision: i64| json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "db-abc", "namespace": "default", "resourceVersion": "1"}, "data": data, "revision": revision});
    check(vec![
        (
            "statefulset claim mounts",
            create_errors(ss(with_claims)),
            vec![],
        ),
        (
            "revision ok",
            create_errors(cr(json!({"spec": {}}), 1)),
            vec![],
        ),
        (
            "revision without data",
            create_errors(cr(Value::Null, -1)),
            vec![
                "data: Required value: data is mandatory",
                "revision: Invalid value: -1: must be greater than or equal to 0",
            ],
        ),
        (
            "revision renumbered",
            update_errors(cr(json!({"a": 1}), 1), cr(json!({"a": 1}), 2)),
            vec![],
        ),
        (
            "revision data immutable",
            update_errors(cr(json!({"a": 1}), 1), cr(json!({"a": 2}), 1)),
            vec!["~data: Invalid value: "],
        ),
    ]);

    let ds = |spec: Value| json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "default"}, "spec": spec});
    check(vec![
        ("daemonset ok", create_errors(ds(json!({"selector": {"matchLabels": {"app": "a"}}, "template": template(json!({"app": "a"}))}))), vec![]),
        (
            "daemonset both set",
            create_errors(ds(json!({"selector": {"matchLabels": {"app": "a"}}, "template": template(json!({"app": "a"})),
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}}))),
            vec!["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"],
        ),
    ]);
}

#[test]
fn jobs() {
    let job = |spec: Value| json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default", "resourceVersion": "1", "uid": "u"}, "spec": spec});
    let labels = json!({"batch.kubernetes.io/controller-uid": "u", "job-name": "pi"});
    let selector = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}});
    let mut tpl = template(labels.clone());
    tpl["spec"]["restartPolicy"] = json!("Never");
    let ok = job(json!({"selector": selector, "template": tpl}));
    let always = job(json!({"selector": selector, "template": template(labels.clone())}));
    let mut new_image = ok.clone();
    new_image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:2");
    check(vec![
        ("job ok", create_errors(ok.clone()), vec![]),
        (
            "job restart policy",
            create_errors(always),
            vec![
                r#"spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never""#,
            ],
        ),
        (
            "template immutable",
            update_errors(ok.clone(), new_image),
            vec!["~spec.template: Invalid value: "],
        ),
    ]);

    let cron = |schedule: &str| {
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "default"},
        "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [nginx()]}}}}}})
    };
    check(vec![
        ("cron ok", create_errors(cron("*/5 * * * *")), vec![]),
        ("cron descriptor", create_errors(cron("@hourly")), vec![]),
        (
            "cron fields",
            create_errors(cron("* * *")),
            vec![
                r#"spec.schedule: Invalid value: "* * *": expected exactly 5 fields, found 3: [* * *]"#,
            ],
        ),
        (
            "cron range",
            create_errors(cron("61 * * * *")),
            vec![
                r#"spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61"#,
            ],
        ),
    ]);
}

#[test]
fn services() {
    let svc = |spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"}, "spec": spec});
    check(vec![
        ("ok", create_errors(svc(json!({"ports": [{"port": 80}], "selector": {"app": "web"}}))), vec![]),
        ("no ports", create_errors(svc(json!({"selector": {"app": "web"}}))), vec!["spec.ports: Required value"]),
        ("headless", create_errors(svc(json!({"clusterIP": "None"}))), vec![]),
        ("external name", create_errors(svc(json!({"type": "ExternalName", "externalName": "example.com"}))), vec![]),
        ("unnamed ports", create_errors(svc(json!({"ports": [{"port": 80}, {"port": 443}]}))), vec!["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"]),
        (
            "duplicate port names",
            create_errors(svc(json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 443}]}))),
            vec![r#"spec.ports[1].name: Duplicate value: "a""#],
        ),
        (
            "bad type",
            create_errors(svc(json!({"type": "Magic", "ports": [{"port": 80}]}))),
            vec![r#"spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#],
        ),
        (
            "node port range",
            create_errors(svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}))),
            vec!["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"],
        ),
        (
            "node port on ClusterIP",
            create_errors(svc(json!({"ports": [{"port": 80, "nodePort": 30080}]}))),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
        ),
        (
            "bad service name",
            create_errors(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1web", "namespace": "d"}, "spec": {"ports": [{"port": 80}]}})),
            vec!["~a DNS-1035 label must consist of"],
        ),
    ]);
    let mut old = svc(json!({"ports": [{"port": 80}]}));
    old["spec"]["clusterIP"] = json!("10.0.0.10");
    old["spec"]["clusterIPs"] = json!(["10.0.0.10"]);
    let mut new = old.clone();
    new["spec"]["clusterIP"] = json!("10.0.0.11");
    new["spec"]["clusterIPs"] = json!(["10.0.0.11"]);
    check(vec![(
        "cluster ip immutable",
        update_errors(old, new),
        vec![
            r#"spec.clusterIPs[0]: Invalid value: []string{"10.0.0.11"}: may not change once set"#,
        ],
    )]);
}

#[test]
fn config_and_secrets() {
    let cm = |data: Value, immutable: bool| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d", "resourceVersion": "1"}, "data": data, "immutable": immutable});
    let big = "x".repeat(1024 * 1024 + 1);
    check(vec![
        ("ok", create_errors(cm(json!({"a.b": "1"}), false)), vec![]),
        (
            "bad key",
            create_errors(cm(json!({"a b": "1"}), false)),
            vec![
                r#"data[a b]: Invalid value: "a b": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"#,
            ],
        ),
        (
            "too big",
            create_errors(cm(json!({"a": big}), false)),
            vec!["Too long: must have at most 1048576 bytes"],
        ),
        (
            "immutable",
            update_errors(cm(json!({"a": "1"}), true), cm(json!({"a": "2"}), true)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"],
        ),
    ]);
    let secret = |ty: &str, data: Value| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d", "resourceVersion": "1"}, "type": ty, "data": data});
    check(vec![
        (
            "opaque",
            create_errors(secret("Opaque", json!({"k": "dg=="}))),
            vec![],
        ),
        (
            "tls",
            create_errors(secret("kubernetes.io/tls", json!({}))),
            vec![
                "data[tls.crt]: Required value",
                "data[tls.key]: Required value",
            ],
        ),
        (
            "type immutable",
            update_errors(
                secret("Opaque", json!({})),
                secret("kubernetes.io/basic-auth", json!({"username": "dQ=="})),
            ),
            vec![r#"type: Invalid value: "kubernetes.io/basic-auth": field is immutable"#],
        ),
    ]);
}

#[test]
fn cluster_scoped_and_small_kinds() {
    let label_msg = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    let ns_bad = format!(r#"metadata.name: Invalid value: "Dev": {label_msg}"#);
    let pvc = |spec: Value| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "p", "namespace": "d"}, "spec": spec});
    check(vec![
        ("namespace ok", create_errors(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}})), vec![]),
        ("namespace name", create_errors(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Dev"}})), vec![ns_bad.as_str()]),
        (
            "namespaced field on cluster kind",
            create_errors(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "namespace": "x"}})),
            vec!["metadata.namespace: Forbidden: not allowed on this type"],
        ),
        ("pvc ok", create_errors(pvc(json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}))), vec![]),
        (
            "pvc empty",
            create_errors(pvc(json!({}))),
            vec!["spec.accessModes: Required value: at least 1 access mode is required", "spec.resources[storage]: Required value"],
        ),
        (
            "lease",
            create_errors(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}})),
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"],
        ),
        (
            "role rule",
            create_errors(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r", "namespace": "d"}, "rules": [{"verbs": [], "apiGroups": [""], "resources": ["pods"]}]})),
            vec!["rules[0].verbs: Required value: verbs must contain at least one value"],
        ),
        (
            "service account meta only",
            create_errors(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": "d"}})),
            vec!["metadata.name: Required value: name or generateName is required"],
        ),
        ("unknown kind", create_errors(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}})), vec![]),
        (
            "priority class",
            create_errors(json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "system-x"}, "value": 1})),
            vec!["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved."],
        ),
    ]);
    let rb = |role: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b", "namespace": "d", "resourceVersion": "1"},
        "roleRef": {"kind": "Role", "name": role}, "subjects": [{"kind": "User", "name": "u"}]})
    };
    check(vec![
        ("binding ok", create_errors(rb("r")), vec![]),
        (
            "roleRef immutable",
            update_errors(rb("r"), rb("s")),
            vec![
                r#"roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"Role", Name:"s"}: cannot change roleRef"#,
            ],
        ),
    ]);
}

#[test]
fn networking_storage_and_policy() {
    let ing = |spec: Value| json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i", "namespace": "d"}, "spec": spec});
    let backend = json!({"service": {"name": "web", "port": {"number": 80}}});
    let np = |spec: Value| json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "n", "namespace": "d"}, "spec": spec});
    let sc = |provisioner: &str, params: Value| {
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "fast", "resourceVersion": "1"}, "provisioner": provisioner, "parameters": params})
    };
    let pdb = |spec: Value| json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p", "namespace": "d"}, "spec": spec});
    let hpa = |spec: Value| json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h", "namespace": "d"}, "spec": spec});
    check(vec![
        ("ingress ok", create_errors(ing(json!({"rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}]}))), vec![]),
        (
            "ingress pathType",
            create_errors(ing(json!({"rules": [{"http": {"paths": [{"path": "/", "backend": backend}]}}]}))),
            vec!["spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"],
        ),
        (
            "ingress relative path",
            create_errors(ing(json!({"rules": [{"http": {"paths": [{"path": "api", "pathType": "Prefix", "backend": backend}]}}]}))),
            vec![r#"spec.rules[0].http.paths[0].path: Invalid value: "api": must be an absolute path"#],
        ),
        ("netpol ok", create_errors(np(json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}))), vec![]),
        (
            "netpol bad cidr",
            create_errors(np(json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}))),
            vec![r#"spec.egress[0].to[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#],
        ),
        ("storage class ok", create_errors(sc("kubernetes.io/no-provisioner", json!({}))), vec![]),
        (
            "storage class parameters",
            update_errors(sc("p", json!({"a": "1"})), sc("p", json!({"a": "2"}))),
            vec!["parameters: Forbidden: updates to parameters are forbidden."],
        ),
        (
            "pdb both",
            create_errors(pdb(json!({"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {"a": "b"}}}))),
            vec![r#"spec: Invalid value: {"maxUnavailable":1,"minAvailable":1,"selector":{"matchLabels":{"a":"b"}}}: minAvailable and maxUnavailable cannot be both set"#],
        ),
        (
            "hpa bounds",
            create_errors(hpa(json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 5, "maxReplicas": 2}))),
            vec!["spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"],
        ),
        (
            "pv without source",
            create_errors(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}})),
            vec!["spec: Required value: must specify a volume type"],
        ),
    ]);
}
