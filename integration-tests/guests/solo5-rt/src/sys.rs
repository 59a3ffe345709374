//! Raw x86_64 Linux system calls, the only way an spt guest reaches the host.

use core::arch::asm;

/// `CLOCK_REALTIME`.
pub const CLOCK_REALTIME: u64 = 0;
/// `CLOCK_MONOTONIC`.
pub const CLOCK_MONOTONIC: u64 = 1;
/// `EINTR`.
pub const EINTR: i32 = 4;
/// `EAGAIN`.
pub const EAGAIN: i32 = 11;

/// Syscall numbers the runtime uses.
pub mod nr {
    /// read
    pub const READ: u64 = 0;
    /// write
    pub const WRITE: u64 = 1;
    /// pread64
    pub const PREAD64: u64 = 17;
    /// pwrite64
    pub const PWRITE64: u64 = 18;
    /// dup
    pub const DUP: u64 = 32;
    /// arch_prctl
    pub const ARCH_PRCTL: u64 = 158;
    /// clock_gettime
    pub const CLOCK_GETTIME: u64 = 228;
    /// exit_group
    pub const EXIT_GROUP: u64 = 231;
    /// epoll_pwait
    pub const EPOLL_PWAIT: u64 = 281;
    /// timerfd_settime
    pub const TIMERFD_SETTIME: u64 = 286;
}

/// Makes system call `nr` with six arguments and returns the raw result (`-errno` on error).
#[inline(always)]
pub fn syscall6(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let ret: i64;
    // SAFETY: the syscall instruction clobbers rcx and r11 only; whether the call itself is
    // safe is the caller's business (the host kernel checks every pointer it is given).
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as i64 => ret,
            in("rdi") a0,
            in("rsi") a1,
            in("rdx") a2,
            in("r10") a3,
            in("r8") a4,
            in("r9") a5,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

/// `write(fd, buf)`.
pub fn write(fd: i32, buf: &[u8]) -> i64 {
    syscall6(
        nr::WRITE,
        fd as u64,
        buf.as_ptr() as u64,
        buf.len() as u64,
        0,
        0,
        0,
    )
}

/// `read(fd, buf)`.
pub fn read(fd: i32, buf: &mut [u8]) -> i64 {
    syscall6(
        nr::READ,
        fd as u64,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
        0,
        0,
        0,
    )
}

/// `pread64(fd, buf, off)`.
pub fn pread64(fd: i32, buf: &mut [u8], off: u64) -> i64 {
    syscall6(
        nr::PREAD64,
        fd as u64,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
        off,
        0,
        0,
    )
}

/// `pwrite64(fd, buf, off)`.
pub fn pwrite64(fd: i32, buf: &[u8], off: u64) -> i64 {
    syscall6(
        nr::PWRITE64,
        fd as u64,
        buf.as_ptr() as u64,
        buf.len() as u64,
        off,
        0,
        0,
    )
}

/// `exit_group(status)`.
pub fn exit_group(status: i32) -> ! {
    syscall6(nr::EXIT_GROUP, status as i64 as u64, 0, 0, 0, 0, 0);
    // exit_group does not return; if the filter or kernel let it, stop here for good.
    loop {
        core::hint::spin_loop();
    }
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

/// `clock_gettime(clock)` in nanoseconds; aborts on failure as the bindings assert.
pub fn clock_gettime(clock: u64) -> u64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    let rc = syscall6(
        nr::CLOCK_GETTIME,
        clock,
        &mut ts as *mut Timespec as u64,
        0,
        0,
        0,
        0,
    );
    if rc != 0 {
        exit_group(255);
    }
    ts.sec as u64 * 1_000_000_000 + ts.nsec as u64
}

/// Arms the timerfd for the absolute monotonic time `deadline` (ns), as `solo5_yield` does.
pub fn timerfd_settime_abs(tfd: i32, deadline: u64) {
    let its = [
        Timespec { sec: 0, nsec: 0 },
        Timespec {
            sec: (deadline / 1_000_000_000) as i64,
            // Never zero, which would disarm the timer.
            nsec: ((deadline % 1_000_000_000) | 1) as i64,
        },
    ];
    const TFD_TIMER_ABSTIME: u64 = 1;
    syscall6(
        nr::TIMERFD_SETTIME,
        tfd as u64,
        TFD_TIMER_ABSTIME,
        its.as_ptr() as u64,
        0,
        0,
        0,
    );
}

/// `struct epoll_event`, packed on x86_64.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct EpollEvent {
    /// Event mask.
    pub events: u32,
    /// User data: the manifest index, or 0xfffffffe for the timer.
    pub data: u64,
}

/// `epoll_pwait(epfd, events, n, -1, NULL, 0)`: blocks until something is ready.
pub fn epoll_pwait(epfd: i32, events: &mut [EpollEvent]) -> i64 {
    syscall6(
        nr::EPOLL_PWAIT,
        epfd as u64,
        events.as_mut_ptr() as u64,
        events.len() as u64,
        -1i64 as u64,
        0,
        0,
    )
}

/// `arch_prctl(ARCH_SET_FS, base)` (`solo5_set_tls_base`).
pub fn set_fs_base(base: u64) -> i64 {
    const ARCH_SET_FS: u64 = 0x1002;
    syscall6(nr::ARCH_PRCTL, ARCH_SET_FS, base, 0, 0, 0, 0)
}
