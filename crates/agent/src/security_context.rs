//! Pod and container security contexts → CRI (upstream `pkg/kubelet/kuberuntime/
//! security_context.go` and `helpers_linux.go`): the namespaces a pod shares with the node
//! (hostNetwork, hostPID, hostIPC, shareProcessNamespace), the sandbox's context
//! (privileged when any container is, the pod's user, group and supplemental groups with
//! fsGroup), and each container's effective context (the container's fields over the
//! pod's, fsGroup added to the supplemental groups, allowPrivilegeEscalation: false →
//! no_new_privs). A container without runAsUser runs as its image's user, so
//! runAsGroup alone works; runAsNonRoot is checked against that user before the
//! container is created, as upstream's `verifyRunAsNonRoot`.

use cri::v1 as c;
use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};

/// The namespaces of a pod's sandbox and containers.
pub fn namespace_options(pod: &Pod) -> c::NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    let node_or_pod = |host: bool| {
        if host {
            c::NamespaceMode::Node as i32
        } else {
            c::NamespaceMode::Pod as i32
        }
    };
    let pid = if flag(|s| s.host_pid) {
        c::NamespaceMode::Node
    } else if flag(|s| s.share_process_namespace) {
        c::NamespaceMode::Pod
    } else {
        c::NamespaceMode::Container
    };
    c::NamespaceOption {
        network: node_or_pod(flag(|s| s.host_network)),
        pid: pid as i32,
        ipc: node_or_pod(flag(|s| s.host_ipc)),
        target_id: String::new(),
    }
}

fn pod_security_context(pod: &Pod) -> PodSecurityContext {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default()
}

/// Whether any container (init containers included) is privileged.
pub fn has_privileged_container(pod: &Pod) -> bool {
    pod.spec.iter().any(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| {
                c.security_context
                    .as_ref()
                    .and_then(|sc| sc.privileged)
                    .unwrap_or(false)
            })
    })
}

/// fsGroup first, then the pod's supplementalGroups (upstream's order).
fn supplemental_groups(psc: &PodSecurityContext) -> Vec<i64> {
    psc.fs_group
        .into_iter()
        .chain(psc.supplemental_groups.iter().flatten().copied())
        .collect()
}

/// The sandbox's security context.
pub fn sandbox_security_context(pod: &Pod) -> c::LinuxSandboxSecurityContext {
    let psc = pod_security_context(pod);
    c::LinuxSandboxSecurityContext {
        namespace_options: Some(namespace_options(pod)),
        run_as_user: psc.run_as_user.map(|value| c::Int64Value { value }),
        run_as_group: psc.run_as_group.map(|value| c::Int64Value { value }),
        supplemental_groups: supplemental_groups(&psc),
        privileged: has_privileged_container(pod),
        ..Default::default()
    }
}

/// The user an image runs as (from CRI ImageStatus): a numeric uid or a user name; an
/// image that names neither runs as root (uid 0), as upstream's `getImageUser` treats it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageUser {
    pub uid: Option<i64>,
    pub username: String,
}

