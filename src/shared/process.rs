//! Process-wide settings every long-running command makes at start: the
//! file-creation mask and the open-file limit.

use std::io;

/// This machine's host name (Linux), if it has one.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// Files and directories this process creates are its owner's alone
/// (umask 077): the database with its password hashes, the snapshot
/// signing key, snapshots and caches. Set once at start, before any
/// thread is spawned (the mask is process-wide).
pub fn restrict_new_files() {
    // SAFETY: umask(2) only sets the calling process's mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Raise the soft limit on open files to the hard limit: every connection
/// is a descriptor, and the usual soft limit of 1024 would cap the
/// connection limits below what the operator configured.
pub fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a
    // live, initialised rlimit.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!(error = %io::Error::last_os_error(), "cannot raise the open file limit");
            }
        }
    }
}
