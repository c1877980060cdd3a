//! Replacing a file so readers see the old bytes or the new ones, never a
//! mix, and a crash leaves one of the two: write a temporary file in the
//! same directory, fsync it, rename it over the target, fsync the
//! directory (so the rename itself survives a crash).
//!
//! Used by the zone builder (the published snapshot) and the DNS daemon
//! (its cache of the last snapshot pulled over HTTP). Knows nothing else.

use std::io::{self, Write};
use std::path::Path;

/// Replace `path` with `bytes` atomically. On error the old file (if any)
/// is untouched and the temporary file removed.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let context = |what: &str, error: io::Error| {
        io::Error::new(error.kind(), format!("{}: {what}: {error}", path.display()))
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))
        .map_err(|e| context("cannot replace", e))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(file_name);
    prefix.push(".tmp.");
    remove_stale_temporaries(directory, &prefix);
    let mut temp_name = prefix;
    temp_name.push(std::process::id().to_string());
    let temp = directory.join(temp_name);
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(context("cannot write the temporary file", error));
    }
    if let Err(error) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(context("cannot rename into place", error));
    }
    // The rename is done; a failed directory fsync only weakens crash
    // safety, so it is reported but the new file stays.
    std::fs::File::open(directory)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| context("cannot fsync the directory", e))
}

/// Temporary files of this target left by a process that was killed
/// while writing (`.NAME.tmp.PID` of a PID no longer running): removed, so
/// kills and restarts do not fill the disk with copies of the snapshot.
/// Best effort; a running writer's file is left alone.
fn remove_stale_temporaries(directory: &Path, prefix: &std::ffi::OsStr) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    let prefix = prefix.as_encoded_bytes();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .as_encoded_bytes()
            .strip_prefix(prefix)
            .and_then(|pid| std::str::from_utf8(pid).ok())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("timepool-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snapshot.json");
        super::write(&path, b"one").unwrap();
        super::write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // A temporary file left by a killed writer (a PID not running) is
        // removed by the next write; one of a running process is not.
        let stale = dir.join(format!(".snapshot.json.tmp.{}", u32::MAX - 1));
        let running = dir.join(".snapshot.json.tmp.1");
        std::fs::write(&stale, b"half").unwrap();
        std::fs::write(&running, b"busy").unwrap();
        super::write(&path, b"four").unwrap();
        assert!(!stale.exists());
        assert!(running.exists());
        std::fs::remove_file(&running).unwrap();
        // A directory that does not exist: an error, nothing written.
        assert!(super::write(&dir.join("missing/x.json"), b"three").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
