//! Server-side Table printing (kubectl get columns) for built-in resources.
//!
//! This is what kube-apiserver returns for
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`: a `meta.k8s.io/v1`
//! `Table` whose column definitions and cells follow upstream
//! `pkg/printers/internalversion/printers.go` (built-in kinds),
//! `rest.NewDefaultTableConvertor` (built-in kinds without a printer: Name,
//! Created At) and apiextensions' table convertor (custom resources).
//!
//! Like the API server, rows always carry the `-o wide` cells (columns with
//! priority 1); kubectl decides which to show. Cells are JSON strings, integers or
//! booleans exactly where upstream puts each type.

mod builtin;
mod columns;
mod custom;
mod duration;
mod format;
mod pod;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub use custom::{custom_column_definitions, custom_row_cells};
pub use duration::{human_duration, human_duration_seconds, parse_timestamp, translate_timestamp};

/// One `meta.k8s.io/v1` `TableColumnDefinition`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDefinition {
    pub name: String,
    /// OpenAPI type of the cells: `string`, `integer`, `number`, `boolean` or `date`.
    pub column_type: String,
    /// OpenAPI format modifier (`name` for the object-name column), often empty.
    pub format: String,
    pub description: String,
    /// 0 for default columns, 1 for `-o wide` ones.
    pub priority: i32,
}

impl ColumnDefinition {
    /// The wire form; every field is always present, as upstream serializes it.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.column_type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// The `includeObject` query parameter of a Table request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// Rows carry no object.
    None,
    /// Rows carry a `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// Rows carry the full object.
    Object,
}

impl IncludeObject {
    /// Parses the query value; `None` for anything upstream would reject.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "None" => Some(Self::None),
            "Metadata" | "" => Some(Self::Metadata),
            "Object" => Some(Self::Object),
            _ => None,
        }
    }
}

/// Column definitions for a built-in (or unknown custom) group/resource.
pub fn column_definitions(group: &str, resource: &str) -> Vec<ColumnDefinition> {
    columns::definitions(columns::printer_for(group, resource))
}

/// The cells of one object's row, one per column of [`column_definitions`].
pub fn row_cells(group: &str, resource: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    match columns::printer_for(group, resource) {
        columns::Printer::Pod => {
            let pod = k8s_openapi::api::core::v1::Pod::deserialize(obj).unwrap_or_default();
            pod::cells(&pod, now)
        }
        columns::Printer::Custom => custom::custom_row_cells(&[], obj, now),
        printer => builtin::cells(printer, group, obj, now),
    }
}

/// Row conditions (only finished pods have any upstream).
fn row_conditions(group: &str, resource: &str, obj: &Value) -> Option<Value> {
    if columns::printer_for(group, resource) != columns::Printer::Pod {
        return None;
    }
    let pod = k8s_openapi::api::core::v1::Pod::deserialize(obj).ok()?;
    pod::conditions(&pod)
}

/// The `object` of a row for the requested `includeObject`.
fn row_object(obj: &Value, include_object: IncludeObject) -> Option<Value> {
    match include_object {
        IncludeObject::None => None,
        IncludeObject::Object => Some(obj.clone()),
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })),
    }
}

/// Assembles a `Table` from columns and rows.
fn assemble(
    columns: &[ColumnDefinition],
    rows: impl Iterator<Item = (Vec<Value>, Option<Value>, Option<Value>)>,
) -> Value {
    let rows: Vec<Value> = rows
        .map(|(cells, conditions, object)| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            if let Some(c) = conditions {
                row.insert("conditions".into(), c);
            }
            if let Some(o) = object {
                row.insert("object".into(), o);
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        // resourceVersion, continue and remainingItemCount are the caller's to fill.
        "metadata": {},
        "columnDefinitions": columns.iter().map(ColumnDefinition::to_json).collect::<Vec<_>>(),
        "rows": rows,
    })
}

/// The full `meta.k8s.io/v1` `Table` for built-in objects of one resource (one
/// object for a GET). Its `metadata` is empty: the caller sets `resourceVersion`
/// (and `continue`/`remainingItemCount` for a list).
pub fn table(
    group: &str,
    resource: &str,
    objs: &[Value],
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let columns = column_definitions(group, resource);
    let rows = objs.iter().map(|obj| {
        (
            row_cells(group, resource, obj, now),
            row_conditions(group, resource, obj),
            row_object(obj, include_object),
        )
    });
    assemble(&columns, rows)
}

