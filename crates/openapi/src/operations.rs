//! The REST operations of a resource, in a dialect-neutral form that `v3` and `v2`
//! render: paths, operation ids, actions, parameters, bodies and responses named as
//! kube-apiserver's endpoint installer names them (`createAppsV1NamespacedDeployment`,
//! `x-kubernetes-action: post`, …).
//!
//! Every POST/PUT/PATCH lists `fieldValidation`: kubectl looks for it on the PATCH
//! operation of a kind to decide that the server validates fields itself.

use apis::{ResourceInfo, Subresource};

use crate::schemas::{Gvk, Schemas};

pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(crate) const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";

fn is_builtin(group: &str) -> bool {
    apis::resources::BUILTIN_GROUPS
        .iter()
        .any(|(g, _)| *g == group)
}

/// Content types of a PATCH body (strategic merge only for built-in kinds).
pub(crate) fn patch_types(strategic: bool) -> Vec<&'static str> {
    PATCH_TYPES
        .iter()
        .copied()
        .filter(|t| strategic || !t.starts_with("application/strategic"))
        .collect()
}

/// Content types of a PATCH body.
pub(crate) const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

#[derive(Clone, Debug)]
pub(crate) struct Param {
    pub name: &'static str,
    /// `path` or `query`.
    pub location: &'static str,
    pub description: String,
    /// `string`, `integer` or `boolean`.
    pub ty: &'static str,
    pub required: bool,
}

impl Param {
    fn query(name: &'static str, ty: &'static str, description: impl Into<String>) -> Self {
        Self {
            name,
            location: "query",
            description: description.into(),
            ty,
            required: false,
        }
    }

    fn path(name: &'static str, description: impl Into<String>) -> Self {
        Self {
            name,
            location: "path",
            description: description.into(),
            ty: "string",
            required: true,
        }
    }
}

/// What a response carries.
#[derive(Clone, Debug)]
pub(crate) enum Payload {
    /// A JSON/YAML/protobuf object of the named schema.
    Object(String),
    /// A watch stream of the named schema.
    Stream(String),
    /// Plain text (logs) or an opaque string (connect).
    Text,
}

#[derive(Clone, Debug)]
pub(crate) struct Response {
    pub code: &'static str,
    pub description: &'static str,
    pub payload: Payload,
}

#[derive(Clone, Debug)]
pub(crate) enum Body {
    None,
    /// An object of the named schema.
    Object(String),
    /// A patch document (`Patch` schema under every patch content type); `false` for
    /// custom resources, which do not accept strategic merge patches.
    Patch(bool),
}

#[derive(Clone, Debug)]
pub(crate) struct Operation {
    /// Lower-case HTTP method as OpenAPI keys it.
    pub method: &'static str,
    pub id: String,
    pub description: String,
    pub action: &'static str,
    pub gvk: Option<Gvk>,
    pub params: Vec<Param>,
    pub body: Body,
    pub responses: Vec<Response>,
    pub tag: String,
}

#[derive(Clone, Debug)]
pub(crate) struct PathItem {
    pub path: String,
    pub params: Vec<Param>,
    pub ops: Vec<Operation>,
}

/// `apps` → `Apps`, `rbac.authorization.k8s.io` → `RbacAuthorization`, core → `Core`.
pub(crate) fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_string();
    }
    group
        .trim_end_matches(".k8s.io")
        .split('.')
        .map(capitalize)
        .collect()
}

/// Operation tag: `core_v1`, `apps_v1`, `rbacAuthorization_v1`.
pub(crate) fn tag(group: &str, version: &str) -> String {
    let camel = group_camel(group);
    let mut chars = camel.chars();
    let lower = chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default();
    format!("{lower}_{version}")
}

pub(crate) fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub(crate) fn gv_prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

fn pretty() -> Param {
    Param::query(
        "pretty",
        "string",
        "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
    )
}

