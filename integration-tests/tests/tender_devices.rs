//! Block and net devices through `nabla-tender`: real image files, a loop device, real taps
//! in private network namespaces, real pings and UDP.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nabla_integration_tests::netns::{udp_echo, NetNs};
use nabla_integration_tests::tender::{guest, run_tender, tender_bin, LiveTender, Run};

const T: Duration = Duration::from_secs(30);

fn image(dir: &Path, name: &str, len: u64) -> PathBuf {
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(len).unwrap();
    p
}

fn block_run(opts: &[String], args: &[&str]) -> Run {
    let mut v = opts.to_vec();
    v.push(guest("block").to_string_lossy().into_owned());
    v.extend(args.iter().map(|s| s.to_string()));
    run_tender(&v, T)
}

fn block_opt(path: &Path) -> String {
    format!("--block:storage={}", path.display())
}

#[test]
fn block_512_byte_sectors() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.img", 1 << 20);
    let r = block_run(&[block_opt(&img)], &[]);
    // The guest ends with a raw pread64 one block past the end, which the filter kills.
    assert_eq!(r.status, 159, "{r:?}");
    assert!(
        r.stdout
            .contains("block ok capacity=1048576 block_size=512"),
        "{r:?}"
    );
    assert!(r.stdout.contains("reading past the end"), "{r:?}");
}

#[test]
fn block_4096_byte_sectors() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.img", 256 * 4096);
    let opts = [
        "--block-sector-size:storage=4096".to_string(),
        block_opt(&img),
    ];
    let r = block_run(&opts, &[]);
    assert_eq!(r.status, 159, "{r:?}");
    assert!(
        r.stdout
            .contains("block ok capacity=1048576 block_size=4096"),
        "{r:?}"
    );
}

#[test]
fn block_data_persists_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.img", 64 * 1024);
    let r = block_run(&[block_opt(&img)], &["write", "7"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stdout.contains("write ok blocks=128"), "{r:?}");
    let r = block_run(&[block_opt(&img)], &["verify", "7"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stdout.contains("verify ok blocks=128"), "{r:?}");
    let r = block_run(&[block_opt(&img)], &["verify", "8"]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stdout.contains("verify FAILED"), "{r:?}");
    // The bytes really are in the file.
    let data = std::fs::read(&img).unwrap();
    assert!(data.iter().any(|&b| b != 0));
}

/// A 256 KiB tmpfs on a temporary directory, unmounted on drop.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn new() -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "nabla-test-full"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        SmallFs(dir)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn block_on_a_full_filesystem() {
    // A sparse 1 MiB image on a 256 KiB filesystem: writes fail once it is full.
    let fs = SmallFs::new();
    let img = image(fs.0.path(), "disk.img", 1 << 20);
    let r = block_run(&[block_opt(&img)], &["write", "7"]);
    // The guest sees the error (ENOSPC) and ends by itself: no crash, no filter kill.
    assert_eq!(r.status, 1, "{r:?}");
    let failed_at: u64 = r
        .stdout
        .split("write FAILED at block ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no write error reported: {r:?}"));
    assert!(r.stdout.contains("errno=28"), "ENOSPC: {r:?}");
    assert!(
        (256..2048).contains(&failed_at),
        "failed at block {failed_at}: {r:?}"
    );
    // What was written before the filesystem filled up is intact, in a new run.
    let r = block_run(&[block_opt(&img)], &["verify", "7", &failed_at.to_string()]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.stdout.contains(&format!("verify ok blocks={failed_at}")),
        "{r:?}"
    );
}

