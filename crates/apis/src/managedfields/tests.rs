//! Behaviour tests for the field manager: apply, prune, sharing, conflicts, updates and
//! the client-side-apply upgrade, on a Deployment-shaped type.

use serde_json::{json, Value};

use super::*;

const T0: &str = "2024-05-01T10:00:00Z";
const T1: &str = "2024-05-01T10:00:01Z";
const T2: &str = "2024-05-01T10:00:02Z";

/// A Deployment's list semantics: containers keyed by name, ports by port and protocol,
/// an atomic selector.
struct Deployment;

impl TypeInfo for Deployment {
    fn list_kind(&self, path: &[PathElement]) -> ListKind {
        match path.last() {
            Some(PathElement::Field(f)) if f == "containers" => ListKind::Map {
                keys: vec!["name".into()],
            },
            Some(PathElement::Field(f)) if f == "ports" => ListKind::Map {
                keys: vec!["containerPort".into(), "protocol".into()],
            },
            _ => UnknownType.list_kind(path),
        }
    }
    fn map_kind(&self, path: &[PathElement]) -> MapKind {
        match path {
            [PathElement::Field(s), PathElement::Field(f)] if s == "spec" && f == "selector" => {
                MapKind::Atomic
            }
            _ => UnknownType.map_kind(path),
        }
    }
}

fn deployment(replicas: i64, labels: Value, containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}
        }
    })
}

fn nginx(image: &str) -> Value {
    json!([{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}])
}

fn fm() -> FieldManager<'static> {
    FieldManager::new(&Deployment, "apps/v1")
}

fn entries(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn entry<'v>(obj: &'v Value, manager: &str) -> Option<&'v Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager)
}

fn owns(obj: &Value, manager: &str, path: &[&str]) -> bool {
    let Some(e) = entry(obj, manager) else {
        return false;
    };
    let set = FieldSet::from_fields_v1(&e["fieldsV1"]).expect("valid fieldsV1");
    set.has(FieldPath::fields(path).elements())
}

fn conflicts(err: ApplyError) -> Vec<(String, String)> {
    match err {
        ApplyError::Conflicts(cs) => cs
            .into_iter()
            .map(|c| (c.describe_manager(), c.field_path))
            .collect(),
        other => panic!("expected conflicts, got {other:?}"),
    }
}

#[test]
fn apply_create_records_applied_fields() {
    let cfg = deployment(3, json!({"app": "web"}), nginx("nginx:1.25"));
    let obj = fm().apply(None, &cfg, "m", false, T0).expect("applies");
    let mut want = cfg.clone();
    want["metadata"]["managedFields"] = json!([{
        "manager": "m", "operation": "Apply", "apiVersion": "apps/v1", "time": T0, "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {}, "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                    }}}
                }
            }
        }
    }]);
    assert_eq!(obj, want);
}

#[test]
fn reapply_prunes_what_the_applier_dropped() {
    let cases: [(&str, Value, Value, Value); 3] = [
        (
            "removed label",
            json!({"app": "web", "tier": "fe"}),
            json!({"app": "web"}),
            json!({"app": "web"}),
        ),
        (
            "changed label",
            json!({"app": "web"}),
            json!({"app": "api"}),
            json!({"app": "api"}),
        ),
        ("all labels", json!({"app": "web"}), json!({}), Value::Null),
    ];
    for (name, before, after, want) in cases {
        let first = fm()
            .apply(None, &deployment(1, before, nginx("a")), "m", false, T0)
            .expect("first");
        let second = fm()
            .apply(
                Some(&first),
                &deployment(1, after, nginx("a")),
                "m",
                false,
                T1,
            )
            .expect(name);
        assert_eq!(second["metadata"]["labels"], want, "{name}");
        assert_eq!(entries(&second).len(), 1, "{name}");
        assert_eq!(entry(&second, "m").expect("entry")["time"], T1, "{name}");
    }
}

