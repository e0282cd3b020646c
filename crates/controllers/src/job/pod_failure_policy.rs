//! `spec.podFailurePolicy` (upstream `pod_failure_policy.go`): the first rule that
//! matches a failed pod decides — `FailJob` fails the whole Job at once, `Ignore` does
//! not count the failure against `backoffLimit`, `Count` counts it as usual. Rules
//! match on container exit codes (`In`/`NotIn`, optionally one container; exit code 0
//! never matches) or on pod conditions (type and status).

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};

/// What a rule decided about one failed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No rule matched: counts as a failure.
    NoMatch,
    Ignore,
    Count,
    /// The Job fails with this message.
    FailJob(String),
}

impl Outcome {
    /// Whether the failure counts against `backoffLimit`.
    pub fn counts(&self) -> bool {
        !matches!(self, Outcome::Ignore)
    }
}

/// Matches `pod` (already known to have failed) against `policy`.
pub fn match_pod_failure_policy(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Outcome {
    let Some(policy) = policy else {
        return Outcome::NoMatch;
    };
    let default_status = PodStatus::default();
    let status = pod.status.as_ref().unwrap_or(&default_status);
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    for (index, rule) in policy.rules.iter().enumerate() {
        if let Some(req) = &rule.on_exit_codes {
            if let Some((container, code)) = match_on_exit_codes(status, req) {
                return decide(&rule.action, || {
                    format!(
                        "Container {container} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                        rule.action
                    )
                });
            }
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let matched = status.conditions.iter().flatten().find(|c| {
                patterns
                    .iter()
                    .any(|p| p.type_ == c.type_ && p.status == c.status)
            });
            if let Some(cond) = matched {
                return decide(&rule.action, || {
                    format!(
                        "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                        cond.type_, rule.action
                    )
                });
            }
        }
    }
    Outcome::NoMatch
}

fn decide(action: &str, message: impl FnOnce() -> String) -> Outcome {
    match action {
        "Ignore" => Outcome::Ignore,
        "Count" => Outcome::Count,
        "FailJob" => Outcome::FailJob(message()),
        // `FailIndex` needs backoffLimitPerIndex; like an unknown action it counts.
        _ => Outcome::Count,
    }
}

/// The first terminated container (then init container) whose non-zero exit code the
/// requirement matches: (container name, exit code).
fn match_on_exit_codes(
    status: &PodStatus,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(String, i32)> {
    matching_container(status.container_statuses.as_deref(), req)
        .or_else(|| matching_container(status.init_container_statuses.as_deref(), req))
}

fn matching_container(
    statuses: Option<&[ContainerStatus]>,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(String, i32)> {
    for cs in statuses.unwrap_or_default() {
        let Some(term) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            continue;
        };
        if req.container_name.as_ref().is_some_and(|n| *n != cs.name) {
            continue;
        }
        if term.exit_code == 0 {
            continue;
        }
        let listed = req.values.contains(&term.exit_code);
        let hit = match req.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        };
        if hit {
            return Some((cs.name.clone(), term.exit_code));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
    };
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, PodCondition};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn failed_pod(exit_codes: &[(&str, i32)], conditions: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(
                    exit_codes
                        .iter()
                        .map(|(name, code)| ContainerStatus {
                            name: name.to_string(),
                            state: Some(ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: *code,
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| PodCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    fn exit_rule(
        action: &str,
        op: &str,
        values: &[i32],
        container: Option<&str>,
    ) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: container.map(str::to_string),
                operator: op.into(),
                values: values.to_vec(),
            }),
            on_pod_conditions: None,
        }
    }

    fn condition_rule(action: &str, type_: &str) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: None,
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: type_.into(),
                status: "True".into(),
            }]),
        }
    }

    #[test]
    fn rules_match_in_order() {
        let policy = PodFailurePolicy {
            rules: vec![
                condition_rule("Ignore", "DisruptionTarget"),
                exit_rule("FailJob", "In", &[42], Some("main")),
                exit_rule("Count", "NotIn", &[1, 2], None),
            ],
        };
        let p = Some(&policy);
        let cases = [
            (failed_pod(&[("main", 1)], &[("DisruptionTarget", "True")]), Outcome::Ignore),
            (
                failed_pod(&[("main", 42)], &[]),
                Outcome::FailJob(
                    "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
                        .into(),
                ),
            ),
            // 42 in another container: not the named one.
            (failed_pod(&[("side", 42)], &[]), Outcome::Count),
            (failed_pod(&[("main", 1)], &[]), Outcome::NoMatch),
            // Exit code 0 never matches, even NotIn.
            (failed_pod(&[("main", 0)], &[]), Outcome::NoMatch),
            (failed_pod(&[("main", 7)], &[("DisruptionTarget", "False")]), Outcome::Count),
        ];
        for (pod, want) in cases {
            assert_eq!(match_pod_failure_policy(p, &pod), want);
        }
        assert_eq!(
            match_pod_failure_policy(None, &failed_pod(&[("main", 42)], &[])),
            Outcome::NoMatch
        );
    }

    #[test]
    fn condition_rules_name_the_condition() {
        let policy = PodFailurePolicy {
            rules: vec![condition_rule("FailJob", "ConfigIssue")],
        };
        let got =
            match_pod_failure_policy(Some(&policy), &failed_pod(&[], &[("ConfigIssue", "True")]));
        assert_eq!(
            got,
            Outcome::FailJob(
                "Pod ns/p has condition ConfigIssue matching FailJob rule at index 0".into()
            )
        );
        assert!(got.counts());
        assert!(!Outcome::Ignore.counts());
    }
}
