//! Indexed Jobs (upstream `indexed_job_utils.go`): each pod carries its completion
//! index in the `batch.kubernetes.io/job-completion-index` annotation (and label), and
//! the Job records the succeeded ones in `status.completedIndexes` as ordered intervals
//! (`"0-2,5,7,8"`: runs of three or more use a dash, pairs a comma).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};

use super::{has_tracking_finalizer, COMPLETION_INDEX_ANNOTATION};
use crate::controller_utils::compare_for_deletion;

/// Environment variable that carries the index into the containers.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// Longest `generateName` the server accepts before appending its 5 random characters.
const MAX_GENERATED_NAME_LENGTH: usize = 58;

pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// The pod's completion index, if it has a valid one.
pub fn completion_index(pod: &Pod) -> Option<usize> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX_ANNOTATION)?
        .parse::<usize>()
        .ok()
}

/// A closed interval of indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub first: usize,
    pub last: usize,
}

/// Disjoint, non-adjacent intervals in increasing order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderedIntervals(pub Vec<Interval>);

impl OrderedIntervals {
    /// Parses `status.completedIndexes`, dropping indexes at or beyond `completions`
    /// and skipping malformed pieces (upstream logs and ignores them).
    pub fn parse(s: &str, completions: usize) -> Self {
        let mut out: Vec<Interval> = Vec::new();
        if s.is_empty() {
            return OrderedIntervals(out);
        }
        for piece in s.split(',') {
            let mut limits = piece.split('-');
            let Some(Ok(first)) = limits.next().map(str::parse::<usize>) else {
                continue;
            };
            if first >= completions {
                break;
            }
            let last = match limits.next() {
                None => first,
                Some(l) => match l.parse::<usize>() {
                    Ok(l) => l.min(completions - 1),
                    Err(_) => continue,
                },
            };
            match out.last_mut() {
                Some(prev) if prev.last + 1 == first => prev.last = last,
                _ => out.push(Interval { first, last }),
            }
        }
        OrderedIntervals(out)
    }

    /// These intervals plus `indexes` (increasing), merged.
    pub fn with_ordered_indexes(&self, indexes: &[usize]) -> Self {
        let mut out: Vec<Interval> = Vec::new();
        let mut push = |iv: Interval| match out.last_mut() {
            Some(last) if iv.first <= last.last + 1 => last.last = last.last.max(iv.last),
            _ => out.push(iv),
        };
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < indexes.len() {
            if self.0[i].first < indexes[j] {
                push(self.0[i]);
                i += 1;
            } else {
                push(Interval {
                    first: indexes[j],
                    last: indexes[j],
                });
                j += 1;
            }
        }
        for iv in &self.0[i..] {
            push(*iv);
        }
        for &ix in &indexes[j..] {
            push(Interval {
                first: ix,
                last: ix,
            });
        }
        OrderedIntervals(out)
    }

    pub fn total(&self) -> usize {
        self.0.iter().map(|iv| iv.last - iv.first + 1).sum()
    }

    pub fn has(&self, ix: usize) -> bool {
        let pos = self.0.partition_point(|iv| iv.last < ix);
        self.0.get(pos).is_some_and(|iv| iv.first <= ix)
    }
}

impl std::fmt::Display for OrderedIntervals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, iv) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", iv.first)?;
            if iv.last == iv.first + 1 {
                write!(f, ",{}", iv.last)?;
            } else if iv.last > iv.first {
                write!(f, "-{}", iv.last)?;
            }
        }
        Ok(())
    }
}