#[test]
fn reapply_removes_list_items_the_applier_dropped() {
    let two = json!([{"name": "nginx", "image": "a"}, {"name": "sidecar", "image": "b"}]);
    let first = fm()
        .apply(None, &deployment(1, json!({}), two), "m", false, T0)
        .expect("first");
    let second = fm().apply(
        Some(&first),
        &deployment(1, json!({}), json!([{"name": "nginx", "image": "a"}])),
        "m",
        false,
        T1,
    );
    let containers = &second.expect("second")["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers, &json!([{"name": "nginx", "image": "a"}]));
}

#[test]
fn managers_share_equal_values() {
    let a_cfg = deployment(3, json!({"app": "web"}), nginx("a"));
    let obj = fm().apply(None, &a_cfg, "a", false, T0).expect("a");
    let b_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let obj = fm()
        .apply(Some(&obj), &b_cfg, "b", false, T1)
        .expect("same value is no conflict");
    assert!(owns(&obj, "a", &["spec", "replicas"]) && owns(&obj, "b", &["spec", "replicas"]));
    assert_eq!(
        entry(&obj, "b").expect("b")["time"],
        Value::Null,
        "no-op apply does not stamp a time"
    );

    // a stops applying replicas: b still owns it, so it stays.
    let mut a_cfg2 = a_cfg.clone();
    a_cfg2["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("replicas");
    let obj = fm()
        .apply(Some(&obj), &a_cfg2, "a", false, T1)
        .expect("a again");
    assert_eq!(obj["spec"]["replicas"], 3);
    assert!(!owns(&obj, "a", &["spec", "replicas"]));

    // b stops too: nobody owns it any more, so it goes.
    let b_cfg2 = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"x": "y"}}});
    let obj = fm()
        .apply(Some(&obj), &b_cfg2, "b", false, T2)
        .expect("b again");
    assert_eq!(obj["spec"].get("replicas"), None);
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["image"],
        "a"
    );
}

#[test]
fn conflicts_and_force() {
    let obj = fm()
        .apply(
            None,
            &deployment(3, json!({"app": "web"}), nginx("a")),
            "a",
            false,
            T0,
        )
        .expect("a");
    let b_cfg = deployment(5, json!({"app": "web"}), nginx("b"));
    let err = fm()
        .apply(Some(&obj), &b_cfg, "b", false, T1)
        .expect_err("conflicts");
    assert_eq!(err.code(), 409);
    assert_eq!(
        err.status_message(),
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.replicas\n\
         - .spec.template.spec.containers[name=\"nginx\"].image"
    );
    assert_eq!(
        conflicts(err),
        vec![
            ("\"a\"".to_string(), ".spec.replicas".to_string()),
            (
                "\"a\"".to_string(),
                ".spec.template.spec.containers[name=\"nginx\"].image".to_string()
            ),
        ]
    );

    let obj = fm()
        .apply(Some(&obj), &b_cfg, "b", true, T1)
        .expect("forced");
    assert_eq!(obj["spec"]["replicas"], 5);
    assert!(owns(&obj, "b", &["spec", "replicas"]) && !owns(&obj, "a", &["spec", "replicas"]));
    assert!(
        owns(&obj, "a", &["metadata", "labels", "app"]),
        "shared, unchanged fields stay shared"
    );
}

#[test]
fn associative_lists_merge_by_key() {
    let a_cfg = deployment(1, json!({}), nginx("a"));
    let obj = fm().apply(None, &a_cfg, "a", false, T0).expect("a");
    let b_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "s"}]}}}});
    let obj = fm()
        .apply(Some(&obj), &b_cfg, "b", false, T1)
        .expect("b adds an item");
    let names: Vec<&Value> = obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(names, [&json!("nginx"), &json!("sidecar")]);
    // a re-applies its item with a new image: its own field, no conflict; b's item stays.
    let obj = fm()
        .apply(
            Some(&obj),
            &deployment(1, json!({}), nginx("a2")),
            "a",
            false,
            T2,
        )
        .expect("a updates");
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["image"],
        "a2"
    );
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][1]["name"],
        "sidecar"
    );
}