#[test]
fn block_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.img", 64 * 1024);
    std::fs::write(&img, vec![0xa5u8; 64 * 1024]).unwrap();
    let opts = ["--x-block-readonly:storage".to_string(), block_opt(&img)];
    let r = block_run(&opts, &["readonly"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stdout.contains("write refused errno=9"), "{r:?}");
    assert!(std::fs::read(&img).unwrap().iter().all(|&b| b == 0xa5));
    // The option must come first, so that the file is opened read-only.
    let opts = [block_opt(&img), "--x-block-readonly:storage".to_string()];
    let r = block_run(&opts, &["readonly"]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(
        r.stderr.contains("must come before --block:storage=PATH"),
        "{r:?}"
    );
}

#[test]
fn block_bad_images_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![block_opt(&image(dir.path(), "odd.img", 1000))],
            "storage: Backing storage size must be block aligned (512 bytes)",
        ),
        (
            vec![
                "--block-sector-size:storage=4096".into(),
                block_opt(&image(dir.path(), "odd4k.img", 6144)),
            ],
            "storage: Backing storage size must be block aligned (4096 bytes)",
        ),
        (
            vec![block_opt(&image(dir.path(), "empty.img", 0))],
            "storage: Backing storage must be at least 1 block (512 bytes) in size",
        ),
        (
            vec!["--block:storage=/nonexistent/disk.img".into()],
            "Could not open block device: /nonexistent/disk.img",
        ),
        (
            vec![
                "--block-sector-size:storage=1000".into(),
                block_opt(&image(dir.path(), "a.img", 4096)),
            ],
            "Block size must be a power of two greater than or equal 512",
        ),
        (
            vec![
                "--block-sector-size:storage=256".into(),
                block_opt(&image(dir.path(), "b.img", 4096)),
            ],
            "Block size must be a power of two greater than or equal 512",
        ),
        (
            vec![],
            "Device 'storage' of type BLOCK_BASIC declared but not attached.",
        ),
        (
            vec!["--block:nosuch=/dev/null".into()],
            "Resource not declared in manifest: 'nosuch'",
        ),
        (
            vec!["--net:storage=tap0".into()],
            "Resource not declared in manifest: 'storage'",
        ),
    ];
    for (opts, want) in cases {
        let r = block_run(&opts, &[]);
        assert_eq!(r.status, 1, "{opts:?}: {r:?}");
        assert!(r.stderr.contains(want), "{opts:?}: want {want:?}: {r:?}");
        assert!(
            r.stdout.is_empty(),
            "{opts:?}: the guest must not run: {r:?}"
        );
    }
}

#[test]
fn block_on_a_loop_device() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "loop.img", 1 << 20);
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&img)
        .output()
        .unwrap();
    if !out.status.success() {
        // Containers without loop devices cannot run this case; say so loudly.
        eprintln!(
            "SKIPPED: losetup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let r = block_run(&[format!("--block:storage={dev}")], &[]);
    let _ = Command::new("losetup").args(["-d", &dev]).status();
    assert_eq!(r.status, 159, "{r:?}");
    assert!(
        r.stdout
            .contains("block ok capacity=1048576 block_size=512"),
        "{r:?}"
    );
}

#[test]
fn sixty_three_devices() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = Vec::new();
    for i in 0..63 {
        let img = image(dir.path(), &format!("d{i}.img"), 4096);
        v.push(format!("--block:blk{i}={}", img.display()));
    }
    v.push(guest("manydev").to_string_lossy().into_owned());
    let r = run_tender(&v, T);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stdout.contains("manydev ok devices=63"), "{r:?}");
    // One missing: named, exit 1.
    v.remove(17);
    let r = run_tender(&v, T);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("Device 'blk17' of type BLOCK_BASIC declared but not attached."),
        "{r:?}"
    );
}

const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

fn net_tender(ns: &NetNs, opts: &[&str], args: &[&str]) -> LiveTender {
    let mut cmd = ns.command(tender_bin());
    cmd.args(opts).arg(guest("net")).args(args);
    LiveTender::spawn(cmd)
}

#[test]
fn net_ping_flood_and_udp_echo() {
    let ns = NetNs::new("net");
    ns.add_tap("tap0", Some("10.77.0.1/24"));
    let mut t = net_tender(
        &ns,
        &[
            "--net:service0=tap0",
            "--net-mac:service0=02:00:00:aa:bb:cc",
        ],
        &["10.77.0.2/24"],
    );
    let ready = t.wait_for("net ready", T);
    assert!(ready.contains("mac=02:00:00:aa:bb:cc"), "{ready}");
    assert!(ready.contains("mtu=1500"), "{ready}");

    let (tx, rx, text) = ns.ping(GUEST_IP, &["-c", "3", "-W", "2"]);
    assert_eq!((tx, rx), (3, 3), "{text}");
    let (tx, rx, text) = ns.ping(GUEST_IP, &["-f", "-c", "10000", "-q"]);
    assert_eq!((tx, rx), (10000, 10000), "flood ping lost packets: {text}");
    // Large echo payloads up to the MTU.
    let (tx, rx, text) = ns.ping(GUEST_IP, &["-c", "3", "-s", "1472", "-W", "2"]);
    assert_eq!((tx, rx), (3, 3), "{text}");

    let sock = ns.udp_socket();
    let to = SocketAddr::from((GUEST_IP, 7));
    for size in [1usize, 64, 1000, 1472] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
        assert!(
            udp_echo(&sock, to, &payload).unwrap(),
            "UDP echo of {size} bytes"
        );
    }
    t.kill();
    drop(ns);
}

