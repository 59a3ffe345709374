//! Networks configured between Create and Start, in a namespace the runtime made: `ctr run
//! --cni` (CNI ADD into `/proc/<task pid>/ns/net` after Create) and nerdctl's way (a
//! `createRuntime` hook running CNI for the state's pid). The guest must answer ping and UDP
//! at the address CNI gave it, and nothing may be left behind.
//!
//! CNI's bridge lives in a private "node" namespace, never the host's: `ctr` runs there, and
//! sees this test's CNI configuration at the fixed paths it reads (`/etc/cni/net.d`,
//! `/opt/cni/bin`) through a private mount namespace.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nabla_integration_tests::containerd::{processes_mentioning, unique, PrivateContainerd};
use nabla_integration_tests::netns::{udp_echo, NetNs};
use nabla_integration_tests::oci_image::guest_image;
use nabla_integration_tests::tender::LiveTender;

const NABLA: &str = "io.containerd.nabla.v2";
const CNI_PLUGINS: &str = "/usr/lib/cni";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A bridge network for one test: its configuration, plugin directory and IPAM state in a
/// temporary directory.
struct Cni {
    dir: tempfile::TempDir,
    node: NetNs,
}

impl Cni {
    /// The network `10.91.0.0/24` on bridge `nblbr0` of a new node namespace; the first
    /// container gets `10.91.0.2`.
    fn new(tag: &str) -> Cni {
        let dir = tempfile::tempdir().unwrap();
        let net_d = dir.path().join("net.d");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&net_d).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        for p in ["bridge", "host-local", "loopback"] {
            std::os::unix::fs::symlink(Path::new(CNI_PLUGINS).join(p), bin.join(p)).unwrap();
        }
        let cni = Cni {
            dir,
            node: NetNs::new(tag),
        };
        std::fs::write(
            net_d.join("10-nabla-test.conflist"),
            format!(
                r#"{{"cniVersion":"1.0.0","name":"nabla-test","plugins":[{}]}}"#,
                cni.plugin_conf()
            ),
        )
        .unwrap();
        cni
    }

    /// The bridge plugin's configuration (without `name` and `cniVersion`).
    fn plugin_conf(&self) -> String {
        format!(
            r#"{{"type":"bridge","bridge":"nblbr0","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.91.0.0/24"}}]]}}}}"#,
            self.ipam_dir().display()
        )
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// Addresses host-local has handed out and not taken back.
    fn leases(&self) -> Vec<String> {
        std::fs::read_dir(self.ipam_dir().join("nabla-test"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<Ipv4Addr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `ctr ARGS` as `ctr run --cni` needs it: in the node namespace, with this network at
    /// CNI's default paths (bound over them in a mount namespace of its own).
    fn ctr(&self, c: &PrivateContainerd, args: &[&str]) -> Command {
        let base = c.ctr_command();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.node.name()])
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                "mount --bind \"$1\" /etc/cni/net.d && mount -t tmpfs tmpfs /opt && \
                 mkdir /opt/cni && ln -s \"$2\" /opt/cni/bin && shift 2 && exec \"$@\"",
            )
            .arg("sh")
            .arg(self.dir.path().join("net.d"))
            .arg(self.dir.path().join("bin"))
            .arg(base.get_program())
            .args(base.get_args())
            .args(args);
        cmd
    }
}

