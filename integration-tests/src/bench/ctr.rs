//! `ctr run` latency, console throughput and start/stop throughput under load.

use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::timeline::Run;
use super::{Images, NABLA, RUNC};
use crate::containerd::{unique, PrivateContainerd};
use crate::stats::{Row, Summary};

/// Spawns `ctr run --rm --runtime RUNTIME IMAGE <unique id> ARGS` with stdout piped.
fn spawn_run(
    c: &PrivateContainerd,
    runtime: &str,
    image: &str,
    id: &str,
    args: &[&str],
) -> std::process::Child {
    c.ctr_command()
        .args(["run", "--rm", "--runtime", runtime, image, id])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ctr run")
}

/// One `ctr run --rm`, timed from the spawn of ctr.
fn run_once(c: &PrivateContainerd, runtime: &str, image: &str, args: &[&str]) -> Run {
    let id = unique("bench");
    let spawned = SystemTime::now();
    let start = Instant::now();
    let mut child = spawn_run(c, runtime, image, &id, args);
    let mut out = child.stdout.take().expect("stdout");
    let mut byte = [0u8; 1];
    let n = out.read(&mut byte).expect("read ctr stdout");
    let first = start.elapsed().as_secs_f64() * 1e3;
    let mut rest = Vec::new();
    let _ = out.read_to_end(&mut rest);
    let st = child.wait().expect("wait ctr");
    let exit = start.elapsed().as_secs_f64() * 1e3;
    assert!(n == 1 && st.success(), "ctr run {runtime} {image}: {st}");
    Run {
        id,
        spawned,
        first_ms: first,
        exit_ms: exit,
    }
}

/// What [`start_latency`] measured.
pub struct Latency {
    /// The table rows.
    pub rows: Vec<Row>,
    /// nabla first byte, nabla exit, runc first byte, runc exit.
    pub summaries: [Summary; 4],
    /// The nabla runs (for [`super::timeline`]).
    pub nabla: Vec<Run>,
    /// The runc runs.
    pub runc: Vec<Run>,
}

/// `ctr run --rm` to first console byte and to exit, nabla hello vs runc static hello, `n`
/// runs each, interleaved, after two of each to warm up.
pub fn start_latency(c: &PrivateContainerd, img: &Images, n: usize) -> Latency {
    let (mut nabla, mut runc) = (Vec::new(), Vec::new());
    for i in 0..n + 2 {
        let a = run_once(c, NABLA, &img.nabla_hello, &["/hello"]);
        let b = run_once(c, RUNC, &img.runc, &["/hello"]);
        if i >= 2 {
            nabla.push(a);
            runc.push(b);
        }
    }
    let first = |runs: &[Run]| runs.iter().map(|r| r.first_ms).collect::<Vec<_>>();
    let exit = |runs: &[Run]| runs.iter().map(|r| r.exit_ms).collect::<Vec<_>>();
    let (nf, ne, rf, re) = (first(&nabla), exit(&nabla), first(&runc), exit(&runc));
    let s = [
        Summary::of(&nf),
        Summary::of(&ne),
        Summary::of(&rf),
        Summary::of(&re),
    ];
    let rows = vec![
        Row {
            figure: "ctr run --rm: to first console byte (ms)".into(),
            nabla: s[0],
            baseline_name: "runc, static hello binary".into(),
            baseline: s[2],
            target: "≤ 0.4×".into(),
            met: Some(s[0].median / s[2].median <= 0.4),
        },
        Row {
            figure: "ctr run --rm: to exit (ms)".into(),
            nabla: s[1],
            baseline_name: "runc, static hello binary".into(),
            baseline: s[3],
            target: "informational".into(),
            met: None,
        },
    ];
    Latency {
        rows,
        summaries: s,
        nabla,
        runc,
    }
}

/// Time for `ctr run --rm` of a container writing `mib` MiB to its console (ms).
fn console_once(c: &PrivateContainerd, runtime: &str, image: &str, args: &[&str]) -> f64 {
    let start = Instant::now();
    let mut child = spawn_run(c, runtime, image, &unique("bench"), args);
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    assert!(child.wait().expect("wait").success());
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let want: u64 = args[1].parse::<u64>().unwrap() << 20;
    assert!(total >= want, "{runtime}: {total} of {want} bytes arrived");
    ms
}

/// Console throughput: a container writing `mib` MiB, read by ctr (MiB/s).
pub fn console_throughput(c: &PrivateContainerd, img: &Images, mib: u64, reps: usize) -> Row {
    let m = mib.to_string();
    let (mut a, mut b) = (vec![], vec![]);
    for _ in 0..reps {
        a.push(mib as f64 / (console_once(c, NABLA, &img.nabla_flood, &["/flood", &m]) / 1e3));
        b.push(mib as f64 / (console_once(c, RUNC, &img.runc, &["/writer", &m]) / 1e3));
    }
    Row {
        figure: format!("console: {mib} MiB through ctr (MiB/s)"),
        nabla: Summary::of(&a),
        baseline_name: "runc, static writer".into(),
        baseline: Summary::of(&b),
        target: "≥ 0.9×".into(),
        met: Some(Summary::of(&a).median / Summary::of(&b).median >= 0.9),
    }
}

/// Containers started and stopped per second with `inflight` `ctr run --rm` at a time.
fn churn_rate(
    c: &PrivateContainerd,
    runtime: &str,
    image: &str,
    inflight: usize,
    dur: Duration,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..inflight {
            let done = done.clone();
            s.spawn(move || {
                while start.elapsed() < dur {
                    run_once(c, runtime, image, &["/hello"]);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Start/stop throughput with 8 in flight.
pub fn churn(c: &PrivateContainerd, img: &Images, reps: usize, dur: Duration) -> Row {
    let (mut a, mut b) = (vec![], vec![]);
    for _ in 0..reps {
        a.push(churn_rate(c, NABLA, &img.nabla_hello, 8, dur));
        b.push(churn_rate(c, RUNC, &img.runc, 8, dur));
    }
    Row {
        figure: "load: containers run to completion per second, 8 in flight".into(),
        nabla: Summary::of(&a),
        baseline_name: "runc, static hello binary".into(),
        baseline: Summary::of(&b),
        target: "informational".into(),
        met: None,
    }
}
