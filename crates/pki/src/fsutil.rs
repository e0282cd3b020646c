//! Crash-safe file writes: a reader sees either the old file or the new one, never half.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::PkiError;

/// Writes `contents` to `path` via a temp file in the same directory and a rename, with `mode`
/// applied regardless of the umask. Missing parent directories are created.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(|e| PkiError::io("creating directory", parent, e))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| {
            PkiError::io(
                "writing",
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
            )
        })?
        .to_string_lossy();
    let tmp = parent.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = (|| {
        // The mode at open time keeps a secret from ever being world-readable, even briefly.
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| PkiError::io("creating", &tmp, e))?;
        // A leftover temp file keeps its old mode, and the umask may have narrowed ours.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| PkiError::io("setting permissions of", &tmp, e))?;
        file.write_all(contents)
            .map_err(|e| PkiError::io("writing", &tmp, e))?;
        file.sync_all()
            .map_err(|e| PkiError::io("syncing", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| PkiError::io("renaming into", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Persist the rename itself; failure here only weakens durability, not correctness.
    if let Ok(dir) = fs::File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_mode_and_replaces_existing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/secret");
        write_atomic(&path, b"one", 0o600).expect("first write");
        write_atomic(&path, b"two", 0o640).expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let leftovers: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "temp file left behind: {leftovers:?}");
    }
}
