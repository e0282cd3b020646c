//! Image garbage collection (upstream `pkg/kubelet/images/image_gc_manager.go`).
//!
//! Every `period` (5 minutes upstream) the agent lists the runtime's images and
//! containers, remembers when it first saw each image and when one was last used by a
//! container (any container the runtime has, exited ones included; rkube's pause image
//! counts as used by the sandboxes, and images the runtime pins are never touched), then
//! measures the image filesystem (CRI ImageFsInfo's mountpoint). At `high_threshold_percent`
//! usage or more it frees `capacity × (100 − low_threshold_percent)% − available` bytes by
//! removing unused images least recently used first (then first detected first), skipping
//! images younger than `min_age` so a just-pulled image is not removed before its
//! container exists. Images present when the agent starts count as old. Freeing too
//! little is a `FreeDiskSpaceFailed` Warning on the Node; a collection failing twice in a
//! row is an `ImageGCFailed` Warning; a zero capacity is `InvalidDiskCapacity`.
//! `high_threshold_percent` 100 disables it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cri::{CallExt, CriClient, CriError};
use k8s_openapi::api::core::v1::ObjectReference;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::eviction::FsStats;
use crate::worker::Ctx;

/// `--image-gc-high-threshold`, `--image-gc-low-threshold`, `--image-minimum-gc-age`, and
/// how often collection runs.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageGcPolicy {
    pub high_threshold_percent: u32,
    pub low_threshold_percent: u32,
    pub min_age: Duration,
    pub period: Duration,
}

impl Default for ImageGcPolicy {
    fn default() -> Self {
        ImageGcPolicy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(120),
            period: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("invalid HighThresholdPercent {0}, must be in range [0-100]")]
    HighThreshold(u32),
    #[error("invalid LowThresholdPercent {0}, must be in range [0-100]")]
    LowThreshold(u32),
    #[error("LowThresholdPercent {low} can not be higher than HighThresholdPercent {high}")]
    LowAboveHigh { low: u32, high: u32 },
    #[error("invalid capacity 0 on image filesystem")]
    InvalidCapacity,
    #[error("the container runtime reports no image filesystem")]
    NoImageFs,
    #[error(
        "Failed to garbage collect required amount of images. Attempted to free {wanted} bytes, but only found {freed} bytes eligible to free."
    )]
    NotEnoughFreed { wanted: u64, freed: u64 },
    #[error("wanted to free {wanted} bytes, but freed {freed} bytes space with errors in image deletion: {errors}")]
    Deletion {
        wanted: u64,
        freed: u64,
        errors: String,
    },
    #[error(transparent)]
    Cri(#[from] CriError),
}

impl ImageGcPolicy {
    /// Upstream's checks of the policy.
    pub fn validate(&self) -> Result<(), GcError> {
        if self.high_threshold_percent > 100 {
            return Err(GcError::HighThreshold(self.high_threshold_percent));
        }
        if self.low_threshold_percent > 100 {
            return Err(GcError::LowThreshold(self.low_threshold_percent));
        }
        if self.low_threshold_percent > self.high_threshold_percent {
            return Err(GcError::LowAboveHigh {
                low: self.low_threshold_percent,
                high: self.high_threshold_percent,
            });
        }
        Ok(())
    }

    /// Bytes to free for a filesystem, or `None` below the high threshold.
    pub fn bytes_to_free(&self, fs: &FsStats) -> Result<Option<u64>, GcError> {
        let capacity = fs.capacity_bytes;
        if capacity == 0 {
            return Err(GcError::InvalidCapacity);
        }
        let available = fs.available_bytes.min(capacity);
        let usage = 100 - (u128::from(available) * 100 / u128::from(capacity)) as u32;
        if usage < self.high_threshold_percent {
            return Ok(None);
        }
        let target =
            u128::from(capacity) * u128::from(100 - self.low_threshold_percent.min(100)) / 100;
        Ok(Some(target.saturating_sub(u128::from(available)) as u64))
    }
}

