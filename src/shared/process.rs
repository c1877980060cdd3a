//! Process-wide settings every long-running command makes at start: the
//! file-creation mask and the open-file limit; and giving freed memory
//! back to the system after a reload.

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

/// Gives the memory the allocator holds free back to the system
/// (glibc's `malloc_trim`; elsewhere nothing). Called after a reload has
/// freed its temporaries and the table it replaced. glibc keeps freed
/// memory in per-thread arenas, and a reload runs on whichever blocking
/// thread is free, often a new one with a new arena: without this the
/// soak run saw a DNS node's RSS grow by ~30 MB at every GeoIP reload
/// (72 -> 225 MB in 5 minutes), and examples/geo_table_memory shows the
/// same (8 reloads: 201 MB kept, 48 MB trimmed).
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a plain size (the padding to keep) and
    // only returns free pages; it is thread-safe in glibc.
    unsafe {
        libc::malloc_trim(0);
    }
}
