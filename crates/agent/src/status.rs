//! Pod status from what the runtime reports, as the kubelet computes it: container states
//! (waiting with a reason, running, terminated with exit code and reason), restart counts,
//! the phase, and the conditions PodScheduled, PodReadyToStartContainers, Initialized,
//! ContainersReady and Ready with transition times carried over while unchanged.
//!
//! Readiness comes from the prober (upstream `prober.Manager.UpdatePodStatus`): a running
//! container is `started` once its startup probe succeeded (at once without one) and
//! `ready` once started and its readiness probe succeeded (at once without one). An init
//! container is started while it runs and ready once it exited 0.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::kuberuntime::{time_of, ContainerInfo, PodRuntime};
use crate::prober::ProbeStatus;

/// A reason a container is waiting that the runtime cannot tell (image pull errors,
/// config errors, back-off), set by the pod worker.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// Inputs besides the pod and the runtime state.
pub struct StatusInputs<'a> {
    pub node_ip: &'a str,
    pub waiting: &'a HashMap<String, Waiting>,
    pub start_time: Option<Time>,
    /// The pod is being deleted and everything has been stopped.
    pub terminated: bool,
    /// Probe results by container ID (containers without probe workers use
    /// [`ProbeStatus::initial`]).
    pub probes: &'a HashMap<String, ProbeStatus>,
}

fn terminated_state(c: &ContainerInfo) -> ContainerState {
    let reason = if !c.reason.is_empty() && c.reason != "Completed" && c.reason != "Error" {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".to_string()
    } else {
        "Error".to_string()
    };
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: c.exit_code,
            reason: Some(reason),
            message: Some(c.message.clone()).filter(|m| !m.is_empty()),
            started_at: time_of(c.started_at),
            finished_at: time_of(c.finished_at),
            container_id: Some(format!("containerd://{}", c.id)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn waiting_state(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: Some(message.to_string()).filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    }
}

fn container_status(
    spec: &Container,
    rt: &PodRuntime,
    waiting: Option<&Waiting>,
    default_reason: &str,
    init: bool,
    probes: &HashMap<String, ProbeStatus>,
) -> ContainerStatus {
    let mut instances = rt.instances(&spec.name);
    let latest = instances.next();
    let previous = instances.next();
    let image = crate::images::normalize_image(spec.image.as_deref().unwrap_or_default());
    let mut st = ContainerStatus {
        name: spec.name.clone(),
        image: image.clone(),
        image_id: String::new(),
        ready: false,
        restart_count: latest.map(|c| c.restart_count).unwrap_or(0),
        started: Some(false),
        ..Default::default()
    };
    match latest {
        Some(c) => {
            st.container_id = Some(format!("containerd://{}", c.id));
            st.image_id = c.image_ref.clone();
            if c.running() {
                st.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: time_of(c.started_at),
                    }),
                    ..Default::default()
                });
                if init {
                    st.started = Some(true);
                } else {
                    let p = probes
                        .get(&c.id)
                        .copied()
                        .unwrap_or_else(|| ProbeStatus::initial(spec));
                    st.ready = p.is_ready();
                    st.started = Some(p.started);
                }
                st.last_state = previous.filter(|p| p.exited()).map(terminated_state);
            } else if c.exited() {
                match waiting {
                    // Going to be restarted (after a back-off or an error).
                    Some(w) => {
                        st.state = Some(waiting_state(&w.reason, &w.message));
                        st.last_state = Some(terminated_state(c));
                    }
                    None => {
                        st.state = Some(terminated_state(c));
                        st.last_state = previous.filter(|p| p.exited()).map(terminated_state);
                        st.ready = init && c.exit_code == 0;
                    }
                }
            } else {
                // Created, not yet started.
                let w = waiting.cloned().unwrap_or(Waiting {
                    reason: default_reason.into(),
                    message: String::new(),
                });
                st.state = Some(waiting_state(&w.reason, &w.message));
            }
        }
        None => {
            let w = waiting.cloned().unwrap_or(Waiting {
                reason: default_reason.into(),
                message: String::new(),
            });
            st.state = Some(waiting_state(&w.reason, &w.message));
        }
    }
    st
}

fn condition(
    previous: &[PodCondition],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" }.to_string();
    let transition = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: type_.to_string(),
        status,
        reason: reason.map(str::to_string),
        last_transition_time: Some(transition),
        ..Default::default()
    }
}

fn is_running(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.running.is_some())
}

fn terminated_ok(s: &ContainerStatus) -> bool {
    s.state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0)
}

