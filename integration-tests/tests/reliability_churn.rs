//! Churn: many create/start/wait/delete cycles through containerd with 8 in flight, guests of
//! every ending mixed (exit 0, exit 42, fault, seccomp kill, killed), every status checked, and
//! afterwards nothing left: no shim or tender, no mount, no cgroup, no FIFO directory.
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
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= cycles {
                    break;
                }
                let (g, args, want) = &kinds[i % kinds.len()];
                let id = unique("churn");
                let mut cmd = c.ctr_command();
                cmd.args(["run", "--rm", "--runtime", NABLA, &images[g], &id])
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                let child = cmd.spawn().unwrap();
                if *want == 137 {
                    // Let it tick, then kill the task through containerd.
                    std::thread::sleep(Duration::from_millis(300));
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
    let elapsed = started.elapsed();
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} wrong statuses: {failures:#?}",
        failures.len()
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
