//! `containerd-shim-nabla-v2`: the containerd shim (task API v3, containerd 2.x) that runs
//! Solo5 spt unikernels from OCI images through `nabla-tender`.

mod cgroup;
mod child;
mod config;
mod container;
mod devices;
mod error;
mod events;
mod hooks;
mod io;
mod late_network;
#[cfg(nabla_layout_profile)]
mod layout_profile;
mod logging;
mod namespaces;
mod rootfs;
mod shim;
mod spawn;
mod spec_map;
mod tap_redirect;
mod task;
mod tender;
mod unikernel;

/// The runtime name containerd knows this shim by.
const RUNTIME_ID: &str = "io.containerd.nabla.v2";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| a == "-v" || a == "--version" || a == "-version")
    {
        println!("containerd-shim-nabla-v2:");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!("  Runtime:  {RUNTIME_ID}");
        println!("  Task API: v{}", containerd_shim_protos::TASK_API_VERSION);
        return;
    }
    // One malloc arena for the whole shim instead of one per thread: each of the runtime's
    // threads would otherwise touch an arena of its own (about 100 KiB each) for the few
    // allocations the shim makes, in every shim on the node.
    // SAFETY: mallopt with a valid parameter, before any thread is started.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("containerd-shim-nabla-v2: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let config = containerd_shim::Config {
        no_setup_logger: true,
        ..Default::default()
    };
    runtime.block_on(containerd_shim::asynchronous::run::<shim::NablaShim>(
        RUNTIME_ID,
        Some(config),
    ));
}
