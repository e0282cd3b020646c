//! Decoding tests: request bodies captured from kubectl 1.32 (`testdata/*.pb`), and
//! hand-assembled messages for the shapes kubectl's generators do not produce.

use serde_json::{json, Value};

use super::*;

/// Each `.pb` is the body kubectl sent for a `kubectl create …` command; the `.json`
/// beside it is `kubectl create … --dry-run=client -o json` for the same command, i.e.
/// Go's own JSON encoding of the very same object.
#[test]
fn kubectl_bodies_decode_to_the_json_kubectl_prints() {
    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                include_bytes!(concat!("testdata/", $name, ".pb")).as_slice(),
                include_str!(concat!("testdata/", $name, ".json")),
            )
        };
    }
    let cases = [
        fixture!("namespace"),
        fixture!("configmap"),
        fixture!("configmap-binary"),
        fixture!("secret"),
        fixture!("deployment"),
        fixture!("deployment-zero-replicas"),
        fixture!("job"),
        fixture!("cronjob"),
        fixture!("service-clusterip"),
        fixture!("service-nodeport"),
        fixture!("pdb"),
        fixture!("quota"),
        fixture!("priorityclass"),
    ];
    for (name, body, want) in cases {
        let got = decode(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want: Value = serde_json::from_str(want).unwrap_or_else(|e| panic!("{name}.json: {e}"));
        assert_eq!(
            got,
            want,
            "{name}:\n{}",
            serde_json::to_string_pretty(&got).unwrap_or_default()
        );
    }
}

#[test]
fn kubectl_token_whoami_and_can_i_bodies_decode() {
    let cases = [
        (
            include_bytes!("testdata/tokenrequest.pb").as_slice(),
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "metadata": {"creationTimestamp": null},
                "spec": {"expirationSeconds": 3600},
                "status": {"token": "", "expirationTimestamp": null},
            }),
        ),
        (
            include_bytes!("testdata/selfsubjectreview.pb").as_slice(),
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "SelfSubjectReview",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": {}},
            }),
        ),
        (
            include_bytes!("testdata/selfsubjectaccessreview.pb").as_slice(),
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "metadata": {"creationTimestamp": null},
                "spec": {"resourceAttributes": {"namespace": "x", "verb": "get", "resource": "pods"}},
                "status": {"allowed": false},
            }),
        ),
    ];
    for (body, want) in cases {
        let got = decode(body).expect("decodes");
        assert_eq!(
            got,
            want,
            "{}",
            serde_json::to_string_pretty(&got).unwrap_or_default()
        );
    }
}

// ---- a minimal encoder, enough to assemble test messages by field number

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A varint field (int32/int64/bool); negative numbers are sign-extended like Go does.
fn int(tag: u32, v: i64) -> Vec<u8> {
    [varint(u64::from(tag) << 3), varint(v as u64)].concat()
}

/// A length-delimited field (string, bytes, or an already-encoded message).
fn bytes(tag: u32, b: &[u8]) -> Vec<u8> {
    [
        varint(u64::from(tag) << 3 | 2),
        varint(b.len() as u64),
        b.to_vec(),
    ]
    .concat()
}

fn s(tag: u32, v: &str) -> Vec<u8> {
    bytes(tag, v.as_bytes())
}

/// A message field made of the given encoded fields.
fn m(tag: u32, fields: &[Vec<u8>]) -> Vec<u8> {
    bytes(tag, &fields.concat())
}

/// A `map<string, …>` entry; `value` is the encoded value field (tag 2).
fn entry(tag: u32, key: &str, value: Vec<u8>) -> Vec<u8> {
    m(tag, &[s(1, key), value])
}

fn envelope(api_version: &str, kind: &str, raw: &[Vec<u8>]) -> Vec<u8> {
    [
        MAGIC.to_vec(),
        m(1, &[s(1, api_version), s(2, kind)]),
        m(2, raw),
        s(3, ""),
        s(4, ""),
    ]
    .concat()
}

/// ObjectMeta as Go's marshaller writes it: every plain field, set or not.
fn object_meta(name: &str, namespace: &str, extra: &[Vec<u8>]) -> Vec<u8> {
    let base = [
        s(1, name),
        s(2, ""),
        s(3, namespace),
        s(4, ""),
        s(5, ""),
        s(6, ""),
        int(7, 0),
        m(8, &[]),
    ];
    m(1, &[base.concat(), extra.concat()])
}