/// One image as the runtime lists it.
#[derive(Clone, Debug, Default)]
pub struct RuntimeImage {
    pub id: String,
    /// Tags and digests.
    pub names: Vec<String>,
    pub size: u64,
    pub pinned: bool,
}

#[derive(Clone, Debug, PartialEq)]
struct ImageRecord {
    /// `None`: already there when the agent started (old enough).
    first_detected: Option<Instant>,
    last_used: Option<Instant>,
    size: u64,
    pinned: bool,
    in_use: bool,
}

/// What the collector remembers about images between runs.
#[derive(Default)]
pub struct ImageGcManager {
    records: HashMap<String, ImageRecord>,
}

impl ImageGcManager {
    /// Records the runtime's images: new ones as first seen at `detected`, those named in
    /// `in_use` (IDs or names) as used `now`; images gone from the runtime are forgotten.
    pub fn detect(
        &mut self,
        images: &[RuntimeImage],
        in_use: &HashSet<String>,
        detected: Option<Instant>,
        now: Instant,
    ) {
        let mut present = HashSet::new();
        for image in images {
            present.insert(image.id.clone());
            let record = self
                .records
                .entry(image.id.clone())
                .or_insert_with(|| ImageRecord {
                    first_detected: detected,
                    last_used: None,
                    size: image.size,
                    pinned: image.pinned,
                    in_use: false,
                });
            record.in_use =
                in_use.contains(&image.id) || image.names.iter().any(|n| in_use.contains(n));
            if record.in_use {
                record.last_used = Some(now);
            }
            record.size = image.size;
            record.pinned = image.pinned;
        }
        self.records.retain(|id, _| present.contains(id));
    }

    /// Unused, unpinned images at least `min_age` old at `now`, in eviction order: least
    /// recently used first (never used before used), then first detected first.
    pub fn eviction_order(&self, now: Instant, min_age: Duration) -> Vec<(String, u64)> {
        let mut out: Vec<(&String, &ImageRecord)> = self
            .records
            .iter()
            .filter(|(_, r)| !r.in_use && !r.pinned)
            .filter(|(_, r)| {
                r.first_detected
                    .is_none_or(|t| now.saturating_duration_since(t) >= min_age)
            })
            .collect();
        out.sort_by(|(a_id, a), (b_id, b)| {
            (a.last_used, a.first_detected, *a_id).cmp(&(b.last_used, b.first_detected, *b_id))
        });
        out.into_iter()
            .map(|(id, r)| (id.clone(), r.size))
            .collect()
    }
}

/// Where the runtime keeps image layers (CRI ImageFsInfo).
pub async fn image_fs_path(cri: &mut CriClient) -> Result<Option<PathBuf>, CriError> {
    let info = cri
        .images
        .image_fs_info(cri::v1::ImageFsInfoRequest {})
        .await
        .call("ImageFsInfo")?;
    Ok(info
        .image_filesystems
        .into_iter()
        .filter_map(|f| f.fs_id.map(|id| id.mountpoint))
        .find(|m| !m.is_empty())
        .map(PathBuf::from))
}

/// The runtime's images, and the IDs and names its containers use (plus rkube's pause
/// image, which the sandboxes use).
async fn runtime_state(
    cri: &mut CriClient,
) -> Result<(Vec<RuntimeImage>, HashSet<String>), CriError> {
    let images = cri
        .images
        .list_images(cri::v1::ListImagesRequest { filter: None })
        .await
        .call("ListImages")?
        .images
        .into_iter()
        .map(|i| RuntimeImage {
            names: i.repo_tags.into_iter().chain(i.repo_digests).collect(),
            id: i.id,
            size: i.size,
            pinned: i.pinned,
        })
        .collect();
    let containers = cri
        .runtime
        .list_containers(cri::v1::ListContainersRequest { filter: None })
        .await
        .call("ListContainers")?
        .containers;
    let mut in_use: HashSet<String> = containers
        .into_iter()
        .flat_map(|c| [Some(c.image_ref), c.image.map(|i| i.image)])
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    in_use.insert(crate::images::normalize_image(crate::pause::PAUSE_IMAGE));
    Ok((images, in_use))
}

