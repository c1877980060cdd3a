//! The operating system calls of the daemon that are not sockets: CPU
//! affinity for pinned workers, and the open-file limit.

use std::io;

/// The CPUs this process may run on.
pub(super) fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is a plain bit set; zero is a valid value, and
    // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

pub(super) fn pin_to_cpu(cpu: usize) {
    // SAFETY: as above; the set names one CPU and applies to this thread.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if result != 0 {
        tracing::warn!(cpu, error = %io::Error::last_os_error(), "cannot pin UDP worker");
    }
}

/// Raise the soft limit on open files to the hard limit: every TCP
/// connection is a descriptor, and the usual soft limit of 1024 would cap
/// the connection limit below what the operator configured.
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
