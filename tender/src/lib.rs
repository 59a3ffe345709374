//! `nabla-tender`: a Solo5 spt tender, a drop-in for upstream `solo5-spt` v0.12.1.
//!
//! It loads a Solo5 spt unikernel into its own address space, attaches the block and network
//! devices the unikernel's manifest declares, locks itself down with a seccomp filter that
//! allows only a handful of argument-pinned syscalls, and jumps into the guest. After the
//! jump the process *is* the guest: its exit status is the guest's.
//!
//! The contract is `spec/solo5-spt-abi.md`; [`tender::prepare`] follows its startup order.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod boot_info;
pub mod cli;
pub mod control;
pub mod credentials;
pub mod devices;
pub mod elf;
pub mod events;
pub mod launch;
pub mod manifest;
pub mod memory;
pub mod policy;
pub mod sandbox;
pub mod signals;
pub mod tender;

/// The upstream release whose behaviour this tender reproduces.
pub const UPSTREAM_VERSION: &str = "v0.12.1";
