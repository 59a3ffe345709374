//! Every test guest through `nabla-tender`, with its expected console output and exit status,
//! and the command-line quirks of spec §5.

use std::time::{Duration, Instant};

use nabla_integration_tests::tender::{guest, run_tender, Run};

const T: Duration = Duration::from_secs(20);

fn run(name: &str, opts: &[&str], args: &[&str]) -> Run {
    let mut v: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
    v.push(guest(name).to_string_lossy().into_owned());
    v.extend(args.iter().map(|s| s.to_string()));
    run_tender(&v, T)
}

#[test]
fn hello_prints_its_command_line() {
    let r = run("hello", &[], &["a", "b", "c d"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stdout.contains("Hello, World\n"), "{r:?}");
    assert!(r.stdout.contains("Command line is: 'a b c d'"), "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");
    let r = run("hello", &[], &[]);
    assert!(r.stdout.contains("Command line is: ''"), "{r:?}");
}

#[test]
fn exit_status_is_the_guests() {
    for (arg, want) in [("0", 0), ("1", 1), ("42", 42), ("300", 44), ("-1", 255)] {
        let r = run("exit", &[], &[arg]);
        assert_eq!(r.status, want, "exit {arg}: {r:?}");
    }
}

#[test]
fn abort_is_255() {
    let r = run("abort", &[], &[]);
    assert_eq!(r.status, 255, "{r:?}");
    assert!(r.stdout.contains("Solo5: solo5_abort() called"), "{r:?}");
}

#[test]
fn faults_kill_with_sigsegv() {
    for mode in ["null", "text"] {
        let r = run("fault", &[], &[mode]);
        assert_eq!(r.status, 128 + 11, "fault {mode}: {r:?}");
    }
}

#[test]
fn forbidden_syscall_kills_with_sigsys() {
    let r = run("forbidden", &[], &[]);
    assert_eq!(r.status, 128 + 31, "{r:?}");
}

#[test]
fn tls_through_arch_prctl() {
    let r = run("tls", &[], &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stdout.contains("TLS OK"), "{r:?}");
}

#[test]
fn clock_and_yield() {
    let start = Instant::now();
    let r = run("clock", &[], &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[test]
fn console_flood_arrives_intact() {
    let r = run("flood", &[], &["4"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(r.stdout.len() >= 4 << 20, "only {} bytes", r.stdout.len());
}

#[test]
fn memory_is_reserved_not_touched() {
    // 8 MiB touched out of 64 MiB.
    let r = run("memtouch", &["--mem=64"], &["8"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stdout.contains("touched 8 MiB"), "{r:?}");
    // Asking for more than fits is the guest's own clean failure.
    let r = run("memtouch", &["--mem=8"], &["64"]);
    assert_eq!(r.status, 1, "{r:?}");
}

#[test]
fn mem_option_sets_guest_memory() {
    let r = run("meminfo", &[], &[]);
    assert!(
        r.stdout.contains(&format!("mem_size={}", 512u64 << 20)),
        "{r:?}"
    );
    let r = run("meminfo", &["--mem=16M"], &[]);
    assert!(
        r.stdout.contains(&format!("mem_size={}", 16u64 << 20)),
        "{r:?}"
    );
    let r = run("meminfo", &["--mem=4096"], &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.stdout.contains(&format!("mem_size={}", 4096u64 << 20)),
        "{r:?}"
    );
    for bad in ["0", "abc", "0x10", "-1", ""] {
        let r = run("meminfo", &[&format!("--mem={bad}")], &[]);
        assert_eq!(r.status, 1, "--mem={bad}: {r:?}");
        assert!(r.stderr.contains("Malformed argument to --mem"), "{r:?}");
    }
    let r = run("meminfo", &["--mem=100000000"], &[]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("100000000 MiB is not supported"), "{r:?}");
}

#[test]
fn double_dash_and_option_like_guest_args() {
    let r = run_tender(
        [
            "--".as_ref(),
            guest("hello").as_os_str(),
            "--mem=5".as_ref(),
            "Hello".as_ref(),
        ],
        T,
    );
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.stdout.contains("Command line is: '--mem=5 Hello'"),
        "{r:?}"
    );
}

#[test]
fn cmdline_limit_is_8191_characters() {
    let ok = "x".repeat(8191);
    let r = run("hello", &[], &[&ok]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&ok));
    let long = "x".repeat(4096);
    let r = run("hello", &[], &[&long, &long]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("Guest command line too long (max=8191 characters)"),
        "{r:?}"
    );
}

#[test]
fn help_version_and_bad_options() {
    let r = run_tender(["--version"], T);
    assert_eq!(r.status, 0);
    assert!(r.stderr.contains("ABI version 2"), "{r:?}");
    let r = run_tender(["--help"], T);
    assert_eq!(r.status, 1);
    assert!(r.stderr.contains("usage: nabla-tender"), "{r:?}");
    let r = run_tender::<[&str; 0], &str>([], T);
    assert_eq!(r.status, 1);
    assert!(r.stderr.contains("Missing KERNEL operand"), "{r:?}");
    let r = run("hello", &["--bogus"], &[]);
    assert_eq!(r.status, 1);
    assert!(
        r.stderr.contains("Invalid option: `--bogus'") && r.stderr.contains("usage:"),
        "{r:?}"
    );
}

#[test]
fn undeclared_devices_are_refused() {
    let r = run("hello", &["--block:storage=/dev/null"], &[]);
    assert_eq!(r.status, 1);
    assert!(
        r.stderr
            .contains("Resource not declared in manifest: 'storage'"),
        "{r:?}"
    );
    let r = run("hello", &["--net:service0=tap0"], &[]);
    assert_eq!(r.status, 1);
    assert!(
        r.stderr
            .contains("Resource not declared in manifest: 'service0'"),
        "{r:?}"
    );
}

#[test]
fn exec_heap_warns_and_runs() {
    let r = run("hello", &["--x-exec-heap"], &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("WARNING: The use of --x-exec-heap is dangerous"),
        "{r:?}"
    );
}

#[test]
fn describe_lists_declared_devices() {
    let r = run_tender(["--x-describe".as_ref(), guest("hello").as_os_str()], T);
    assert_eq!((r.status, r.stdout.as_str()), (0, ""), "{r:?}");
    let r = run_tender(["--x-describe".as_ref(), guest("probe-dev").as_os_str()], T);
    assert_eq!(r.status, 0, "{r:?}");
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["service0 NET_BASIC", "storage BLOCK_BASIC"],
        "{r:?}"
    );
    // Every loader check still applies: a Linux executable is refused.
    let r = run_tender(["--x-describe", "/bin/true"], T);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("nabla-tender: /bin/true:"), "{r:?}");
}
