//! Where the time of a nabla `ctr run --rm` goes, read from the shim's own lifecycle lines in
//! the private containerd's log (each stamped by the shim's logger in UTC with microseconds),
//! from containerd's own "connecting to shim" line (logged for every runtime, when containerd
//! has the shim's address and dials it) and from the instants the benchmark itself saw (ctr
//! spawned, first byte read, ctr exited).

use std::collections::HashMap;
use std::time::SystemTime;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::containerd::PrivateContainerd;
use crate::stats::{Row, Summary};

/// One `ctr run --rm` as the benchmark saw it.
pub struct Run {
    /// The container id.
    pub id: String,
    /// When ctr was spawned.
    pub spawned: SystemTime,
    /// Milliseconds from the spawn to the first stdout byte ctr passed on.
    pub first_ms: f64,
    /// Milliseconds from the spawn to ctr's exit.
    pub exit_ms: f64,
}

impl Run {
    /// When ctr was spawned, in seconds since the epoch (the log lines' scale).
    fn spawned_secs(&self) -> Option<f64> {
        Some(
            self.spawned
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()?
                .as_secs_f64(),
        )
    }
}

/// The steps of a run, in order, each from the previous step's end.
const STEPS: [&str; 12] = [
    "ctr and containerd until they execute the shim's `start` action",
    "shim start-up: the `start` action and the daemon it spawns, until containerd connects",
    "containerd until it sends Create",
    "Create in the shim",
    "containerd and ctr until they send Start",
    "Start in the shim, the guest boots and prints (to the shim reading its first output)",
    "first output through containerd's FIFO to ctr's stdout",
    "the rest of the guest's run, to the tender's exit",
    "exit event and ctr until they send Delete",
    "Delete in the shim",
    "containerd removes the shim and the container; ctr exits",
    "total, to ctr's exit",
];

/// The shim's lifecycle lines of one container, as seconds since the epoch (and the
/// durations the shim measured itself, in ms).
#[derive(Default)]
struct ShimTimes {
    start_action: Option<f64>,
    connecting: Option<f64>,
    ready: Option<f64>,
    create_ms: Option<f64>,
    started: Option<f64>,
    start_ms: Option<f64>,
    first_output: Option<f64>,
    exited: Option<f64>,
    deleted: Option<f64>,
    delete_ms: Option<f64>,
}

