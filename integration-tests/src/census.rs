//! The syscall census: the probe guest is run once per system call number (every x86_64
//! number up to well past the highest, and the x32 range) with arguments that satisfy the
//! tender's rule for it, if it has one; the allowed set is whatever did not die with SIGSYS.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::tender::{guest, run_tender, Run};

const T: Duration = Duration::from_secs(10);
/// With no devices the fds are: epoll 4, timer 5 (3 was the kernel file).
pub const EPOLL_FD: u64 = 4;
/// The timer fd with no devices.
pub const TIMER_FD: u64 = 5;

/// Every number the census tries.
pub fn numbers() -> impl Iterator<Item = u64> {
    (0..=520u64).chain((0..=560u64).map(|n| 0x4000_0000 | n))
}

/// Numbers this machine's kernel handles before seccomp runs (seen on sandbox kernels): the
/// census can say nothing about them, so it skips them. (The control filter itself allows
/// write and exit_group, so those two are never counted here.)
pub fn host_bypass() -> &'static BTreeSet<u64> {
    static SET: std::sync::OnceLock<BTreeSet<u64>> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        numbers()
            .filter(|nr| *nr != 1 && *nr != 231)
            .filter(|nr| crate::native::host_bypasses_seccomp(*nr))
            .collect()
    })
}

/// Arguments that satisfy the core rule of `nr`, if it has one (zeros otherwise).
pub fn passing_args(nr: u64) -> [u64; 6] {
    let a0 = match nr {
        1 => 1,          // write(1, NULL, 0)
        281 => EPOLL_FD, // epoll_pwait(epfd, NULL, 0, ...) -> EINVAL, does not block
        286 => TIMER_FD, // timerfd_settime(tfd, 0, NULL, NULL) -> EFAULT
        228 => 1,        // clock_gettime(CLOCK_MONOTONIC, NULL) -> EFAULT
        158 => 0x1002,   // arch_prctl(ARCH_SET_FS, 0)
        _ => 0,
    };
    [a0, 0, 0, 0, 0, 0]
}

/// Arguments that satisfy the rule of `nr` with a disk "storage" and a NIC "service0"
/// attached (symbolic values are resolved by the probe from its manifest).
pub fn passing_args_dev(nr: u64) -> Vec<String> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match nr {
        0 => s(&["fd:service0", "0", "0"]),
        17 | 18 => s(&["fd:storage", "0", "bs:storage", "0"]),
        281 => s(&["epollfd"]),
        286 => s(&["timerfd"]),
        _ => passing_args(nr).iter().map(|a| format!("{a:#x}")).collect(),
    }
}

/// Allowed (exit 0) or killed by the filter (SIGSYS); anything else panics.
pub fn verdict(nr: u64, r: Run) -> bool {
    match r.status {
        159 => {
            assert!(
                r.stdout.contains("probe"),
                "probe {nr:#x} never reached its syscall: {r:?}"
            );
            false
        }
        0 => true,
        other => panic!("probe {nr:#x}: unexpected status {other}: {r:?}"),
    }
}

/// Runs the `probe` guest (no devices) with one system call; true if it was allowed.
pub fn allowed(nr: u64, args: [u64; 6]) -> bool {
    let mut v = vec![
        guest("probe").to_string_lossy().into_owned(),
        format!("{nr:#x}"),
    ];
    v.extend(args.iter().map(|a| format!("{a:#x}")));
    verdict(nr, run_tender(&v, T))
}

/// Runs `probe-dev` with the disk `disk` and the tap fd `tap_fd`; true if it was allowed.
pub fn allowed_dev(disk: &Path, tap_fd: i32, nr: u64, args: &[String]) -> bool {
    let mut v = vec![
        format!("--block:storage={}", disk.display()),
        format!("--net:service0=@{tap_fd}"),
        guest("probe-dev").to_string_lossy().into_owned(),
        format!("{nr:#x}"),
    ];
    v.extend(args.iter().cloned());
    verdict(nr, run_tender(&v, T))
}

/// The allowed set with no devices.
pub fn without_devices() -> BTreeSet<u64> {
    let skip = host_bypass();
    numbers()
        .filter(|nr| !skip.contains(nr))
        .filter(|nr| allowed(*nr, passing_args(*nr)))
        .collect()
}

/// The allowed set with a disk and a NIC (`tap_fd` must be an inheritable open tap).
pub fn with_devices(disk: &Path, tap_fd: i32) -> BTreeSet<u64> {
    let skip = host_bypass();
    numbers()
        .filter(|nr| !skip.contains(nr))
        .filter(|nr| allowed_dev(disk, tap_fd, *nr, &passing_args_dev(*nr)))
        .collect()
}
