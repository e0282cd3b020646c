//! Facts about the host for the Node object: CPU, memory and disk capacity, kernel and OS
//! names, machine identifiers. Read from /proc and /etc, never from the network.

use std::path::Path;

/// What the node reports in `status.capacity` and `status.nodeInfo`.
#[derive(Clone, Debug, Default)]
pub struct HostInfo {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub system_uuid: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn detect(data_dir: &Path) -> HostInfo {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into());
    let machine_id = read_trim("/etc/machine-id");
    HostInfo {
        cpus,
        memory_bytes,
        ephemeral_storage_bytes: disk_capacity(data_dir),
        kernel_version: read_trim("/proc/sys/kernel/osrelease"),
        os_image,
        system_uuid: {
            let u = read_trim("/sys/class/dmi/id/product_uuid");
            if u.is_empty() {
                machine_id.clone()
            } else {
                u
            }
        },
        machine_id,
        boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
    }
}

/// Total bytes of the filesystem holding `path`.
#[allow(unsafe_code)]
pub fn disk_capacity(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return 0;
    }
    (st.f_blocks as u64).saturating_mul(st.f_frsize as u64)
}

/// Free bytes and free share of the filesystem holding `path`.
#[allow(unsafe_code)]
pub fn disk_available(path: &Path) -> Option<(u64, f64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: as in disk_capacity.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 || st.f_blocks == 0 {
        return None;
    }
    let avail = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
    Some((avail, st.f_bavail as f64 / st.f_blocks as f64))
}

/// Available memory in bytes (MemAvailable).
pub fn memory_available() -> Option<u64> {
    let t = std::fs::read_to_string("/proc/meminfo").ok()?;
    t.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}