/// The timestamp of a log line in seconds since the epoch: at its start for the shim's lines,
/// in `time="..."` for containerd's own.
fn line_time(line: &str) -> Option<f64> {
    let stamp = match line.strip_prefix("time=\"") {
        Some(rest) => rest.split('"').next()?,
        None => line.split_whitespace().next()?,
    };
    let t = OffsetDateTime::parse(stamp, &Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
}

/// The container id of containerd's `msg="connecting to shim ID"` line.
fn connecting_id(line: &str) -> Option<&str> {
    line.split("msg=\"connecting to shim ")
        .nth(1)?
        .split('"')
        .next()
}

/// The value of `key=` among the line's fields.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Milliseconds in a `took_ms=1.23` field.
fn took_ms(line: &str) -> Option<f64> {
    field(line, "took_ms")?.parse().ok()
}

/// The sum of a `phases=name:1.23ms,...` field: the time Create took in the shim.
fn phases_total(line: &str) -> Option<f64> {
    let mut total = 0.0;
    for part in field(line, "phases")?.split(',') {
        total += part
            .split_once(':')?
            .1
            .strip_suffix("ms")?
            .parse::<f64>()
            .ok()?;
    }
    Some(total)
}

/// Reads the daemon's log into each container's lifecycle times.
fn shim_times(c: &PrivateContainerd) -> HashMap<String, ShimTimes> {
    let log = std::fs::read_to_string(c.base().join("containerd.log")).unwrap_or_default();
    let mut out: HashMap<String, ShimTimes> = HashMap::new();
    for line in log.lines() {
        let Some(t) = line_time(line) else { continue };
        if let Some(id) = connecting_id(line) {
            out.entry(id.to_string()).or_default().connecting = Some(t);
            continue;
        }
        let Some(id) = field(line, "container") else {
            continue;
        };
        let e = out.entry(id.to_string()).or_default();
        if line.contains(" start action ") {
            e.start_action = Some(t);
        } else if line.contains(" tender ready for ") {
            e.ready = Some(t);
            e.create_ms = phases_total(line);
        } else if line.contains(" started ") {
            e.started = Some(t);
            e.start_ms = took_ms(line);
        } else if line.contains(" first stdout output from the guest ") {
            e.first_output = Some(t);
        } else if line.contains(" tender exited with status ") {
            e.exited = Some(t);
        } else if line.contains(" deleted ") {
            e.deleted = Some(t);
            e.delete_ms = took_ms(line);
        }
    }
    out
}

/// The step durations (ms) of one run, or None if a line is missing.
fn steps(run: &Run, s: &ShimTimes) -> Option<[f64; 12]> {
    let spawned = run.spawned_secs()?;
    let ms = |from: f64, to: f64| (to - from) * 1e3;
    let ready = s.ready?;
    let create_began = ready - s.create_ms? / 1e3;
    let start_began = s.started? - s.start_ms? / 1e3;
    let deleted = s.deleted?;
    let delete_began = deleted - s.delete_ms? / 1e3;
    let first_at_ctr = spawned + run.first_ms / 1e3;
    let exited_ctr = spawned + run.exit_ms / 1e3;
    Some([
        ms(spawned, s.start_action?),
        ms(s.start_action?, s.connecting?),
        ms(s.connecting?, create_began),
        s.create_ms?,
        ms(ready, start_began),
        ms(start_began, s.first_output?),
        ms(s.first_output?, first_at_ctr),
        ms(s.first_output?, s.exited?),
        ms(s.exited?, delete_began),
        s.delete_ms?,
        ms(deleted, exited_ctr),
        run.exit_ms,
    ])
}

/// The steps up to the first byte that are ctr's and containerd's own work, whatever the
/// runtime: until they execute the shim's `start` action, from connecting to the shim to
/// Create, from Create's reply to Start, and the FIFO to ctr's stdout.
const NOT_THE_SHIM: [usize; 4] = [0, 2, 4, 6];

/// The daemon's log, read once: each container's lifecycle instants.
pub struct DaemonLog {
    times: HashMap<String, ShimTimes>,
}

impl DaemonLog {
    /// Reads `c`'s log as it is now.
    pub fn read(c: &PrivateContainerd) -> Self {
        DaemonLog {
            times: shim_times(c),
        }
    }

    /// The step durations of each of the nabla `runs` whose lines are all in the log.
    fn per_run_steps(&self, runs: &[Run]) -> Vec<[f64; 12]> {
        runs.iter()
            .filter_map(|r| steps(r, self.times.get(&r.id)?))
            .collect()
    }

    /// Where the time of the nabla `runs` went: (step, summary in ms) in order. Runs whose
    /// lines are missing from the log are left out; none found gives an empty list.
    pub fn breakdown(&self, runs: &[Run]) -> Vec<(String, Summary)> {
        let per_run = self.per_run_steps(runs);
        if per_run.is_empty() {
            return Vec::new();
        }
        STEPS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let samples: Vec<f64> = per_run.iter().map(|s| s[i]).collect();
                (name.to_string(), Summary::of(&samples))
            })
            .collect()
    }

    /// The first byte nabla's `runs` would have had with a shim that took no time at all: the
    /// sum of their [`NOT_THE_SHIM`] steps, against runc's first byte (`runc_first`). No run
    /// with every line gives None.
    pub fn floor_row(&self, runs: &[Run], runc_first: Summary) -> Option<Row> {
        let floors: Vec<f64> = self
            .per_run_steps(runs)
            .iter()
            .map(|s| NOT_THE_SHIM.iter().map(|&i| s[i]).sum())
            .collect();
        (!floors.is_empty()).then(|| Row {
            figure: "ctr run --rm: to first console byte, ctr's and containerd's own steps only \
                     (ms): the time a shim that took none would give"
                .into(),
            nabla: Summary::of(&floors),
            baseline_name: "runc, static hello binary (to first console byte)".into(),
            baseline: runc_first,
            target: "informational".into(),
            met: None,
        })
    }

    /// Each run split at containerd's "connecting to shim" line, for both runtimes: ctr and
    /// containerd's work with the shim's `start` action before it, the runtime's Create and
    /// Start after it. Runs without the line are left out; empty if a runtime has none.
    pub fn runtime_split(&self, nabla: &[Run], runc: &[Run]) -> Vec<Row> {
        let split = |runs: &[Run]| -> (Vec<f64>, Vec<f64>) {
            runs.iter()
                .filter_map(|r| {
                    let connecting = self.times.get(&r.id)?.connecting?;
                    let before = (connecting - r.spawned_secs()?) * 1e3;
                    Some((before, r.first_ms - before))
                })
                .unzip()
        };
        let (nb, na) = split(nabla);
        let (rb, ra) = split(runc);
        if nb.is_empty() || rb.is_empty() {
            return Vec::new();
        }
        let row = |figure: &str, n: &[f64], r: &[f64]| Row {
            figure: figure.into(),
            nabla: Summary::of(n),
            baseline_name: "runc, static hello binary".into(),
            baseline: Summary::of(r),
            target: "informational".into(),
            met: None,
        };
        vec![
            row(
                "ctr run --rm: ctr and containerd, with the shim's `start` action, until \
                 containerd connects to the shim (ms)",
                &nb,
                &rb,
            ),
            row(
                "ctr run --rm: from containerd connecting to the shim to the first console \
                 byte: the runtime's Create and Start (ms)",
                &na,
                &ra,
            ),
        ]
    }
}