fn namespace_param() -> Param {
    Param::path(
        "namespace",
        "object name and auth scope, such as for teams and projects",
    )
}

fn dry_run() -> Param {
    Param::query("dryRun", "string", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed")
}

fn field_manager(patch: bool) -> Param {
    let text = if patch {
        "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint. This field is required for apply requests (application/apply-patch) but optional for non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch)."
    } else {
        "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint."
    };
    Param::query("fieldManager", "string", text)
}

fn field_validation() -> Param {
    Param::query("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.")
}

fn force() -> Param {
    Param::query("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.")
}

fn write_params(patch: bool) -> Vec<Param> {
    let mut p = vec![dry_run(), field_manager(patch), field_validation()];
    if patch {
        p.push(force());
    }
    p
}

fn list_params() -> Vec<Param> {
    vec![
        Param::query("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored."),
        Param::query("continue", "string", "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize. If the specified continue value is no longer valid whether due to expiration (generally five to fifteen minutes) or a configuration change on the server, the server will respond with a 410 ResourceExpired error together with a continue token. If the client needs a consistent list, it must restart their list without the continue field. Otherwise, the client may send another list request with the token received with the 410 error, the server will respond with a list starting from the next key, but from the latest snapshot, which is inconsistent from the previous list results - objects that are created, modified, or deleted after the first list request will be included in the response, as long as their keys are after the \"next key\".\n\nThis field is not supported when watch is true. Clients may start a watch from the last resourceVersion value returned by the server and not miss any modifications."),
        Param::query("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        Param::query("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        Param::query("limit", "integer", "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results. Setting a limit may return fewer than the requested amount of items (up to zero items) in the event all requested objects are filtered out and clients should only use the presence of the continue field to determine whether more results are available. Servers may choose not to support the limit argument and will return all of the available results. If limit is specified and the continue field is empty, clients may assume that no more results are available. This field is not supported if watch is true.\n\nThe server guarantees that the objects returned when using continue will be identical to issuing a single list call without a limit - that is, no objects created, modified, or deleted after the first request is issued will be included in any subsequent continued requests. This is sometimes referred to as a consistent snapshot, and ensures that a client that is using limit to receive smaller chunks of a very large result can ensure they see all possible objects. If objects are updated during a chunked list the version of the object that was present at the time the first list result was calculated is returned."),
        Param::query("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset"),
        Param::query("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset"),
        Param::query("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection. Once all such events have been sent, a synthetic \"Bookmark\" event  will be sent. The bookmark will report the ResourceVersion (RV) corresponding to the set of objects, and be marked with `\"k8s.io/initial-events-end\": \"true\"` annotation. Afterwards, the watch stream will proceed as usual, sending watch events corresponding to changes (subsequent to the RV) to objects watched.\n\nWhen `sendInitialEvents` option is set, we require `resourceVersionMatch` option to also be set. The semantic of the watch request is as following: - `resourceVersionMatch` = NotOlderThan\n  is interpreted as \"data at least as new as the provided `resourceVersion`\"\n  and the bookmark event is send when the state is synced\n  to a `resourceVersion` at least as fresh as the one provided by the ListOptions.\n  If `resourceVersion` is unset, this is interpreted as \"consistent read\" and the\n  bookmark event is send when the state is synced at least to the moment\n  when request started being processed.\n- `resourceVersionMatch` set to any other value or unset\n  Invalid error is returned.\n\nDefaults to true if `resourceVersion=\"\"` or `resourceVersion=\"0\"` (for backward compatibility reasons) and to false otherwise."),
        Param::query("timeoutSeconds", "integer", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity."),
        Param::query("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion."),
    ]
}

/// Delete parameters; their texts are DeleteOptions' field docs, as upstream's are.
fn delete_params() -> Vec<Param> {
    let doc = |field: &str| -> String { crate::schemas::field_doc(DELETE_OPTIONS, field) };
    vec![
        dry_run(),
        Param::query("gracePeriodSeconds", "integer", doc("gracePeriodSeconds")),
        Param::query(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "boolean",
            doc("ignoreStoreReadErrorWithClusterBreakingPotential"),
        ),
        Param::query("orphanDependents", "boolean", doc("orphanDependents")),
        Param::query("propagationPolicy", "string", doc("propagationPolicy")),
    ]
}

fn delete_collection_params() -> Vec<Param> {
    let mut params = delete_params();
    params.extend(
        list_params()
            .into_iter()
            .filter(|p| p.name != "allowWatchBookmarks" && p.name != "watch"),
    );
    params.sort_by(|a, b| a.name.cmp(b.name));
    params
}

fn ok(payload: Payload) -> Response {
    Response {
        code: "200",
        description: "OK",
        payload,
    }
}

fn created(name: &str) -> Response {
    Response {
        code: "201",
        description: "Created",
        payload: Payload::Object(name.to_string()),
    }
}

fn accepted(name: &str) -> Response {
    Response {
        code: "202",
        description: "Accepted",
        payload: Payload::Object(name.to_string()),
    }
}

/// What a path segment names in operation ids: `Namespaced<Kind>` or `<Kind>`.
struct Naming {
    gv: String,
    kind: String,
    namespaced: bool,
    tag: String,
}

impl Naming {
    fn id(&self, verb: &str, suffix: &str) -> String {
        self.id_with(verb, "", suffix)
    }

    /// `infix` sits between the group version and the scope (`deleteAppsV1CollectionNamespacedDeployment`,
    /// `connectCoreV1GetNamespacedPodExec`).
    fn id_with(&self, verb: &str, infix: &str, suffix: &str) -> String {
        let ns = if self.namespaced { "Namespaced" } else { "" };
        format!("{verb}{}{infix}{ns}{}{suffix}", self.gv, self.kind)
    }
}

/// All path items of one resource (with its subresources).
pub(crate) fn resource_paths(r: &ResourceInfo, schemas: &mut Schemas) -> Vec<PathItem> {
    let kind_schema = schemas.kind(&r.group, &r.version, &r.kind);
    let gvk = Gvk::new(&r.group, &r.version, &r.kind);
    let naming = Naming {
        gv: format!("{}{}", group_camel(&r.group), capitalize(&r.version)),
        kind: r.kind.clone(),
        namespaced: r.namespaced,
        tag: tag(&r.group, &r.version),
    };
    let prefix = gv_prefix(&r.group, &r.version);
    let (collection, scope_params) = if r.namespaced {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", r.resource),
            vec![namespace_param()],
        )
    } else {
        (format!("{prefix}/{}", r.resource), Vec::new())
    };
    let name_param = Param::path("name", format!("name of the {}", r.kind));
    let op =
        |method: &'static str, id: String, description: String, action: &'static str| Operation {
            method,
            id,
            description,
            action,
            gvk: Some(gvk.clone()),
            params: Vec::new(),
            body: Body::None,
            responses: Vec::new(),
            tag: naming.tag.clone(),
        };

    let needs_list = r.has_verb("list") || r.has_verb("watch") || r.has_verb("deletecollection");
    let list_schema = if needs_list {
        Some(schemas.list(&r.group, &r.version, &r.kind, &r.list_kind, &kind_schema))
    } else {
        None
    };
    schemas.add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>();

    let mut paths = Vec::new();

    // The collection: list, create, deletecollection.
    let mut ops = Vec::new();
    if let Some(list) = &list_schema {
        if r.has_verb("list") {
            let mut o = op(
                "get",
                naming.id("list", ""),
                format!("list or watch objects of kind {}", r.kind),
                "list",
            );
            o.params = list_params();
            o.responses = vec![ok(Payload::Object(list.clone()))];
            ops.push(o);
        }
    }
    if r.has_verb("create") {
        let mut o = op(
            "post",
            naming.id("create", ""),
            format!("create {}", article(&r.kind)),
            "post",
        );
        o.params = write_params(false);
        o.body = Body::Object(kind_schema.clone());
        o.responses = vec![
            ok(Payload::Object(kind_schema.clone())),
            created(&kind_schema),
            accepted(&kind_schema),
        ];
        ops.push(o);
    }
    if r.has_verb("deletecollection") {
        schemas.add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>();
        let mut o = op(
            "delete",
            naming.id_with("delete", "Collection", ""),
            format!("delete collection of {}", r.kind),
            "deletecollection",
        );
        o.params = delete_collection_params();
        o.body = Body::Object(DELETE_OPTIONS.to_string());
        o.responses = vec![ok(Payload::Object(STATUS.to_string()))];
        ops.push(o);
    }
    if !ops.is_empty() {
        let mut params = scope_params.clone();
        params.push(pretty());
        paths.push(PathItem {
            path: collection.clone(),
            params,
            ops,
        });
    }

    // Listing across namespaces.
    if r.namespaced && r.has_verb("list") {
        if let Some(list) = &list_schema {
            let mut o = op(
                "get",
                format!("list{}{}ForAllNamespaces", naming.gv, r.kind),
                format!("list or watch objects of kind {}", r.kind),
                "list",
            );
            o.responses = vec![ok(Payload::Object(list.clone()))];
            let mut params = list_params();
            params.push(pretty());
            params.sort_by(|a, b| a.name.cmp(b.name));
            paths.push(PathItem {
                path: format!("{prefix}/{}", r.resource),
                params,
                ops: vec![o],
            });
        }
    }

    // One object: read, replace, patch, delete.
    let item = format!("{collection}/{{name}}");
    let mut ops = Vec::new();
    if r.has_verb("get") {
        let mut o = op(
            "get",
            naming.id("read", ""),
            format!("read the specified {}", r.kind),
            "get",
        );
        o.responses = vec![ok(Payload::Object(kind_schema.clone()))];
        ops.push(o);
    }
    if r.has_verb("update") {
        let mut o = op(
            "put",
            naming.id("replace", ""),
            format!("replace the specified {}", r.kind),
            "put",
        );
        o.params = write_params(false);
        o.body = Body::Object(kind_schema.clone());
        o.responses = vec![
            ok(Payload::Object(kind_schema.clone())),
            created(&kind_schema),
        ];
        ops.push(o);
    }
    if r.has_verb("patch") {
        schemas.add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Patch>();
        let mut o = op(
            "patch",
            naming.id("patch", ""),
            format!("partially update the specified {}", r.kind),
            "patch",
        );
        o.params = write_params(true);
        o.body = Body::Patch(is_builtin(&r.group));
        o.responses = vec![
            ok(Payload::Object(kind_schema.clone())),
            created(&kind_schema),
        ];
        ops.push(o);
    }
    if r.has_verb("delete") {
        schemas.add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>();
        let mut o = op(
            "delete",
            naming.id("delete", ""),
            format!("delete {}", article(&r.kind)),
            "delete",
        );
        o.params = delete_params();
        o.body = Body::Object(DELETE_OPTIONS.to_string());
        o.responses = vec![ok(Payload::Object(STATUS.to_string())), accepted(STATUS)];
        ops.push(o);
    }
    if !ops.is_empty() {
        let mut params = vec![name_param.clone()];
        params.extend(scope_params.clone());
        params.push(pretty());
        paths.push(PathItem {
            path: item.clone(),
            params,
            ops,
        });
    }

    // Deprecated watch endpoints, still published upstream.
    if r.has_verb("watch") {
        schemas.add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent<()>>();
        let watch_prefix = format!("{prefix}/watch");
        let mut watch_paths: Vec<(String, String, &'static str, bool)> = Vec::new();
        if r.namespaced {
            watch_paths.push((
                format!("{watch_prefix}/namespaces/{{namespace}}/{}", r.resource),
                naming.id("watch", "List"),
                "watchlist",
                false,
            ));
            watch_paths.push((
                format!(
                    "{watch_prefix}/namespaces/{{namespace}}/{}/{{name}}",
                    r.resource
                ),
                naming.id("watch", ""),
                "watch",
                true,
            ));
            watch_paths.push((
                format!("{watch_prefix}/{}", r.resource),
                format!("watch{}{}ListForAllNamespaces", naming.gv, r.kind),
                "watchlist",
                false,
            ));
        } else {
            watch_paths.push((
                format!("{watch_prefix}/{}", r.resource),
                naming.id("watch", "List"),
                "watchlist",
                false,
            ));
            watch_paths.push((
                format!("{watch_prefix}/{}/{{name}}", r.resource),
                naming.id("watch", ""),
                "watch",
                true,
            ));
        }
        for (path, id, action, single) in watch_paths {
            let description = if single {
                format!("watch changes to an object of kind {}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter.", r.kind)
            } else {
                format!("watch individual changes to a list of {}. deprecated: use the 'watch' parameter with a list operation instead.", r.kind)
            };
            let mut o = op("get", id, description, action);
            o.responses = vec![ok(Payload::Stream(WATCH_EVENT.to_string()))];
            let mut params = list_params();
            params.push(pretty());
            if single {
                params.push(name_param.clone());
            }
            if path.contains("{namespace}") {
                params.push(namespace_param());
            }
            params.sort_by(|a, b| a.name.cmp(b.name));
            paths.push(PathItem {
                path,
                params,
                ops: vec![o],
            });
        }
    }

    for sub in &r.subresources {
        if let Some(p) =
            subresource_path(r, sub, &item, &naming, &kind_schema, &scope_params, schemas)
        {
            paths.push(p);
        }
    }
    paths
}

/// "a Deployment", "an Ingress".
fn article(kind: &str) -> String {
    let vowel = kind.chars().next().is_some_and(|c| "AEIOU".contains(c));
    format!("{} {kind}", if vowel { "an" } else { "a" })
}

#[allow(clippy::too_many_arguments)]
fn subresource_path(
    r: &ResourceInfo,
    sub: &Subresource,
    item: &str,
    naming: &Naming,
    kind_schema: &str,
    scope_params: &[Param],
    schemas: &mut Schemas,
) -> Option<PathItem> {
    let path = format!("{item}/{}", sub.name);
    let suffix = capitalize(&sub.name);
    let (sub_group, sub_version) = if sub.group.is_empty() && sub.version.is_empty() {
        (r.group.as_str(), r.version.as_str())
    } else {
        (sub.group.as_str(), sub.version.as_str())
    };
    let mut path_params = vec![Param::path(
        "name",
        format!("name of the {}", sub_kind_doc(&r.kind, &sub.name)),
    )];
    path_params.extend(scope_params.iter().cloned());
    let new_op = |method: &'static str,
                  id: String,
                  description: String,
                  action: &'static str,
                  gvk: Option<Gvk>| Operation {
        method,
        id,
        description,
        action,
        gvk,
        params: Vec::new(),
        body: Body::None,
        responses: Vec::new(),
        tag: naming.tag.clone(),
    };
    let mut ops = Vec::new();
    match sub.name.as_str() {
        "status" | "scale" | "ephemeralcontainers" | "resize" | "finalize" => {
            let schema = if sub.name == "scale" {
                schemas.kind(sub_group, sub_version, &sub.kind)
            } else {
                kind_schema.to_string()
            };
            let gvk = Some(Gvk::new(sub_group, sub_version, &sub.kind));
            let what = if sub.name == "finalize" {
                String::new()
            } else {
                format!("{} of ", sub.name)
            };
            for verb in &sub.verbs {
                match verb.as_str() {
                    "get" => {
                        let mut o = new_op(
                            "get",
                            naming.id("read", &suffix),
                            format!("read {what}the specified {}", r.kind),
                            "get",
                            gvk.clone(),
                        );
                        o.responses = vec![ok(Payload::Object(schema.clone()))];
                        ops.push(o);
                    }
                    "update" => {
                        let mut o = new_op(
                            "put",
                            naming.id("replace", &suffix),
                            format!("replace {what}the specified {}", r.kind),
                            "put",
                            gvk.clone(),
                        );
                        o.params = write_params(false);
                        o.body = Body::Object(schema.clone());
                        o.responses = vec![ok(Payload::Object(schema.clone())), created(&schema)];
                        ops.push(o);
                    }
                    "patch" => {
                        schemas.add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Patch>();
                        let mut o = new_op(
                            "patch",
                            naming.id("patch", &suffix),
                            format!("partially update {what}the specified {}", r.kind),
                            "patch",
                            gvk.clone(),
                        );
                        o.params = write_params(true);
                        o.body = Body::Patch(is_builtin(&r.group));
                        o.responses = vec![ok(Payload::Object(schema.clone())), created(&schema)];
                        ops.push(o);
                    }
                    _ => {}
                }
            }
        }
        "binding" | "eviction" | "token" => {
            let schema = schemas.kind(sub_group, sub_version, &sub.kind);
            let gvk = Some(Gvk::new(sub_group, sub_version, &sub.kind));
            let mut o = new_op(
                "post",
                naming.id("create", &suffix),
                format!("create {} of {}", sub.name, article(&r.kind)),
                "post",
                gvk,
            );
            o.params = write_params(false);
            o.body = Body::Object(schema.clone());
            o.responses = vec![
                ok(Payload::Object(schema.clone())),
                created(&schema),
                accepted(&schema),
            ];
            ops.push(o);
        }
        "log" => {
            let mut o = new_op(
                "get",
                naming.id("read", &suffix),
                format!("read log of the specified {}", r.kind),
                "get",
                Some(Gvk::new(&r.group, &r.version, &r.kind)),
            );
            o.params = log_params();
            o.responses = vec![ok(Payload::Text)];
            ops.push(o);
        }
        "exec" | "attach" | "portforward" | "proxy" => {
            let methods: &[&'static str] = if sub.name == "proxy" {
                &["delete", "get", "head", "options", "patch", "post", "put"]
            } else {
                &["get", "post"]
            };
            for method in methods {
                let id = naming.id_with("connect", &capitalize(method), &suffix);
                let mut o = new_op(
                    method,
                    id,
                    format!(
                        "connect {} requests to {} of {}",
                        method.to_uppercase(),
                        sub.name,
                        r.kind
                    ),
                    "connect",
                    Some(Gvk::new("", "v1", &sub.kind)),
                );
                o.params = connect_params(&sub.name);
                o.responses = vec![ok(Payload::Text)];
                ops.push(o);
            }
        }
        _ => return None,
    }
    if ops.is_empty() {
        return None;
    }
    path_params.push(pretty());
    Some(PathItem {
        path,
        params: path_params,
        ops,
    })
}

fn sub_kind_doc(kind: &str, sub: &str) -> String {
    match sub {
        "scale" => "Scale".to_string(),
        "binding" => "Binding".to_string(),
        "eviction" => "Eviction".to_string(),
        "token" => "TokenRequest".to_string(),
        "exec" | "attach" => "PodExecOptions".to_string(),
        "portforward" => "PodPortForwardOptions".to_string(),
        "proxy" => format!("{kind}ProxyOptions"),
        _ => kind.to_string(),
    }
}

fn log_params() -> Vec<Param> {
    vec![
        Param::query("container", "string", "The container for which to stream logs. Defaults to only container if there is one container in the pod."),
        Param::query("follow", "boolean", "Follow the log stream of the pod. Defaults to false."),
        Param::query("insecureSkipTLSVerifyBackend", "boolean", "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to.  This will make the HTTPS connection between the apiserver and the backend insecure. This means the apiserver cannot verify the log data it is receiving came from the real kubelet.  If the kubelet is configured to verify the apiserver's TLS credentials, it does not mean the connection to the real kubelet is vulnerable to a man in the middle attack (e.g. an attacker could not intercept the actual log data coming from the real kubelet)."),
        Param::query("limitBytes", "integer", "If set, the number of bytes to read from the server before terminating the log output. This may not display a complete final line of logging, and may return slightly more or slightly less than the specified limit."),
        Param::query("previous", "boolean", "Return previous terminated container logs. Defaults to false."),
        Param::query("sinceSeconds", "integer", "A relative time in seconds before the current time from which to show logs. If this value precedes the time a pod was started, only logs since the pod start will be returned. If this value is in the future, no logs will be returned. Only one of sinceSeconds or sinceTime may be specified."),
        Param::query("stream", "string", "Specify which container log stream to return to the client. Acceptable values are \"All\", \"Stdout\" and \"Stderr\". If not specified, \"All\" is used, and both stdout and stderr are returned interleaved. Note that when \"TailLines\" is specified, \"Stream\" can only be set to nil or \"All\"."),
        Param::query("tailLines", "integer", "If set, the number of lines from the end of the logs to show. If not specified, logs are shown from the creation of the container or sinceSeconds or sinceTime. Note that when \"TailLines\" is specified, \"Stream\" can only be set to nil or \"All\"."),
        Param::query("timestamps", "boolean", "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false."),
    ]
}

fn connect_params(sub: &str) -> Vec<Param> {
    let container = || {
        Param::query("container", "string", "The container in which to execute the command. Defaults to only container if there is only one container in the pod.")
    };
    let stdio = || {
        vec![
            Param::query("stderr", "boolean", "Redirect the standard error stream of the pod for this call."),
            Param::query("stdin", "boolean", "Redirect the standard input stream of the pod for this call. Defaults to false."),
            Param::query("stdout", "boolean", "Redirect the standard output stream of the pod for this call."),
            Param::query("tty", "boolean", "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false."),
        ]
    };
    match sub {
        "exec" => {
            let mut p = vec![Param::query("command", "string", "Command is the remote command to execute. argv array. Not executed within a shell."), container()];
            p.extend(stdio());
            p
        }
        "attach" => {
            let mut p = vec![container()];
            p.extend(stdio());
            p
        }
        "portforward" => vec![Param::query(
            "ports",
            "integer",
            "List of ports to forward Required when using WebSockets",
        )],
        "proxy" => vec![Param::query(
            "path",
            "string",
            "Path is the URL path to use for the current proxy request.",
        )],
        _ => Vec::new(),
    }
}

/// `GET <prefix>/`: the group version's discovery document.
pub(crate) fn discovery_path(group: &str, version: &str, schemas: &mut Schemas) -> PathItem {
    schemas.add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList>();
    let gv = format!("{}{}", group_camel(group), capitalize(version));
    PathItem {
        path: format!("{}/", gv_prefix(group, version)),
        params: Vec::new(),
        ops: vec![Operation {
            method: "get",
            id: format!("get{gv}APIResources"),
            description: "get available resources".to_string(),
            action: "",
            gvk: None,
            params: Vec::new(),
            body: Body::None,
            responses: vec![ok(Payload::Object(API_RESOURCE_LIST.to_string()))],
            tag: tag(group, version),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_upstream() {
        assert_eq!(group_camel(""), "Core");
        assert_eq!(
            group_camel("rbac.authorization.k8s.io"),
            "RbacAuthorization"
        );
        assert_eq!(
            group_camel("flowcontrol.apiserver.k8s.io"),
            "FlowcontrolApiserver"
        );
        assert_eq!(group_camel("stable.example.com"), "StableExampleCom");
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
        assert_eq!(tag("", "v1"), "core_v1");
        assert_eq!(article("Ingress"), "an Ingress");
    }
}
