//! Eviction thresholds and the node pressure conditions they drive (upstream
//! `pkg/kubelet/eviction`, signals of `--eviction-hard`): `memory.available`,
//! `nodefs.available`, `nodefs.inodesFree`, `imagefs.available`, `imagefs.inodesFree`,
//! each against a quantity (`100Mi`) or a share of capacity (`10%`). The defaults are
//! upstream's; setting `--eviction-hard` replaces them all. nodefs is the filesystem of
//! the agent's directory, imagefs the one containerd keeps image layers on (from CRI
//! ImageFsInfo). A threshold crossed makes MemoryPressure or DiskPressure True.
//!
//! Deliberately absent for now: evicting pods, soft thresholds, the transition period.

use std::path::Path;
use std::str::FromStr;

/// Upstream's default `--eviction-hard`.
pub const DEFAULT_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ThresholdError {
    #[error(
        "invalid eviction threshold {0:?}: want <signal><<quantity>, e.g. nodefs.available<10%"
    )]
    Syntax(String),
    #[error("unsupported eviction signal {0:?}")]
    Signal(String),
    #[error("invalid eviction threshold quantity {0:?}")]
    Quantity(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
}

impl FromStr for Signal {
    type Err = ThresholdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "memory.available" => Signal::MemoryAvailable,
            "nodefs.available" => Signal::NodeFsAvailable,
            "nodefs.inodesFree" => Signal::NodeFsInodesFree,
            "imagefs.available" => Signal::ImageFsAvailable,
            "imagefs.inodesFree" => Signal::ImageFsInodesFree,
            other => return Err(ThresholdError::Signal(other.to_string())),
        })
    }
}

/// A threshold's value: an absolute amount or a share of capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Quantity(u64),
    Percent(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
}

/// A set of hard thresholds (`--eviction-hard`).
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds(pub Vec<Threshold>);

impl Default for Thresholds {
    fn default() -> Self {
        DEFAULT_EVICTION_HARD
            .parse()
            .expect("invariant: the default thresholds parse")
    }
}

fn parse_value(s: &str) -> Result<Value, ThresholdError> {
    let bad = || ThresholdError::Quantity(s.to_string());
    if let Some(p) = s.strip_suffix('%') {
        let v: f64 = p.trim().parse().map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&v) {
            return Err(bad());
        }
        return Ok(Value::Percent(v));
    }
    let units: [(&str, u64); 12] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    let (digits, factor) = units
        .iter()
        .find_map(|(u, f)| s.strip_suffix(u).map(|d| (d, *f)))
        .unwrap_or((s, 1));
    let n: u64 = digits.trim().parse().map_err(|_| bad())?;
    n.checked_mul(factor).map(Value::Quantity).ok_or_else(bad)
}

impl FromStr for Thresholds {
    type Err = ThresholdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (signal, value) = part
                .split_once('<')
                .ok_or_else(|| ThresholdError::Syntax(part.to_string()))?;
            out.push(Threshold {
                signal: signal.trim().parse()?,
                value: parse_value(value.trim())?,
            });
        }
        Ok(Thresholds(out))
    }
}

/// Capacity and free space of one filesystem.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FsStats {
    pub capacity_bytes: u64,
    pub available_bytes: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// statvfs of the filesystem holding `path`.
#[allow(unsafe_code)]
pub fn fs_stats(path: &Path) -> Option<FsStats> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some(FsStats {
        capacity_bytes: (st.f_blocks as u64).saturating_mul(frsize),
        available_bytes: (st.f_bavail as u64).saturating_mul(frsize),
        inodes: st.f_files as u64,
        inodes_free: st.f_ffree as u64,
    })
}

/// What the signals measure now.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observations {
    /// (available, capacity) bytes of memory.
    pub memory: Option<(u64, u64)>,
    pub nodefs: Option<FsStats>,
    pub imagefs: Option<FsStats>,
}

impl Observations {
    /// (available, capacity) of a signal, if observed.
    fn get(&self, signal: Signal) -> Option<(u64, u64)> {
        match signal {
            Signal::MemoryAvailable => self.memory,
            Signal::NodeFsAvailable => self.nodefs.map(|f| (f.available_bytes, f.capacity_bytes)),
            Signal::NodeFsInodesFree => self.nodefs.map(|f| (f.inodes_free, f.inodes)),
            Signal::ImageFsAvailable => self.imagefs.map(|f| (f.available_bytes, f.capacity_bytes)),
            Signal::ImageFsInodesFree => self.imagefs.map(|f| (f.inodes_free, f.inodes)),
        }
    }
}

