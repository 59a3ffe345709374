//! One raw system call, for the seccomp census with a block device and a NIC.
#![no_std]
#![no_main]

use solo5_rt::sys::syscall6;
use solo5_rt::{entry, manifest, println, Ctx, DEV_BLOCK, DEV_NET};

manifest!(("storage", DEV_BLOCK), ("service0", DEV_NET));
entry!(main);

include!("../probe_common.rs");