#[test]
fn net_exits_after_count_packets() {
    let ns = NetNs::new("cnt");
    ns.add_tap("tap0", Some("10.77.0.1/24"));
    let mut t = net_tender(&ns, &["--net:service0=tap0"], &["10.77.0.2", "5"]);
    t.wait_for("net ready", T);
    let (_, rx, text) = ns.ping(GUEST_IP, &["-c", "5", "-i", "0.05", "-W", "2"]);
    assert_eq!(rx, 5, "{text}");
    t.wait_for("net done packets=5", T);
    assert_eq!(t.wait(T), 0);
}

#[test]
fn net_inherited_fd_from_another_namespace() {
    // The shim's way: open the tap inside the container's namespace, run the tender outside it.
    let ns = NetNs::new("fd");
    ns.add_tap("tap0", Some("10.77.0.1/24"));
    ns.set_mtu("tap0", 9000);
    let fd = ns.open_tap("tap0");
    let n = fd.as_raw_fd();

    let mut cmd = Command::new(tender_bin());
    cmd.arg(format!("--net:service0=@{n}")).arg(guest("mtu"));
    let r = nabla_integration_tests::tender::run_command(cmd, T);
    assert_eq!(r.status, 0, "{r:?}");
    // Upstream v0.12.1 never reads the MTU on this path; the tender must.
    assert!(r.stdout.contains("mtu=9000"), "{r:?}");

    let mut cmd = Command::new(tender_bin());
    cmd.arg(format!("--net:service0=@{n}"))
        .arg(guest("net"))
        .arg("10.77.0.2");
    let mut t = LiveTender::spawn(cmd);
    drop(fd);
    t.wait_for("net ready", T);
    let (tx, rx, text) = ns.ping(GUEST_IP, &["-c", "3", "-W", "2", "-s", "8000"]);
    assert_eq!((tx, rx), (3, 3), "{text}");
    t.kill();
}

#[test]
fn two_nics_each_answer() {
    let ns = NetNs::new("two");
    ns.add_tap("tap0", Some("10.77.0.1/24"));
    ns.add_tap("tap1", Some("10.78.0.1/24"));
    let mut cmd = ns.command(tender_bin());
    cmd.args(["--net:service0=tap0", "--net:service1=tap1"])
        .arg(guest("net2"))
        .args(["10.77.0.2", "10.78.0.2"]);
    let mut t = LiveTender::spawn(cmd);
    t.wait_for("net ready", T);
    for ip in [GUEST_IP, Ipv4Addr::new(10, 78, 0, 2)] {
        let (tx, rx, text) = ns.ping(ip, &["-c", "3", "-i", "0.1", "-W", "2"]);
        assert_eq!((tx, rx), (3, 3), "{ip}: {text}");
    }
    let sock = ns.udp_socket();
    assert!(udp_echo(
        &sock,
        SocketAddr::from((Ipv4Addr::new(10, 78, 0, 2), 7)),
        b"two"
    )
    .unwrap());
    t.kill();
}

#[test]
fn net_attach_errors() {
    let ns = NetNs::new("err");
    ns.add_tap("tap0", None);
    let run = |opts: &[&str]| {
        let mut cmd = ns.command(tender_bin());
        cmd.args(opts).arg(guest("net")).arg("10.77.0.2");
        nabla_integration_tests::tender::run_command(cmd, T)
    };
    let cases: &[(&[&str], &str)] = &[
        (
            &["--net:service0=nosuch0"],
            "Could not attach interface: nosuch0",
        ),
        (&["--net:service0=@99"], "Could not attach interface: @99"),
        (&["--net:service0=@0"], "Could not attach interface: @0"),
        (
            &[
                "--net:service0=tap0",
                "--net-mac:service0=zz:00:00:00:00:00",
            ],
            "Malformed MAC address",
        ),
        (
            &[],
            "Device 'service0' of type NET_BASIC declared but not attached.",
        ),
        (
            &["--net:service0=tap0", "--net:service0=tap0"],
            "attached more than once",
        ),
    ];
    for (opts, want) in cases {
        let r = run(opts);
        assert_eq!(r.status, 1, "{opts:?}: {r:?}");
        assert!(r.stderr.contains(want), "{opts:?}: want {want:?}: {r:?}");
    }
    // Attaching by name must not create an interface that was not there.
    assert!(
        !ns.links().iter().any(|l| l == "nosuch0"),
        "{:?}",
        ns.links()
    );
}