fn int_or_string_int(tag: u32, v: i32) -> Vec<u8> {
    m(tag, &[int(1, 0), int(2, i64::from(v)), s(3, "")])
}

fn int_or_string_str(tag: u32, v: &str) -> Vec<u8> {
    m(tag, &[int(1, 1), int(2, 0), s(3, v)])
}

fn quantity(v: &str) -> Vec<u8> {
    m(2, &[s(1, v)])
}

#[test]
fn deployment_with_resources_env_ports_and_rolling_update() {
    let container = m(
        2,
        &[
            s(1, "web"),
            s(2, "nginx:1.27"),
            s(5, ""),
            m(
                6,
                &[s(1, "http"), int(2, 0), int(3, 80), s(4, "TCP"), s(5, "")],
            ),
            m(7, &[s(1, "MODE"), s(2, "prod")]),
            m(7, &[s(1, "EMPTY"), s(2, "")]),
            m(
                8,
                &[
                    entry(1, "cpu", quantity("500m")),
                    entry(1, "memory", quantity("128Mi")),
                ],
            ),
            s(13, ""),
            s(14, "IfNotPresent"),
            int(16, 0),
            int(17, 0),
            int(18, 0),
        ],
    );
    let body = envelope(
        "apps/v1",
        "Deployment",
        &[
            object_meta("web", "prod", &[entry(11, "app", s(2, "web"))]),
            m(
                2,
                &[
                    int(1, 3),
                    m(2, &[entry(1, "app", s(2, "web"))]),
                    m(
                        3,
                        &[
                            object_meta("", "", &[entry(11, "app", s(2, "web"))]),
                            m(2, &[container]),
                        ],
                    ),
                    m(
                        4,
                        &[
                            s(1, "RollingUpdate"),
                            m(
                                2,
                                &[int_or_string_str(1, "25%"), int_or_string_str(2, "25%")],
                            ),
                        ],
                    ),
                    int(5, 0),
                    int(7, 0),
                ],
            ),
            m(3, &[]),
        ],
    );
    let want = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", "creationTimestamp": null, "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": "nginx:1.27",
                    "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "MODE", "value": "prod"}, {"name": "EMPTY"}],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                    "imagePullPolicy": "IfNotPresent",
                }]},
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        },
        "status": {},
    });
    assert_eq!(decode(&body).expect("decodes"), want);
}

#[test]
fn service_ports_carry_int_and_named_target_ports() {
    let port = |name: &str, port: i64, target: Vec<u8>| {
        m(
            1,
            &[s(1, name), s(2, "TCP"), int(3, port), target, int(5, 0)],
        )
    };
    let body = envelope(
        "v1",
        "Service",
        &[
            object_meta("svc", "", &[]),
            m(
                2,
                &[
                    port("http", 80, int_or_string_int(4, 8080)),
                    port("https", 443, int_or_string_str(4, "https")),
                    port("plain", 81, int_or_string_int(4, 0)),
                    entry(2, "app", s(2, "web")),
                    s(3, ""),
                    s(4, "ClusterIP"),
                    int(13, 0),
                ],
            ),
            m(3, &[m(1, &[])]),
        ],
    );
    let got = decode(&body).expect("decodes");
    assert_eq!(
        got["spec"],
        json!({
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"name": "https", "protocol": "TCP", "port": 443, "targetPort": "https"},
                // A plain IntOrString is always written; Go's JSON shows its zero as 0.
                {"name": "plain", "protocol": "TCP", "port": 81, "targetPort": 0},
            ],
            "selector": {"app": "web"},
            "type": "ClusterIP",
        })
    );
    assert_eq!(got["status"], json!({"loadBalancer": {}}));
}