/// The container's security context as the runtime gets it.
pub fn container_security_context(
    pod: &Pod,
    ctr: &Container,
    image_user: &ImageUser,
) -> c::LinuxContainerSecurityContext {
    let sc: SecurityContext = ctr.security_context.clone().unwrap_or_default();
    let psc = pod_security_context(pod);
    let caps = sc.capabilities.clone().unwrap_or_default();
    let mut run_as_user = sc.run_as_user.or(psc.run_as_user);
    let mut run_as_username = String::new();
    if run_as_user.is_none() {
        match image_user.uid {
            Some(uid) => run_as_user = Some(uid),
            None => run_as_username = image_user.username.clone(),
        }
    }
    c::LinuxContainerSecurityContext {
        capabilities: Some(c::Capability {
            add_capabilities: caps.add.unwrap_or_default(),
            drop_capabilities: caps.drop.unwrap_or_default(),
            ..Default::default()
        }),
        privileged: sc.privileged.unwrap_or(false),
        namespace_options: Some(namespace_options(pod)),
        run_as_user: run_as_user.map(|value| c::Int64Value { value }),
        run_as_username,
        run_as_group: sc
            .run_as_group
            .or(psc.run_as_group)
            .map(|value| c::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: supplemental_groups(&psc),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        ..Default::default()
    }
}

/// Upstream's `verifyRunAsNonRoot`: with runAsNonRoot the container must not run as uid 0,
/// and a user name that is not numeric cannot be verified. The error is the message of the
/// container's CreateContainerConfigError.
pub fn verify_run_as_non_root(
    pod: &Pod,
    ctr: &Container,
    image_user: &ImageUser,
) -> Result<(), String> {
    let sc = ctr.security_context.clone().unwrap_or_default();
    let psc = pod_security_context(pod);
    if !sc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false) {
        return Ok(());
    }
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let pod_ref = format!(
        "{}_{}({})",
        pod_name,
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    );
    if let Some(uid) = sc.run_as_user.or(psc.run_as_user) {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {pod_ref:?}, container: {})",
                ctr.name
            ));
        }
        return Ok(());
    }
    match image_user.uid {
        Some(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod_ref:?}, container: {})",
            ctr.name
        )),
        Some(_) => Ok(()),
        None if !image_user.username.is_empty() => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({}), cannot verify user is non-root (pod: {pod_ref:?}, container: {})",
            image_user.username, ctr.name
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn namespaces_follow_host_flags_and_process_sharing() {
        let p = pod(serde_json::json!({"containers": []}));
        let ns = namespace_options(&p);
        assert_eq!(
            (ns.network, ns.pid, ns.ipc),
            (
                c::NamespaceMode::Pod as i32,
                c::NamespaceMode::Container as i32,
                c::NamespaceMode::Pod as i32
            )
        );
        let p = pod(
            serde_json::json!({"hostNetwork": true, "hostPID": true, "hostIPC": true, "containers": []}),
        );
        let ns = namespace_options(&p);
        assert_eq!(
            (ns.network, ns.pid, ns.ipc),
            (
                c::NamespaceMode::Node as i32,
                c::NamespaceMode::Node as i32,
                c::NamespaceMode::Node as i32
            )
        );
        let p = pod(serde_json::json!({"shareProcessNamespace": true, "containers": []}));
        assert_eq!(namespace_options(&p).pid, c::NamespaceMode::Pod as i32);
    }

    #[test]
    fn container_fields_override_the_pod_and_fs_group_joins_the_groups() {
        let p = pod(serde_json::json!({
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000]},
            "initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
            "containers": [{"name": "c", "securityContext": {
                "runAsUser": 1001, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["CHOWN", "NET_RAW"]}}}],
        }));
        let ctr = &p.spec.as_ref().unwrap().containers[0];
        let sc = container_security_context(&p, ctr, &ImageUser::default());
        assert_eq!(sc.run_as_user.map(|v| v.value), Some(1001));
        assert_eq!(sc.run_as_group.map(|v| v.value), Some(3000));
        assert_eq!(sc.supplemental_groups, vec![2000, 4000]);
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
        let caps = sc.capabilities.unwrap();
        assert_eq!(caps.add_capabilities, vec!["NET_ADMIN"]);
        assert_eq!(caps.drop_capabilities, vec!["CHOWN", "NET_RAW"]);
        let sandbox = sandbox_security_context(&p);
        assert!(sandbox.privileged, "an init container is privileged");
        assert_eq!(sandbox.run_as_user.map(|v| v.value), Some(1000));
        assert_eq!(sandbox.supplemental_groups, vec![2000, 4000]);
    }

    #[test]
    fn without_run_as_user_the_image_user_applies() {
        let p = pod(
            serde_json::json!({"containers": [{"name": "c", "securityContext": {"runAsGroup": 5}}]}),
        );
        let ctr = &p.spec.as_ref().unwrap().containers[0];
        let numeric = ImageUser {
            uid: Some(7),
            username: String::new(),
        };
        let sc = container_security_context(&p, ctr, &numeric);
        assert_eq!(sc.run_as_user.map(|v| v.value), Some(7));
        let named = ImageUser {
            uid: None,
            username: "www".into(),
        };
        let sc = container_security_context(&p, ctr, &named);
        assert_eq!((sc.run_as_user, sc.run_as_username.as_str()), (None, "www"));
        assert!(
            !sc.no_new_privs,
            "unset allowPrivilegeEscalation keeps it allowed"
        );
    }

    #[test]
    fn run_as_non_root_is_verified() {
        let root = ImageUser {
            uid: Some(0),
            username: String::new(),
        };
        let cases = [
            (serde_json::json!({}), root.clone(), None),
            (
                serde_json::json!({"runAsNonRoot": true}),
                root.clone(),
                Some("image will run as root"),
            ),
            (
                serde_json::json!({"runAsNonRoot": true, "runAsUser": 0}),
                ImageUser::default(),
                Some("runAsUser breaks non-root policy"),
            ),
            (
                serde_json::json!({"runAsNonRoot": true, "runAsUser": 10}),
                root.clone(),
                None,
            ),
            (
                serde_json::json!({"runAsNonRoot": true}),
                ImageUser {
                    uid: Some(10),
                    username: String::new(),
                },
                None,
            ),
            (
                serde_json::json!({"runAsNonRoot": true}),
                ImageUser {
                    uid: None,
                    username: "app".into(),
                },
                Some("non-numeric user (app)"),
            ),
        ];
        for (sc, user, want) in cases {
            let p = pod(serde_json::json!({"containers": [{"name": "c", "securityContext": sc}]}));
            let ctr = &p.spec.as_ref().unwrap().containers[0];
            let got = verify_run_as_non_root(&p, ctr, &user);
            match want {
                None => assert!(got.is_ok(), "{sc}: {got:?}"),
                Some(w) => assert!(got.as_ref().is_err_and(|e| e.contains(w)), "{sc}: {got:?}"),
            }
        }
        // The pod's runAsNonRoot applies to its containers.
        let p = pod(
            serde_json::json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "c"}]}),
        );
        let ctr = &p.spec.as_ref().unwrap().containers[0];
        assert!(verify_run_as_non_root(&p, ctr, &root).is_err());
    }
}
