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

/// The open-file limit is raised the same way by every daemon.
pub use crate::shared::process::raise_open_file_limit;