/// The `Table` for custom resources of a CRD version with the given
/// `additionalPrinterColumns` (raw CRD JSON: `name`, `type`, `format`,
/// `description`, `priority`, `jsonPath`); `metadata` is left to the caller as in
/// [`table`].
pub fn custom_table(
    additional_printer_columns: &[Value],
    objs: &[Value],
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let columns = custom_column_definitions(additional_printer_columns);
    let rows = objs.iter().map(|obj| {
        (
            custom_row_cells(additional_printer_columns, obj, now),
            None,
            row_object(obj, include_object),
        )
    });
    assemble(&columns, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        parse_timestamp("2024-05-01T12:00:00Z").expect("now")
    }

    fn cells(group: &str, resource: &str, obj: Value) -> Vec<Value> {
        let cells = row_cells(group, resource, &obj, now());
        assert_eq!(
            cells.len(),
            column_definitions(group, resource).len(),
            "one cell per column"
        );
        cells
    }

    fn pod(status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:57:00Z"},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            "status": status,
        })
    }

    fn running(ready: bool, restarts: i32) -> Value {
        json!({"name": "app", "ready": ready, "restartCount": restarts, "image": "nginx", "imageID": "",
               "state": {"running": {"startedAt": "2024-05-01T11:58:00Z"}}})
    }

    #[test]
    fn pod_status_column_follows_upstream_reasons() {
        let waiting = |reason: &str| {
            json!({"name": "app", "ready": false, "restartCount": 0, "image": "nginx", "imageID": "",
                   "state": {"waiting": {"reason": reason}}})
        };
        let cases: Vec<(&str, Value, [&str; 4])> = vec![
            (
                "pending",
                json!({"phase": "Pending"}),
                ["web", "0/1", "Pending", "0"],
            ),
            (
                "creating",
                json!({"phase": "Pending", "containerStatuses": [waiting("ContainerCreating")]}),
                ["web", "0/1", "ContainerCreating", "0"],
            ),
            (
                "running",
                json!({"phase": "Running", "containerStatuses": [running(true, 0)]}),
                ["web", "1/1", "Running", "0"],
            ),
            (
                "crashloop",
                json!({"phase": "Running", "containerStatuses": [{
                    "name": "app", "ready": false, "restartCount": 5, "image": "nginx", "imageID": "",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2024-05-01T11:55:00Z"}}
                }]}),
                ["web", "0/1", "CrashLoopBackOff", "5 (5m ago)"],
            ),
            (
                "completed",
                json!({"phase": "Succeeded", "containerStatuses": [{
                    "name": "app", "ready": false, "restartCount": 0, "image": "nginx", "imageID": "",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}
                }]}),
                ["web", "0/1", "Completed", "0"],
            ),
            (
                "error",
                json!({"phase": "Failed", "containerStatuses": [{
                    "name": "app", "ready": false, "restartCount": 0, "image": "nginx", "imageID": "",
                    "state": {"terminated": {"exitCode": 2, "reason": "Error"}}
                }]}),
                ["web", "0/1", "Error", "0"],
            ),
            (
                "exit code without reason",
                json!({"phase": "Failed", "containerStatuses": [{
                    "name": "app", "ready": false, "restartCount": 0, "image": "nginx", "imageID": "",
                    "state": {"terminated": {"exitCode": 137}}
                }]}),
                ["web", "0/1", "ExitCode:137", "0"],
            ),
            (
                "image pull",
                json!({"phase": "Pending", "containerStatuses": [waiting("ErrImagePull")]}),
                ["web", "0/1", "ErrImagePull", "0"],
            ),
            (
                "backoff",
                json!({"phase": "Pending", "containerStatuses": [waiting("ImagePullBackOff")]}),
                ["web", "0/1", "ImagePullBackOff", "0"],
            ),
            (
                "gated",
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                ["web", "0/1", "SchedulingGated", "0"],
            ),
        ];
        for (what, status, want) in cases {
            let got = cells("", "pods", pod(status));
            let got: Vec<&str> = got[..4].iter().map(|v| v.as_str().unwrap_or("?")).collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn pod_init_containers_and_termination() {
        let base = |status: Value| {
            json!({
                "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:57:00Z"},
                "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]},
                "status": status,
            })
        };
        let init = |state: Value| json!({"name": "init", "ready": false, "restartCount": 0, "image": "", "imageID": "", "state": state});
        let c = cells(
            "",
            "pods",
            base(
                json!({"phase": "Pending", "initContainerStatuses": [init(json!({"running": {}}))]}),
            ),
        );
        assert_eq!(c[2], json!("Init:0/1"));
        let c = cells(
            "",
            "pods",
            base(
                json!({"phase": "Pending", "initContainerStatuses": [init(json!({"terminated": {"exitCode": 1, "reason": "Error"}}))]}),
            ),
        );
        assert_eq!(c[2], json!("Init:Error"));
        let c = cells(
            "",
            "pods",
            base(json!({
                "phase": "Pending",
                "initContainerStatuses": [init(json!({"terminated": {"exitCode": 0, "reason": "Completed"}}))],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                                       "state": {"waiting": {"reason": "PodInitializing"}}}],
            })),
        );
        assert_eq!(c[2], json!("PodInitializing"));

        let mut terminating =
            pod(json!({"phase": "Running", "containerStatuses": [running(true, 0)]}));
        terminating["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
        assert_eq!(cells("", "pods", terminating)[2], json!("Terminating"));
    }

    #[test]
    fn pod_wide_cells_and_sidecars() {
        let obj = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:57:00Z"},
            "spec": {
                "nodeName": "node-1",
                "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                "containers": [{"name": "app"}],
                "readinessGates": [{"conditionType": "example.com/ready"}],
            },
            "status": {
                "phase": "Running",
                "podIPs": [{"ip": "10.0.0.5"}],
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "example.com/ready", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1,
                    "image": "", "imageID": "", "state": {"running": {}}}],
                "containerStatuses": [running(true, 0)],
            },
        });
        let c = cells("", "pods", obj);
        assert_eq!(
            c,
            vec![
                json!("web"),
                json!("2/2"),
                json!("Running"),
                json!("1"),
                json!("3m"),
                json!("10.0.0.5"),
                json!("node-1"),
                json!("<none>"),
                json!("1/1"),
            ]
        );
    }

    #[test]
    fn service_ports_and_external_ips() {
        let svc = |spec: Value, status: Value| json!({"metadata": {"name": "web", "creationTimestamp": "2024-04-29T09:00:00Z"}, "spec": spec, "status": status});
        let c = cells(
            "",
            "services",
            svc(
                json!({"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                       "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                       "selector": {"app": "web"}}),
                json!({}),
            ),
        );
        assert_eq!(
            c,
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("2d3h"),
                json!("app=web"),
            ]
        );
        let lb = cells(
            "",
            "services",
            svc(
                json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"], "ports": [{"port": 443, "protocol": "TCP"}]}),
                json!({}),
            ),
        );
        assert_eq!(lb[3], json!("<pending>"));
        let lb = cells(
            "",
            "services",
            svc(
                json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"]}),
                json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}),
            ),
        );
        assert_eq!(lb[3], json!("1.2.3.4"));
        assert_eq!(lb[4], json!("<none>"));
        let headless = cells(
            "",
            "services",
            svc(
                json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}),
                json!({}),
            ),
        );
        assert_eq!(headless[2], json!("None"));
    }

    #[test]
    fn deployment_row() {
        let obj = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:59:55Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "side", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        let c = cells("apps", "deployments", obj);
        assert_eq!(
            c,
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("5s"),
                json!("nginx,side"),
                json!("nginx:1.25,busybox"),
                json!("app=web"),
            ]
        );
        let names: Vec<String> = column_definitions("apps", "deployments")
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
    }

    #[test]
    fn node_and_namespace_rows() {
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2024-05-01T11:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian", "architecture": "", "bootID": "",
                                    "containerRuntimeVersion": "", "kernelVersion": "6.1", "kubeProxyVersion": "",
                                    "machineID": "", "operatingSystem": "linux", "systemUUID": ""}},
        });
        let c = cells("", "nodes", node);
        assert_eq!(c[1], json!("Ready,SchedulingDisabled"));
        assert_eq!(c[2], json!("control-plane,worker"));
        assert_eq!(c[3], json!("60m"));
        assert_eq!(
            &c[5..],
            &[
                json!("192.168.1.2"),
                json!("<none>"),
                json!("Debian"),
                json!("6.1"),
                json!("<unknown>")
            ]
        );
        let ns = cells(
            "",
            "namespaces",
            json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}}),
        );
        assert_eq!(
            ns,
            vec![json!("default"), json!("Active"), json!("<unknown>")]
        );
    }

    #[test]
    fn job_cronjob_and_event_rows() {
        let job = json!({
            "metadata": {"name": "pi", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 1, "startTime": "2024-05-01T11:00:00Z", "completionTime": "2024-05-01T11:00:12Z",
                       "conditions": [{"type": "Complete", "status": "True"}]},
        });
        let c = cells("batch", "jobs", job);
        assert_eq!(
            &c[..5],
            &[
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("12s"),
                json!("60m")
            ]
        );
        let cj = cells(
            "batch",
            "cronjobs",
            json!({
                "metadata": {"name": "tick"},
                "spec": {"schedule": "*/5 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {}}}},
            }),
        );
        assert_eq!(&c[..1], &[json!("pi")]);
        assert_eq!(
            &cj[..6],
            &[
                json!("tick"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(0),
                json!("<none>")
            ]
        );
        let ev = cells(
            "",
            "events",
            json!({
                "metadata": {"name": "web.123"},
                "involvedObject": {"kind": "Pod", "name": "web"},
                "reason": "Started", "type": "Normal", "message": "Started container\n",
                "firstTimestamp": "2024-05-01T11:59:00Z", "lastTimestamp": "2024-05-01T11:59:30Z", "count": 2,
                "source": {"component": "kubelet", "host": "n1"},
            }),
        );
        assert_eq!(
            ev,
            vec![
                json!("30s"),
                json!("Normal"),
                json!("Started"),
                json!("pod/web"),
                json!(""),
                json!("kubelet, n1"),
                json!("Started container"),
                json!("60s"),
                json!(2),
                json!("web.123"),
            ]
        );
    }

    #[test]
    fn table_carries_partial_object_metadata() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "cfg", "namespace": "default", "creationTimestamp": "2024-05-01T11:59:00Z"},
                         "data": {"a": "1", "b": "2"}});
        let t = table(
            "",
            "configmaps",
            std::slice::from_ref(&obj),
            IncludeObject::default(),
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({}));
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(
            t["columnDefinitions"][1],
            json!({
                "name": "Data", "type": "string", "format": "",
                "description": "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
                "priority": 0,
            })
        );
        assert_eq!(t["rows"][0]["cells"], json!(["cfg", 2, "60s"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "cfg");
        let t = table(
            "",
            "configmaps",
            std::slice::from_ref(&obj),
            IncludeObject::None,
            now(),
        );
        assert!(t["rows"][0].get("object").is_none());
        let t = table(
            "",
            "configmaps",
            std::slice::from_ref(&obj),
            IncludeObject::Object,
            now(),
        );
        assert_eq!(t["rows"][0]["object"], obj);
    }

    #[test]
    fn default_and_custom_tables() {
        let role =
            json!({"metadata": {"name": "reader", "creationTimestamp": "2024-05-01T11:59:00Z"}});
        let c = cells("rbac.authorization.k8s.io", "roles", role.clone());
        assert_eq!(c, vec![json!("reader"), json!("2024-05-01T11:59:00Z")]);
        assert_eq!(
            column_definitions("rbac.authorization.k8s.io", "roles")[1].column_type,
            "date"
        );
        let c = cells("example.com", "widgets", role);
        assert_eq!(c, vec![json!("reader"), json!("60s")]);

        let columns = vec![
            json!({"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}),
            json!({"name": "Image", "type": "string", "jsonPath": ".spec.containers[0].image", "priority": 1}),
            json!({"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"}),
            json!({"name": "Missing", "type": "string", "jsonPath": ".status.nothing"}),
        ];
        let obj = json!({"metadata": {"name": "w1"}, "spec": {"replicas": 3, "containers": [{"image": "nginx"}]}, "status": {"ready": true}});
        let t = custom_table(&columns, &[obj], IncludeObject::None, now());
        assert_eq!(t["rows"][0]["cells"], json!(["w1", 3, "nginx", true, null]));
        assert_eq!(t["columnDefinitions"][2]["priority"], 1);
        assert_eq!(
            t["columnDefinitions"][1]["description"],
            "Custom resource definition column (in JSONPath format): .spec.replicas"
        );
        assert_eq!(t["metadata"], json!({}));
    }
}