#[test]
fn pod_timestamps_volumes_and_pointer_zeros() {
    let pod_spec = m(
        2,
        &[
            // A Volume embeds its VolumeSource inline.
            m(1, &[s(1, "data"), m(2, &[m(2, &[s(1, "")])])]),
            m(2, &[s(1, "c"), s(2, "busybox")]),
            s(3, ""),
            int(4, 0),           // terminationGracePeriodSeconds: *int64 → explicit 0 kept
            s(10, ""),           // nodeName: plain string, dropped when empty
            int(11, 0),          // hostNetwork: plain bool, dropped when false
            m(14, &[int(2, 0)]), // securityContext.runAsUser: *int64 → explicit 0 kept
            int(21, 0),          // automountServiceAccountToken: *bool → explicit false kept
        ],
    );
    let status = m(
        3,
        &[
            s(1, "Running"),
            m(7, &[int(1, 1_704_164_645), int(2, 999_999_999)]),
            m(12, &[s(1, "10.0.0.5")]),
        ],
    );
    let body = envelope(
        "v1",
        "Pod",
        &[
            object_meta(
                "p",
                "default",
                &[
                    m(8, &[int(1, 1_704_164_645)]),
                    int(10, 30),
                    m(
                        13,
                        &[
                            s(1, "ReplicaSet"),
                            s(3, "rs"),
                            s(4, "uid-1"),
                            s(5, "apps/v1"),
                            int(6, 1),
                            int(7, 1),
                        ],
                    ),
                    m(
                        17,
                        &[
                            s(1, "kubectl"),
                            s(2, "Update"),
                            s(3, "v1"),
                            m(4, &[int(1, 1_704_164_645)]),
                            s(6, "FieldsV1"),
                            m(7, &[bytes(1, br#"{"f:metadata":{"f:labels":{}}}"#)]),
                            s(8, ""),
                        ],
                    ),
                ],
            ),
            pod_spec,
            status,
        ],
    );
    let got = decode(&body).expect("decodes");
    assert_eq!(
        got["metadata"],
        json!({
            "name": "p",
            "namespace": "default",
            "creationTimestamp": "2024-01-02T03:04:05Z",
            "deletionGracePeriodSeconds": 30,
            "ownerReferences": [{
                "kind": "ReplicaSet", "name": "rs", "uid": "uid-1", "apiVersion": "apps/v1",
                "controller": true, "blockOwnerDeletion": true,
            }],
            "managedFields": [{
                "manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                "time": "2024-01-02T03:04:05Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {}}},
            }],
        })
    );
    assert_eq!(
        got["spec"],
        json!({
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [{"name": "c", "image": "busybox"}],
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsUser": 0},
            "automountServiceAccountToken": false,
        })
    );
    // Time drops sub-second precision, as upstream's protobuf decoder does.
    assert_eq!(
        got["status"],
        json!({"phase": "Running", "startTime": "2024-01-02T03:04:05Z", "podIPs": [{"ip": "10.0.0.5"}]})
    );
}

#[test]
fn special_messages_have_their_go_json_forms() {
    // Lease: MicroTime keeps microseconds.
    let lease = envelope(
        "coordination.k8s.io/v1",
        "Lease",
        &[
            object_meta("l", "kube-system", &[]),
            m(
                2,
                &[
                    s(1, "me"),
                    int(2, 15),
                    m(4, &[int(1, 1_704_164_645), int(2, 123_456_789)]),
                    int(5, 0),
                ],
            ),
        ],
    );
    assert_eq!(
        decode(&lease).expect("decodes")["spec"],
        json!({"holderIdentity": "me", "leaseDurationSeconds": 15, "renewTime": "2024-01-02T03:04:05.123456Z", "leaseTransitions": 0})
    );

    // ControllerRevision: RawExtension holds JSON.
    let revision = envelope(
        "apps/v1",
        "ControllerRevision",
        &[
            object_meta("r", "", &[]),
            m(2, &[bytes(1, br#"{"spec":{"template":{"x":1}}}"#)]),
            int(3, 7),
        ],
    );
    let got = decode(&revision).expect("decodes");
    assert_eq!(got["data"], json!({"spec": {"template": {"x": 1}}}));
    assert_eq!(got["revision"], json!(7));

    // SubjectAccessReview: map<string, ExtraValue> becomes a map of arrays.
    let sar = envelope(
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        &[
            object_meta("", "", &[]),
            m(
                2,
                &[
                    m(2, &[s(1, "/healthz"), s(2, "get")]),
                    s(3, "alice"),
                    s(4, "devs"),
                    s(4, "ops"),
                    entry(5, "scopes", m(2, &[s(1, "a"), s(1, "b")])),
                    s(6, ""),
                ],
            ),
        ],
    );
    assert_eq!(
        decode(&sar).expect("decodes")["spec"],
        json!({
            "nonResourceAttributes": {"path": "/healthz", "verb": "get"},
            "user": "alice",
            "groups": ["devs", "ops"],
            "extra": {"scopes": ["a", "b"]},
        })
    );

    // Secret: bytes values are base64; stringData stays text.
    let secret = envelope(
        "v1",
        "Secret",
        &[
            object_meta("s", "", &[]),
            entry(2, "k", bytes(2, &[0, 1, 255])),
            s(3, "Opaque"),
            entry(4, "t", s(2, "x")),
        ],
    );
    let got = decode(&secret).expect("decodes");
    assert_eq!(got["data"], json!({"k": "AAH/"}));
    assert_eq!(got["stringData"], json!({"t": "x"}));
}

#[test]
fn crd_schema_unions_follow_go_marshalling() {
    const CRD: &str = "apiextensions.k8s.io/v1";
    // JSONSchemaProps: 5 type, 24 items (OrArray), 29 properties (map),
    // 30 additionalProperties (OrBool), 37 nullable, 38 x-kubernetes-preserve-unknown-fields.
    let string_schema = [s(5, "string")];
    let schema = [
        s(5, "object"),
        entry(29, "name", m(2, &string_schema)),
        entry(
            29,
            "tags",
            m(2, &[s(5, "array"), m(24, &[m(1, &string_schema)])]),
        ),
        m(30, &[int(1, 0)]),
        int(37, 0),
        int(38, 1),
    ];
    let version = m(
        7,
        &[
            s(1, "v1"),
            int(2, 1),
            int(3, 1),
            m(4, &[m(1, &schema)]),
            int(7, 0),
        ],
    );
    let body = envelope(
        CRD,
        "CustomResourceDefinition",
        &[
            object_meta("widgets.example.com", "", &[]),
            m(
                2,
                &[
                    s(1, "example.com"),
                    m(3, &[s(1, "widgets"), s(2, "widget"), s(4, "Widget")]),
                    s(4, "Namespaced"),
                    version,
                ],
            ),
        ],
    );
    let got = decode(&body).expect("decodes");
    assert_eq!(
        got["spec"]["versions"][0],
        json!({
            "name": "v1",
            "served": true,
            "storage": true,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": false,
                "x-kubernetes-preserve-unknown-fields": true,
            }},
        })
    );
}

#[test]
fn meta_kinds_decode_under_any_group_version() {
    // client-go sends DeleteOptions with the group version of the resource it deletes.
    let body = envelope(
        "apps/v1",
        "DeleteOptions",
        &[
            int(1, 0),
            m(2, &[s(1, "uid-1")]),
            s(4, "Foreground"),
            s(5, "All"),
        ],
    );
    assert_eq!(
        decode(&body).expect("decodes"),
        json!({
            "apiVersion": "apps/v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": "uid-1"},
            "propagationPolicy": "Foreground",
            "dryRun": ["All"],
        })
    );
    let eviction = envelope(
        "policy/v1",
        "Eviction",
        &[
            object_meta("p", "default", &[]),
            m(2, &[int(1, 10), m(2, &[s(2, "7")])]),
        ],
    );
    assert_eq!(
        decode(&eviction).expect("decodes")["deleteOptions"],
        json!({"gracePeriodSeconds": 10, "preconditions": {"resourceVersion": "7"}})
    );
    let status = envelope(
        "v1",
        "Status",
        &[
            m(1, &[]),
            s(2, "Failure"),
            s(3, "nope"),
            s(4, "NotFound"),
            m(5, &[s(1, "x"), s(3, "pods")]),
            int(6, 404),
        ],
    );
    assert_eq!(
        decode(&status).expect("decodes"),
        json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "message": "nope",
            "reason": "NotFound", "details": {"name": "x", "kind": "pods"}, "code": 404,
        })
    );
}

