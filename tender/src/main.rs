//! `nabla-tender` command-line entry point: turns errors into upstream-style messages
//! (`nabla-tender: …` on stderr, exit 1) and, with `--x-control-fd`, reports them to the shim.

#![no_main]

use std::process::exit;

use nabla_proto::control::Manifest;
use nabla_tender::cli::{self, Action, USAGE};
use nabla_tender::control::Control;
use nabla_tender::{elf, tender, UPSTREAM_VERSION};

fn fail(message: &str, usage: bool, control: Option<&Control>) -> ! {
    if let Some(c) = control {
        c.report_error(message);
    }
    eprintln!("nabla-tender: {message}");
    if usage {
        eprintln!("{USAGE}");
    }
    exit(1)
}

/// The C entry point, called by the C runtime. Going around Rust's own `main` skips the
/// standard library's start-up work (stack-guard discovery through `/proc/self/maps`, an
/// alternate signal stack and SIGSEGV handlers, SIGPIPE changes), none of which the tender
/// wants: it resets every signal disposition before the jump anyway, and the guest owns the
/// stack from then on. `std::env::args_os` still works (glibc hands argv to the runtime).
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    run();
    0
}

fn run() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.len() == 1 && args[0] == "--x-pause" {
        match nabla_tender::sandbox::hold() {
            Ok(never) => match never {},
            Err(e) => fail(&e.to_string(), false, None),
        }
    }
    let inv = match cli::parse(&args) {
        Ok(Action::Help) => {
            eprintln!("{USAGE}");
            exit(1)
        }
        Ok(Action::Version) => {
            eprintln!(
                "nabla-tender, version {} (solo5-spt {UPSTREAM_VERSION} compatible)\nABI version {}",
                env!("CARGO_PKG_VERSION"),
                elf::SPT_ABI_VERSION
            );
            exit(0)
        }
        Ok(Action::Run(inv)) => inv,
        Err(e) => fail(&e.to_string(), e.wants_usage(), None),
    };
    let control = match inv.control_fd.map(Control::from_fd).transpose() {
        Ok(c) => c,
        Err(e) => fail(&e.to_string(), false, None),
    };
    if inv.describe {
        match tender::describe(&inv) {
            Ok(devices) => {
                if let Some(c) = &control {
                    let m = Manifest {
                        devices: tender::declared_devices(&devices),
                    };
                    if let Err(e) = c.report_manifest(m) {
                        fail(&e.to_string(), false, None);
                    }
                } else {
                    for (name, kind) in &devices {
                        println!("{name} {}", kind.type_name());
                    }
                }
                exit(0)
            }
            Err(e) => fail(&e.to_string(), e.wants_usage(), control.as_ref()),
        }
    }
    let keep: Vec<_> = control.iter().map(Control::raw_fd).collect();
    let prepared = match tender::prepare(&inv, &keep) {
        Ok(p) => p,
        Err(e) => fail(&e.to_string(), e.wants_usage(), control.as_ref()),
    };
    // Every device is open: become the container's user, with no capabilities left.
    if let Some(user) = &prepared.user {
        if let Err(e) = user.assume() {
            fail(&e.to_string(), false, control.as_ref());
        }
    }
    if let Some(c) = &control {
        if let Err(e) = c.ready_then_wait(prepared.ready_report()) {
            fail(&e.to_string(), false, None);
        }
    }
    // EOF on the control socket now tells the shim the guest is running or gone.
    drop(control);
    match prepared.launch() {
        Ok(never) => match never {},
        Err(e) => fail(&e.to_string(), false, None),
    }
}
