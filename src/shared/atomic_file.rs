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
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".tmp.{}", std::process::id()));
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
        // A directory that does not exist: an error, nothing written.
        assert!(super::write(&dir.join("missing/x.json"), b"three").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
