//! Churn: many create/start/wait/delete cycles through containerd with 8 in flight, guests of
//! every ending mixed (exit 0, exit 42, fault, seccomp kill, killed), every status checked, and
//! afterwards nothing left: no shim or tender, no mount, no cgroup, no FIFO directory.
//!
//! Meanwhile a guest prints numbered lines for the whole run; half the cycles share its shim
//! (one group, as a pod's containers do), whose descriptors and memory must not grow, and not
//! one of its lines may be lost.
//!
//! CI runs `NABLA_CHURN_CYCLES` (default 48); `make reliability` runs 500.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nabla_integration_tests::containerd::{
    mounts_under, processes_mentioning, unique, PrivateContainerd,
};
use nabla_integration_tests::oci_image::guest_image;
use nabla_integration_tests::procfs;

const NABLA: &str = "io.containerd.nabla.v2";

fn dir_entries(p: &Path) -> BTreeSet<String> {
    std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Open descriptors and resident memory (KiB) of process `pid`.
fn fds_and_rss(pid: i32) -> (usize, u64) {
    (procfs::fd_count(pid), procfs::rss_kib(pid))
}

fn tenders() -> usize {
    processes_mentioning("nabla-tender")
        .into_iter()
        .filter(|p| *p as u32 != std::process::id())
        .count()
}

#[test]
fn churn_with_mixed_endings_leaves_nothing_behind() {
    let cycles: usize = std::env::var("NABLA_CHURN_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let fifo_before = dir_entries(Path::new("/run/containerd/fifo"));
    let tenders_before = tenders();
    let c = PrivateContainerd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut images = std::collections::HashMap::new();
    for g in ["hello", "exit", "fault", "forbidden", "clock"] {
        let (r, tar) = guest_image(g, dir.path());
        c.import(&tar);
        images.insert(g, r);
    }
    // The printer, alone in its group's shim until the churn joins it.
    let group = unique("group");
    let group_annotation = format!("io.containerd.runc.v2.group={group}");
    let printer_id = unique("printer");
    let printer_log = dir.path().join("printer.log");
    let mut printer = c
        .ctr_command()
        .args(["run", "--rm", "--runtime", NABLA, "--annotation"])
        .arg(&group_annotation)
        .args([&images["clock"], &printer_id, "/clock", "tick", "5"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&printer_log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&printer_log)
        .unwrap_or_default()
        .contains("tick 3")
    {
        assert!(Instant::now() < deadline, "the printer never printed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let shims = c.nabla_shim_pids();
    assert_eq!(shims.len(), 1, "{shims:?}");
    let group_shim = shims[0];
    let (fds_alone, rss_alone) = fds_and_rss(group_shim);

    // (guest, args, expected status); the clock guest is killed with SIGKILL.
    let kinds: Vec<(&str, Vec<&str>, i32)> = vec![
        ("hello", vec!["/hello", "churn"], 0),
        ("exit", vec!["/exit", "42"], 42),
        ("fault", vec!["/fault", "null"], 139),
        ("forbidden", vec!["/forbidden"], 159),
        ("clock", vec!["/clock", "tick", "10"], 137),
    ];
    let next = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    let started = Instant::now();
    // Two halves, each ending with only the printer in the group's shim: its descriptors and
    // memory are measured after each.
    let mut shim_after = Vec::new();
    for end in [cycles / 2, cycles] {
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        break;
                    }
                    let (g, args, want) = &kinds[i % kinds.len()];
                    let id = unique("churn");
                    let mut cmd = c.ctr_command();
                    cmd.args(["run", "--rm", "--runtime", NABLA]);
                    if i.is_multiple_of(2) {
                        cmd.args(["--annotation", &group_annotation]);
                    }
                    cmd.args([&images[g], &id])
                        .args(args)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped());
                    let child = cmd.spawn().unwrap();
                    if *want == 137 {
                        // Once it runs (killed before Start, it could not start), kill it through
                        // containerd.
                        let deadline = Instant::now() + Duration::from_secs(20);
                        while Instant::now() < deadline {
                            let ls = c.ctr(&["task", "ls"]);
                            let running = String::from_utf8_lossy(&ls.stdout)
                                .lines()
                                .any(|l| l.starts_with(&id) && l.contains("RUNNING"));
                            if running {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        let deadline = Instant::now() + Duration::from_secs(10);
                        while !c
                            .ctr(&["task", "kill", "-s", "SIGKILL", &id])
                            .status
                            .success()
                            && Instant::now() < deadline
                        {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    let out = child.wait_with_output().unwrap();
                    if out.status.code() != Some(*want) {
                        failures.lock().unwrap().push(format!(
                            "{g} {id}: status {:?}, want {want}: {}",
                            out.status.code(),
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                });
            }
        });
        shim_after.push(fds_and_rss(group_shim));
    }
    let elapsed = started.elapsed();
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} wrong statuses: {failures:#?}",
        failures.len()
    );

    // The group's shim served half the cycles: no descriptor kept, memory flat between the
    // halves (allocator slack aside); the printer lost no line.
    let [(fds_half, rss_half), (fds_end, rss_end)] = shim_after[..] else {
        unreachable!()
    };
    let kill = c.ctr(&["task", "kill", "-s", "SIGKILL", &printer_id]);
    assert!(kill.status.success());
    let status = printer.wait().unwrap();
    assert_eq!(status.code(), Some(137));
    let printed = std::fs::read_to_string(&printer_log).unwrap();
    let mut ticks = 0u64;
    for line in printed.lines().filter(|l| l.starts_with("tick ")) {
        assert_eq!(
            line,
            format!("tick {ticks}"),
            "the printer's output has a gap"
        );
        ticks += 1;
    }
    println!(
        "group shim: {fds_alone} fds / {rss_alone} KiB alone, {fds_half} / {rss_half} after \
         {} cycles, {fds_end} / {rss_end} after {cycles}; printer: {ticks} lines, none lost",
        cycles / 2
    );
    assert!(
        fds_half <= fds_alone + 2 && fds_end <= fds_half,
        "the shim keeps descriptors: {fds_alone} alone, {fds_half}, then {fds_end}"
    );
    assert!(
        rss_end <= rss_half + 1024,
        "the shim's memory grows: {rss_half} KiB after half the cycles, {rss_end} KiB after all"
    );

    // Nothing left behind.
    let ns = c.namespace().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !c.shim_pids().is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(c.shim_pids().is_empty(), "shims left: {:?}", c.shim_pids());
    assert_eq!(tenders(), tenders_before, "tenders left");
    assert!(
        mounts_under(c.base()).is_empty(),
        "mounts left: {:?}",
        mounts_under(c.base())
    );
    let tasks = String::from_utf8_lossy(&c.ctr(&["task", "ls", "-q"]).stdout).into_owned();
    assert_eq!(tasks.trim(), "", "tasks left");
    let containers =
        String::from_utf8_lossy(&c.ctr(&["container", "ls", "-q"]).stdout).into_owned();
    assert_eq!(containers.trim(), "", "containers left");
    for ctl in ["memory", "freezer", "pids", "cpu"] {
        let cg = Path::new("/sys/fs/cgroup").join(ctl).join(&ns);
        let left: Vec<_> = dir_entries(&cg)
            .into_iter()
            .filter(|e| !e.contains('.') && !e.starts_with("notify") && e != "tasks")
            .collect();
        assert!(
            left.is_empty(),
            "cgroups left under {}: {left:?}",
            cg.display()
        );
    }
    // The namespace's own parent cgroup goes with the fixture.
    let mut c = c;
    c.stop();
    for ctl in ["memory", "freezer", "pids", "cpu"] {
        let cg = Path::new("/sys/fs/cgroup").join(ctl).join(&ns);
        assert!(!cg.exists(), "{} left", cg.display());
    }
    let fifo_after = dir_entries(Path::new("/run/containerd/fifo"));
    let new_fifos: Vec<_> = fifo_after.difference(&fifo_before).collect();
    assert!(new_fifos.is_empty(), "FIFO directories left: {new_fifos:?}");
    println!(
        "churn: {cycles} cycles, 8 in flight, {:.1} s ({:.1} containers/s), all statuses right, nothing left",
        elapsed.as_secs_f64(),
        cycles as f64 / elapsed.as_secs_f64()
    );
}