#[test]
fn every_served_kind_and_subresource_kind_is_decodable() {
    let mut missing = Vec::new();
    for r in crate::builtin_resources() {
        if !supports(&r.api_version(), &r.kind) {
            missing.push(format!("{} {}", r.api_version(), r.kind));
        }
        for sub in &r.subresources {
            let api_version = match (sub.group.as_str(), sub.version.as_str()) {
                (_, "") => r.api_version(),
                ("", v) => v.to_string(),
                (g, v) => format!("{g}/{v}"),
            };
            let decodable = supports(&api_version, &sub.kind)
                || sub.kind.ends_with("Options")
                || matches!(
                    sub.name.as_str(),
                    "log" | "exec" | "attach" | "portforward" | "proxy"
                );
            if !decodable {
                missing.push(format!(
                    "{} {} ({}/{})",
                    api_version, sub.kind, r.resource, sub.name
                ));
            }
        }
    }
    let extra = [
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("authentication.k8s.io/v1", "SelfSubjectReview"),
        ("authentication.k8s.io/v1", "TokenReview"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
        ("authorization.k8s.io/v1", "SubjectAccessReview"),
        ("authorization.k8s.io/v1", "LocalSubjectAccessReview"),
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview"),
        ("policy/v1", "Eviction"),
        ("v1", "Binding"),
        ("autoscaling/v1", "Scale"),
        ("v1", "DeleteOptions"),
        ("meta.k8s.io/v1", "DeleteOptions"),
        ("v1", "Status"),
    ];
    for (api_version, kind) in extra {
        if !supports(api_version, kind) {
            missing.push(format!("{api_version} {kind}"));
        }
    }
    assert!(
        missing.is_empty(),
        "kinds without a protobuf schema: {missing:#?}"
    );
}

#[test]
fn malformed_bodies_are_errors_with_a_field_path() {
    assert_eq!(
        decode(b"{\"kind\":\"Pod\"}"),
        Err(ProtobufError::NotProtobuf)
    );
    assert_eq!(
        decode(&envelope("v1", "Frobnicator", &[])),
        Err(ProtobufError::UnknownKind {
            api_version: "v1".into(),
            kind: "Frobnicator".into()
        })
    );
    assert_eq!(
        decode(&envelope("", "", &[])),
        Err(ProtobufError::MissingKind)
    );
    let gzip = [
        MAGIC.to_vec(),
        m(1, &[s(1, "v1"), s(2, "Pod")]),
        s(3, "gzip"),
    ]
    .concat();
    assert_eq!(
        decode(&gzip),
        Err(ProtobufError::ContentEncoding("gzip".into()))
    );

    // A container whose name claims 9 bytes but has 1.
    let mut truncated = m(2, &[m(2, &[s(1, "ab")])]);
    let len = truncated.len();
    truncated[len - 3] = 9;
    let err = decode(&envelope(
        "v1",
        "Pod",
        &[object_meta("p", "", &[]), truncated],
    ))
    .expect_err("must fail");
    assert!(
        err.to_string()
            .starts_with("unable to decode protobuf at spec.containers[0]: unexpected end of data"),
        "{err}"
    );

    // A string where a number belongs.
    let err = decode(&envelope(
        "apps/v1",
        "Deployment",
        &[m(2, &[s(1, "three")])],
    ))
    .expect_err("must fail");
    assert_eq!(err.to_string(), "unable to decode protobuf at spec.replicas: got a length-delimited value for a int32 field");

    let err = decode(&envelope(
        "apps/v1",
        "ControllerRevision",
        &[m(2, &[bytes(1, b"{nope")])],
    ))
    .expect_err("must fail");
    assert!(
        err.to_string()
            .starts_with("unable to decode protobuf at data: embedded JSON is invalid"),
        "{err}"
    );
}

#[test]
fn unknown_fields_are_skipped_and_repeated_numbers_may_be_packed() {
    // ContainerRestartRuleOnExitCodes.values is `repeated int32`: accept both encodings.
    let rule = |values: Vec<u8>| {
        m(
            2,
            &[m(
                2,
                &[
                    s(1, "c"),
                    m(25, &[s(1, "Restart"), m(2, &[s(1, "In"), values])]),
                ],
            )],
        )
    };
    let packed = bytes(2, &[varint(1), varint(42), varint(0)].concat());
    let unpacked = [int(2, 1), int(2, 42), int(2, 0)].concat();
    for values in [packed, unpacked] {
        let body = envelope(
            "v1",
            "Pod",
            &[
                object_meta("p", "", &[]),
                rule(values),
                s(99, "from the future"),
            ],
        );
        let got = decode(&body).expect("decodes");
        assert_eq!(
            got["spec"]["containers"][0]["restartPolicyRules"],
            json!([{"action": "Restart", "exitCodes": {"operator": "In", "values": [1, 42, 0]}}])
        );
        assert!(got.get("99").is_none());
    }
}
