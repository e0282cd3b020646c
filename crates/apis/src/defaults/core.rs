//! Defaults for core/v1 kinds and for the pod spec every workload template embeds
//! (upstream `pkg/apis/core/v1/defaults.go`).

use base64::Engine as _;
use serde_json::{json, Value};

use super::{child, default_int, default_ptr, default_str, each, ensure_obj, Obj};

/// Every volume source field of `VolumeSource`; a volume naming none of them gets `emptyDir: {}`.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// `SetObjectDefaults_Pod`: pod-only rules, then the shared pod spec rules.
pub(crate) fn pod(o: &mut Obj) {
    let Some(spec) = ensure_obj(o, "spec") else {
        return;
    };
    // Requests default to limits only on pods, never on templates (upstream keeps
    // templates stable so that controllers do not see spurious template changes).
    each(spec, "containers", requests_from_limits);
    each(spec, "initContainers", requests_from_limits);
    default_ptr(spec, "enableServiceLinks", Value::Bool(true));
    if spec.get("hostNetwork") == Some(&Value::Bool(true)) {
        let host_ports = |c: &mut Obj| {
            each(c, "ports", |p| {
                if let Some(port) = p.get("containerPort").cloned() {
                    default_int(p, "hostPort", port.as_i64().unwrap_or(0));
                }
            })
        };
        each(spec, "containers", host_ports);
        each(spec, "initContainers", host_ports);
    }
    pod_spec(spec);
}

fn requests_from_limits(c: &mut Obj) {
    let Some(resources) = child(c, "resources") else {
        return;
    };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if limits.is_empty() {
        return;
    }
    let Some(requests) = ensure_obj(resources, "requests") else {
        return;
    };
    for (name, quantity) in limits {
        requests.entry(name).or_insert(quantity);
    }
}

/// Defaults a `PodTemplateSpec` (its `spec` always exists in Go, so it is created).
pub(crate) fn pod_template_spec(t: &mut Obj) {
    if let Some(spec) = ensure_obj(t, "spec") {
        pod_spec(spec);
    }
}

/// `SetDefaults_PodSpec` plus the nested volume, container and probe defaults.
pub(crate) fn pod_spec(spec: &mut Obj) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_ptr(spec, "securityContext", json!({}));
    default_ptr(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    each(spec, "volumes", volume);
    each(spec, "initContainers", container);
    each(spec, "containers", container);
    each(spec, "ephemeralContainers", container);
}