/// The thresholds crossed by `obs`.
pub fn crossed(thresholds: &Thresholds, obs: &Observations) -> Vec<Threshold> {
    thresholds
        .0
        .iter()
        .filter(|t| {
            let Some((available, capacity)) = obs.get(t.signal) else {
                return false;
            };
            // Filesystems without inode accounting (capacity 0) never cross.
            if capacity == 0 {
                return false;
            }
            let min = match t.value {
                Value::Quantity(q) => q as f64,
                Value::Percent(p) => capacity as f64 * p / 100.0,
            };
            (available as f64) < min
        })
        .copied()
        .collect()
}

/// MemoryPressure and DiskPressure from the crossed thresholds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
}

pub fn pressure(thresholds: &Thresholds, obs: &Observations) -> Pressure {
    let mut p = Pressure::default();
    for t in crossed(thresholds, obs) {
        match t.signal {
            Signal::MemoryAvailable => p.memory = true,
            _ => p.disk = true,
        }
    }
    p
}

/// Observes memory, the agent directory's filesystem and the image filesystem.
pub fn observe(nodefs: &Path, imagefs: Option<&Path>, memory_capacity: u64) -> Observations {
    Observations {
        memory: crate::host::memory_available().map(|a| (a, memory_capacity)),
        nodefs: fs_stats(nodefs),
        imagefs: imagefs.and_then(fs_stats),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_syntax() {
        let t: Thresholds = "memory.available<100Mi, nodefs.available<10%,imagefs.inodesFree<5%"
            .parse()
            .unwrap();
        assert_eq!(
            t.0,
            vec![
                Threshold {
                    signal: Signal::MemoryAvailable,
                    value: Value::Quantity(100 << 20)
                },
                Threshold {
                    signal: Signal::NodeFsAvailable,
                    value: Value::Percent(10.0)
                },
                Threshold {
                    signal: Signal::ImageFsInodesFree,
                    value: Value::Percent(5.0)
                },
            ]
        );
        assert_eq!(Thresholds::default().0.len(), 4);
        assert!(matches!(
            "pid.available<10".parse::<Thresholds>(),
            Err(ThresholdError::Signal(_))
        ));
        assert!(matches!(
            "nodefs.available>10%".parse::<Thresholds>(),
            Err(ThresholdError::Syntax(_))
        ));
        assert!(matches!(
            "nodefs.available<110%".parse::<Thresholds>(),
            Err(ThresholdError::Quantity(_))
        ));
        assert_eq!("".parse::<Thresholds>().unwrap().0, vec![]);
    }

    #[test]
    fn pressure_from_crossed_thresholds() {
        let fs = |cap: u64, avail: u64| FsStats {
            capacity_bytes: cap,
            available_bytes: avail,
            inodes: 1000,
            inodes_free: 900,
        };
        let t = Thresholds::default();
        let calm = Observations {
            memory: Some((1 << 30, 4 << 30)),
            nodefs: Some(fs(100, 50)),
            imagefs: Some(fs(100, 50)),
        };
        assert_eq!(pressure(&t, &calm), Pressure::default());
        // imagefs at 14% free crosses imagefs.available<15%; nodefs at 14% does not.
        let image_full = Observations {
            imagefs: Some(fs(100, 14)),
            nodefs: Some(fs(100, 14)),
            ..calm
        };
        assert_eq!(
            crossed(&t, &image_full)
                .iter()
                .map(|t| t.signal)
                .collect::<Vec<_>>(),
            vec![Signal::ImageFsAvailable]
        );
        assert!(pressure(&t, &image_full).disk);
        let low_memory = Observations {
            memory: Some((50 << 20, 4 << 30)),
            ..calm
        };
        assert_eq!(
            pressure(&t, &low_memory),
            Pressure {
                memory: true,
                disk: false
            }
        );
        // Unobserved signals never cross.
        assert_eq!(pressure(&t, &Observations::default()), Pressure::default());
    }
}
