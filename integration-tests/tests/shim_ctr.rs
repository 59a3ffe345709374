//! containerd-shim-nabla-v2 through a real containerd 2.x and `ctr`: each test starts a
//! private containerd (own socket, root and state under a temporary directory), imports OCI
//! images built here from the test guests, runs them with `--runtime io.containerd.nabla.v2`
//! and checks output, exit status, and that nothing is left behind.
//!
//! Needs root, `make guests`, the release binaries (`nabla-tender`,
//! `containerd-shim-nabla-v2`) and containerd 2.x (`scripts/install-deps.sh`, or
//! `NABLA_CONTAINERD_BIN=DIR` holding `containerd` and `ctr`). Without them each test fails
//! saying what is missing.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nabla_integration_tests::containerd::{containerd_bin_dir, unique as uid, PrivateContainerd};
use nabla_integration_tests::elf_edit::{ElfEdit, NOTE_ABI};
use nabla_integration_tests::oci_image::OciImage;
use nabla_integration_tests::procfs::rss_kib;
use nabla_integration_tests::tender::{bin_dir, workspace_root};

const RUNTIME: &str = "io.containerd.nabla.v2";

fn guest(name: &str) -> PathBuf {
    workspace_root().join("target/guests/release").join(name)
}

/// Why the environment cannot run these tests, if it cannot.
fn missing() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    let dir = containerd_bin_dir();
    for b in ["containerd", "ctr"] {
        if !dir.join(b).exists() {
            return Some(format!(
                "{} missing (run scripts/install-deps.sh)",
                dir.join(b).display()
            ));
        }
    }
    for b in ["nabla-tender", "containerd-shim-nabla-v2"] {
        if !bin_dir().join(b).exists() {
            return Some(format!("{b} missing (cargo build --release)"));
        }
    }
    if !guest("hello").exists() {
        return Some("test guests missing (make guests)".into());
    }
    None
}

/// Fails the test, saying what to do, when its environment is missing: these tests never
/// pass without running.
macro_rules! require_env {
    () => {
        if let Some(why) = missing() {
            panic!("cannot run: {why}");
        }
    };
}

/// A file or symlink to put in a test image.
enum Entry<'a> {
    File(&'a str, Vec<u8>),
    Symlink(&'a str, &'a str),
}

/// The shared private containerd, plus what these tests need around it. Dropping it kills
/// and deletes the tasks still there first, so a failed test leaves no guest running.
struct Containerd {
    inner: PrivateContainerd,
    images: tempfile::TempDir,
    bin: PathBuf,
    ns: String,
}

impl Containerd {
    fn start() -> Containerd {
        let inner = PrivateContainerd::start();
        let ns = inner.namespace().to_string();
        Containerd {
            inner,
            images: tempfile::tempdir().unwrap(),
            bin: containerd_bin_dir(),
            ns,
        }
    }

    /// Stops containerd only; shims and guests keep running.
    fn stop(&mut self) {
        self.inner.stop_daemon();
    }

    /// Starts containerd again on the same directories.
    fn restart(&mut self) {
        self.inner.restart();
    }

    fn socket(&self) -> PathBuf {
        self.inner.socket()
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.inner.ctr(args)
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Imports an image holding `files`; returns its reference.
    fn import(&self, name: &str, files: &[Entry], entrypoint: &str) -> String {
        let reference = format!("localhost/nabla-test/{name}:{}", std::process::id());
        let mut img = OciImage::new(&reference).entrypoint(&[entrypoint]);
        for f in files {
            img = match f {
                Entry::File(n, d) => img.bytes(d, &format!("/{n}"), 0o755),
                Entry::Symlink(n, t) => img.symlink(t, &format!("/{n}")),
            };
        }
        let tar = self.images.path().join(format!("{name}.tar"));
        img.write_tar(&tar).unwrap();
        self.inner.import(&tar);
        reference
    }

    /// Imports the test guest `name` as `/name`.
    fn import_guest(&self, name: &str) -> String {
        let data = fs::read(guest(name)).unwrap();
        self.import(name, &[Entry::File(name, data)], &format!("/{name}"))
    }

    /// `ctr run --rm` in the foreground.
    fn run(&self, image: &str, id: &str, args: &[&str]) -> Output {
        let mut a = vec!["run", "--rm", "--runtime", RUNTIME, image, id];
        a.extend_from_slice(args);
        self.ctr(&a)
    }

    /// `ctr run -d` with the console appended to `log`.
    fn run_detached(&self, image: &str, id: &str, log: &Path, args: &[&str]) {
        let uri = format!("file://{}", log.display());
        let mut a = vec![
            "run",
            "-d",
            "--log-uri",
            &uri,
            "--runtime",
            RUNTIME,
            image,
            id,
        ];
        a.extend_from_slice(args);
        self.ctr_ok(&a);
    }

    fn log(&self) -> String {
        fs::read_to_string(self.inner.base().join("containerd.log")).unwrap_or_default()
    }

    fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ctr_ok(&["task", "ls"]);
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
    }

