//! What /proc says about a process, for the examples that watch memory
//! (geo_table_memory, soak).

/// The number of a /proc/PID/status line such as "VmRSS:  1234 kB" (kB for
/// the memory fields), for `pid` or, with None, this process.
pub fn status_value(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}