/// The shim's Create phases for every nabla container the daemon ran, read from the
/// `phases=name:1.23ms,...` field of its "tender ready" log lines: (phase, summary in ms), in
/// the order they happen.
pub fn create_phases(c: &PrivateContainerd) -> Vec<(String, Summary)> {
    let log = std::fs::read_to_string(c.base().join("containerd.log")).unwrap_or_default();
    let mut order: Vec<String> = Vec::new();
    let mut samples: HashMap<String, Vec<f64>> = HashMap::new();
    for line in log.lines().filter(|l| l.contains(" tender ready for ")) {
        let Some(phases) = field(line, "phases") else {
            continue;
        };
        for part in phases.split(',') {
            let Some((name, ms)) = part.split_once(':') else {
                continue;
            };
            let Ok(v) = ms.trim_end_matches("ms").parse::<f64>() else {
                continue;
            };
            if !order.iter().any(|o| o == name) {
                order.push(name.to_string());
            }
            samples.entry(name.to_string()).or_default().push(v);
        }
    }
    order
        .into_iter()
        .map(|n| {
            let s = Summary::of(&samples[&n]);
            (n, s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_shim_lines() {
        let l = "2026-11-22T22:02:44.185511Z  INFO tender ready for /hello container=b-1 pid=7 \
                 phases=spec+mount+cgroup:0.89ms,describe:0.61ms,tender:1.67ms,hooks:0.06ms";
        assert_eq!(field(l, "container"), Some("b-1"));
        assert!((phases_total(l).unwrap() - 3.23).abs() < 1e-9);
        assert!((line_time(l).unwrap() - 1_795_384_964.185_511).abs() < 1e-6);
        let d = "time=\"2026-11-22T22:02:44.185511123Z\" level=info msg=\"connecting to shim \
                 b-1\" address=\"unix:///run/containerd/s/ab\" namespace=n protocol=ttrpc";
        assert_eq!(connecting_id(d), Some("b-1"));
        assert!((line_time(d).unwrap() - 1_795_384_964.185_511).abs() < 1e-6);
        let s = "2026-11-22T22:02:44.2Z  INFO started container=b-1 pid=7 took_ms=0.12";
        assert_eq!(took_ms(s), Some(0.12));
        assert_eq!(field(s, "containe"), None);
    }
}
