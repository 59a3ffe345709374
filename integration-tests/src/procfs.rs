//! What `/proc` says about a process: its memory, descriptors and cgroups.

/// Resident memory of `pid` in KiB (`VmRSS`), 0 if it is gone.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
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