/// The phase from container statuses (upstream `getPhase`).
pub fn phase(
    restart_policy: &str,
    init: &[ContainerStatus],
    containers: &[ContainerStatus],
    init_failed: bool,
) -> String {
    if init_failed {
        return "Failed".into();
    }
    if !init.iter().all(terminated_ok) && !init.is_empty() {
        return "Pending".into();
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in containers {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            if s.last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some())
            {
                stopped += 1;
            } else {
                waiting += 1;
            }
        }
    }
    if waiting > 0 {
        return "Pending".into();
    }
    if running > 0 {
        return "Running".into();
    }
    if stopped > 0 {
        return match restart_policy {
            "Always" => "Running".into(),
            _ if stopped == succeeded => "Succeeded".into(),
            "Never" => "Failed".into(),
            _ => "Running".into(),
        };
    }
    "Pending".into()
}

/// The status to report for `pod`.
pub fn compute(pod: &Pod, rt: &PodRuntime, inputs: &StatusInputs<'_>) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let restart_policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let sandbox = rt.ready_sandbox();

    let init: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            container_status(
                c,
                rt,
                inputs.waiting.get(&c.name),
                "PodInitializing",
                true,
                inputs.probes,
            )
        })
        .collect();
    let init_done = init.iter().all(terminated_ok);
    let init_failed = restart_policy == "Never"
        && init.iter().any(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0)
        });
    let default_reason = if init_done {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let containers: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            container_status(
                c,
                rt,
                inputs.waiting.get(&c.name),
                default_reason,
                false,
                inputs.probes,
            )
        })
        .collect();
    let mut phase = phase(&restart_policy, &init, &containers, init_failed);
    // Once terminal, a pod stays terminal.
    if matches!(old.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
        phase = old.phase.clone().unwrap_or(phase);
    }
    if inputs.terminated && phase == "Running" {
        phase = if restart_policy == "Always" {
            "Failed".into()
        } else {
            phase
        };
    }

    let prev_conds = old.conditions.clone().unwrap_or_default();
    let completed = phase == "Succeeded" || phase == "Failed";
    let all_ready = containers.iter().all(|s| s.ready && is_running(s)) && !containers.is_empty();
    let ready_reason = if completed {
        Some("PodCompleted")
    } else if all_ready {
        None
    } else {
        Some("ContainersNotReady")
    };
    let mut conditions = vec![
        condition(
            &prev_conds,
            "PodReadyToStartContainers",
            sandbox.is_some(),
            None,
            &now,
        ),
        condition(
            &prev_conds,
            "Initialized",
            init_done,
            if init_done {
                None
            } else {
                Some("ContainersNotInitialized")
            },
            &now,
        ),
        condition(
            &prev_conds,
            "Ready",
            all_ready && !completed,
            ready_reason,
            &now,
        ),
        condition(
            &prev_conds,
            "ContainersReady",
            all_ready && !completed,
            ready_reason,
            &now,
        ),
    ];
    if completed && init_done {
        // Upstream keeps Initialized True with reason PodCompleted for finished pods.
        conditions[1].reason = if init.is_empty() {
            None
        } else {
            Some("PodCompleted".into())
        };
    }
    let scheduled = prev_conds
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .cloned()
        .unwrap_or_else(|| condition(&prev_conds, "PodScheduled", true, None, &now));
    conditions.push(scheduled);
    // Readiness gates and other writers' conditions are kept as they are.
    for c in prev_conds {
        if !conditions.iter().any(|x| x.type_ == c.type_) {
            conditions.push(c);
        }
    }
    // Not-ready messages as upstream phrases them.
    let not_ready: Vec<String> = containers
        .iter()
        .filter(|s| !(s.ready && is_running(s)))
        .map(|s| s.name.clone())
        .collect();
    if !not_ready.is_empty() && !completed {
        let msg = format!("containers with unready status: [{}]", not_ready.join(" "));
        for c in conditions
            .iter_mut()
            .filter(|c| c.type_ == "Ready" || c.type_ == "ContainersReady")
        {
            c.message = Some(msg.clone());
        }
    }
    let not_init: Vec<String> = init
        .iter()
        .filter(|s| !terminated_ok(s))
        .map(|s| s.name.clone())
        .collect();
    if !not_init.is_empty() {
        if let Some(c) = conditions.iter_mut().find(|c| c.type_ == "Initialized") {
            c.message = Some(format!(
                "containers with incomplete status: [{}]",
                not_init.join(" ")
            ));
        }
    }

    let pod_ip = if crate::kuberuntime::host_network(pod) {
        Some(inputs.node_ip.to_string())
    } else {
        sandbox.and_then(|s| s.ip.clone()).or_else(|| {
            old.pod_ip
                .clone()
                .filter(|_| !completed && sandbox.is_some())
        })
    };
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: Some(inputs.node_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: inputs.node_ip.to_string(),
        }]),
        pod_ip: pod_ip.clone().or(old.pod_ip.clone()),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]).or(old.pod_ips.clone()),
        start_time: old.start_time.clone().or(inputs.start_time.clone()),
        init_container_statuses: if init.is_empty() { None } else { Some(init) },
        container_statuses: Some(containers),
        qos_class: Some(crate::resources::qos_class(pod)),
        message: old.message.clone(),
        reason: old.reason.clone(),
        nominated_node_name: old.nominated_node_name.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(code: i32) -> ContainerStatus {
        ContainerStatus {
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running() -> ContainerStatus {
        ContainerStatus {
            state: Some(ContainerState {
                running: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn phases_follow_upstream() {
        assert_eq!(phase("Always", &[], &[running()], false), "Running");
        assert_eq!(phase("Never", &[], &[term(0)], false), "Succeeded");
        assert_eq!(phase("OnFailure", &[], &[term(0)], false), "Succeeded");
        assert_eq!(phase("Never", &[], &[term(1)], false), "Failed");
        assert_eq!(phase("OnFailure", &[], &[term(1)], false), "Running");
        assert_eq!(phase("Always", &[], &[term(0)], false), "Running");
        assert_eq!(phase("Always", &[term(1)], &[running()], false), "Pending");
        assert_eq!(phase("Never", &[], &[], true), "Failed");
        let mut w = ContainerStatus::default();
        w.state = Some(waiting_state("ContainerCreating", ""));
        assert_eq!(phase("Always", &[], &[w], false), "Pending");
    }

    fn running_pod(ctr: Container) -> (Pod, PodRuntime) {
        let pod = Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                containers: vec![ctr],
                ..Default::default()
            }),
            ..Default::default()
        };
        let rt = PodRuntime {
            sandboxes: vec![crate::kuberuntime::SandboxInfo {
                id: "sb".into(),
                ready: true,
                created_at: 1,
                attempt: 0,
                ip: Some("10.1.0.5".into()),
            }],
            containers: vec![ContainerInfo {
                id: "c1".into(),
                sandbox_id: "sb".into(),
                name: "main".into(),
                state: cri::v1::ContainerState::ContainerRunning,
                created_at: 2,
                started_at: 3,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
                image: String::new(),
                image_ref: String::new(),
                restart_count: 0,
                log_path: String::new(),
            }],
        };
        (pod, rt)
    }

    /// (containerStatuses[0].ready, started, Ready condition, ContainersReady condition)
    fn readiness(
        pod: &Pod,
        rt: &PodRuntime,
        probes: &HashMap<String, ProbeStatus>,
    ) -> (bool, Option<bool>, String, String) {
        let waiting = HashMap::new();
        let inputs = StatusInputs {
            node_ip: "10.0.0.1",
            waiting: &waiting,
            start_time: None,
            terminated: false,
            probes,
        };
        let st = compute(pod, rt, &inputs);
        let cs = st.container_statuses.clone().unwrap_or_default();
        let cond = |t: &str| {
            st.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == t)
                .map(|c| c.status.clone())
                .unwrap_or_default()
        };
        (
            cs[0].ready,
            cs[0].started,
            cond("Ready"),
            cond("ContainersReady"),
        )
    }

    #[test]
    fn readiness_and_started_come_from_the_prober() {
        let t = |s: &str| s.to_string();
        let plain = Container {
            name: "main".into(),
            ..Default::default()
        };
        let (pod, rt) = running_pod(plain);
        assert_eq!(
            readiness(&pod, &rt, &HashMap::new()),
            (true, Some(true), t("True"), t("True")),
            "no probes: ready once running"
        );

        let probed = Container {
            name: "main".into(),
            readiness_probe: Some(Default::default()),
            ..Default::default()
        };
        let (pod, rt) = running_pod(probed);
        assert_eq!(
            readiness(&pod, &rt, &HashMap::new()),
            (false, Some(true), t("False"), t("False")),
            "probe not run yet"
        );
        let ready = HashMap::from([(
            "c1".to_string(),
            ProbeStatus {
                started: true,
                ready: true,
                failed: None,
            },
        )]);
        assert_eq!(
            readiness(&pod, &rt, &ready),
            (true, Some(true), t("True"), t("True"))
        );
        let unready = HashMap::from([(
            "c1".to_string(),
            ProbeStatus {
                started: true,
                ready: false,
                failed: None,
            },
        )]);
        assert_eq!(
            readiness(&pod, &rt, &unready),
            (false, Some(true), t("False"), t("False"))
        );

        let gated = Container {
            name: "main".into(),
            startup_probe: Some(Default::default()),
            ..Default::default()
        };
        let (pod, rt) = running_pod(gated);
        assert_eq!(
            readiness(&pod, &rt, &HashMap::new()),
            (false, Some(false), t("False"), t("False"))
        );
        let started = HashMap::from([(
            "c1".to_string(),
            ProbeStatus {
                started: true,
                ready: true,
                failed: None,
            },
        )]);
        assert_eq!(
            readiness(&pod, &rt, &started),
            (true, Some(true), t("True"), t("True"))
        );
    }
}
