//! `make bench`: each figure for nabla next to a baseline measured in the same run, as medians
//! with their range and a ratio. Writes the table to `BENCHMARKS.md` and prints it.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nabla_integration_tests::bench::{self, memory::Point};
use nabla_integration_tests::census;
use nabla_integration_tests::containerd::PrivateContainerd;
use nabla_integration_tests::native;
use nabla_integration_tests::netns::{parse_ping, NetNs};
use nabla_integration_tests::stats::{markdown_table, Row, Summary};
use nabla_integration_tests::tender::{guest, tender_bin, workspace_root, LiveTender};

fn main() {
    let quick = std::env::var_os("NABLA_BENCH_QUICK").is_some();
    // NABLA_BENCH_ONLY=start,block,net,ctr,memory,surface runs a subset (and leaves
    // BENCHMARKS.md alone).
    let only = std::env::var("NABLA_BENCH_ONLY").ok();
    let want = |s: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == s));
    let began = Instant::now();
    let mut rows = Vec::new();
    let mut json = serde_json::Map::new();
    if want("start") {
        eprintln!("== tender: exec to exit");
        rows.extend(bench_start(if quick { 100 } else { 400 }));
    }
    if want("block") {
        eprintln!("== block I/O");
        rows.extend(bench_block(
            if quick { 32 } else { 256 },
            if quick { 3 } else { 7 },
        ));
    }
    if want("net") {
        eprintln!("== network");
        rows.extend(bench_network(if quick { 2 } else { 5 }));
    }
    let mut latency = None;
    let mut phases = Vec::new();
    let mut timeline = Vec::new();
    let mut density = None;
    if want("ctr") || want("memory") || want("surface") {
        let c = PrivateContainerd::start();
        let dir = tempfile_dir();
        let img = bench::import_images(&c, &dir);
        if want("ctr") {
            eprintln!("== ctr run latency");
            let lat = bench::ctr::start_latency(&c, &img, if quick { 5 } else { 20 });
            rows.extend(lat.rows);
            let log = bench::timeline::DaemonLog::read(&c);
            rows.extend(log.floor_row(&lat.nabla, lat.summaries[2]));
            rows.extend(log.runtime_split(&lat.nabla, &lat.runc));
            latency = Some(lat.summaries);
            timeline = log.breakdown(&lat.nabla);
            phases = bench::timeline::create_phases(&c);
            eprintln!("== console throughput");
            rows.push(bench::ctr::console_throughput(
                &c,
                &img,
                if quick { 32 } else { 256 },
                if quick { 1 } else { 3 },
            ));
            eprintln!("== start/stop under load");
            rows.push(bench::ctr::churn(
                &c,
                &img,
                if quick { 1 } else { 3 },
                Duration::from_secs(if quick { 3 } else { 10 }),
            ));
        }
        if want("memory") {
            eprintln!("== memory and density");
            let counts: &[usize] = if quick { &[1, 10] } else { &[1, 10, 50, 100] };
            let (n, r) = bench::memory::density(&c, &img, counts);
            rows.extend(memory_rows(&n, &r));
            json.insert("density".into(), density_json(&n, &r));
            density = Some((n, r));
        }
        if want("surface") {
            eprintln!("== attack surface");
            rows.extend(surface_rows(&c, &img));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut table = markdown_table(&rows);
    if !timeline.is_empty() {
        table += "\nWhere the time of nabla's `ctr run --rm` above goes, step by step (from the \
                  shim's own lifecycle log lines and the instants the benchmark saw; ms, median \
                  (min–max) over the same runs):\n\n| step | ms |\n|---|---|\n";
        for (n, s) in &timeline {
            table += &format!(
                "| {n} | {} |\n",
                nabla_integration_tests::stats::fmt_summary(s)
            );
        }
        json.insert(
            "ctr_run_steps_ms".into(),
            serde_json::Value::Array(
                timeline
                    .iter()
                    .map(|(n, s)| {
                        let mut o = serde_json::Map::new();
                        o.insert("step".into(), n.clone().into());
                        o.insert("ms".into(), summary_json(s));
                        serde_json::Value::Object(o)
                    })
                    .collect(),
            ),
        );
    }
    if !phases.is_empty() {
        table += "\nWithin Create in the shim (ms, median (min–max)): ";
        table += &phases
            .iter()
            .map(|(n, s)| format!("{n} {}", nabla_integration_tests::stats::fmt_summary(s)))
            .collect::<Vec<_>>()
            .join("; ");
        table += ".\n";
        json.insert(
            "create_phases_ms".into(),
            serde_json::Value::Object(
                phases
                    .iter()
                    .map(|(n, s)| (n.clone(), summary_json(s)))
                    .collect(),
            ),
        );
    }
    println!("{table}");
    if only.is_some() {
        return;
    }
    let root = workspace_root();
    let chart = root.join("docs/benchmarks.svg");
    if let (Some(lat), Some((n, r))) = (&latency, &density) {
        std::fs::create_dir_all(root.join("docs")).expect("create docs/");
        bench::chart::draw(&chart, lat, n, r).expect("draw chart");
        eprintln!("wrote {}", chart.display());
    }
    json.insert("machine".into(), serde_json::json!(machine()));
    json.insert(
        "rows".into(),
        serde_json::Value::Array(rows.iter().map(row_json).collect()),
    );
    let doc = format!(
        "# Benchmarks\n\nGenerated by `make bench` on {} in {:.0} s.\n\n{}\n\
         Each figure is the median of repeated runs with the smallest and largest sample in \
         brackets; the ratio is nabla's median over the baseline's, both measured in the same \
         run (lower is better for times and memory, higher for rates). The same figures are in \
         `BENCHMARKS.json`.\n\n![start latency and memory](docs/benchmarks.svg)\n",
        machine(),
        began.elapsed().as_secs_f64(),
        table
    );
    std::fs::write(root.join("BENCHMARKS.md"), doc).expect("write BENCHMARKS.md");
    std::fs::write(
        root.join("BENCHMARKS.json"),
        serde_json::to_string_pretty(&serde_json::Value::Object(json)).expect("json"),
    )
    .expect("write BENCHMARKS.json");
    eprintln!("wrote BENCHMARKS.md and BENCHMARKS.json");
}

fn summary_json(s: &Summary) -> serde_json::Value {
    serde_json::json!({"median": s.median, "min": s.min, "max": s.max, "n": s.n})
}

fn row_json(r: &Row) -> serde_json::Value {
    serde_json::json!({
        "figure": r.figure,
        "nabla": summary_json(&r.nabla),
        "baseline": r.baseline_name,
        "baseline_value": summary_json(&r.baseline),
        "ratio": r.ratio(),
        "target": r.target,
        "met": r.met,
    })
}

fn density_json(n: &[Point], r: &[Point]) -> serde_json::Value {
    let ser = |v: &[Point]| {
        v.iter()
            .map(|p| {
                serde_json::json!({"containers": p.containers, "shim_rss_kib": p.shim_rss,
                    "shim_pss_kib": p.shim_pss, "total_pss_kib": p.total_pss})
            })
            .collect::<Vec<_>>()
    };
    serde_json::json!({"nabla": ser(n), "runc": ser(r)})
}

fn one(v: f64) -> Summary {
    Summary::of(&[v])
}

fn memory_rows(n: &[Point], r: &[Point]) -> Vec<Row> {
    let mib = |k: u64| k as f64 / 1024.0;
    let mut rows = Vec::new();
    for (pn, pr) in n.iter().zip(r) {
        let k = pn.containers as f64;
        rows.push(Row {
            figure: format!("memory: shim RSS per container at {} (MiB)", pn.containers),
            nabla: one(mib(pn.shim_rss) / k),
            baseline_name: "runc shim".into(),
            baseline: one(mib(pr.shim_rss) / k),
            target: "≤ 4 MiB".into(),
            met: Some(mib(pn.shim_rss) / k <= 4.0),
        });
        rows.push(Row {
            figure: format!("memory: shim PSS per container at {} (MiB)", pn.containers),
            nabla: one(mib(pn.shim_pss) / k),
            baseline_name: "runc shim".into(),
            baseline: one(mib(pr.shim_pss) / k),
            target: "informational".into(),
            met: None,
        });
        rows.push(Row {
            figure: format!("memory: total PSS at {} containers (MiB)", pn.containers),
            nabla: one(mib(pn.total_pss)),
            baseline_name: "runc shim + sleeping static binary".into(),
            baseline: one(mib(pr.total_pss)),
            target: if pn.containers >= 100 {
                "≤ 0.5×"
            } else {
                "informational"
            }
            .into(),
            met: (pn.containers >= 100).then(|| pn.total_pss * 2 <= pr.total_pss),
        });
    }
    rows
}

fn surface_rows(c: &PrivateContainerd, img: &bench::Images) -> Vec<Row> {
    let none = census::without_devices().len() as f64;
    let ns = NetNs::new("surf");
    ns.add_tap("tap0", None);
    let tap = ns.open_tap("tap0");
    let dir = tempfile_dir();
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(64 * 1024))
        .expect("disk image");
    let with = census::with_devices(&disk, std::os::fd::AsRawFd::as_raw_fd(&tap)).len() as f64;
    let _ = std::fs::remove_dir_all(&dir);
    let open = bench::surface::sweep(c, &img.runc, &[]);
    let kernel = bench::surface::kernel_syscalls(&open) as f64;
    let profile = bench::surface::default_profile_syscalls(c, &img.runc, &open) as f64;
    vec![
        Row {
            figure: "attack surface: host syscalls reachable, no devices".into(),
            nabla: one(none),
            baseline_name: "runc without a seccomp profile".into(),
            baseline: one(kernel),
            target: "6".into(),
            met: Some(none == 6.0),
        },
        Row {
            figure: "attack surface: host syscalls reachable, disk + NIC".into(),
            nabla: one(with),
            baseline_name: "runc with containerd's default seccomp profile (probed)".into(),
            baseline: one(profile),
            target: "9".into(),
            met: Some(with == 9.0),
        },
    ]
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

/// Runs `cmd` to completion with its output discarded; returns the wall time in ms.
fn time_run(cmd: &mut Command) -> f64 {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let st = cmd.status().expect("spawn");
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(st.success(), "{cmd:?} failed: {st}");
    ms
}

fn bench_start(n: usize) -> Vec<Row> {
    let tender = tender_bin();
    let hello = guest("hello");
    let truebin = native::true_binary();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    // Interleaved, so that noise hits both sides alike.
    for i in 0..n + 10 {
        let x = time_run(Command::new(&tender).arg(&hello));
        let y = time_run(&mut Command::new(&truebin));
        if i >= 10 {
            a.push(x);
            b.push(y);
        }
    }
    let row = Row {
        figure: "hello: exec to exit through nabla-tender (ms)".into(),
        nabla: Summary::of(&a),
        baseline_name: "static do-nothing process".into(),
        baseline: Summary::of(&b),
        target: "≤ 1.3×".into(),
        met: None,
    };
    vec![with_target(row, |r| r <= 1.3)]
}

fn with_target(mut row: Row, ok: impl Fn(f64) -> bool) -> Row {
    row.met = Some(ok(row.ratio()));
    row
}

/// Parses `KEY=N` out of a console line.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

fn mib_per_s(bytes: f64, ns: f64) -> f64 {
    bytes / (1 << 20) as f64 / (ns / 1e9)
}

/// One pass of the native loop over `img` with `args` after the block size (MiB/s).
fn native_block_pass(loopbin: &std::path::Path, img: &std::path::Path, args: &[&str]) -> f64 {
    let out = Command::new(loopbin)
        .arg(img)
        .arg("4096")
        .args(args)
        .output()
        .expect("run preadloop");
    let text = String::from_utf8_lossy(&out.stdout);
    let (Some(bytes), Some(ns)) = (field(&text, "bytes"), field(&text, "ns")) else {
        panic!(
            "preadloop {args:?}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    mib_per_s(bytes, ns)
}

fn bench_block(mib: u64, reps: usize) -> Vec<Row> {
    let dir = tempfile_dir();
    let img = dir.join("bench.img");
    let f = std::fs::File::create(&img).expect("create image");
    f.set_len(mib << 20).expect("size image");
    drop(f);
    let loopbin = native::pread_loop_binary();
    let mut rows = Vec::new();
    for (mode, native_args) in [("seqread", &[][..]), ("seqwrite", &["write"][..])] {
        let (mut g, mut n, mut filtered) = (Vec::new(), Vec::new(), Vec::new());
        // One warm-up each: both sides then read from the page cache.
        for i in 0..=reps {
            let out = Command::new(tender_bin())
                .arg("--block-sector-size:storage=4096")
                .arg(format!("--block:storage={}", img.display()))
                .arg(guest("block"))
                .arg(mode)
                .output()
                .expect("run block guest");
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .lines()
                .find(|l| l.starts_with(mode))
                .unwrap_or_else(|| {
                    panic!(
                        "block {mode}: {text} {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
            let gv = mib_per_s(field(line, "bytes").unwrap(), field(line, "ns").unwrap());
            let nv = native_block_pass(&loopbin, &img, native_args);
            // The reads also under a filter that allows everything: what seccomp itself costs.
            let fv = (mode == "seqread")
                .then(|| native_block_pass(&loopbin, &img, &[native_args, &["seccomp"]].concat()));
            if i > 0 {
                g.push(gv);
                n.push(nv);
                filtered.extend(fv);
            }
        }
        let verb = if mode == "seqread" { "read" } else { "write" };
        rows.push(with_target(
            Row {
                figure: format!("block: sequential {verb} of {mib} MiB, 4096 B sectors (MiB/s)"),
                nabla: Summary::of(&g),
                baseline_name: format!("native p{verb}64 loop, same file"),
                baseline: Summary::of(&n),
                target: "≥ 0.95×".into(),
                met: None,
            },
            |r| r >= 0.95,
        ));
        if !filtered.is_empty() {
            rows.push(Row {
                figure: format!(
                    "block: sequential {verb}, native loop under a one-instruction allow-all \
                     seccomp filter (MiB/s)"
                ),
                nabla: Summary::of(&filtered),
                baseline_name: format!("native p{verb}64 loop without a filter"),
                baseline: Summary::of(&n),
                target: "informational".into(),
                met: None,
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nabla-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Distinct system calls process `pid` makes while `load` runs, counted by `strace -c`
/// attached from outside (the guest's filter does not stop a tracer).
fn steady_syscalls(pid: u32, load: impl FnOnce()) -> usize {
    let out = tempfile_dir().join(format!("strace-{pid}.txt"));
    let mut tracer = Command::new("strace")
        .args(["-f", "-c", "-p", &pid.to_string(), "-o"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run strace (scripts/install-deps.sh installs it)");
    std::thread::sleep(Duration::from_millis(300));
    load();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(tracer.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = tracer.wait();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    // The table: a dashed line, one row per syscall (name last), a dashed line, the total.
    text.lines()
        .skip_while(|l| !l.starts_with("------"))
        .skip(1)
        .take_while(|l| !l.starts_with("------"))
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// Average round-trip time in ms from ping's `rtt min/avg/max/mdev` line.
fn ping_avg_rtt(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains("min/avg/max"))?;
    line.split('=')
        .nth(1)?
        .trim()
        .split('/')
        .nth(1)?
        .parse()
        .ok()
}

/// `time Nms` from ping's summary.
fn ping_time_ms(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    line.split(", ")
        .find_map(|p| p.strip_prefix("time "))?
        .trim_end_matches("ms")
        .parse()
        .ok()
}

/// UDP echo round trips per second over `dur`, one request in flight.
fn udp_rate(ns: &NetNs, to: SocketAddr, dur: Duration) -> f64 {
    let sock = ns.udp_socket();
    let payload = [0x42u8; 64];
    let mut buf = [0u8; 2048];
    // Warm-up (ARP).
    for _ in 0..10 {
        sock.send_to(&payload, to).unwrap();
        let _ = sock.recv_from(&mut buf);
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        sock.send_to(&payload, to).unwrap();
        if sock.recv_from(&mut buf).is_ok() {
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

struct NetSample {
    rtt_ms: f64,
    flood_pps: f64,
    udp_rps: f64,
}

fn net_sample(ns: &NetNs, ip: Ipv4Addr) -> NetSample {
    let (_, rx, text) = ns.ping(ip, &["-c", "200", "-i", "0.002", "-q"]);
    assert_eq!(rx, 200, "{text}");
    let rtt_ms = ping_avg_rtt(&text).expect("rtt");
    let (_, rx, text) = ns.ping(ip, &["-f", "-c", "20000", "-q"]);
    let flood_pps = rx as f64 / (ping_time_ms(&text).expect("time").max(1.0) / 1e3);
    assert_eq!(parse_ping(&text).map(|p| p.1), Some(20000), "{text}");
    let udp_rps = udp_rate(ns, SocketAddr::from((ip, 7)), Duration::from_secs(2));
    NetSample {
        rtt_ms,
        flood_pps,
        udp_rps,
    }
}

fn bench_network(reps: usize) -> Vec<Row> {
    // nabla: the net guest on a tap. Baseline: a veth pair into a second namespace where the
    // kernel answers ICMP and a native process echoes UDP.
    let ns = NetNs::new("bench");
    ns.add_tap("tap0", Some("10.77.0.1/24"));
    let peer = NetNs::new("peer");
    ns.veth_to("veth0", "10.88.0.1/24", &peer, "veth1", "10.88.0.2/24");
    let mut echo = LiveTender::spawn({
        let mut c = peer.command(native::udp_echo_binary());
        c.arg("7");
        c
    });
    echo.wait_for("udpecho ready", Duration::from_secs(10));
    let mut t = LiveTender::spawn({
        let mut c = ns.command(tender_bin());
        c.arg("--net:service0=tap0")
            .arg(guest("net"))
            .arg("10.77.0.2");
        c
    });
    t.wait_for("net ready", Duration::from_secs(10));

    let guest_ip = Ipv4Addr::new(10, 77, 0, 2);
    let native_ip = Ipv4Addr::new(10, 88, 0, 2);
    let (mut g, mut n) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        g.push(net_sample(&ns, guest_ip));
        n.push(net_sample(&ns, native_ip));
    }
    let busy_guest = steady_syscalls(t.pid(), || {
        let _ = udp_rate(&ns, SocketAddr::from((guest_ip, 7)), Duration::from_secs(1));
    });
    let busy_native = steady_syscalls(echo.pid(), || {
        let _ = udp_rate(
            &ns,
            SocketAddr::from((native_ip, 7)),
            Duration::from_secs(1),
        );
    });
    t.kill();
    echo.kill();
    let s = |v: &[NetSample], f: fn(&NetSample) -> f64| {
        Summary::of(&v.iter().map(f).collect::<Vec<_>>())
    };
    let base = "Linux kernel/native process over veth";
    vec![
        Row {
            figure: "net: ICMP echo round trip (ms)".into(),
            nabla: s(&g, |x| x.rtt_ms),
            baseline_name: base.into(),
            baseline: s(&n, |x| x.rtt_ms),
            target: "informational".into(),
            met: None,
        },
        Row {
            figure: "net: ICMP flood, 20000 requests (replies/s)".into(),
            nabla: s(&g, |x| x.flood_pps),
            baseline_name: base.into(),
            baseline: s(&n, |x| x.flood_pps),
            target: "informational".into(),
            met: None,
        },
        Row {
            figure: "steady state: distinct host syscalls made while echoing UDP (strace)".into(),
            nabla: Summary::of(&[busy_guest as f64]),
            baseline_name: "native UDP echo process".into(),
            baseline: Summary::of(&[busy_native as f64]),
            target: "informational".into(),
            met: None,
        },
        Row {
            figure: "net: UDP echo, one in flight (round trips/s)".into(),
            nabla: s(&g, |x| x.udp_rps),
            baseline_name: base.into(),
            baseline: s(&n, |x| x.udp_rps),
            target: "informational".into(),
            met: None,
        },
    ]
}