/// The indexes in `status.completedIndexes` and those plus the indexes of succeeded
/// pods not yet counted (upstream `calculateSucceededIndexes`).
pub fn calculate_succeeded_indexes(
    completed_indexes: &str,
    completions: usize,
    pods: &[Arc<Pod>],
) -> (OrderedIntervals, OrderedIntervals) {
    let prev = OrderedIntervals::parse(completed_indexes, completions);
    let new: BTreeSet<usize> = pods
        .iter()
        .filter(|p| phase(p) == "Succeeded" && has_tracking_finalizer(p))
        .filter_map(|p| completion_index(p))
        .filter(|ix| *ix < completions)
        .collect();
    let all = prev.with_ordered_indexes(&new.into_iter().collect::<Vec<_>>());
    (prev, all)
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The first `count` indexes below `completions` neither succeeded nor held by an
/// active pod (upstream `firstPendingIndexes`).
pub fn first_pending_indexes(
    active: &[Arc<Pod>],
    succeeded: &OrderedIntervals,
    count: usize,
    completions: usize,
) -> Vec<usize> {
    let held: BTreeSet<usize> = active.iter().filter_map(|p| completion_index(p)).collect();
    let busy = succeeded.with_ordered_indexes(&held.into_iter().collect::<Vec<_>>());
    let mut out = Vec::with_capacity(count);
    let mut candidate = 0;
    for iv in &busy.0 {
        while candidate < completions && out.len() < count && candidate < iv.first {
            out.push(candidate);
            candidate += 1;
        }
        candidate = candidate.max(iv.last + 1);
    }
    while candidate < completions && out.len() < count {
        out.push(candidate);
        candidate += 1;
    }
    out
}

/// Active pods an Indexed Job must remove: those without a valid index, with an index
/// out of range, and all but one pod per repeated index (upstream
/// `appendDuplicatedIndexPodsForRemoval`). Returns (to remove, to keep).
pub fn duplicated_index_pods(
    pods: &[Arc<Pod>],
    completions: usize,
) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let mut by_index: std::collections::BTreeMap<usize, Vec<Arc<Pod>>> = Default::default();
    let mut rm = Vec::new();
    for p in pods {
        match completion_index(p) {
            Some(ix) if ix < completions => by_index.entry(ix).or_default().push(p.clone()),
            _ => rm.push(p.clone()),
        }
    }
    let mut keep = Vec::new();
    for (_, mut same) in by_index {
        // Keep the most useful one: the one ranked last for deletion.
        same.sort_by(|a, b| compare_for_deletion(a, 0, b, 0));
        if let Some(last) = same.pop() {
            keep.push(last);
        }
        rm.extend(same);
    }
    (rm, keep)
}

/// Adds `JOB_COMPLETION_INDEX` (from the index label) to every container that lacks it.
pub fn add_completion_index_env(template: &mut PodTemplateSpec) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for c in containers {
        let env = c.env.get_or_insert_with(Vec::new);
        if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
            continue;
        }
        env.push(EnvVar {
            name: COMPLETION_INDEX_ENV.to_string(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.labels['{COMPLETION_INDEX_ANNOTATION}']"),
                }),
                ..Default::default()
            }),
        });
    }
}

/// Puts `index` on the template as annotation and label, and the hostname
/// `<job>-<index>` (upstream, with the `PodIndexLabel` feature on).
pub fn set_completion_index(template: &mut PodTemplateSpec, job_name: &str, index: usize) {
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX_ANNOTATION.to_string(), index.to_string());
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX_ANNOTATION.to_string(), index.to_string());
    if let Some(spec) = template.spec.as_mut() {
        spec.hostname = Some(format!("{job_name}-{index}"));
    }
}

