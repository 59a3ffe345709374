//! Memory: the C functions the compiler calls (there is no libc), and a bump heap between the
//! end of the image and the stack.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// `memcpy`, with `rep movsb` so that the compiler cannot turn it into a call to itself.
///
/// # Safety
/// As C's `memcpy`.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid and do not overlap.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// `memmove`: forwards with `rep movsb`, or backwards byte by byte when `dst` is above `src`.
///
/// # Safety
/// As C's `memmove`.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: a forward copy is correct when dst is below src or the ranges are disjoint.
        unsafe { memcpy(dst, src, n) };
    } else {
        let mut i = n;
        while i > 0 {
            i -= 1;
            // SAFETY: i < n, inside both ranges; volatile keeps this a plain loop.
            unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        }
    }
    dst
}

/// `memset`, with `rep stosb`.
///
/// # Safety
/// As C's `memset`.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range is valid.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dst
}

/// `memcmp`.
///
/// # Safety
/// As C's `memcmp`.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: i < n, inside both ranges; volatile keeps this a plain loop.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// `bcmp`.
///
/// # Safety
/// As C's `bcmp`.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

extern "C" {
    /// End of the image, from the linker script (page-aligned).
    static _end: u8;
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Where the heap starts: the first page after the image (upstream: `round_up(_end, 4K)`).
pub fn heap_start() -> u64 {
    (core::ptr::addr_of!(_end) as u64 + 0xfff) & !0xfff
}

/// Allocates `len` zeroed bytes aligned to 4 KiB from the heap; `None` when it would come
/// within `stack_reserve` bytes of the top of guest memory.
pub fn alloc(mem_size: u64, len: usize, stack_reserve: u64) -> Option<&'static mut [u8]> {
    let _ = NEXT.compare_exchange(0, heap_start(), Ordering::Relaxed, Ordering::Relaxed);
    let at = NEXT.load(Ordering::Relaxed);
    let end = at.checked_add(((len as u64) + 0xfff) & !0xfff)?;
    if end > mem_size.checked_sub(stack_reserve)? {
        return None;
    }
    NEXT.store(end, Ordering::Relaxed);
    // SAFETY: [at, at+len) is guest memory above the image and below the stack reserve,
    // handed out once; fresh guest memory is zero.
    Some(unsafe { core::slice::from_raw_parts_mut(at as *mut u8, len) })
}
