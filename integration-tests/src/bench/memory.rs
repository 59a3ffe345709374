//! Memory per container at 1, 10, 50 and 100 long-running containers: the shims' RSS and PSS,
//! and everything (shims plus what they run), nabla vs runc.

use std::process::Stdio;

use super::{Images, NABLA, RUNC};
use crate::containerd::{unique, PrivateContainerd};

/// Memory of one runtime at one container count, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Point {
    /// Running containers.
    pub containers: usize,
    /// Sum of the shims' RSS.
    pub shim_rss: u64,
    /// Sum of the shims' PSS.
    pub shim_pss: u64,
    /// Sum of the PSS of shims and their descendants (tenders, or runc's container processes).
    pub total_pss: u64,
}

fn rollup(pid: i32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// `pid`'s descendants.
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for c in crate::containerd::children_of(pid) {
        out.push(c);
        out.extend(children(c));
    }
    out
}

fn measure(c: &PrivateContainerd, containers: usize) -> Point {
    let mut p = Point {
        containers,
        ..Default::default()
    };
    for shim in c.shim_pids() {
        let (rss, pss) = rollup(shim);
        p.shim_rss += rss;
        p.shim_pss += pss;
        p.total_pss += pss;
        for ch in children(shim) {
            p.total_pss += rollup(ch).1;
        }
    }
    p
}

fn start_detached(c: &PrivateContainerd, runtime: &str, image: &str, args: &[&str]) -> String {
    let id = unique("mem");
    let out = c
        .ctr_command()
        .args(["run", "-d", "--runtime", runtime, image, &id])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ctr run -d");
    assert!(
        out.status.success(),
        "ctr run -d {runtime}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    id
}

fn remove(c: &PrivateContainerd, ids: &[String]) {
    for id in ids {
        let _ = c.ctr(&["task", "kill", "-s", "SIGKILL", id]);
    }
    for id in ids {
        for _ in 0..50 {
            if c.ctr(&["task", "delete", id]).status.success() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = c.ctr(&["container", "delete", id]);
    }
}

/// Memory at each container count in `counts`, for nabla and runc.
pub fn density(c: &PrivateContainerd, img: &Images, counts: &[usize]) -> (Vec<Point>, Vec<Point>) {
    let mut series = (Vec::new(), Vec::new());
    for (runtime, image, args, out) in [
        (
            NABLA,
            img.nabla_sleep.as_str(),
            &["/clock", "tick", "3600000"][..],
            &mut series.0,
        ),
        (RUNC, img.runc.as_str(), &["/sleep"][..], &mut series.1),
    ] {
        let mut ids = Vec::new();
        for &n in counts {
            while ids.len() < n {
                ids.push(start_detached(c, runtime, image, args));
            }
            // Let the shims settle (lazy allocations, first console line).
            std::thread::sleep(std::time::Duration::from_millis(500));
            out.push(measure(c, n));
        }
        remove(c, &ids);
    }
    series
}