fn volume(v: &mut Obj) {
    let has_source = VOLUME_SOURCES
        .iter()
        .any(|s| !matches!(v.get(*s), None | Some(Value::Null)));
    if !has_source {
        v.insert("emptyDir".to_string(), json!({}));
    }
    if let Some(h) = child(v, "hostPath") {
        default_ptr(h, "type", json!(""));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = child(v, source) {
            default_ptr(s, "defaultMode", json!(420));
        }
    }
    if let Some(d) = child(v, "downwardAPI") {
        each(d, "items", field_ref_items);
    }
    if let Some(p) = child(v, "projected") {
        each(p, "sources", |s| {
            if let Some(d) = child(s, "downwardAPI") {
                each(d, "items", field_ref_items);
            }
            if let Some(t) = child(s, "serviceAccountToken") {
                default_ptr(t, "expirationSeconds", json!(3600));
            }
        });
    }
    if let Some(i) = child(v, "iscsi") {
        iscsi(i);
    }
    if let Some(r) = child(v, "rbd") {
        rbd(r);
    }
    if let Some(a) = child(v, "azureDisk") {
        azure_disk(a);
    }
    if let Some(s) = child(v, "scaleIO") {
        scale_io(s);
    }
    if let Some(spec) = child(v, "ephemeral")
        .and_then(|e| child(e, "volumeClaimTemplate"))
        .and_then(|t| child(t, "spec"))
    {
        default_ptr(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(image) = child(v, "image") {
        if super::is_unset_str(image.get("pullPolicy")) {
            let reference = image
                .get("reference")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            image.insert("pullPolicy".to_string(), json!(pull_policy_for(&reference)));
        }
    }
}

fn field_ref_items(item: &mut Obj) {
    if let Some(f) = child(item, "fieldRef") {
        default_str(f, "apiVersion", "v1");
    }
}

fn iscsi(i: &mut Obj) {
    default_str(i, "iscsiInterface", "default");
}

fn rbd(r: &mut Obj) {
    default_str(r, "pool", "rbd");
    default_str(r, "user", "admin");
    default_str(r, "keyring", "/etc/ceph/keyring");
}

fn azure_disk(a: &mut Obj) {
    default_ptr(a, "cachingMode", json!("ReadWrite"));
    default_ptr(a, "kind", json!("Shared"));
    default_ptr(a, "fsType", json!("ext4"));
    default_ptr(a, "readOnly", json!(false));
}

fn scale_io(s: &mut Obj) {
    default_str(s, "storageMode", "ThinProvisioned");
    default_str(s, "fsType", "xfs");
}

/// `SetDefaults_Container` and the generated walk over ports, env, probes and hooks.
fn container(c: &mut Obj) {
    if super::is_unset_str(c.get("imagePullPolicy")) {
        let image = c
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        c.insert(
            "imagePullPolicy".to_string(),
            json!(pull_policy_for(&image)),
        );
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    each(c, "ports", |p| default_str(p, "protocol", "TCP"));
    each(c, "env", |e| {
        if let Some(f) = child(e, "valueFrom").and_then(|v| child(v, "fieldRef")) {
            default_str(f, "apiVersion", "v1");
        }
    });
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child(c, key) {
            probe(p);
        }
    }
    if let Some(l) = child(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = child(l, hook).and_then(|h| child(h, "httpGet")) {
                http_get(h);
            }
        }
    }
}

fn probe(p: &mut Obj) {
    default_int(p, "timeoutSeconds", 1);
    default_int(p, "periodSeconds", 10);
    default_int(p, "successThreshold", 1);
    default_int(p, "failureThreshold", 3);
    if let Some(h) = child(p, "httpGet") {
        http_get(h);
    }
    if let Some(g) = child(p, "grpc") {
        default_ptr(g, "service", json!(""));
    }
}

fn http_get(h: &mut Obj) {
    default_str(h, "path", "/");
    default_str(h, "scheme", "HTTP");
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (upstream asks
/// the docker reference parser for the tag; a digest-only or unparsable reference has
/// no tag and so gets `IfNotPresent`).
pub(crate) fn pull_policy_for(image: &str) -> &'static str {
    if image_tag(image).as_deref() == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

fn image_tag(image: &str) -> Option<String> {
    if image.is_empty() || image.trim() != image {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let (repo_last, tag) = match last.split_once(':') {
        Some((r, t)) => (r, Some(t)),
        None => (last, None),
    };
    // The reference grammar only allows lower-case repository path components.
    let path_prefix = &name[..name.len() - last.len()];
    let repo_path = path_prefix.split_once('/').map(|(host, rest)| {
        // The first component is a registry host when it looks like one.
        if host.contains('.') || host.contains(':') || host == "localhost" {
            rest
        } else {
            path_prefix
        }
    });
    let repo = format!("{}{}", repo_path.unwrap_or(""), repo_last);
    if repo.is_empty() || repo.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    match (tag, digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_string()),
    }
}

/// `SetDefaults_ReplicationController`: selector and labels from the template labels.
pub(crate) fn replication_controller(o: &mut Obj) {
    let Some(spec) = ensure_obj(o, "spec") else {
        return;
    };
    default_ptr(spec, "replicas", json!(1));
    let template_labels = child(spec, "template")
        .and_then(|t| child(t, "metadata"))
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .cloned();
    if let Some(t) = child(spec, "template") {
        pod_template_spec(t);
    }
    let Some(labels) = template_labels else {
        return;
    };
    let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(|m| m.is_empty());
    if empty(spec.get("selector")) {
        spec.insert("selector".to_string(), Value::Object(labels.clone()));
    }
    if let Some(meta) = ensure_obj(o, "metadata") {
        if empty(meta.get("labels")) {
            meta.insert("labels".to_string(), Value::Object(labels));
        }
    }
}

/// `SetDefaults_Service`. `ipFamilyPolicy` is set here too (upstream's registry does it
/// while allocating cluster IPs; this server is single-stack so the answer is fixed).
pub(crate) fn service(o: &mut Obj) {
    let Some(spec) = ensure_obj(o, "spec") else {
        return;
    };
    default_str(spec, "sessionAffinity", "None");
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"));
            if matches!(timeout, None | Some(Value::Null)) {
                spec.insert(
                    "sessionAffinityConfig".to_string(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    default_str(spec, "type", "ClusterIP");
    each(spec, "ports", |p| {
        default_str(p, "protocol", "TCP");
        let unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(v) => v.as_i64() == Some(0),
        };
        if unset {
            if let Some(port) = p.get("port").cloned() {
                p.insert("targetPort".to_string(), port);
            }
        }
    });
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if ty == "LoadBalancer" || ty == "NodePort" || (ty == "ClusterIP" && has_external_ips) {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        default_ptr(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None")
        || spec
            .get("clusterIPs")
            .and_then(|c| c.get(0))
            .and_then(Value::as_str)
            == Some("None");
    let no_selector = spec
        .get("selector")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty());
    if ty != "ExternalName" {
        // Headless services without a selector get endpoints of every family.
        let policy = if headless && no_selector {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        default_ptr(spec, "ipFamilyPolicy", json!(policy));
    }
    if ty == "LoadBalancer" {
        default_ptr(spec, "allocateLoadBalancerNodePorts", json!(true));
        if let Some(lb) = child(o, "status").and_then(|s| child(s, "loadBalancer")) {
            each(lb, "ingress", |i| {
                if i.get("ip")
                    .and_then(Value::as_str)
                    .is_some_and(|ip| !ip.is_empty())
                {
                    default_ptr(i, "ipMode", json!("VIP"));
                }
            });
        }
    }
}

/// `SetDefaults_Namespace` (the `kubernetes.io/metadata.name` label, always overwritten)
/// and `SetDefaults_NamespaceStatus`. The `kubernetes` finalizer is not a default
/// upstream (it may be removed during the object's life); see [`namespace_prepare_for_create`].
pub(crate) fn namespace(o: &mut Obj) {
    let name = o
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty() {
        if let Some(labels) = ensure_obj(o, "metadata").and_then(|m| ensure_obj(m, "labels")) {
            labels.insert("kubernetes.io/metadata.name".to_string(), json!(name));
        }
    }
    if let Some(status) = ensure_obj(o, "status") {
        default_str(status, "phase", "Active");
    }
}

/// What the namespace registry does on create: status `Active` and the `kubernetes`
/// finalizer appended to `spec.finalizers` when missing. Call only on create.
pub fn namespace_prepare_for_create(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    o.insert("status".to_string(), json!({"phase": "Active"}));
    let Some(spec) = ensure_obj(o, "spec") else {
        return;
    };
    default_ptr(spec, "finalizers", json!([]));
    if let Some(list) = spec.get_mut("finalizers").and_then(Value::as_array_mut) {
        if !list.iter().any(|f| f.as_str() == Some("kubernetes")) {
            list.push(json!("kubernetes"));
        }
    }
}

/// `SetDefaults_Secret`, plus the v1→internal conversion that folds the write-only
/// `stringData` into `data` (base64) so that it is never stored.
pub(crate) fn secret(o: &mut Obj) {
    default_str(o, "type", "Opaque");
    let Some(Value::Object(string_data)) = o.remove("stringData") else {
        return;
    };
    let Some(data) = ensure_obj(o, "data") else {
        return;
    };
    for (k, v) in string_data {
        if let Some(s) = v.as_str() {
            data.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(s)),
            );
        }
    }
}

pub(crate) fn persistent_volume_claim(o: &mut Obj) {
    if let Some(spec) = ensure_obj(o, "spec") {
        default_ptr(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = ensure_obj(o, "status") {
        default_str(status, "phase", "Pending");
    }
}

pub(crate) fn persistent_volume(o: &mut Obj) {
    if let Some(status) = ensure_obj(o, "status") {
        default_str(status, "phase", "Pending");
    }
    let Some(spec) = ensure_obj(o, "spec") else {
        return;
    };
    default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
    default_ptr(spec, "volumeMode", json!("Filesystem"));
    if let Some(h) = child(spec, "hostPath") {
        default_ptr(h, "type", json!(""));
    }
    if let Some(i) = child(spec, "iscsi") {
        iscsi(i);
    }
    if let Some(r) = child(spec, "rbd") {
        rbd(r);
    }
    if let Some(a) = child(spec, "azureDisk") {
        azure_disk(a);
    }
    if let Some(s) = child(spec, "scaleIO") {
        scale_io(s);
    }
}

pub(crate) fn endpoints(o: &mut Obj) {
    each(o, "subsets", |s| {
        each(s, "ports", |p| default_str(p, "protocol", "TCP"))
    });
}

/// `SetDefaults_NodeStatus`: allocatable defaults to capacity.
pub(crate) fn node(o: &mut Obj) {
    let Some(status) = child(o, "status") else {
        return;
    };
    if let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned() {
        default_ptr(status, "allocatable", capacity);
    }
}

/// `SetDefaults_LimitRangeItem`: for containers, default limit ← max, default request ←
/// default limit, then ← min.
pub(crate) fn limit_range(o: &mut Obj) {
    let Some(spec) = child(o, "spec") else { return };
    each(spec, "limits", |item| {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            return;
        }
        let get = |item: &Obj, k: &str| {
            item.get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let (max, min) = (get(item, "max"), get(item, "min"));
        let mut default = get(item, "default");
        for (k, v) in max {
            default.entry(k).or_insert(v);
        }
        let mut default_request = get(item, "defaultRequest");
        for (k, v) in default.iter().chain(min.iter()) {
            default_request.entry(k.clone()).or_insert(v.clone());
        }
        // Empty maps are omitted on the wire, as Go's omitempty does.
        if !default.is_empty() {
            item.insert("default".to_string(), Value::Object(default));
        }
        if !default_request.is_empty() {
            item.insert("defaultRequest".to_string(), Value::Object(default_request));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply;

    fn defaulted(group: &str, kind: &str, v: Value) -> Value {
        let mut v = v;
        apply(group, "v1", kind, &mut v);
        let once = v.clone();
        apply(group, "v1", kind, &mut v);
        assert_eq!(v, once, "defaulting must be idempotent for {kind}");
        v
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("registry.k8s.io/pause:3.10", "IfNotPresent"),
            ("localhost:5000/app", "Always"),
            ("localhost:5000/app:v1", "IfNotPresent"),
            ("busybox@sha256:abcd", "IfNotPresent"),
            ("busybox:latest@sha256:abcd", "Always"),
            ("", "IfNotPresent"),
            ("Nginx", "IfNotPresent"),
        ];
        for (image, want) in cases {
            assert_eq!(pull_policy_for(image), want, "{image}");
        }
    }

    #[test]
    fn pod_defaults_match_upstream() {
        let pod = defaulted(
            "",
            "Pod",
            json!({
                "metadata": {"name": "p"},
                "spec": {
                    "containers": [{
                        "name": "c", "image": "nginx",
                        "ports": [{"containerPort": 80}],
                        "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "resources": {"limits": {"cpu": "1"}},
                        "livenessProbe": {"httpGet": {"port": 80}},
                        "readinessProbe": {"grpc": {"port": 9000}, "periodSeconds": 5}
                    }],
                    "volumes": [
                        {"name": "a"},
                        {"name": "b", "configMap": {"name": "cm"}},
                        {"name": "c", "secret": {"secretName": "s"}},
                        {"name": "d", "hostPath": {"path": "/x"}},
                        {"name": "e", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}
                    ]
                }
            }),
        );
        let spec = &pod["spec"];
        let c = &spec["containers"][0];
        let table: &[(&Value, Value)] = &[
            (&spec["restartPolicy"], json!("Always")),
            (&spec["dnsPolicy"], json!("ClusterFirst")),
            (&spec["terminationGracePeriodSeconds"], json!(30)),
            (&spec["schedulerName"], json!("default-scheduler")),
            (&spec["securityContext"], json!({})),
            (&spec["enableServiceLinks"], json!(true)),
            (&c["imagePullPolicy"], json!("Always")),
            (&c["terminationMessagePath"], json!("/dev/termination-log")),
            (&c["terminationMessagePolicy"], json!("File")),
            (&c["ports"][0]["protocol"], json!("TCP")),
            (
                &c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"],
                json!("v1"),
            ),
            (&c["resources"]["requests"], json!({"cpu": "1"})),
            (
                &c["livenessProbe"],
                json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                       "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}),
            ),
            (&c["readinessProbe"]["periodSeconds"], json!(5)),
            (&c["readinessProbe"]["grpc"]["service"], json!("")),
            (&spec["volumes"][0]["emptyDir"], json!({})),
            (&spec["volumes"][1]["configMap"]["defaultMode"], json!(420)),
            (&spec["volumes"][2]["secret"]["defaultMode"], json!(420)),
            (&spec["volumes"][3]["hostPath"]["type"], json!("")),
            (&spec["volumes"][4]["projected"]["defaultMode"], json!(420)),
            (
                &spec["volumes"][4]["projected"]["sources"][0]["serviceAccountToken"]
                    ["expirationSeconds"],
                json!(3600),
            ),
        ];
        for (i, (got, want)) in table.iter().enumerate() {
            assert_eq!(*got, want, "case {i}");
        }
        assert!(
            pod.get("status").is_none(),
            "pod phase is the registry's job"
        );
    }

    #[test]
    fn host_network_pods_get_host_ports() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "x:1", "ports": [{"containerPort": 53}]}]}}),
        );
        assert_eq!(
            pod["spec"]["containers"][0]["ports"][0]["hostPort"],
            json!(53)
        );
    }

    #[test]
    fn service_defaults_match_upstream() {
        let svc = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}}),
        );
        let spec = &svc["spec"];
        assert_eq!(spec["sessionAffinity"], json!("None"));
        assert_eq!(
            spec["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(spec["ports"][1]["targetPort"], json!("https"));
        assert_eq!(spec["externalTrafficPolicy"], json!("Cluster"));
        assert_eq!(spec["internalTrafficPolicy"], json!("Cluster"));
        assert_eq!(spec["ipFamilyPolicy"], json!("SingleStack"));

        let svc = defaulted(
            "",
            "Service",
            json!({"spec": {"ports": [{"port": 80}], "sessionAffinity": "ClientIP"}}),
        );
        assert_eq!(svc["spec"]["type"], json!("ClusterIP"));
        assert!(svc["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(
            svc["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );

        let svc = defaulted("", "Service", json!({"spec": {"clusterIP": "None"}}));
        assert_eq!(svc["spec"]["ipFamilyPolicy"], json!("RequireDualStack"));

        let svc = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "x.example.com"}}),
        );
        assert!(svc["spec"].get("ipFamilyPolicy").is_none());
        assert!(svc["spec"].get("internalTrafficPolicy").is_none());
    }

    #[test]
    fn small_core_kinds() {
        let ns = defaulted("", "Namespace", json!({"metadata": {"name": "dev"}}));
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            json!("dev")
        );
        assert_eq!(ns["status"]["phase"], json!("Active"));
        assert!(ns.get("spec").is_none());

        let secret = defaulted(
            "",
            "Secret",
            json!({"stringData": {"a": "hello"}, "data": {"b": "eA=="}}),
        );
        assert_eq!(
            secret,
            json!({"type": "Opaque", "data": {"b": "eA==", "a": "aGVsbG8="}})
        );

        let pvc = defaulted(
            "",
            "PersistentVolumeClaim",
            json!({"spec": {"accessModes": ["ReadWriteOnce"]}}),
        );
        assert_eq!(pvc["spec"]["volumeMode"], json!("Filesystem"));
        assert_eq!(pvc["status"]["phase"], json!("Pending"));

        let pv = defaulted(
            "",
            "PersistentVolume",
            json!({"spec": {"hostPath": {"path": "/d"}}}),
        );
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], json!("Retain"));
        assert_eq!(pv["spec"]["hostPath"]["type"], json!(""));

        let rc = defaulted(
            "",
            "ReplicationController",
            json!({"spec": {"template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": []}}}}),
        );
        assert_eq!(rc["spec"]["replicas"], json!(1));
        assert_eq!(rc["spec"]["selector"], json!({"app": "a"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "a"}));
        assert_eq!(
            rc["spec"]["template"]["spec"]["restartPolicy"],
            json!("Always")
        );
        assert!(rc["spec"]["template"]["spec"]
            .get("enableServiceLinks")
            .is_none());

        let ep = defaulted(
            "",
            "Endpoints",
            json!({"subsets": [{"ports": [{"port": 80}]}]}),
        );
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], json!("TCP"));

        let node = defaulted("", "Node", json!({"status": {"capacity": {"cpu": "4"}}}));
        assert_eq!(node["status"]["allocatable"], json!({"cpu": "4"}));

        let lr = defaulted(
            "",
            "LimitRange",
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}}),
        );
        assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            lr["spec"]["limits"][0]["defaultRequest"],
            json!({"cpu": "2", "memory": "1Mi"})
        );
    }

    #[test]
    fn namespace_create_adds_the_kubernetes_finalizer_once() {
        let mut ns = json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["example.com/x"]}});
        namespace_prepare_for_create(&mut ns);
        namespace_prepare_for_create(&mut ns);
        assert_eq!(
            ns["spec"]["finalizers"],
            json!(["example.com/x", "kubernetes"])
        );
        assert_eq!(ns["status"]["phase"], json!("Active"));
    }

    #[test]
    fn unknown_fields_survive_defaulting() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {"containers": [{"name": "c", "image": "x", "bogus": 1}], "extra": true}}),
        );
        assert_eq!(pod["spec"]["containers"][0]["bogus"], json!(1));
        assert_eq!(pod["spec"]["extra"], json!(true));
    }
}