/// Waits until no process mentions `id` (the shim and tender of a deleted container).
fn gone(id: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if processes_mentioning(id).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Pings and UDP-echoes the guest at 10.91.0.2 from the node; returns (pings answered of 3,
/// UDP echoed, ping output).
fn reach(node: &NetNs) -> (u64, bool, String) {
    let (_, rx, t) = node.ping(Ipv4Addr::new(10, 91, 0, 2), &["-c", "3", "-W", "2"]);
    let sock = node.udp_socket();
    let udp = udp_echo(
        &sock,
        SocketAddr::from(([10, 91, 0, 2], 7)),
        b"configured after create",
    );
    (rx, udp.unwrap_or(false), t)
}

#[test]
fn ctr_run_cni_reaches_the_guest_at_its_cni_address() {
    let c = PrivateContainerd::start();
    let dir = tempfile::tempdir().unwrap();
    let (img, tar) = guest_image("net", dir.path());
    c.import(&tar);
    let cni = Cni::new("cni");
    let id = unique("cni");
    let cmd = cni.ctr(
        &c,
        &[
            "run",
            "--rm",
            "--cni",
            "--runtime",
            NABLA,
            &img,
            &id,
            "/net",
            "$(NABLA_IPV4)",
        ],
    );
    let mut guest = LiveTender::spawn(cmd);
    let ready = guest.wait_for("net ready service0", Duration::from_secs(30));
    let (pings, udp, t) = reach(&cni.node);
    let leases = cni.leases();
    let task = text(&c.ctr(&["task", "ls"]));
    // `ctr task kill` of a `--cni` container reads the CNI configuration too.
    let kill = cni
        .ctr(&c, &["task", "kill", "-s", "SIGKILL", &id])
        .output()
        .unwrap();
    assert!(kill.status.success(), "{}", text(&kill));
    let status = guest.wait(Duration::from_secs(20));

    assert_eq!(pings, 3, "the guest answers at its CNI address: {t}");
    assert!(udp, "UDP echo at the CNI address");
    assert_eq!(leases, vec!["10.91.0.2".to_string()], "{ready}");
    assert!(task.contains("RUNNING"), "{task}");
    assert_eq!(status, 137, "ctr reports the SIGKILL");
    // ctr ran CNI DEL; the namespace went with the tender, its tap and veth with it.
    assert!(gone(&id), "{:?}", processes_mentioning(&id));
    assert!(cni.leases().is_empty(), "{:?}", cni.leases());
    // The kernel tears a dead namespace down asynchronously.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut links = cni.node.links();
    while Instant::now() < deadline && links.iter().any(|l| l.starts_with("veth")) {
        std::thread::sleep(Duration::from_millis(100));
        links = cni.node.links();
    }
    assert!(
        !links.iter().any(|l| l.starts_with("veth")),
        "the container's veth went with its namespace: {links:?}"
    );
    assert_eq!(text(&c.ctr(&["task", "ls", "-q"])).trim(), "");
}

#[test]
fn ctr_run_cni_without_network_config_fails_at_start_cleanly() {
    // A NIC guest in a namespace nobody configures: Start fails saying what is missing; no
    // task, process or tap remains.
    let c = PrivateContainerd::start();
    let dir = tempfile::tempdir().unwrap();
    let (img, tar) = guest_image("net", dir.path());
    c.import(&tar);
    let id = unique("nocni");
    let out = c.ctr(&["run", "--rm", "--runtime", NABLA, &img, &id, "/net"]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("declares 1 network device(s)") && msg.contains("0 usable interface(s)"),
        "{msg}"
    );
    assert!(gone(&id), "{:?}", processes_mentioning(&id));
    assert_eq!(text(&c.ctr(&["task", "ls", "-q"])).trim(), "");
}

#[test]
fn a_create_runtime_hook_configures_the_network_as_nerdctl_does() {
    let c = PrivateContainerd::start();
    let dir = tempfile::tempdir().unwrap();
    let cni = Cni::new("hook");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::copy(
        nabla_integration_tests::tender::guest("net"),
        rootfs.join("net"),
    )
    .unwrap();
    let conf = dir.path().join("bridge.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{"cniVersion":"1.0.0","name":"nabla-test",{}"#,
            &cni.plugin_conf()[1..]
        ),
    )
    .unwrap();
    let id = unique("hooknet");
    // nerdctl's hook: CNI for the network namespace of the state's pid, from the node.
    let cni_call = |command: &str| {
        serde_json::json!([{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!(
                "pid=$(sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p') && \
                 ip netns exec {node} env CNI_COMMAND={command} CNI_CONTAINERID={id} \
                 CNI_NETNS=/proc/$pid/ns/net CNI_IFNAME=eth0 CNI_PATH={plugins} \
                 {plugins}/bridge < {conf} > /dev/null",
                node = cni.node.name(),
                plugins = CNI_PLUGINS,
                conf = conf.display(),
            )],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "timeout": 20
        }])
    };
    let out = c.ctr(&["oci", "spec"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut spec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    spec["process"]["args"] = serde_json::json!(["/net", "$(NABLA_IPV4)"]);
    spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    spec["hooks"] = serde_json::json!({
        "createRuntime": cni_call("ADD"),
        "poststop": cni_call("DEL"),
    });
    let spec_path = dir.path().join("config.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();

    let mut cmd = c.ctr_command();
    cmd.args(["run", "--rm", "--runtime", NABLA, "--config"])
        .arg(&spec_path)
        .arg(&id);
    let mut guest = LiveTender::spawn(cmd);
    guest.wait_for("net ready service0", Duration::from_secs(30));
    let (pings, udp, t) = reach(&cni.node);
    let leases = cni.leases();
    let _ = c.ctr(&["task", "kill", "-s", "SIGTERM", &id]);
    let status = guest.wait(Duration::from_secs(20));

    assert_eq!(pings, 3, "the guest answers at the hook's address: {t}");
    assert!(udp, "UDP echo at the hook's address");
    assert_eq!(leases, vec!["10.91.0.2".to_string()]);
    assert_eq!(status, 143, "SIGTERM ends the tender");
    // The poststop hook gave the address back; nothing else remains.
    assert!(gone(&id), "{:?}", processes_mentioning(&id));
    assert!(cni.leases().is_empty(), "{:?}", cni.leases());
    assert_eq!(text(&c.ctr(&["task", "ls", "-q"])).trim(), "");
}
