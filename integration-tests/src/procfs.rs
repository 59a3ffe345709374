//! What `/proc` says about a process: its status, memory, descriptors and cgroups.

/// Resident memory of `pid` in KiB (`VmRSS`), 0 if it is gone.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `/proc/PID/status` of `pid`, empty if it is gone.
pub fn status(pid: impl std::fmt::Display) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

/// The value of `key` (e.g. `"Seccomp:"`) in a `/proc/PID/status` text, trimmed; empty if it
/// is not there.
pub fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_default()
        .to_string()
}

/// `/proc/PID/status` once the process's seccomp filter is in place (`Seccomp: 2`), or as it
/// is when `timeout` has passed.
pub fn status_once_filtered(pid: impl std::fmt::Display, timeout: std::time::Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let s = status(&pid);
        if status_field(&s, "Seccomp:") == "2" || std::time::Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Open descriptors of `pid`, 0 if it is gone.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The cgroup v1 path of `pid` in the hierarchy holding controller `ctl`.
pub fn cgroup_path(pid: u32, ctl: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctls, path) = (f.next()?, f.next()?, f.next()?);
            ctls.split(',').any(|c| c == ctl).then(|| path.to_string())
        })
}
