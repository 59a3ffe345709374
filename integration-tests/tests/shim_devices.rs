//! Devices through containerd: block devices bound to mounts, NICs joined to the interface of
//! the container's network namespace (a veth into a "pod" namespace, as CNI makes), reached by
//! ping and UDP from the other end, and everything undone on delete.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nabla_integration_tests::containerd::{unique, PrivateContainerd};
use nabla_integration_tests::netns::{udp_echo, NetNs};
use nabla_integration_tests::oci_image::guest_image;
use nabla_integration_tests::procfs::{self, cgroup_path};
use nabla_integration_tests::tender::LiveTender;

const NABLA: &str = "io.containerd.nabla.v2";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Fixture {
    c: PrivateContainerd,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            c: PrivateContainerd::start(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn image(&self, name: &str) -> String {
        let (r, tar) = guest_image(name, self.dir.path());
        self.c.import(&tar);
        r
    }

    /// `ctr run --rm --runtime nabla EXTRA... IMAGE ID ARGS...`
    fn run(&self, extra: &[&str], image: &str, args: &[&str]) -> Output {
        self.run_as(&unique("dev"), extra, image, args)
    }

    /// `ctr run --rm` of `image` as container `id`, with `extra` options and `args`.
    fn run_as(&self, id: &str, extra: &[&str], image: &str, args: &[&str]) -> Output {
        let mut v = vec!["run", "--rm", "--runtime", NABLA];
        v.extend_from_slice(extra);
        v.push(image);
        v.push(id);
        v.extend_from_slice(args);
        self.c.ctr(&v)
    }

    /// A rootfs directory holding the test guest `name` at `/name`.
    fn rootfs_with(&self, name: &str) -> std::path::PathBuf {
        let rootfs = self.dir.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::copy(
            nabla_integration_tests::tender::guest(name),
            rootfs.join(name),
        )
        .unwrap();
        rootfs
    }

    /// Kills the task `id`, deletes it once it has stopped, and removes its container.
    fn remove(&self, id: &str) {
        let _ = self.c.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        for _ in 0..100 {
            if self.c.ctr(&["task", "delete", id]).status.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.c.ctr(&["container", "rm", id]);
    }

    fn leftover_tasks(&self) -> String {
        text(&self.c.ctr(&["task", "ls", "-q"]))
    }
}

fn disk(dir: &Path, name: &str, len: u64) -> String {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(len).unwrap();
    p.display().to_string()
}

/// What the `block` guest's `write SEED` puts in block `block` (its xorshift fill).
fn guest_pattern(seed: u64, block: u64, len: usize) -> Vec<u8> {
    let mut x = seed ^ block.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn block_device_from_a_bind_mount() {
    let f = Fixture::new();
    let img = f.image("block");
    let d = disk(f.dir.path(), "disk.img", 256 * 1024);
    let rw = format!("type=bind,src={d},dst=/storage,options=rbind:rw");
    let out = f.run(&["--mount", &rw], &img, &["/block", "write", "9"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("write ok blocks=512"), "{}", text(&out));
    // Checked from the host: every block holds what the guest wrote there, nothing lost.
    let data = std::fs::read(&d).unwrap();
    assert_eq!(data.len(), 256 * 1024);
    for (b, block) in data.chunks(512).enumerate() {
        assert!(
            block == guest_pattern(9, b as u64, 512),
            "block {b} of {d} differs from what the guest wrote"
        );
    }
    let out = f.run(&["--mount", &rw], &img, &["/block", "verify", "9"]);
    assert!(
        text(&out).contains("verify ok blocks=512"),
        "{}",
        text(&out)
    );

    // A read-only mount opens the file read-only: guest writes fail, the data stays.
    let ro = format!("type=bind,src={d},dst=/storage,options=rbind:ro");
    let out = f.run(&["--mount", &ro], &img, &["/block", "readonly"]);
    assert!(
        text(&out).contains("write refused errno=9"),
        "{}",
        text(&out)
    );
    let out = f.run(&["--mount", &ro], &img, &["/block", "verify", "9"]);
    assert!(text(&out).contains("verify ok"), "{}", text(&out));
    assert_eq!(f.leftover_tasks().trim(), "");
}

#[test]
fn unbound_and_bad_block_sources_are_clear_create_errors() {
    let f = Fixture::new();
    let img = f.image("block");
    let out = f.run(&[], &img, &["/block"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("declares block device(s) 'storage' with nothing bound to them")
            && t.contains("dst=/NAME"),
        "{t}"
    );
    let dir_src = format!(
        "type=bind,src={},dst=/storage,options=rbind:rw",
        f.dir.path().display()
    );
    let out = f.run(&["--mount", &dir_src], &img, &["/block"]);
    assert!(
        text(&out).contains("is a directory, not a regular file"),
        "{}",
        text(&out)
    );
    let chr = "type=bind,src=/dev/null,dst=/storage,options=rbind:rw";
    let out = f.run(&["--mount", chr], &img, &["/block"]);
    assert!(text(&out).contains("a character device"), "{}", text(&out));
    // A misaligned image is the tender's message.
    let odd = disk(f.dir.path(), "odd.img", 1000);
    let m = format!("type=bind,src={odd},dst=/storage,options=rbind:rw");
    let out = f.run(&["--mount", &m], &img, &["/block"]);
    assert!(
        text(&out).contains("Backing storage size must be block aligned"),
        "{}",
        text(&out)
    );
    assert_eq!(f.leftover_tasks().trim(), "");
}

/// A "pod" namespace whose eth0 is one end of a veth; the other end is in a "node" namespace.
fn pod_network() -> (NetNs, NetNs) {
    let node = NetNs::new("node");
    let pod = NetNs::new("pod");
    node.veth_to("veth0", "10.66.0.1/24", &pod, "eth0", "10.66.0.2/24");
    let gw = [
        "-n",
        pod.name(),
        "route",
        "add",
        "default",
        "via",
        "10.66.0.1",
    ];
    assert!(Command::new("ip").args(gw).status().unwrap().success());
    (node, pod)
}

fn tc_qdiscs(ns: &NetNs) -> String {
    let out = Command::new("tc")
        .args(["-n", ns.name(), "qdisc", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn guest_takes_over_the_pod_interface() {
    let f = Fixture::new();
    let img = f.image("net");
    let (node, pod) = pod_network();
    let id = unique("net");
    let netns = format!("network:/run/netns/{}", pod.name());
    let mut cmd = f.c.ctr_command();
    cmd.args([
        "run",
        "--rm",
        "--runtime",
        NABLA,
        "--with-ns",
        &netns,
        &img,
        &id,
    ])
    .args(["/net", "$(NABLA_IPV4)"]);
    let mut guest = LiveTender::spawn(cmd);
    let ready = guest.wait_for("net ready service0", Duration::from_secs(20));
    // Reach it at the pod's address from the node side.
    let (_, rx, t) = node.ping(Ipv4Addr::new(10, 66, 0, 2), &["-c", "3", "-W", "2"]);
    let reached = rx == 3;
    let links = pod.links();
    let qdiscs = tc_qdiscs(&pod);
    let (tx, rx, flood) = node.ping(Ipv4Addr::new(10, 66, 0, 2), &["-f", "-c", "2000", "-q"]);
    let sock = node.udp_socket();
    let udp = udp_echo(
        &sock,
        SocketAddr::from(([10, 66, 0, 2], 7)),
        b"through containerd",
    );
    let _ = f.c.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    let status = guest.wait(Duration::from_secs(20));

    assert!(reached, "the guest did not answer at the pod IP: {t}");
    assert_eq!(status, 137, "ctr reports the SIGKILL");
    // The guest took over eth0's MAC.
    let eth0 = Command::new("ip")
        .args(["-n", pod.name(), "-o", "link", "show", "eth0"])
        .output()
        .unwrap();
    let eth0 = String::from_utf8_lossy(&eth0.stdout).into_owned();
    let mac = ready
        .split("mac=")
        .nth(1)
        .and_then(|m| m.split(' ').next())
        .unwrap_or("?");
    assert!(eth0.contains(mac), "guest MAC {mac} is eth0's: {eth0}");
    assert!(ready.contains("mtu=1500"), "{ready}");
    assert!(
        links.iter().any(|l| l.starts_with("nbl")),
        "a tap in the pod netns: {links:?}"
    );
    assert!(qdiscs.contains("ingress"), "{qdiscs}");
    assert_eq!((tx, rx), (2000, 2000), "{flood}");
    assert!(udp.unwrap(), "UDP echo at the pod IP");

    // ctr run --rm deleted the container: no tap, no qdisc left in the pod namespace.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && pod.links().iter().any(|l| l.starts_with("nbl")) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !pod.links().iter().any(|l| l.starts_with("nbl")),
        "{:?}",
        pod.links()
    );
    assert!(!tc_qdiscs(&pod).contains("ingress"), "{}", tc_qdiscs(&pod));
    // The pod interface works for the kernel again.
    let (_, rx, t) = node.ping(Ipv4Addr::new(10, 66, 0, 2), &["-c", "1", "-W", "2"]);
    assert_eq!(rx, 1, "{t}");
}

/// A bind mount of the host's own network namespace under /run/netns, removed on drop.
struct HostNetnsRef(std::path::PathBuf);

impl HostNetnsRef {
    fn new() -> HostNetnsRef {
        let p = std::path::PathBuf::from(format!("/run/netns/{}", unique("hostref")));
        std::fs::create_dir_all("/run/netns").unwrap();
        std::fs::File::create(&p).unwrap();
        nix::mount::mount(
            Some("/proc/self/ns/net"),
            &p,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        HostNetnsRef(p)
    }
}

impl Drop for HostNetnsRef {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_nic_needs_a_network_namespace_with_an_interface() {
    let f = Fixture::new();
    let img = f.image("net");
    // No --with-ns: ctr asks for a new, empty namespace, which has no path to join.
    let out = f.run(&[], &img, &["/net", "$(NABLA_IPV4)"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("network namespace"), "{}", text(&out));
    // The host's own namespace, by any path: refused, the host keeps its NIC.
    let host = HostNetnsRef::new();
    let arg = format!("network:{}", host.0.display());
    let out = f.run(&["--with-ns", &arg], &img, &["/net", "$(NABLA_IPV4)"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("would take over a host interface"),
        "{}",
        text(&out)
    );
    // A namespace with only loopback.
    let empty = NetNs::new("empty");
    let ns = format!("network:/run/netns/{}", empty.name());
    let out = f.run(&["--with-ns", &ns], &img, &["/net", "$(NABLA_IPV4)"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("has 0 usable interface(s)"),
        "{}",
        text(&out)
    );
    assert_eq!(f.leftover_tasks().trim(), "");
}

#[test]
fn user_memory_and_arguments_from_the_spec() {
    let f = Fixture::new();
    let clock = f.image("clock");
    let id = unique("user");
    let out = f.c.ctr(&[
        "run",
        "-d",
        "--runtime",
        NABLA,
        "--user",
        "1000:1000",
        &clock,
        &id,
        "/clock",
        "tick",
        "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let pid = f.c.task_pid(&id).to_string();
    // Wait for the guest to run (the filter is in place by then).
    let status = procfs::status_once_filtered(&pid, Duration::from_secs(10));
    let field = |k: &str| procfs::status_field(&status, k);
    let (uid, caps, nnp, nspid) = (
        field("Uid:"),
        field("CapEff:"),
        field("NoNewPrivs:"),
        field("NSpid:"),
    );
    // ctr's default spec asks for new pid, network, IPC, UTS and mount namespaces: the
    // tender is not in the host's, and it is its pid namespace's init.
    let ns = |p: &str, t: &str| std::fs::read_link(format!("/proc/{p}/ns/{t}")).ok();
    let separate: Vec<bool> = ["pid", "net", "ipc", "uts", "mnt"]
        .iter()
        .map(|t| ns(&pid, t).is_some() && ns(&pid, t) != ns("self", t))
        .collect();
    // The spec's rlimits (ctr's default spec: RLIMIT_NOFILE 1024).
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| {
            l.split_whitespace()
                .skip(3)
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    f.remove(&id);
    assert_eq!(
        uid.split_whitespace().next(),
        Some("1000"),
        "tender {pid} uid: {uid}"
    );
    assert_eq!(caps, "0000000000000000", "no capabilities");
    assert_eq!(nnp, "1");
    assert_eq!(
        separate, [true; 5],
        "pid, net, ipc, uts, mnt namespaces of the tender"
    );
    assert_eq!(
        nspid.split_whitespace().collect::<Vec<_>>(),
        [pid.as_str(), "1"],
        "the tender's pids (host, own namespace)"
    );
    assert_eq!(nofile, "1024 1024", "RLIMIT_NOFILE from the spec: {limits}");

    // Memory: from the limit (minus the tender's share, above the 512 MiB default too), or
    // from the annotation.
    let meminfo = f.image("meminfo");
    let limit = (128u64 << 20).to_string();
    let big = (1u64 << 30).to_string();
    for (opts, want) in [
        (
            ["--memory-limit", limit.as_str()],
            format!("mem_size={}", 112u64 << 20),
        ),
        (
            ["--memory-limit", big.as_str()],
            format!("mem_size={}", 1008u64 << 20),
        ),
        (
            ["--annotation", "nabla.io/memory=64"],
            format!("mem_size={}", 64u64 << 20),
        ),
        (
            ["--annotation", "nabla.io/memory=lots"],
            "nabla.io/memory".to_string(),
        ),
    ] {
        let out = f.run(&opts, &meminfo, &["/meminfo"]);
        assert!(text(&out).contains(&want), "{opts:?}: {}", text(&out));
    }

    // A limit too small for any guest: a clear Create error, and nothing left behind.
    let id = unique("dev");
    let tiny = (8u64 << 20).to_string();
    let out = f.run_as(&id, &["--memory-limit", &tiny], &meminfo, &["/meminfo"]);
    assert!(
        !out.status.success() && text(&out).contains("too small for a unikernel"),
        "{}",
        text(&out)
    );
    let _ = f.c.ctr(&["container", "rm", &id]);
    assert_eq!(f.leftover_tasks(), "");
    assert!(
        nabla_integration_tests::containerd::processes_mentioning(&id).is_empty(),
        "a process of {id} is left"
    );
    for hierarchy in ["memory", "pids", "freezer"] {
        let dir = Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join(f.c.namespace())
            .join(&id);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    // A pid namespace to join that is missing, or a file that is no namespace: clear Create
    // errors naming it, nothing left.
    let hello = f.image("hello");
    for (ns, want) in [
        ("pid:/nonexistent/ns", "namespace /nonexistent/ns"),
        ("pid:/etc/hostname", "pid namespace"),
    ] {
        let out = f.run(&["--with-ns", ns], &hello, &["/hello"]);
        assert!(
            !out.status.success() && text(&out).contains(want),
            "{ns}: {}",
            text(&out)
        );
    }
    assert_eq!(f.leftover_tasks(), "");

    // Arguments: the container id is substituted, $$( escapes.
    let out = f.run(
        &[],
        &hello,
        &["/hello", "id=$(NABLA_CONTAINER_ID)", "$$(NABLA_IP)"],
    );
    let t = text(&out);
    assert!(
        t.contains("Command line is: 'id=dev-") && t.contains(" $(NABLA_IP)'"),
        "{t}"
    );
    let long = "x".repeat(9000);
    let out = f.run(&[], &hello, &["/hello", &long]);
    assert!(
        text(&out).contains("Solo5 allows at most 8191"),
        "{}",
        text(&out)
    );
    assert_eq!(f.leftover_tasks().trim(), "");
}

#[test]
fn sixty_three_disks_all_or_a_clear_list_of_the_missing() {
    let f = Fixture::new();
    let img = f.image("manydev");
    let mounts: Vec<String> = (0..63)
        .map(|i| {
            let p = f.dir.path().join(format!("d{i}.img"));
            std::fs::File::create(&p)
                .and_then(|file| file.set_len(4096))
                .unwrap();
            format!("type=bind,src={},dst=/blk{i},options=rbind:rw", p.display())
        })
        .collect();
    let with = |bound: &[String]| {
        let mut extra = Vec::new();
        for m in bound {
            extra.push("--mount");
            extra.push(m.as_str());
        }
        f.run(&extra, &img, &["/manydev"])
    };
    let out = with(&mounts);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("manydev ok devices=63"),
        "{}",
        text(&out)
    );
    // Only the first 60 bound: Create names the other three and how to bind them.
    let out = with(&mounts[..60]);
    assert!(!out.status.success());
    let t = text(&out);
    for missing in ["'blk60'", "'blk61'", "'blk62'"] {
        assert!(t.contains(missing), "{missing}: {t}");
    }
    assert!(!t.contains("'blk59'"), "{t}");
    assert!(t.contains("dst=/NAME"), "says how to bind: {t}");
    assert_eq!(f.leftover_tasks().trim(), "");
}

#[test]
fn rootfs_as_a_block_device() {
    let f = Fixture::new();
    let img = f.image("block");
    let out = f.run(
        &["--annotation", "nabla.io/rootfs-block=storage"],
        &img,
        &["/block", "readonly"],
    );
    // The tar image of the rootfs: readable (a ustar archive from its root directory), not
    // writable.
    assert!(
        text(&out).contains("block 0 starts with \"./\", magic \"ustar")
            && text(&out).contains("write refused errno=9"),
        "{}",
        text(&out)
    );
    let out = f.run(
        &["--annotation", "nabla.io/rootfs-block=nosuch"],
        &img,
        &["/block"],
    );
    assert!(
        text(&out).contains("declares no block device of that name"),
        "{}",
        text(&out)
    );
}

/// Rewrites the spec file at `path` with `edit` applied.
fn edit_spec(path: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut spec);
    std::fs::write(path, serde_json::to_vec(&spec).unwrap()).unwrap();
}

/// A spec (from `ctr oci spec`) running `args` from a rootfs directory, with `hooks`.
fn spec_with_hooks(f: &Fixture, rootfs: &Path, args: &[&str], hooks: serde_json::Value) -> String {
    let out = f.c.ctr(&["oci", "spec"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut spec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    spec["process"]["args"] = serde_json::json!(args);
    spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    spec["hooks"] = hooks;
    let p = f.dir.path().join(format!("{}.json", unique("spec")));
    std::fs::write(&p, serde_json::to_vec(&spec).unwrap()).unwrap();
    p.display().to_string()
}

#[test]
fn oci_hooks_run_with_the_state_on_stdin() {
    let f = Fixture::new();
    let rootfs = f.rootfs_with("hello");
    let d = f.dir.path().display().to_string();
    let record = |stage: &str| serde_json::json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {d}/{stage}.json; echo {stage} >> {d}/order")]}]);
    let hooks = serde_json::json!({
        "prestart": record("prestart"),
        "createRuntime": record("createRuntime"),
        "createContainer": record("createContainer"),
        "poststart": record("poststart"),
        "poststop": record("poststop"),
    });
    let spec = spec_with_hooks(&f, &rootfs, &["/hello", "hooked"], hooks);
    let id = unique("hooks");
    let out =
        f.c.ctr(&["run", "--rm", "--runtime", NABLA, "--config", &spec, &id]);
    assert!(
        text(&out).contains("Command line is: 'hooked'"),
        "{}",
        text(&out)
    );
    // runc's order and states.
    let stages = [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ];
    let order = std::fs::read_to_string(f.dir.path().join("order")).unwrap();
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        stages.map(|(stage, _)| stage),
        "hook order"
    );
    for (stage, status) in stages {
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(f.dir.path().join(format!("{stage}.json"))).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{stage} hook got no state: {e}"));
        assert_eq!(state["id"], id.as_str(), "{stage}: {state}");
        assert_eq!(state["status"], status, "{stage}: {state}");
        assert!(state["pid"].as_u64().unwrap_or(0) > 0, "{stage}: {state}");
    }

    // A failing createRuntime hook fails Create with its message; a slow one times out.
    let failing = serde_json::json!({"createRuntime": [
        {"path": "/bin/sh", "args": ["sh", "-c", "echo no network for you >&2; exit 3"]}]});
    let spec = spec_with_hooks(&f, &rootfs, &["/hello"], failing);
    let out = f.c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        NABLA,
        "--config",
        &spec,
        &unique("hookfail"),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("createRuntime hook /bin/sh failed with status 3: no network for you"),
        "{}",
        text(&out)
    );
    let slow = serde_json::json!({"createRuntime": [
        {"path": "/bin/sh", "args": ["sh", "-c", "sleep 30"], "timeout": 1}]});
    let spec = spec_with_hooks(&f, &rootfs, &["/hello"], slow);
    let started = Instant::now();
    let out = f.c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        NABLA,
        "--config",
        &spec,
        &unique("hookslow"),
    ]);
    assert!(
        text(&out).contains("did not finish within 1 s"),
        "{}",
        text(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(f.leftover_tasks().trim(), "");
}

#[test]
fn unknown_spec_fields_are_ignored_as_oci_requires() {
    // The runtime spec: implementations MUST ignore properties they do not know.
    let f = Fixture::new();
    let rootfs = f.rootfs_with("hello");
    let path = spec_with_hooks(&f, &rootfs, &["/hello", "unknown"], serde_json::json!({}));
    edit_spec(&path, |spec| {
        spec["x-vendor.example"] = serde_json::json!({"anything": [1, 2]});
        spec["process"]["x-future"] = serde_json::json!(true);
        spec["linux"]["x-future"] = serde_json::json!("later");
    });
    let id = unique("unknown");
    let out =
        f.c.ctr(&["run", "--rm", "--runtime", NABLA, "--config", &path, &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("Command line is: 'unknown'"),
        "{}",
        text(&out)
    );
}

#[test]
fn systemd_cgroup_path_and_pids_limit() {
    if !Path::new("/sys/fs/cgroup/pids").is_dir() {
        eprintln!("skipped: no cgroup v1 pids hierarchy on this host");
        return;
    }
    let f = Fixture::new();
    let rootfs = f.rootfs_with("clock");
    let id = unique("sysd");
    let slice = format!("nablatest{}", std::process::id());
    let path = spec_with_hooks(
        &f,
        &rootfs,
        &["/clock", "tick", "50"],
        serde_json::json!({}),
    );
    edit_spec(&path, |spec| {
        spec["linux"]["cgroupsPath"] = serde_json::json!(format!("{slice}-pods.slice:nabla:{id}"));
        spec["linux"]["resources"]["pids"] = serde_json::json!({"limit": 7});
        spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": 128u64 << 20});
    });
    let out =
        f.c.ctr(&["run", "-d", "--runtime", NABLA, "--config", &path, &id]);
    assert!(out.status.success(), "{}", text(&out));
    let pid = f.c.task_pid(&id) as u32;
    let want = format!("/{slice}.slice/{slice}-pods.slice/nabla-{id}.scope");
    let placed = (
        cgroup_path(pid, "pids").unwrap_or_default(),
        cgroup_path(pid, "memory").unwrap_or_default(),
    );
    let dir = Path::new("/sys/fs/cgroup/pids").join(want.trim_start_matches('/'));
    let pids_max = std::fs::read_to_string(dir.join("pids.max")).unwrap_or_default();
    let mem_limit = std::fs::read_to_string(
        Path::new("/sys/fs/cgroup/memory")
            .join(want.trim_start_matches('/'))
            .join("memory.limit_in_bytes"),
    )
    .unwrap_or_default();
    // Stats (`ctr task metrics`) reads the same cgroup: its limits are the spec's.
    let metrics = text(&f.c.ctr(&["task", "metrics", &id]));
    let metric = |name: &str| {
        metrics
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    let reported = (metric("pids.limit"), metric("memory.limit_in_bytes"));
    let cpu_ns: u64 = metric("cpuacct.usage")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    f.remove(&id);
    let gone = !dir.exists();
    // The slices above the scope are the system's (systemd's, on a systemd host); remove the
    // test's own.
    for ctl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let top = ctl.path().join(format!("{slice}.slice"));
        let _ = std::fs::remove_dir(top.join(format!("{slice}-pods.slice")));
        let _ = std::fs::remove_dir(&top);
    }
    assert_eq!(
        placed,
        (want.clone(), want),
        "placed where systemd would put it"
    );
    assert_eq!(pids_max.trim(), "7");
    assert_eq!(mem_limit.trim(), (128u64 << 20).to_string());
    assert_eq!(
        reported,
        (Some("7".to_string()), Some((128u64 << 20).to_string())),
        "limits in ctr task metrics: {metrics}"
    );
    assert!(
        cpu_ns > 0,
        "the tender's CPU time in ctr task metrics: {metrics}"
    );
    assert!(gone, "the scope's cgroup is removed on delete");

    // A malformed systemd path is a clear Create error.
    edit_spec(&path, |spec| {
        spec["linux"]["cgroupsPath"] = serde_json::json!("not-a-slice:x");
    });
    let bad = unique("sysdbad");
    let out =
        f.c.ctr(&["run", "--rm", "--runtime", NABLA, "--config", &path, &bad]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("neither a path nor the systemd form slice:prefix:name"),
        "{}",
        text(&out)
    );
    assert_eq!(f.leftover_tasks().trim(), "");
}

#[test]
fn a_guest_over_its_memory_limit_is_oom_killed_and_reported() {
    // The annotation gives the guest more memory than the cgroup allows: touching it brings
    // the OOM killer, and containerd hears TaskOOM before the exit.
    let f = Fixture::new();
    let img = f.image("memtouch");
    let mut events =
        f.c.ctr_command()
            .arg("events")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let id = unique("oom");
    let limit = (64u64 << 20).to_string();
    let out = f.run_as(
        &id,
        &[
            "--memory-limit",
            &limit,
            "--annotation",
            "nabla.io/memory=256",
        ],
        &img,
        &["/memtouch", "200"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let _ = events.kill();
    let seen = events.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&seen.stdout).into_owned();
    assert_eq!(out.status.code(), Some(137), "{}", text(&out));
    let mine: Vec<&str> = seen.lines().filter(|l| l.contains(&id)).collect();
    let oom = mine.iter().position(|l| l.contains("/tasks/oom"));
    let exit = mine.iter().position(|l| l.contains("/tasks/exit"));
    assert!(
        matches!((oom, exit), (Some(o), Some(e)) if o < e),
        "TaskOOM, then TaskExit: {mine:#?}"
    );
    assert_eq!(f.leftover_tasks().trim(), "");
}

#[test]
fn additional_gids_and_oom_score_adj_from_the_spec() {
    let f = Fixture::new();
    let rootfs = f.rootfs_with("clock");
    let path = spec_with_hooks(
        &f,
        &rootfs,
        &["/clock", "tick", "50"],
        serde_json::json!({}),
    );
    edit_spec(&path, |spec| {
        spec["process"]["user"] =
            serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [2000, 3000]});
        spec["process"]["oomScoreAdj"] = serde_json::json!(500);
    });
    let id = unique("gids");
    let out =
        f.c.ctr(&["run", "-d", "--runtime", NABLA, "--config", &path, &id]);
    assert!(out.status.success(), "{}", text(&out));
    let pid = f.c.task_pid(&id).to_string();
    // Once the guest runs, the tender has taken on the user.
    let status = procfs::status_once_filtered(&pid, Duration::from_secs(10));
    let field = |k: &str| procfs::status_field(&status, k);
    let (uid, gid, groups) = (field("Uid:"), field("Gid:"), field("Groups:"));
    let oom = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap_or_default();
    f.remove(&id);
    assert_eq!(uid.split_whitespace().collect::<Vec<_>>(), ["1000"; 4]);
    assert_eq!(gid.split_whitespace().collect::<Vec<_>>(), ["1000"; 4]);
    assert_eq!(
        groups.split_whitespace().collect::<Vec<_>>(),
        ["2000", "3000"],
        "process.user.additionalGids"
    );
    assert_eq!(oom.trim(), "500", "process.oomScoreAdj");
}
