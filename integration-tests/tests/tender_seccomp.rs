//! The filter is in force: `/proc/PID/status` shows it, only the guest's fds are left open,
//! and a census over every syscall number shows exactly the rules of spec §3 pass.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nabla_integration_tests::census::{
    allowed, allowed_dev, host_bypass, numbers as census_numbers, passing_args, passing_args_dev,
    EPOLL_FD, TIMER_FD,
};
use nabla_integration_tests::procfs;
use nabla_integration_tests::tender::{guest, tender_bin};

const T: Duration = Duration::from_secs(10);

#[test]
fn filter_installed_and_only_guest_fds_left() {
    let mut cmd = Command::new(tender_bin());
    cmd.arg(guest("clock"))
        .args(["tick", "20"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Started with signals ignored and blocked (as nohup or a careless parent would): the
    // guest must still run with every disposition default and nothing blocked.
    // SAFETY: signal and sigprocmask are async-signal-safe; the closure allocates nothing.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGPIPE, libc::SIGTERM] {
                libc::signal(sig, libc::SIG_IGN);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    // Wait for the first tick: the guest is running, so the filter is in place.
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
    assert!(n > 0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| procfs::status_field(&status, k);
    let fds: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let sigs = (field("SigCgt:"), field("SigIgn:"), field("SigBlk:"));
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(field("Seccomp:"), "2", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    assert_eq!(field("Seccomp_filters:"), "1", "{status}");
    assert_eq!(
        sigs,
        (
            "0000000000000000".into(),
            "0000000000000000".into(),
            "0000000000000000".into()
        ),
        "no handlers, nothing ignored, empty mask"
    );
    let want: BTreeSet<String> = ["1", "4", "5"].iter().map(|s| s.to_string()).collect();
    assert_eq!(fds, want, "only console, epoll and timer fds remain");
    assert!(
        maps.lines().any(|l| l.starts_with("00010000-")),
        "guest memory at 0x10000:\n{maps}"
    );
    assert!(
        !maps
            .lines()
            .any(|l| l.starts_with("00100000-") && l.contains("wx")),
        "no W+X text:\n{maps}"
    );
}

#[test]
fn syscall_census_without_devices() {
    let start = Instant::now();
    let mut allowed_set = BTreeSet::new();
    let skip = host_bypass();
    for nr in census_numbers().filter(|nr| !skip.contains(nr)) {
        if allowed(nr, passing_args(nr)) {
            allowed_set.insert(nr);
        }
    }
    println!(
        "allowed syscalls without devices ({}): {allowed_set:?}, census of {} numbers took {:?}; skipped (this host kernel handles them before seccomp): {skip:?}",
        allowed_set.len(),
        census_numbers().count() - skip.len(),
        start.elapsed()
    );
    // write, arch_prctl, clock_gettime, exit_group, epoll_pwait, timerfd_settime.
    assert_eq!(allowed_set, BTreeSet::from([1, 158, 228, 231, 281, 286]));
}

#[test]
fn arguments_are_pinned() {
    let denied: &[(&str, u64, [u64; 6])] = &[
        ("write(2)", 1, [2, 0, 0, 0, 0, 0]),
        ("write(0)", 1, [0, 0, 0, 0, 0, 0]),
        ("write(1 | 1<<32)", 1, [1 | 1 << 32, 0, 0, 0, 0, 0]),
        ("read(0)", 0, [0; 6]),
        ("clock_gettime(PROCESS_CPUTIME)", 228, [2, 0, 0, 0, 0, 0]),
        ("clock_gettime(BOOTTIME)", 228, [7, 0, 0, 0, 0, 0]),
        ("arch_prctl(ARCH_GET_FS)", 158, [0x1003, 0, 0, 0, 0, 0]),
        ("arch_prctl(ARCH_SET_GS)", 158, [0x1001, 0, 0, 0, 0, 0]),
        ("timerfd_settime(epollfd)", 286, [EPOLL_FD, 0, 0, 0, 0, 0]),
        ("epoll_pwait(timerfd)", 281, [TIMER_FD, 0, 0, 0, 0, 0]),
        ("x32 write(1)", 0x4000_0001, [1, 0, 0, 0, 0, 0]),
        ("getpid", 39, [0; 6]),
    ];
    for (what, nr, args) in denied {
        assert!(!allowed(*nr, *args), "{what} must die with SIGSYS");
    }
    assert!(allowed(228, [0, 0, 0, 0, 0, 0]), "clock_gettime(REALTIME)");
}

#[test]
fn syscall_census_with_block_and_net() {
    use nabla_integration_tests::netns::NetNs;
    use std::os::fd::AsRawFd;
    let ns = NetNs::new("census");
    ns.add_tap("tap0", None);
    let tap = ns.open_tap("tap0");
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 * 1024)
        .unwrap();

    let mut allowed_set = BTreeSet::new();
    let skip = host_bypass();
    for nr in census_numbers().filter(|nr| !skip.contains(nr)) {
        if allowed_dev(&disk, tap.as_raw_fd(), nr, &passing_args_dev(nr)) {
            allowed_set.insert(nr);
        }
    }
    println!(
        "allowed syscalls with block + net ({}): {allowed_set:?}",
        allowed_set.len()
    );
    // read, write, pread64, pwrite64 join the six core rules.
    assert_eq!(
        allowed_set,
        BTreeSet::from([0, 1, 17, 18, 158, 228, 231, 281, 286])
    );

    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let fd = tap.as_raw_fd();
    let denied: &[(&str, u64, Vec<String>)] = &[
        (
            "pread64 at capacity",
            17,
            s(&["fd:storage", "0", "bs:storage", "cap:storage"]),
        ),
        (
            "pwrite64 at capacity",
            18,
            s(&["fd:storage", "0", "bs:storage", "cap:storage"]),
        ),
        (
            "pread64 of two blocks",
            17,
            s(&["fd:storage", "0", "0x400", "0"]),
        ),
        (
            "pread64 at -512",
            17,
            s(&["fd:storage", "0", "bs:storage", "0xfffffffffffffe00"]),
        ),
        (
            "pread64 on the tap",
            17,
            s(&["fd:service0", "0", "bs:storage", "0"]),
        ),
        ("read on the disk", 0, s(&["fd:storage", "0", "0"])),
        ("write on the disk", 1, s(&["fd:storage", "0", "0"])),
        ("read on stdin", 0, s(&["0", "0", "0"])),
    ];
    for (what, nr, args) in denied {
        assert!(
            !allowed_dev(&disk, fd, *nr, args),
            "{what} must die with SIGSYS"
        );
    }
    let allowed_cases: &[(&str, u64, Vec<String>)] = &[
        (
            "pread64 of the last block",
            17,
            s(&["fd:storage", "0", "bs:storage", "last:storage"]),
        ),
        (
            "pwrite64 of the last block",
            18,
            s(&["fd:storage", "0", "bs:storage", "last:storage"]),
        ),
        ("write on the tap", 1, s(&["fd:service0", "0", "0"])),
    ];
    for (what, nr, args) in allowed_cases {
        assert!(allowed_dev(&disk, fd, *nr, args), "{what} must pass");
    }
}

#[test]
fn pod_sandbox_holder_is_confined_and_ends_on_sigterm() {
    let mut child = Command::new(tender_bin())
        .arg("--x-pause")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let status = procfs::status_once_filtered(pid, T);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = child.wait().unwrap();
    assert!(
        status.contains("Seccomp:\t2") && status.contains("NoNewPrivs:\t1"),
        "{status}"
    );
    assert_eq!(fds, 0, "the holder keeps no fd open");
    assert_eq!(nabla_integration_tests::tender::shell_status(st), 143);
}

/// The pid of `parent`'s only child, once it has exec'd `nabla-tender`.
fn tender_child(parent: u32) -> u32 {
    let deadline = Instant::now() + T;
    loop {
        let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            if exe.ends_with("nabla-tender") {
                return pid.parse().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "no tender under {parent}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn as_pid_namespace_init_terminating_signals_still_end_the_guest() {
    // As init of its own pid namespace (how the shim starts it for ctr and Kubernetes) the
    // kernel would drop SIGTERM: the tender handles the terminating signals itself and exits
    // with 128 + signal, while a fault still kills it by its signal.
    let unshare = |args: &[&str]| {
        let mut c = Command::new("unshare");
        c.args(["--pid", "--fork", "--kill-child"])
            .arg(tender_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let mut parent = unshare(&[guest("clock").to_str().unwrap(), "tick", "20"])
        .spawn()
        .unwrap();
    let pid = tender_child(parent.id());
    let status = procfs::status_once_filtered(pid, T);
    let field = |k: &str| procfs::status_field(&status, k);
    let caught = u64::from_str_radix(&field("SigCgt:"), 16).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = parent.wait().unwrap();
    let bit = |s: u32| 1u64 << (s - 1);
    let want = [1, 2, 3, 6, 10, 12, 14, 15, 16, 24, 25, 26, 27, 29, 30]
        .into_iter()
        .chain(32..=64)
        .fold(0, |m, s| m | bit(s));
    assert!(field("NSpid:").ends_with("\t1"), "{status}");
    assert_eq!(caught, want, "handlers for the terminating signals only");
    assert_eq!(nabla_integration_tests::tender::shell_status(st), 143);

    let st = unshare(&[guest("fault").to_str().unwrap(), "null"])
        .status()
        .unwrap();
    assert_eq!(nabla_integration_tests::tender::shell_status(st), 139);
    let st = unshare(&[guest("forbidden").to_str().unwrap()])
        .status()
        .unwrap();
    assert_eq!(nabla_integration_tests::tender::shell_status(st), 159);
}