#[test]
fn update_transfers_ownership() {
    let mut created = deployment(3, json!({"app": "web"}), nginx("a"));
    fm().update(None, &mut created, "kubectl-create", T0);
    assert_eq!(entries(&created).len(), 1);
    assert!(owns(&created, "kubectl-create", &["spec", "replicas"]));
    assert_eq!(
        entry(&created, "kubectl-create").expect("entry")["fieldsV1"]["f:metadata"],
        json!({"f:labels": {".": {}, "f:app": {}}}),
        "updates own the maps they create"
    );

    let mut edited = created.clone();
    edited["spec"]["replicas"] = json!(4);
    fm().update(Some(&created), &mut edited, "kubectl-edit", T1);
    assert!(owns(&edited, "kubectl-edit", &["spec", "replicas"]));
    assert!(!owns(&edited, "kubectl-create", &["spec", "replicas"]));
    assert!(owns(
        &edited,
        "kubectl-create",
        &["metadata", "labels", "app"]
    ));
    assert_eq!(entry(&edited, "kubectl-edit").expect("edit")["time"], T1);

    // The same manager again: one entry, fields merged.
    let mut again = edited.clone();
    again["metadata"]["labels"]["tier"] = json!("fe");
    fm().update(Some(&edited), &mut again, "kubectl-edit", T2);
    assert_eq!(entries(&again).len(), 2);
    assert!(owns(&again, "kubectl-edit", &["spec", "replicas"]));
    assert!(owns(
        &again,
        "kubectl-edit",
        &["metadata", "labels", "tier"]
    ));

    // A no-op update changes nothing.
    let mut same = again.clone();
    fm().update(Some(&again), &mut same, "other", T2);
    assert_eq!(same, again);
}

