//! The pod sandbox ("pause") image, built by rkube itself rather than pulled: a tiny static
//! ELF program, assembled here byte by byte, that installs handlers for SIGTERM and SIGINT
//! (which exit 0) and otherwise sleeps in `pause()` forever. As PID 1 of the sandbox it
//! holds the pod's namespaces open.

use crate::oci::{self, Entry, ImageConfig};

/// Name under which the pause image is imported and configured as containerd's
/// `sandbox_image`.
pub const PAUSE_IMAGE: &str = "rkube.local/pause:3.10";

/// Virtual address the program is loaded at.
const BASE: u64 = 0x40_0000;
/// ELF header (64 bytes) plus one program header (56 bytes).
const CODE_OFFSET: u64 = 64 + 56;

/// x86-64 machine code of the program; `act` (the `struct sigaction` handed to the kernel)
/// follows at offset 72. See [`x86_64_code`] for the listing.
fn x86_64_code() -> Vec<u8> {
    const ACT: i32 = 72;
    const HANDLER: u64 = 63;
    let mut c: Vec<u8> = Vec::new();
    for (signal, lea_end) in [(15u8, 17i32), (2u8, 44i32)] {
        c.extend_from_slice(&[0xB8, 13, 0, 0, 0]); //         mov eax, 13 (rt_sigaction)
        c.extend_from_slice(&[0xBF, signal, 0, 0, 0]); //     mov edi, signal
        c.extend_from_slice(&[0x48, 0x8D, 0x35]); //          lea rsi, [rip + act]
        c.extend_from_slice(&(ACT - lea_end).to_le_bytes());
        c.extend_from_slice(&[0x31, 0xD2]); //                xor edx, edx
        c.extend_from_slice(&[0x41, 0xBA, 8, 0, 0, 0]); //    mov r10d, 8 (sigset size)
        c.extend_from_slice(&[0x0F, 0x05]); //                syscall
    }
    debug_assert_eq!(c.len(), 54);
    c.extend_from_slice(&[0xB8, 34, 0, 0, 0]); //             loop: mov eax, 34 (pause)
    c.extend_from_slice(&[0x0F, 0x05]); //                    syscall
    c.extend_from_slice(&[0xEB, 0xF7]); //                    jmp loop
    debug_assert_eq!(c.len() as u64, HANDLER);
    c.extend_from_slice(&[0xB8, 231, 0, 0, 0]); //            handler: mov eax, 231 (exit_group)
    c.extend_from_slice(&[0x31, 0xFF]); //                    xor edi, edi
    c.extend_from_slice(&[0x0F, 0x05]); //                    syscall (act follows, 8-aligned)
    debug_assert_eq!(c.len() as i32, ACT);
    let handler = BASE + CODE_OFFSET + HANDLER;
    // struct kernel_sigaction: handler, flags (SA_RESTORER, required on x86-64; the
    // handler never returns, so the restorer is never used), restorer, mask.
    c.extend_from_slice(&handler.to_le_bytes());
    c.extend_from_slice(&0x0400_0000u64.to_le_bytes());
    c.extend_from_slice(&handler.to_le_bytes());
    c.extend_from_slice(&0u64.to_le_bytes());
    c
}

/// A static ELF executable for this machine, or `None` on an architecture rkube has no
/// pause program for.
pub fn pause_elf() -> Option<Vec<u8>> {
    let (machine, code) = match std::env::consts::ARCH {
        "x86_64" => (0x3Eu16, x86_64_code()),
        _ => return None,
    };
    let total = CODE_OFFSET + code.len() as u64;
    let mut e = Vec::with_capacity(total as usize);
    e.extend_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&machine.to_le_bytes());
    e.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    e.extend_from_slice(&(BASE + CODE_OFFSET).to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // program headers right after this header
    e.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    e.extend_from_slice(&64u16.to_le_bytes()); // header size
    e.extend_from_slice(&56u16.to_le_bytes()); // program header size
    e.extend_from_slice(&1u16.to_le_bytes()); // one program header
    e.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // section header size, count, names index
                                              // PT_LOAD of the whole file, readable and executable.
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&5u32.to_le_bytes());
    e.extend_from_slice(&0u64.to_le_bytes());
    e.extend_from_slice(&BASE.to_le_bytes());
    e.extend_from_slice(&BASE.to_le_bytes());
    e.extend_from_slice(&total.to_le_bytes());
    e.extend_from_slice(&total.to_le_bytes());
    e.extend_from_slice(&0x1000u64.to_le_bytes());
    e.extend_from_slice(&code);
    Some(e)
}

/// The pause image as an OCI layout tarball, or `None` where [`pause_elf`] has none.
pub fn pause_image_tarball() -> Option<Vec<u8>> {
    let elf = pause_elf()?;
    Some(oci::image_tarball(
        &ImageConfig {
            name: PAUSE_IMAGE.to_string(),
            entrypoint: vec!["/pause".into()],
            ..Default::default()
        },
        &[Entry::File {
            path: "pause".into(),
            mode: 0o755,
            data: elf,
        }],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn pause_runs_until_sigterm_and_exits_zero() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pause");
        std::fs::write(&path, pause_elf().unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = std::process::Command::new(&path).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            child.try_wait().unwrap().is_none(),
            "pause exited on its own"
        );
        let pid = i32::try_from(child.id()).unwrap();
        assert_eq!(
            std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .unwrap()
                .code(),
            Some(0)
        );
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0));
    }
}
