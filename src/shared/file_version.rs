//! What identifies a version of a file, to notice that it changed without
//! reading it: the DNS daemon's snapshot and GeoIP files, the web app's
//! TLS certificate and key.

use std::path::Path;
use std::time::SystemTime;

/// A rename gives a new inode, a rewrite a new modification time or
/// length.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FileVersion {
    inode: u64,
    length: u64,
    modified: Option<SystemTime>,
}

/// The file's version now; `None` when it cannot be read.
pub fn file_version(path: &Path) -> Option<FileVersion> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileVersion {
        inode: metadata.ino(),
        length: metadata.len(),
        modified: metadata.modified().ok(),
    })
}
