//! One raw system call, for the seccomp census (no devices).
#![no_std]
#![no_main]

use solo5_rt::sys::syscall6;
use solo5_rt::{entry, manifest, println, Ctx};

manifest!();
entry!(main);

include!("../probe_common.rs");
