//! The operating system calls of the daemon that are not sockets: CPU
//! affinity for pinned workers, the reload threads' low priority, and the
//! open-file limit.

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

/// Puts the calling thread in the SCHED_IDLE scheduling class (Linux: it
/// runs only in the CPU time that the process's other threads leave).
/// A reload parses and compiles a whole snapshot or flattens a whole GeoIP
/// database: tens of milliseconds to a second of CPU. At normal priority it
/// takes that time from the UDP workers of a busy node (or of one whose
/// cgroup caps its CPU, where even nice 10 was not enough: the soak run
/// lost queries at every GeoIP reload), whose socket buffers then overflow.
/// As an idle thread it only takes longer, and under a flood that keeps
/// every core busy it waits until the flood eases: the node answers from
/// the previous table meanwhile, which is the right order of things for a
/// node whose job is answering. Only reloads run on the threads
/// that call this (the follow thread, tokio's blocking threads of the
/// daemon's runtime), and an unprivileged thread cannot leave the class
/// again, so it is never restored. Where the class is refused, the lowest
/// nice value instead.
pub(super) fn lower_this_thread_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param
    // that outlives the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        return;
    }
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    let Ok(tid) = libc::id_t::try_from(tid) else {
        return;
    };
    // SAFETY: setpriority takes plain integers; with PRIO_PROCESS and a
    // thread ID it changes that thread only.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 19) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "cannot lower the reload thread's priority");
    }
}

/// The open-file limit is raised the same way by every daemon.
pub use crate::shared::process::raise_open_file_limit;

#[cfg(test)]
mod tests {
    use super::*;

    fn this_thread_policy() -> libc::c_int {
        // SAFETY: pid 0 is the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn a_reload_thread_runs_in_the_idle_class_and_only_it() {
        let before = this_thread_policy();
        let lowered = std::thread::spawn(|| {
            lower_this_thread_priority();
            this_thread_policy()
        })
        .join()
        .expect("thread");
        assert_eq!(lowered, libc::SCHED_IDLE);
        assert_eq!(this_thread_policy(), before);
        assert_ne!(before, libc::SCHED_IDLE);
    }
}