#[test]
fn update_honours_explicit_managed_fields() {
    let mut created = deployment(3, json!({"app": "web"}), nginx("a"));
    fm().update(None, &mut created, "creator", T0);

    // Clients that drop managedFields keep the stored ones.
    let mut stripped = created.clone();
    stripped["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("managedFields");
    fm().update(Some(&created), &mut stripped, "x", T1);
    assert_eq!(entries(&stripped), entries(&created));

    // `[{}]` clears them, and the object is then untracked until the first apply.
    let mut reset = created.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    fm().update(Some(&created), &mut reset, "x", T1);
    assert_eq!(reset["metadata"].get("managedFields"), None);
    let mut later = reset.clone();
    later["spec"]["replicas"] = json!(9);
    fm().update(Some(&reset), &mut later, "x", T2);
    assert_eq!(later["metadata"].get("managedFields"), None);

    // Rewriting entries (what kubectl's client-side-apply migration does) is kept.
    let mut rewritten = created.clone();
    rewritten["metadata"]["managedFields"][0]["manager"] = json!("renamed");
    fm().update(Some(&created), &mut rewritten, "x", T1);
    assert!(entry(&rewritten, "renamed").is_some() && entry(&rewritten, "creator").is_none());
}

#[test]
fn first_apply_to_untracked_object_conflicts_with_before_first_apply() {
    let live = deployment(3, json!({"app": "web"}), nginx("a"));
    let err = fm().apply(
        Some(&live),
        &deployment(5, json!({"app": "web"}), nginx("a")),
        "m",
        false,
        T1,
    );
    assert_eq!(
        conflicts(err.expect_err("conflict")),
        vec![(
            "\"before-first-apply\" using apps/v1".to_string(),
            ".spec.replicas".to_string()
        )]
    );
    let obj = fm()
        .apply(
            Some(&live),
            &deployment(3, json!({"app": "web"}), nginx("a")),
            "m",
            false,
            T1,
        )
        .expect("same");
    assert!(
        owns(&obj, "before-first-apply", &["spec", "replicas"])
            && owns(&obj, "m", &["spec", "replicas"])
    );
}

/// `kubectl apply` (client-side) creates with replicas 3, then `kubectl apply --server-side`
/// sends replicas 5.
fn client_side_applied() -> Value {
    let mut cfg = deployment(3, json!({"app": "web"}), nginx("a"));
    let last = serde_json::to_string(&cfg).expect("json");
    cfg["metadata"]["annotations"] = json!({ LAST_APPLIED_ANNOTATION: last });
    fm().update(None, &mut cfg, "kubectl-client-side-apply", T0);
    cfg
}

#[test]
fn server_side_apply_after_client_side_apply() {
    let live = client_side_applied();
    let ssa = deployment(5, json!({"app": "web"}), nginx("a"));

    // Any manager but `kubectl` conflicts with client-side apply's fields.
    let err = fm()
        .apply(Some(&live), &ssa, "e2e", false, T1)
        .expect_err("conflict");
    assert_eq!(
        err.status_message(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
    );
    assert_eq!(err.causes()[0].field.as_deref(), Some(".spec.replicas"));
    let obj = fm()
        .apply(Some(&live), &ssa, "e2e", true, T1)
        .expect("forced");
    assert_eq!(obj["spec"]["replicas"], 5);
    assert!(
        owns(&obj, "e2e", &["spec", "replicas"])
            && !owns(&obj, "kubectl-client-side-apply", &["spec", "replicas"])
    );

    // `kubectl` takes over fields still matching last-applied, as upstream (since 1.19)...
    let obj = fm()
        .apply(Some(&live), &ssa, "kubectl", false, T1)
        .expect("upgraded without conflict");
    assert_eq!(obj["spec"]["replicas"], 5);
    let last: Value = serde_json::from_str(
        obj["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
            .as_str()
            .expect("annotation kept"),
    )
    .expect("json");
    assert_eq!(
        last["spec"]["replicas"], 5,
        "last-applied follows the server-side apply"
    );

    // ...unless disabled, or the field changed since the last client-side apply.
    let strict = fm().with_client_side_apply_upgrade(false);
    assert!(matches!(
        strict.apply(Some(&live), &ssa, "kubectl", false, T1),
        Err(ApplyError::Conflicts(_))
    ));
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(4);
    fm().update(Some(&live), &mut scaled, "kubectl-client-side-apply", T1);
    let err = fm()
        .apply(Some(&scaled), &ssa, "kubectl", false, T2)
        .expect_err("not in last-applied any more");
    assert_eq!(conflicts(err)[0].1, ".spec.replicas");
}

#[test]
fn reset_fields_are_never_owned() {
    let fm = fm().with_reset_fields(FieldSet::from_field_paths(&[&["status"]]));
    let mut cfg = deployment(1, json!({}), nginx("a"));
    cfg["status"] = json!({"replicas": 1});
    let obj = fm.apply(None, &cfg, "m", false, T0).expect("applies");
    assert_eq!(
        entry(&obj, "m").expect("m")["fieldsV1"].get("f:status"),
        None
    );
    let mut new = obj.clone();
    new["status"]["replicas"] = json!(2);
    fm.update(Some(&obj), &mut new, "other", T1);
    assert!(entry(&new, "other").is_none());
}

#[test]
fn status_subresource_entries_record_it() {
    let created = fm()
        .apply(None, &deployment(1, json!({}), nginx("a")), "m", false, T0)
        .expect("create");
    let mut new = created.clone();
    new["status"] = json!({"readyReplicas": 1});
    new["metadata"]["managedFields"] = json!([]); // ignored through a subresource
    fm().with_subresource("status")
        .update(Some(&created), &mut new, "kcm", T1);
    let e = entry(&new, "kcm").expect("kcm");
    assert_eq!(
        (e["subresource"].as_str(), e["operation"].as_str()),
        (Some("status"), Some("Update"))
    );
    assert!(entry(&new, "m").is_some());
}

#[test]
fn bad_apply_requests() {
    let mut with_mf = deployment(1, json!({}), nginx("a"));
    with_mf["metadata"]["managedFields"] = json!([]);
    let mut wrong_version = deployment(1, json!({}), nginx("a"));
    wrong_version["apiVersion"] = json!("apps/v1beta1");
    let cases = [
        (with_mf, "metadata.managedFields must be nil"),
        (
            wrong_version,
            "Specified patch version: apps/v1beta1, expected: apps/v1",
        ),
        (
            deployment(1, json!({}), json!([{"image": "x"}])),
            "omits key field \"name\"",
        ),
        (json!([1]), "must be a JSON or YAML object"),
    ];
    for (cfg, want) in cases {
        let err = fm().apply(None, &cfg, "m", false, T0).expect_err(want);
        assert_eq!(err.code(), 400);
        assert!(
            err.status_message().contains(want),
            "{} should contain {want}",
            err.status_message()
        );
    }
}

#[test]
fn update_managers_are_capped() {
    let mut obj =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
    let fm = FieldManager::new(&UnknownType, "v1").with_max_update_managers(3);
    fm.update(None, &mut obj, "creator", T0);
    for i in 0..5 {
        let mut next = obj.clone();
        next["data"][format!("k{i}")] = json!("v");
        fm.update(
            Some(&obj),
            &mut next,
            &format!("writer{i}"),
            &format!("2024-05-01T10:00:1{i}Z"),
        );
        obj = next;
    }
    let managers: Vec<String> = entries(&obj)
        .iter()
        .map(|e| e["manager"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(managers, ["ancient-changes", "writer3", "writer4"]);
}

#[test]
fn manager_from_user_agent() {
    let long = "x".repeat(200);
    let cases = [
        ("kubectl/v1.33.0 (linux/amd64) kubernetes/abc", "kubectl"),
        ("kube-controller-manager/v1.33.0", "kube-controller-manager"),
        ("curl", "curl"),
        ("a\tb/1", "ab"),
        ("", ""),
        (long.as_str(), &long[..128]),
    ];
    for (ua, want) in cases {
        assert_eq!(default_manager_from_user_agent(ua), want, "{ua}");
    }
}

#[test]
fn free_functions_use_defaults() {
    let cfg = deployment(2, json!({}), nginx("a"));
    let obj = apply(None, &cfg, "m", false, "apps/v1", &Deployment, T0).expect("applies");
    let mut next = obj.clone();
    next["spec"]["replicas"] = json!(3);
    update_managed_fields(Some(&obj), &mut next, "scaler", "apps/v1", &Deployment, T1);
    assert!(
        owns(&next, "scaler", &["spec", "replicas"]) && !owns(&next, "m", &["spec", "replicas"])
    );
}

#[test]
fn built_in_schemas_drive_apply() {
    let deploy = SchemaType::for_kind("apps", "v1", "Deployment").expect("schema");
    let fm = FieldManager::new(&deploy, "apps/v1");
    let cfg = deployment(3, json!({"app": "web"}), nginx("nginx:1.25"));
    let obj = fm.apply(None, &cfg, "kubectl", false, T0).expect("create");
    let f = &entry(&obj, "kubectl").expect("entry")["fieldsV1"]["f:spec"];
    assert_eq!(f["f:selector"], json!({}), "LabelSelector is atomic");
    assert_eq!(
        f["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]["f:ports"],
        json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
    );

    // Client-side apply history, then another applier changing replicas: a conflict.
    let mut csa = cfg.clone();
    csa["metadata"]["annotations"] = json!({ LAST_APPLIED_ANNOTATION: cfg.to_string() });
    fm.update(None, &mut csa, "kubectl-client-side-apply", T0);
    let ssa = deployment(5, json!({"app": "web"}), nginx("nginx:1.25"));
    let err = fm
        .apply(Some(&csa), &ssa, "e2e", false, T1)
        .expect_err("conflict");
    assert_eq!(
        err.status_message(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
    );

    // Pods: containers merge by name across managers.
    let pod_type = SchemaType::for_kind("", "v1", "Pod").expect("schema");
    let fm = FieldManager::new(&pod_type, "v1");
    let pod = |containers: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}});
    let obj = fm
        .apply(
            None,
            &pod(json!([{"name": "app", "image": "a"}])),
            "a",
            false,
            T0,
        )
        .expect("a");
    let obj = fm
        .apply(
            Some(&obj),
            &pod(json!([{"name": "log", "image": "l"}])),
            "b",
            false,
            T1,
        )
        .expect("b");
    assert_eq!(
        obj["spec"]["containers"],
        json!([{"name": "app", "image": "a"}, {"name": "log", "image": "l"}])
    );
    let err = fm
        .apply(
            Some(&obj),
            &pod(json!([{"name": "app", "image": "x"}])),
            "b",
            false,
            T2,
        )
        .expect_err("a owns app's image");
    assert_eq!(
        conflicts(err),
        vec![(
            "\"a\"".to_string(),
            ".spec.containers[name=\"app\"].image".to_string()
        )]
    );
}
