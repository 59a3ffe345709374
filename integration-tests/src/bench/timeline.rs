//! Where the time of a nabla `ctr run --rm` goes, read from the shim's own lifecycle lines in
//! the private containerd's log (each stamped by the shim's logger in UTC with microseconds)
//! and from the instants the benchmark itself saw (ctr spawned, first byte read, ctr exited).

use std::collections::HashMap;
use std::time::SystemTime;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::containerd::PrivateContainerd;
use crate::stats::Summary;

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

/// The steps of a run, in order, each from the previous step's end.
const STEPS: [&str; 12] = [
    "ctr and containerd until they execute the shim's `start` action",
    "shim start-up: the `start` action and the daemon it spawns, to serving",
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
    serving: Option<f64>,
    ready: Option<f64>,
    create_ms: Option<f64>,
    started: Option<f64>,
    start_ms: Option<f64>,
    first_output: Option<f64>,
    exited: Option<f64>,
    deleted: Option<f64>,
    delete_ms: Option<f64>,
}

/// The timestamp at the start of a shim log line, in seconds since the epoch.
fn line_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let t = OffsetDateTime::parse(stamp, &Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
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
        if let Some(rest) = line.split(" serving (group of ").nth(1) {
            if let Some(id) = rest.split(')').next() {
                out.entry(id.to_string()).or_default().serving = Some(t);
            }
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
    let spawned = run
        .spawned
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
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
        ms(s.start_action?, s.serving?),
        ms(s.serving?, create_began),
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

/// Where the time of the nabla `runs` went: (step, summary in ms) in order. Runs whose lines
/// are missing from the log are left out; none found gives an empty list.
pub fn breakdown(c: &PrivateContainerd, runs: &[Run]) -> Vec<(String, Summary)> {
    let times = shim_times(c);
    let per_run: Vec<[f64; 12]> = runs
        .iter()
        .filter_map(|r| steps(r, times.get(&r.id)?))
        .collect();
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
        let s = "2026-11-22T22:02:44.2Z  INFO started container=b-1 pid=7 took_ms=0.12";
        assert_eq!(took_ms(s), Some(0.12));
        assert_eq!(field(s, "containe"), None);
    }
}