impl ImageGcManager {
    /// One collection (upstream `GarbageCollect`).
    pub async fn garbage_collect(
        &mut self,
        cri: &mut CriClient,
        policy: &ImageGcPolicy,
    ) -> Result<(), GcError> {
        let now = Instant::now();
        let (images, in_use) = runtime_state(cri).await?;
        self.detect(&images, &in_use, Some(now), now);
        let path = image_fs_path(cri).await?.ok_or(GcError::NoImageFs)?;
        let fs = crate::eviction::fs_stats(&path).ok_or(GcError::NoImageFs)?;
        let Some(wanted) = policy.bytes_to_free(&fs)? else {
            return Ok(());
        };
        let usage = 100 - fs.available_bytes.min(fs.capacity_bytes) * 100 / fs.capacity_bytes;
        tracing::info!(
            usage,
            high_threshold = policy.high_threshold_percent,
            low_threshold = policy.low_threshold_percent,
            amount_to_free = wanted,
            "disk usage on image filesystem is over the high threshold, trying to free bytes down to the low threshold"
        );
        let mut freed = 0u64;
        let mut errors = Vec::new();
        for (id, size) in self.eviction_order(now, policy.min_age) {
            tracing::info!(image = %id, size, "removing image to free bytes");
            match cri
                .images
                .remove_image(cri::v1::RemoveImageRequest {
                    image: Some(cri::v1::ImageSpec {
                        image: id.clone(),
                        ..Default::default()
                    }),
                })
                .await
                .call("RemoveImage")
            {
                Ok(_) => {
                    self.records.remove(&id);
                    freed += size;
                    if freed >= wanted {
                        break;
                    }
                }
                Err(e) => errors.push(format!("{id}: {e}")),
            }
        }
        if !errors.is_empty() {
            return Err(GcError::Deletion {
                wanted,
                freed,
                errors: errors.join(", "),
            });
        }
        if freed < wanted {
            return Err(GcError::NotEnoughFreed { wanted, freed });
        }
        Ok(())
    }
}

fn node_ref(node: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("Node".into()),
        name: Some(node.to_string()),
        // Upstream's node reference uses the node name as UID.
        uid: Some(node.to_string()),
        ..Default::default()
    }
}

