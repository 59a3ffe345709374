//! Kubernetes' way in: a CRI client drives the private containerd's CRI plugin as kubelet would
//! (RunPodSandbox with handler `nabla` on a CNI bridge network, CreateContainer,
//! StartContainer, logs, status, Stop/Remove), and the unikernel answers at the pod IP.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use nabla_integration_tests::containerd::{containerd_bin_dir, PrivateContainerd};
use nabla_integration_tests::netns::{parse_ping, udp_echo};
use nabla_integration_tests::oci_image::OciImage;
use nabla_integration_tests::procfs::cgroup_path;
use nabla_integration_tests::tender::guest;
use tonic::transport::{Channel, Endpoint, Uri};

const HANDLER: &str = "nabla";
const PAUSE: &str = "localhost/pause:nabla";

/// Removes what CNI made on the node for this test when it ends, however it ends: its bridge,
/// and pod namespaces CRI did not get to remove (only those that appeared during the test).
struct DeleteLink(String, Vec<String>);

fn cni_netns() -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("cni-"))
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for DeleteLink {
    fn drop(&mut self) {
        for ns in cni_netns().iter().filter(|n| !self.1.contains(n)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

async fn connect(socket: PathBuf) -> RuntimeServiceClient<Channel> {
    let channel = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("connect to the CRI socket");
    RuntimeServiceClient::new(channel)
}

/// Imports an image into CRI's namespace, `k8s.io`.
fn import_k8s(c: &PrivateContainerd, img: OciImage, dir: &Path, name: &str) {
    let tar = dir.join(format!("{name}.tar"));
    img.write_tar(&tar).unwrap();
    let out = Command::new(containerd_bin_dir().join("ctr"))
        .arg("--address")
        .arg(c.socket())
        .args(["-n", "k8s.io", "image", "import"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn guest_img(name: &str) -> OciImage {
    OciImage::new(&format!("nabla.test/{name}:latest"))
        .file(&guest(name), &format!("/{name}"))
        .unwrap()
        .entrypoint(&[&format!("/{name}")])
}

fn wait_for_log(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn container_config(name: &str, command: &[&str], args: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: format!("nabla.test/{name}:latest"),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        args: args.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn pod_with_unikernels_through_cri() {
    let n = std::process::id() % 200 + 20;
    let bridge = format!("nbt{}", std::process::id() % 100000);
    let subnet = format!("10.234.{n}.0/24");
    let cni = tempfile::tempdir().unwrap();
    std::fs::write(
        cni.path().join("10-nabla.conflist"),
        format!(
            r#"{{"cniVersion":"1.0.0","name":"nabla-test","plugins":[{{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","ranges":[[{{"subnet":"{subnet}"}}]]}}}}]}}"#
        ),
    )
    .unwrap();
    let extra = format!(
        r#"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{PAUSE}"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{}"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nabla]
    runtime_type = "io.containerd.nabla.v2"
    pod_annotations = ["nabla.io/*"]
    container_annotations = ["nabla.io/*"]
"#,
        cni.path().display()
    );
    let _bridge = DeleteLink(bridge.clone(), cni_netns());
    let c = PrivateContainerd::start_with(&extra);
    let images = tempfile::tempdir().unwrap();
    // The sandbox image is never run by the nabla shim (it starts its own holder).
    let pause = OciImage::new(PAUSE)
        .file(&guest("hello"), "/pause")
        .unwrap()
        .entrypoint(&["/pause"]);
    import_k8s(&c, pause, images.path(), "pause");
    for g in ["net", "hello"] {
        import_k8s(&c, guest_img(g), images.path(), g);
    }
    let linux_bin = nabla_integration_tests::native::true_binary();
    let linux = OciImage::new("nabla.test/linux:latest")
        .file(&linux_bin, "/true")
        .unwrap()
        .entrypoint(&["/true"]);
    import_k8s(&c, linux, images.path(), "linux");

    let mut cri = connect(c.socket()).await;
    let logs = tempfile::tempdir().unwrap();
    let pod_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "nabla-pod".into(),
            uid: format!("uid-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "nabla-pod".into(),
        log_directory: logs.path().display().to_string(),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    };
    let pod = cri
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: HANDLER.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.log_tail()))
        .into_inner()
        .pod_sandbox_id;
    let status = cri
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    let ip: Ipv4Addr = status
        .status
        .as_ref()
        .and_then(|s| s.network.as_ref())
        .map(|n| n.ip.parse().expect("pod IPv4"))
        .expect("pod IP");

    // A unikernel answering at the pod IP.
    let create = |name: &str, command: &[&str], args: &[&str]| CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(container_config(name, command, args)),
        sandbox_config: Some(pod_config.clone()),
    };
    let net = cri
        .create_container(create("net", &["/net"], &["$(NABLA_IPV4)"]))
        .await
        .unwrap_or_else(|e| panic!("CreateContainer net: {e}\n{}", c.log_tail()))
        .into_inner()
        .container_id;
    cri.start_container(StartContainerRequest {
        container_id: net.clone(),
    })
    .await
    .unwrap();
    let log = wait_for_log(&logs.path().join("net.log"), "net ready");
    assert!(
        log.contains(" stdout F net ready service0"),
        "CRI log: {log}"
    );
    let ping = Command::new("ping")
        .args(["-c", "3", "-W", "2", &ip.to_string()])
        .output()
        .unwrap();
    let ping = String::from_utf8_lossy(&ping.stdout).into_owned();
    assert_eq!(parse_ping(&ping), Some((3, 3)), "{ping}");
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // The first datagram may race the node's neighbour entry: a few tries.
    let echoed = (0..5)
        .any(|_| udp_echo(&sock, SocketAddr::from((ip, 7)), b"from the node").unwrap_or(false));
    assert!(echoed, "UDP echo at the pod IP {ip}");

    // In-place resize (UpdateContainerResources): memory and CPU limits change; a memory
    // limit below the guest's memory and a cpuset are refused, changing nothing.
    let info = cri
        .container_status(ContainerStatusRequest {
            container_id: net.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let pid = serde_json::from_str::<serde_json::Value>(&info["info"]).unwrap()["pid"]
        .as_u64()
        .expect("the task's pid");
    let cgroup_file = |ctl: &str, file: &str| {
        let path = cgroup_path(pid as u32, ctl).unwrap();
        std::fs::read_to_string(
            Path::new("/sys/fs/cgroup")
                .join(ctl)
                .join(path.trim_start_matches('/'))
                .join(file),
        )
        .unwrap()
        .trim()
        .to_string()
    };
    let resize = |linux: LinuxContainerResources| UpdateContainerResourcesRequest {
        container_id: net.clone(),
        linux: Some(linux),
        ..Default::default()
    };
    cri.update_container_resources(resize(LinuxContainerResources {
        memory_limit_in_bytes: 600 << 20,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        ..Default::default()
    }))
    .await
    .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}\n{}", c.log_tail()));
    assert_eq!(
        cgroup_file("memory", "memory.limit_in_bytes"),
        (600u64 << 20).to_string()
    );
    assert_eq!(cgroup_file("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup_file("cpu", "cpu.shares"), "512");
    let err = cri
        .update_container_resources(resize(LinuxContainerResources {
            memory_limit_in_bytes: 256 << 20,
            ..Default::default()
        }))
        .await
        .expect_err("a limit below the guest's memory");
    assert!(
        err.message().contains("the guest's memory is 512 MiB"),
        "{}",
        err.message()
    );
    let err = cri
        .update_container_resources(resize(LinuxContainerResources {
            cpuset_cpus: "0".into(),
            ..Default::default()
        }))
        .await
        .expect_err("a cpuset");
    assert!(err.message().contains("cpuset"), "{}", err.message());
    assert_eq!(
        cgroup_file("memory", "memory.limit_in_bytes"),
        (600u64 << 20).to_string()
    );

    // A second NIC unikernel while the pod's one interface is taken: a clear error, and the
    // first keeps answering.
    let mut second_nic = container_config("net", &["/net"], &["$(NABLA_IPV4)"]);
    second_nic.metadata.as_mut().unwrap().name = "net-b".into();
    second_nic.log_path = "net-b.log".into();
    let net_b = cri
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(second_nic),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    let err = cri
        .start_container(StartContainerRequest {
            container_id: net_b.clone(),
        })
        .await
        .expect_err("a second guest on the pod's only interface");
    assert!(
        err.message()
            .contains("is already connected to another unikernel's tap"),
        "{}",
        err.message()
    );
    cri.remove_container(RemoveContainerRequest {
        container_id: net_b.clone(),
    })
    .await
    .unwrap();
    let ping = Command::new("ping")
        .args(["-c", "1", "-W", "2", &ip.to_string()])
        .output()
        .unwrap();
    let ping = String::from_utf8_lossy(&ping.stdout).into_owned();
    assert_eq!(parse_ping(&ping), Some((1, 1)), "after the refusal: {ping}");

    // A second unikernel in the same pod, in the same shim.
    let hello = cri
        .create_container(create("hello", &["/hello"], &["from", "kubernetes"]))
        .await
        .unwrap()
        .into_inner()
        .container_id;
    cri.start_container(StartContainerRequest {
        container_id: hello.clone(),
    })
    .await
    .unwrap();
    let log = wait_for_log(&logs.path().join("hello.log"), "Command line is");
    assert!(log.contains("Command line is: 'from kubernetes'"), "{log}");
    assert_eq!(c.nabla_shim_pids().len(), 1, "one shim for the pod");

    // A Linux binary is refused clearly. CRI makes the task (where the shim looks at the
    // executable) at StartContainer, so that is the call that fails.
    let linux = cri
        .create_container(create("linux", &["/true"], &[]))
        .await
        .unwrap()
        .into_inner()
        .container_id;
    let err = cri
        .start_container(StartContainerRequest {
            container_id: linux.clone(),
        })
        .await
        .expect_err("a Linux binary in a nabla pod");
    assert!(
        err.message().contains("nabla-tender refused /true")
            && err.message().contains("No Solo5 ABI information"),
        "{}",
        err.message()
    );

    // StopContainer: SIGTERM ends the guest (143); its status says so.
    cri.stop_container(StopContainerRequest {
        container_id: net.clone(),
        timeout: 5,
    })
    .await
    .unwrap();
    for (id, want) in [(&net, 143), (&hello, 0)] {
        let st = cri
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.exit_code, want, "{st:?}");
    }

    // The kubelet restarts it: a new container (attempt 1) in the same pod, before the old one
    // is removed, takes the pod interface again and answers at the pod IP.
    let mut again = container_config("net", &["/net"], &["$(NABLA_IPV4)"]);
    again.metadata.as_mut().unwrap().attempt = 1;
    again.log_path = "net.1.log".into();
    let net1 = cri
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(again),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer net attempt 1: {e}\n{}", c.log_tail()))
        .into_inner()
        .container_id;
    cri.start_container(StartContainerRequest {
        container_id: net1.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer net attempt 1: {e}\n{}", c.log_tail()));
    let log = wait_for_log(&logs.path().join("net.1.log"), "net ready");
    assert!(log.contains("net ready service0"), "CRI log: {log}");
    let ping = Command::new("ping")
        .args(["-c", "3", "-W", "2", &ip.to_string()])
        .output()
        .unwrap();
    let ping = String::from_utf8_lossy(&ping.stdout).into_owned();
    assert_eq!(parse_ping(&ping), Some((3, 3)), "restarted: {ping}");
    cri.stop_container(StopContainerRequest {
        container_id: net1.clone(),
        timeout: 5,
    })
    .await
    .unwrap();

    for id in [&net, &net1, &hello, &linux] {
        cri.remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    }
    cri.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    cri.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();

    // Nothing left: the shim is gone; the bridge CNI made is removed here.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !c.nabla_shim_pids().is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = c.nabla_shim_pids();
    assert!(left.is_empty(), "shims left: {left:?}");

    // A pod whose shim is killed: reported not ready, and still cleaned up.
    let mut second = pod_config.clone();
    second.metadata.as_mut().unwrap().name = "nabla-pod-2".into();
    second.metadata.as_mut().unwrap().uid = format!("uid2-{}", std::process::id());
    let pod2 = cri
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(second),
            runtime_handler: HANDLER.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox 2: {e}\n{}", c.log_tail()))
        .into_inner()
        .pod_sandbox_id;
    let shim = c.nabla_shim_pids();
    assert_eq!(shim.len(), 1, "{shim:?}");
    let holders = nabla_integration_tests::containerd::children_of(shim[0]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let state = loop {
        let st = cri
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod2.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
            .state;
        if st == PodSandboxState::SandboxNotready as i32 || Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        state,
        PodSandboxState::SandboxNotready as i32,
        "a pod whose shim died is not ready"
    );
    cri.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod2.clone(),
    })
    .await
    .unwrap();
    cri.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod2.clone(),
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let alive = |pids: &[i32]| {
        pids.iter()
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .count()
    };
    while Instant::now() < deadline && (alive(&holders) > 0 || !c.nabla_shim_pids().is_empty()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(alive(&holders), 0, "the pod's holder outlived its shim");
    assert!(c.nabla_shim_pids().is_empty(), "{:?}", c.nabla_shim_pids());

    // Both pods are gone without a trace: no process of theirs, no mount under the daemon's
    // directories, no task bundle left in containerd's state.
    for id in [&pod, &pod2] {
        let left = nabla_integration_tests::containerd::processes_mentioning(id);
        assert!(left.is_empty(), "processes of pod {id} left: {left:?}");
    }
    let mounts = nabla_integration_tests::containerd::mounts_under(c.base());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let bundles = c.base().join("state/io.containerd.runtime.v2.task/k8s.io");
    let left: Vec<_> = std::fs::read_dir(&bundles)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "task bundles left in {}: {left:?}",
        bundles.display()
    );
}