/// `<job>-<index>-`, cut so that the server's random suffix still fits.
pub fn generate_name_with_index(job_name: &str, index: usize) -> String {
    let suffix = format!("-{index}-");
    let mut prefix = format!("{job_name}{suffix}");
    if prefix.len() > MAX_GENERATED_NAME_LENGTH {
        let keep = MAX_GENERATED_NAME_LENGTH - suffix.len();
        prefix = format!("{}{suffix}", &job_name[..keep.min(job_name.len())]);
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(index: Option<&str>, phase: &str, finalizer: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                annotations: index
                    .map(|i| [(COMPLETION_INDEX_ANNOTATION.to_string(), i.to_string())].into()),
                finalizers: finalizer.then(|| vec![super::super::JOB_TRACKING_FINALIZER.into()]),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn intervals_format_like_upstream() {
        let cases = [
            (vec![], ""),
            (vec![0], "0"),
            (vec![0, 1], "0,1"),
            (vec![0, 1, 2], "0-2"),
            (vec![0, 1, 2, 5, 7, 8], "0-2,5,7,8"),
            (vec![3, 4, 5, 6, 9], "3-6,9"),
        ];
        for (indexes, want) in cases {
            let got = OrderedIntervals::default().with_ordered_indexes(&indexes);
            assert_eq!(got.to_string(), want, "{indexes:?}");
            assert_eq!(got.total(), indexes.len());
            assert_eq!(OrderedIntervals::parse(want, 100), got, "{want}");
        }
    }

    #[test]
    fn parsing_clamps_to_completions_and_merges() {
        assert_eq!(
            OrderedIntervals::parse("0-2,3,7-12", 10).to_string(),
            "0-3,7-9"
        );
        assert_eq!(OrderedIntervals::parse("0,x,2", 10).to_string(), "0,2");
        assert_eq!(OrderedIntervals::parse("5-8", 5).total(), 0);
        let iv = OrderedIntervals::parse("1-3,6", 10);
        assert!(iv.has(1) && iv.has(3) && iv.has(6));
        assert!(!iv.has(0) && !iv.has(4) && !iv.has(7));
        let merged = iv.with_ordered_indexes(&[0, 4, 5, 9]);
        assert_eq!(merged.to_string(), "0-6,9");
    }

    #[test]
    fn pending_indexes_skip_succeeded_and_active() {
        let succeeded = OrderedIntervals::parse("0,2", 10);
        let active = vec![
            pod(Some("1"), "Running", true),
            pod(Some("4"), "Pending", true),
        ];
        assert_eq!(
            first_pending_indexes(&active, &succeeded, 3, 10),
            vec![3, 5, 6]
        );
        assert_eq!(
            first_pending_indexes(&active, &succeeded, 10, 6),
            vec![3, 5]
        );
        assert!(first_pending_indexes(&[], &succeeded, 0, 10).is_empty());
    }

    #[test]
    fn succeeded_indexes_count_only_uncounted_pods_in_range() {
        let pods = vec![
            pod(Some("1"), "Succeeded", true),
            pod(Some("3"), "Succeeded", false), // counted already
            pod(Some("9"), "Succeeded", true),  // out of range
            pod(Some("2"), "Failed", true),
            pod(None, "Succeeded", true),
        ];
        let (prev, all) = calculate_succeeded_indexes("0", 5, &pods);
        assert_eq!(prev.to_string(), "0");
        assert_eq!(all.to_string(), "0,1");
    }

    #[test]
    fn duplicates_and_invalid_indexes_are_removed() {
        let pods = vec![
            pod(Some("0"), "Running", true),
            pod(Some("0"), "Pending", true),
            pod(Some("7"), "Running", true),
            pod(None, "Running", true),
            pod(Some("1"), "Running", true),
        ];
        let (rm, keep) = duplicated_index_pods(&pods, 5);
        assert_eq!(rm.len(), 3);
        assert_eq!(keep.len(), 2);
        // Of the two index-0 pods the running one stays.
        assert!(keep
            .iter()
            .any(|p| completion_index(p) == Some(0) && phase(p) == "Running"));
    }

    #[test]
    fn generate_names_fit() {
        assert_eq!(generate_name_with_index("pi", 3), "pi-3-");
        let long = "x".repeat(70);
        let n = generate_name_with_index(&long, 12);
        assert_eq!(n.len(), MAX_GENERATED_NAME_LENGTH);
        assert!(n.ends_with("-12-"));
    }
}