    fn task_pid(&self, id: &str) -> i32 {
        self.inner.task_pid(id)
    }

    fn wait_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.task_status(id).as_deref() == Some(status) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "task {id} never became {status}: {:?}",
            self.task_status(id)
        );
    }

    /// Deletes a stopped task and its container; returns ctr's stderr (exit status warning).
    fn delete(&self, id: &str) -> String {
        let out = self.ctr(&["task", "delete", id]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "task delete {id}: {err}");
        self.ctr_ok(&["container", "rm", id]);
        err
    }

    /// Shim processes this containerd started.
    fn shims(&self) -> Vec<i32> {
        self.inner.nabla_shim_pids()
    }

    /// Checks that nothing of container `id` is left: no task, no mount, no cgroup, no
    /// tender process, no shim.
    fn assert_clean(&self, id: &str, tender_pid: Option<i32>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
            let mounted = mounts.lines().any(|l| l.contains(&format!("/{id}/rootfs")));
            let cgroup = Path::new("/sys/fs/cgroup/freezer")
                .join(&self.ns)
                .join(id)
                .exists();
            let tender = tender_pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            let task = self.task_status(id).is_some();
            let shims = self.shims();
            if !mounted && !cgroup && !tender && !task && shims.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "left behind for {id}: mount={mounted} cgroup={cgroup} tender={tender} \
                     task={task} shims={shims:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Kill what a failed test left running, through containerd (so shims clean up),
        // before the fixture stops the daemon and its shims.
        if let Ok(out) = self.inner.ctr_command().args(["task", "ls", "-q"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
                std::thread::sleep(Duration::from_millis(100));
                let _ = self.ctr(&["task", "delete", "-f", id]);
            }
        }
        if let Ok(out) = self
            .inner
            .ctr_command()
            .args(["container", "ls", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.ctr(&["container", "rm", id]);
            }
        }
        // The namespace's parent cgroups (like runc, the shim leaves /NS in place).
        if let Ok(ctrls) = fs::read_dir("/sys/fs/cgroup") {
            for c in ctrls.flatten() {
                let _ = fs::remove_dir(c.path().join(&self.ns));
            }
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wait_for_file(path: &Path, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = fs::read_to_string(path).unwrap_or_default();
        if s.contains(what) {
            return s;
        }
        if Instant::now() > deadline {
            panic!("{} never contained {what:?}: {s:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines(path: &Path) -> usize {
    fs::read_to_string(path).unwrap_or_default().lines().count()
}

// ---------------------------------------------------------------------------------------

#[test]
fn hello_prints_and_exits_zero() {
    require_env!();
    let d = Containerd::start();
    let img = d.import_guest("hello");
    let id = uid("hello");
    let out = d.run(&img, &id, &["/hello", "a", "b c"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Hello, World\n"), "{stdout}");
    assert!(stdout.contains("Command line is: 'a b c'"), "{stdout}");
    d.assert_clean(&id, None);
}

#[test]
fn exit_statuses() {
    require_env!();
    let d = Containerd::start();
    for (guest, args, status) in [
        ("exit", vec!["/exit", "42"], 42),
        ("abort", vec!["/abort"], 255),
        ("fault", vec!["/fault", "null"], 139),
        ("forbidden", vec!["/forbidden"], 159),
    ] {
        let img = d.import_guest(guest);
        let id = uid(guest);
        let out = d.run(&img, &id, &args);
        assert_eq!(
            out.status.code(),
            Some(status),
            "{guest}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        d.assert_clean(&id, None);
        if status == 159 {
            let log = d.log();
            assert!(
                log.lines()
                    .any(|l| l.contains("seccomp policy violation") && l.contains(&id)),
                "no policy violation logged for {id}"
            );
        }
    }
}

#[test]
fn kill_forwards_sigterm_and_sigkill() {
    require_env!();
    let d = Containerd::start();
    let img = d.import_guest("clock");
    let tmp = tempfile::tempdir().unwrap();
    // Through containerd, and a SIGKILL of the tender from outside (an operator, the OOM
    // killer): the same status, the same cleanup. The tender is its pid namespace's init,
    // which the kernel shields from signals it has no handler for: each terminating signal
    // must still end it with 128 + signal.
    for (sig, status, direct) in [
        ("SIGTERM", 143, false),
        ("SIGINT", 130, false),
        ("SIGHUP", 129, false),
        ("SIGUSR1", 138, false),
        ("SIGKILL", 137, false),
        ("SIGKILL", 137, true),
    ] {
        let id = uid("kill");
        let log = tmp.path().join(format!("{id}.log"));
        d.run_detached(&img, &id, &log, &["/clock", "tick", "20"]);
        wait_for_file(&log, "tick 2");
        let pid = d.task_pid(&id);
        if direct {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        } else {
            d.ctr_ok(&["task", "kill", "-s", sig, &id]);
        }
        d.wait_status(&id, "STOPPED");
        let warn = d.delete(&id);
        assert!(
            warn.contains(&format!("exit code {status}")),
            "{sig}: {warn}"
        );
        // Kill on a stopped task is NotFound, not a hang.
        d.assert_clean(&id, Some(pid));
    }
}

#[test]
fn pause_resume_ps_metrics_and_exec_refused() {
    require_env!();
    let d = Containerd::start();
    let img = d.import_guest("clock");
    let tmp = tempfile::tempdir().unwrap();
    let id = uid("pause");
    let log = tmp.path().join("clock.log");
    d.run_detached(&img, &id, &log, &["/clock", "tick", "10"]);
    wait_for_file(&log, "tick 3");
    let pid = d.task_pid(&id);

    let ps = d.ctr_ok(&["task", "ps", &id]);
    assert!(ps.contains(&pid.to_string()), "{ps}");
    let metrics = d.ctr_ok(&["task", "metrics", &id]);
    assert!(
        metrics.contains("memory.usage_in_bytes") || metrics.contains("memory"),
        "{metrics}"
    );

    d.ctr_ok(&["task", "pause", &id]);
    assert_eq!(d.task_status(&id).as_deref(), Some("PAUSED"));
    std::thread::sleep(Duration::from_millis(100));
    let frozen = lines(&log);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(&log), frozen, "a paused guest kept printing");
    d.ctr_ok(&["task", "resume", &id]);
    assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines(&log) <= frozen + 3 {
        assert!(Instant::now() < deadline, "the guest did not resume");
        std::thread::sleep(Duration::from_millis(20));
    }

    let exec = d.ctr(&["task", "exec", "--exec-id", "x", &id, "/clock"]);
    assert!(!exec.status.success());
    assert!(
        text(&exec.stderr).contains("not supported for unikernels"),
        "{}",
        text(&exec.stderr)
    );

    d.ctr_ok(&["task", "kill", "-s", "SIGKILL", &id]);
    d.wait_status(&id, "STOPPED");
    let kill_again = d.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    assert!(!kill_again.status.success());
    d.delete(&id);
    d.assert_clean(&id, Some(pid));
}

#[test]
fn bad_images_are_refused_at_create_with_nothing_left() {
    require_env!();
    let d = Containerd::start();
    let linux = fs::read("/bin/true").unwrap();
    let hello = fs::read(guest("hello")).unwrap();
    // The same unikernel built for the hvt target (its ABI note says so).
    let mut hvt = ElfEdit::load(&guest("hello"));
    let abi = hvt.note_desc(NOTE_ABI);
    hvt.set(abi, 4, 1);
    let outside = guest("hello").display().to_string();
    let img = d.import(
        "bad",
        &[
            Entry::File("true", linux),
            Entry::File("hello", hello),
            Entry::File("hvt", hvt.bytes.clone()),
            Entry::File("zeros", vec![0u8; 100 << 20]),
            Entry::File("dir/inside", b"x".to_vec()),
            Entry::Symlink("escape", &outside),
            Entry::Symlink("dotdot", "../../../../../../../../bin/true"),
        ],
        "/true",
    );
    // A 1 MiB command line: 128 arguments of 8 KiB.
    let chunk = "a".repeat(8191);
    let mut huge = vec!["/hello"];
    huge.extend(std::iter::repeat_n(chunk.as_str(), 128));
    for (args, wanted) in [
        (vec!["/true"], vec!["/true", "executable"]),
        (vec!["/nothere"], vec!["/nothere", "not found"]),
        (vec!["/dir"], vec!["/dir", "directory"]),
        (vec!["/escape"], vec!["/escape", "not found"]),
        (vec!["/dotdot"], vec!["/dotdot", "not found"]),
        (vec!["/hvt"], vec!["/hvt", "solo5-hvt target"]),
        (vec!["/zeros"], vec!["/zeros", "executable"]),
        (huge, vec!["Solo5 allows at most 8191"]),
    ] {
        let id = uid("bad");
        let out = d.run(&img, &id, &args);
        assert!(!out.status.success(), "{args:?} ran");
        let err = text(&out.stderr);
        for w in wanted {
            assert!(err.contains(w), "{:?}: {err}", &args[..1]);
        }
        assert!(!err.contains("/proc/"), "internal path leaked: {err}");
        d.assert_clean(&id, None);
    }
    // The shim keeps serving: a good run after the bad ones.
    let id = uid("good");
    let out = d.run(&img, &id, &["/hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    d.assert_clean(&id, None);
}

#[test]
fn terminal_and_bad_config_are_clear_errors() {
    require_env!();
    let d = Containerd::start();
    let img = d.import_guest("hello");
    let id = uid("tty");
    // ctr insists on a terminal for -t: run it under script(1), which gives it a pty.
    let cmd = format!(
        "{} --address {} -n {} run --rm -t --runtime {RUNTIME} {img} {id} /hello",
        d.bin.join("ctr").display(),
        d.socket().display(),
        d.ns
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(said.contains("tty"), "{said}");
    d.assert_clean(&id, None);

    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    fs::write(&bad, "memory = 3\n").unwrap();
    let good = tmp.path().join("good.toml");
    fs::write(&good, "default_memory_mib = 8\n").unwrap();
    let id = uid("cfg");
    let out = d.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--runtime-config-path",
        bad.to_str().unwrap(),
        &img,
        &id,
        "/hello",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("memory"), "{err}");
    d.assert_clean(&id, None);
    let id = uid("cfg");
    let out = d.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--runtime-config-path",
        good.to_str().unwrap(),
        &img,
        &id,
        "/hello",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        d.log()
            .lines()
            .any(|l| l.contains(&id) && l.contains("guest_memory=8388608")),
        "configured memory not used"
    );
}

#[test]
fn flood_output_arrives_intact() {
    require_env!();
    let d = Containerd::start();
    let img = d.import_guest("flood");
    let id = uid("flood");
    let out = d.run(&img, &id, &["/flood", "32"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 32 << 20);
    for (n, line) in out.stdout.chunks(64).enumerate() {
        let want = format!("{n:08} ");
        assert_eq!(&line[..9], want.as_bytes(), "line {n}");
        assert_eq!(line[63], b'\n');
    }
    d.assert_clean(&id, None);
}

#[test]
fn a_stalled_console_reader_blocks_the_guest_not_the_shim() {
    require_env!();
    let d = Containerd::start();
    let img = d.import_guest("flood");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let pidfile = tmp.path().join("logger.pid");
    let logger = tmp.path().join("logger.sh");
    // A logger that reads 100 kB, then stops reading without closing anything.
    fs::write(
        &logger,
        format!(
            "#!/bin/sh\nexec 5>&-\nhead -c 100000 <&3 > {out}\necho $$ > {pid}\nexec sleep 600\n",
            out = out.display(),
            pid = pidfile.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let id = uid("stall");
    let uri = format!("binary://{}", logger.display());
    d.ctr_ok(&[
        "run",
        "-d",
        "--log-uri",
        &uri,
        "--runtime",
        RUNTIME,
        &img,
        &id,
        "/flood",
        "256",
    ]);
    let logger_pid: i32 = wait_for_file(&pidfile, "\n").trim().parse().unwrap();
    let shim = d.shims()[0];
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_kib(shim);
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss_kib(shim);
    // 256 MiB take well under a second when read: the guest is blocked in its console write.
    assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));
    assert!(
        rss_after <= rss_before + 1024,
        "the shim's memory grows with unread output: {rss_before} KiB, then {rss_after} KiB"
    );
    assert_eq!(fs::metadata(&out).unwrap().len(), 100_000);
    // The reader goes away: the rest is discarded and the guest finishes.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(logger_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    d.wait_status(&id, "STOPPED");
    let warn = d.delete(&id);
    assert!(!warn.contains("exit code"), "the guest exits 0: {warn}");
    d.assert_clean(&id, None);
}

#[test]
fn binary_log_uri_reaches_the_logger() {
    require_env!();
    let d = Containerd::start();
    let img = d.import_guest("hello");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let meta = tmp.path().join("meta");
    let logger = tmp.path().join("logger.sh");
    let mut f = fs::File::create(&logger).unwrap();
    writeln!(
        f,
        "#!/bin/sh\necho \"$CONTAINER_NAMESPACE/$CONTAINER_ID $*\" > {meta}\nexec 5>&-\n\
         cat <&3 > {out}.tmp\nmv {out}.tmp {out}",
        meta = meta.display(),
        out = out.display()
    )
    .unwrap();
    drop(f);
    fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let id = uid("binlog");
    let uri = format!("binary://{}?tag=t1", logger.display());
    d.ctr_ok(&[
        "run",
        "-d",
        "--log-uri",
        &uri,
        "--runtime",
        RUNTIME,
        &img,
        &id,
        "/hello",
        "logged",
    ]);
    let got = wait_for_file(&out, "Command line is: 'logged'");
    assert!(got.contains("Hello, World"), "{got}");
    let m = fs::read_to_string(&meta).unwrap();
    assert_eq!(m.trim(), format!("{}/{id} tag t1", d.ns));
    d.wait_status(&id, "STOPPED");
    d.delete(&id);
    d.assert_clean(&id, None);
}

/// The `tick N` numbers in `path`, checked to run 0, 1, 2, ... without a gap or repeat.
fn ticks_in_order(path: &Path) -> u64 {
    let text = fs::read_to_string(path).unwrap();
    let mut n = 0u64;
    for line in text.lines().filter(|l| l.starts_with("tick ")) {
        assert_eq!(line, format!("tick {n}"), "console lost or repeated output");
        n += 1;
    }
    n
}

#[test]
fn guests_survive_two_containerd_restarts() {
    require_env!();
    let mut d = Containerd::start();
    let img = d.import_guest("clock");
    let tmp = tempfile::tempdir().unwrap();
    // A printer for the whole test, and a guest that ends while containerd is down.
    let id = uid("restart");
    let log = tmp.path().join("clock.log");
    d.run_detached(&img, &id, &log, &["/clock", "tick", "10"]);
    let ender = uid("ender");
    let ender_log = tmp.path().join("ender.log");
    d.run_detached(&img, &ender, &ender_log, &["/clock", "tick", "20", "40"]);
    wait_for_file(&log, "tick 2");
    let pid = d.task_pid(&id);

    for round in 0..2 {
        d.stop();
        let before = lines(&log);
        if round == 0 {
            // The ender's exit happens now, with nobody to tell.
            wait_for_file(&ender_log, "clock done");
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            lines(&log) > before,
            "console stopped while containerd was down"
        );
        d.restart();
        assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));
        assert_eq!(d.task_pid(&id), pid);
        // The exit during the outage is known afterwards, with its status.
        assert_eq!(d.task_status(&ender).as_deref(), Some("STOPPED"));
        let after = lines(&log);
        std::thread::sleep(Duration::from_millis(200));
        assert!(lines(&log) > after, "console stopped after restart {round}");
    }
    let warn = d.delete(&ender);
    assert!(warn.contains("exit code 7"), "{warn}");
    d.ctr_ok(&["task", "kill", "-s", "SIGKILL", &id]);
    d.wait_status(&id, "STOPPED");
    let warn = d.delete(&id);
    assert!(warn.contains("exit code 137"), "{warn}");
    // Every line the guest printed arrived, in order, across both outages.
    assert!(ticks_in_order(&log) > 50);
    assert_eq!(ticks_in_order(&ender_log), 40);
    d.assert_clean(&id, Some(pid));
}

#[test]
fn killed_shim_is_cleaned_up_by_containerd() {
    require_env!();
    let d = Containerd::start();
    let img = d.import_guest("clock");
    let tmp = tempfile::tempdir().unwrap();
    let id = uid("shimkill");
    let log = tmp.path().join("clock.log");
    d.run_detached(&img, &id, &log, &["/clock", "tick", "20"]);
    wait_for_file(&log, "tick 1");
    let pid = d.task_pid(&id);
    let shims = d.shims();
    assert_eq!(shims.len(), 1, "{shims:?}");
    // The daemon's socket, from its command line (`-socket unix:///run/containerd/s/...`).
    let cmdline = fs::read(format!("/proc/{}/cmdline", shims[0])).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let socket = args
        .iter()
        .position(|a| a == "-socket")
        .and_then(|i| args.get(i + 1))
        .and_then(|a| a.strip_prefix("unix://"))
        .map(std::path::PathBuf::from)
        .expect("the daemon's -socket argument");
    assert!(socket.exists(), "{}", socket.display());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shims[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // containerd runs the shim's `delete` action, which kills the tender, unmounts and
    // removes the socket the dead daemon left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "tender {pid} outlived its shim");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = d.ctr(&["container", "rm", &id]);
    d.assert_clean(&id, Some(pid));
    assert!(!socket.exists(), "socket {} left behind", socket.display());
}

#[test]
fn detached_run_then_attach() {
    require_env!();
    let d = Containerd::start();
    let img = d.import_guest("clock");
    let id = uid("attach");
    d.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        &img,
        &id,
        "/clock",
        "tick",
        "20",
    ]);
    let pid = d.task_pid(&id);
    let mut attach = Command::new(d.bin.join("ctr"))
        .arg("--address")
        .arg(d.socket())
        .args(["-n", &d.ns, "task", "attach", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = attach.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match std::io::Read::read(&mut out, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&got).matches("tick").count() >= 3 {
                break;
            }
        }
        got
    });
    let got = reader.join().unwrap();
    // SIGKILL: ctr would forward a SIGTERM to the task.
    let _ = attach.kill();
    let _ = attach.wait();
    assert!(
        String::from_utf8_lossy(&got).matches("tick").count() >= 3,
        "attach saw: {:?}",
        String::from_utf8_lossy(&got)
    );
    d.ctr_ok(&["task", "kill", "-s", "SIGKILL", &id]);
    d.wait_status(&id, "STOPPED");
    d.delete(&id);
    d.assert_clean(&id, Some(pid));
}

#[test]
fn pod_sandbox_holder_and_containers_share_one_shim() {
    require_env!();
    let d = Containerd::start();
    // The sandbox image holds a Linux `pause`-like binary: the shim must not run it.
    let pause = d.import(
        "pause",
        &[Entry::File("pause", fs::read("/bin/true").unwrap())],
        "/pause",
    );
    let clock = d.import_guest("clock");
    let pod = uid("pod");
    let sandbox_id = format!("--annotation=io.kubernetes.cri.sandbox-id={pod}");
    d.ctr_ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--annotation",
        "io.kubernetes.cri.container-type=sandbox",
        &sandbox_id,
        &pause,
        &pod,
        "/pause",
    ]);
    let holder = d.task_pid(&pod);
    let tmp = tempfile::tempdir().unwrap();
    let mut workloads = Vec::new();
    for _ in 0..2 {
        let id = uid("podc");
        let log = tmp.path().join(format!("{id}.log"));
        let uri = format!("file://{}", log.display());
        d.ctr_ok(&[
            "run",
            "-d",
            "--log-uri",
            &uri,
            "--runtime",
            RUNTIME,
            "--annotation",
            "io.kubernetes.cri.container-type=container",
            &sandbox_id,
            &clock,
            &id,
            "/clock",
            "tick",
            "20",
        ]);
        wait_for_file(&log, "tick 1");
        workloads.push((id.clone(), d.task_pid(&id)));
    }
    assert_eq!(d.shims().len(), 1, "one shim per pod");
    for (id, pid) in &workloads {
        d.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
        d.wait_status(id, "STOPPED");
        d.delete(id);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
    // The pod's shim serves on while its sandbox lives.
    assert_eq!(d.task_status(&pod).as_deref(), Some("RUNNING"));
    assert_eq!(d.shims().len(), 1);
    d.ctr_ok(&["task", "kill", &pod]);
    d.wait_status(&pod, "STOPPED");
    let warn = d.delete(&pod);
    assert!(warn.contains("exit code 143"), "{warn}");
    d.assert_clean(&pod, Some(holder));
}
