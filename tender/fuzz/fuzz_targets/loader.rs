//! Fuzzes every check the tender makes on a KERNEL file: ELF header, program headers, Solo5
//! notes, manifest and segment layout. Any input must give `Ok` or an error, never a panic.
//!
//! Run with `cargo fuzz run loader tender/fuzz/corpus/loader` from `tender/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nabla_tender::tender::inspect_bytes;

fuzz_target!(|data: &[u8]| {
    let _ = inspect_bytes(data, 512 << 20);
});