/// Runs image collection every `policy.period` until `cancel` fires.
pub async fn run(ctx: Arc<Ctx>, cancel: CancellationToken) {
    let policy = ctx.config.image_gc.clone();
    if policy.high_threshold_percent >= 100 {
        tracing::info!("image-gc-high-threshold is 100: image garbage collection disabled");
        return;
    }
    let mut cri = ctx.cri.clone();
    let mut manager = ImageGcManager::default();
    // Images already present count as old (upstream's initial detection).
    match runtime_state(&mut cri).await {
        Ok((images, in_use)) => manager.detect(&images, &in_use, None, Instant::now()),
        Err(e) => tracing::warn!(error = %e, "listing images for garbage collection failed"),
    }
    let node = node_ref(&ctx.config.node_name);
    let mut previous_failed = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(policy.period) => {}
        }
        match manager.garbage_collect(&mut cri, &policy).await {
            Ok(()) => {
                if previous_failed {
                    tracing::info!("image garbage collection succeeded");
                }
                previous_failed = false;
            }
            Err(e) => {
                match &e {
                    GcError::NotEnoughFreed { .. } => {
                        ctx.warn(&node, "FreeDiskSpaceFailed", e.to_string()).await
                    }
                    GcError::InvalidCapacity => {
                        ctx.warn(&node, "InvalidDiskCapacity", e.to_string()).await
                    }
                    _ => {}
                }
                if previous_failed {
                    tracing::error!(error = %e, "image garbage collection failed multiple times in a row");
                    ctx.warn(&node, "ImageGCFailed", e.to_string()).await;
                } else {
                    tracing::warn!(error = %e, "image garbage collection failed once");
                }
                previous_failed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(capacity: u64, available: u64) -> FsStats {
        FsStats {
            capacity_bytes: capacity,
            available_bytes: available,
            ..Default::default()
        }
    }

    #[test]
    fn frees_down_to_the_low_threshold_from_the_high_one() {
        let p = ImageGcPolicy::default();
        assert_eq!(p.bytes_to_free(&fs(1000, 200)).unwrap(), None, "80% used");
        // Whole percents, as upstream: 15.1% available is 85% used.
        assert_eq!(p.bytes_to_free(&fs(1000, 161)).unwrap(), None, "84% used");
        assert_eq!(p.bytes_to_free(&fs(1000, 151)).unwrap(), Some(49));
        // 85% used: free to 80% (200 available).
        assert_eq!(p.bytes_to_free(&fs(1000, 150)).unwrap(), Some(50));
        assert_eq!(p.bytes_to_free(&fs(1000, 0)).unwrap(), Some(200));
        // More available than capacity counts as empty.
        assert_eq!(p.bytes_to_free(&fs(1000, 5000)).unwrap(), None);
        assert!(matches!(
            p.bytes_to_free(&fs(0, 0)),
            Err(GcError::InvalidCapacity)
        ));
        let all = ImageGcPolicy {
            high_threshold_percent: 0,
            low_threshold_percent: 0,
            ..p.clone()
        };
        assert_eq!(all.bytes_to_free(&fs(1000, 990)).unwrap(), Some(10));
    }

    #[test]
    fn policy_validation() {
        let ok = ImageGcPolicy::default();
        assert!(ok.validate().is_ok());
        let bad = |high, low| ImageGcPolicy {
            high_threshold_percent: high,
            low_threshold_percent: low,
            ..ImageGcPolicy::default()
        };
        assert!(matches!(
            bad(101, 80).validate(),
            Err(GcError::HighThreshold(101))
        ));
        assert!(matches!(
            bad(80, 90).validate(),
            Err(GcError::LowAboveHigh { .. })
        ));
        assert!(bad(100, 100).validate().is_ok());
    }

    fn image(id: &str, name: &str, size: u64) -> RuntimeImage {
        RuntimeImage {
            id: id.into(),
            names: vec![name.into()],
            size,
            pinned: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unused_images_least_recently_used_first_and_old_enough() {
        let mut m = ImageGcManager::default();
        let start = Instant::now();
        let min_age = Duration::from_secs(120);
        let mut pinned = image("sha256:pin", "rkube.local/pause:3.10", 1);
        pinned.pinned = true;
        let all = vec![
            image("sha256:old", "old:1", 10),
            image("sha256:used", "used:1", 20),
            pinned.clone(),
        ];
        // At start: old and pinned were already there; `used` is used by a container.
        let in_use: HashSet<String> = ["used:1".to_string()].into();
        m.detect(&all, &in_use, None, start);
        assert_eq!(
            m.eviction_order(start, min_age),
            vec![("sha256:old".to_string(), 10)]
        );

        // Later: `used` is no longer used, `fresh` appears.
        tokio::time::advance(Duration::from_secs(60)).await;
        let t1 = Instant::now();
        let mut all2 = all.clone();
        all2.push(image("sha256:fresh", "fresh:1", 30));
        m.detect(&all2, &HashSet::new(), Some(t1), t1);
        // `fresh` is younger than min age; `old` (never used) goes before `used`.
        assert_eq!(
            m.eviction_order(t1, min_age),
            vec![
                ("sha256:old".to_string(), 10),
                ("sha256:used".to_string(), 20)
            ]
        );
        tokio::time::advance(min_age).await;
        let t2 = Instant::now();
        m.detect(&all2, &HashSet::new(), Some(t2), t2);
        let order: Vec<String> = m
            .eviction_order(t2, min_age)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(order, ["sha256:old", "sha256:fresh", "sha256:used"]);

        // Images gone from the runtime are forgotten; an ID match counts as in use.
        let in_use: HashSet<String> = ["sha256:fresh".to_string()].into();
        m.detect(&all2[1..], &in_use, Some(t2), t2);
        let order: Vec<String> = m
            .eviction_order(t2, min_age)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(order, ["sha256:used"]);
    }
}
