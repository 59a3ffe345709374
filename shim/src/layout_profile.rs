//! Which functions a shim runs, for laying out its code (`make layout`).
//!
//! Only in builds with `--cfg nabla_layout_profile` and SanitizerCoverage's function-entry
//! guards with a PC table (`scripts/layout.sh` sets both). Every instrumented function marks
//! its guard on entry; at exit the process writes the entry addresses of the functions whose
//! guard is marked, relative to its load address, one per line, to
//! `$NABLA_LAYOUT_DIR/shim.<pid>` (`/tmp` by default). The script maps them to symbols.

use std::io::Write;
use std::sync::atomic::{AtomicPtr, Ordering};

static GUARDS: (AtomicPtr<u32>, AtomicPtr<u32>) = (
    AtomicPtr::new(std::ptr::null_mut()),
    AtomicPtr::new(std::ptr::null_mut()),
);
static PCS: AtomicPtr<usize> = AtomicPtr::new(std::ptr::null_mut());

// The callback every instrumented function makes on entry is assembly: the coverage pass
// would instrument a Rust one, which would then call itself.
std::arch::global_asm!(
    ".globl __sanitizer_cov_trace_pc_guard",
    ".type __sanitizer_cov_trace_pc_guard,@function",
    "__sanitizer_cov_trace_pc_guard:",
    "mov dword ptr [rdi], 1",
    "ret",
);

extern "C" {
    /// The ELF header, where the binary is loaded (defined by the linker).
    static __ehdr_start: u8;
}

/// Called by each module's constructor with the whole guard section.
#[no_mangle]
extern "C" fn __sanitizer_cov_trace_pc_guard_init(start: *mut u32, stop: *mut u32) {
    if GUARDS.0.swap(start, Ordering::SeqCst).is_null() {
        GUARDS.1.store(stop, Ordering::SeqCst);
        // SAFETY: registers a plain extern "C" function with no arguments.
        unsafe { libc::atexit(dump) };
    }
}

/// Called by each module's constructor with the PC table: (entry address, flags) per guard.
#[no_mangle]
extern "C" fn __sanitizer_cov_pcs_init(start: *const usize, _stop: *const usize) {
    PCS.store(start.cast_mut(), Ordering::SeqCst);
}

extern "C" fn dump() {
    let (start, stop, pcs) = (
        GUARDS.0.load(Ordering::SeqCst),
        GUARDS.1.load(Ordering::SeqCst),
        PCS.load(Ordering::SeqCst),
    );
    if start.is_null() || pcs.is_null() {
        return;
    }
    // Only the address of the linker-defined header is taken.
    let base = std::ptr::addr_of!(__ehdr_start) as usize;
    // SAFETY: the guard section runs from start to stop, and the PC table holds two words
    // for each guard, in the same order (both follow their functions' section order).
    let (guards, table) = unsafe {
        let n = stop.offset_from(start) as usize;
        (
            std::slice::from_raw_parts(start, n),
            std::slice::from_raw_parts(pcs, 2 * n),
        )
    };
    let mut out = String::new();
    for (i, _) in guards.iter().enumerate().filter(|(_, g)| **g != 0) {
        out.push_str(&format!("{:016x}\n", table[2 * i].wrapping_sub(base)));
    }
    let dir = std::env::var_os("NABLA_LAYOUT_DIR").unwrap_or_else(|| "/tmp".into());
    let path = std::path::Path::new(&dir).join(format!("shim.{}", std::process::id()));
    if let Ok(mut f) = std::fs::File::create(path) {
        let _ = f.write_all(out.as_bytes());
    }
}
