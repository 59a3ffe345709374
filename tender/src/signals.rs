//! Signal state before the guest runs (spec §7): every disposition back to its default and an
//! empty mask, so that a signal does to the guest what it does to any process.
//!
//! One exception: when the tender is its pid namespace's init (pid 1, as the shim starts it
//! for a container that asks for a new pid namespace), the kernel discards every signal that
//! init has no handler for, SIGKILL and SIGSTOP aside: SIGTERM would do nothing. There the
//! asynchronous terminating signals get a handler that ends the process at once with status
//! 128 + signal, the number a shell or containerd reports for death by that signal. Faults
//! (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS) keep their defaults: the kernel forces
//! those on init too, so a faulting guest still dies by its signal.

/// The kernel's `struct sigaction` for `rt_sigaction`: glibc's wrapper refuses its own
/// internal signals (32, 33), which may arrive ignored all the same.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Signals whose default action ends a process and that only arrive from outside (kill,
/// timers, the terminal), without SIGPIPE: the shim always reads the console.
const TERMINATING: [u64; 15] = [1, 2, 3, 6, 10, 12, 14, 15, 16, 24, 25, 26, 27, 29, 30];

/// Size of the alternate stack the exit handler runs on: the guest's stack pointer may point
/// anywhere when a signal arrives, and the kernel writes the signal frame (with the CPU's
/// extended state) before the handler runs.
const ALT_STACK_SIZE: usize = 64 * 1024;

/// `SA_RESTORER` (the kernel's flag; libc does not export it).
const SA_RESTORER: u64 = 0x0400_0000;

/// Sets `sig`'s action; errors are ignored (SIGKILL and SIGSTOP are never passed).
fn set_action(sig: u64, action: &KernelSigaction) {
    // SAFETY: rt_sigaction with a valid, fully initialised struct of the kernel's layout and
    // the kernel's sigset size; no old action is read back.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            action as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        );
    }
}

/// Every disposition to its default (ignored ones included: SIG_IGN survives exec), an empty
/// mask and no alternate stack.
pub fn reset() {
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in (1..=64u64).filter(|s| *s != 9 && *s != 19) {
        set_action(sig, &dfl);
    }
    // SAFETY: sigprocmask and sigaltstack with valid, fully initialised arguments; the
    // single-threaded tender runs no more Rust code that relies on a handler or a mask.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let ss = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        libc::sigaltstack(&ss, std::ptr::null_mut());
    }
}

/// The handler: `exit_group(128 + signal)`. It touches no memory and makes one system call,
/// which every filter of the tender allows, so it works whatever state the guest is in.
#[unsafe(naked)]
extern "C" fn exit_on_signal() {
    core::arch::naked_asm!("add edi, 128", "mov eax, 231", "syscall", "ud2");
}

/// If this process is a pid namespace's init, gives the terminating signals the exit handler
/// (see the module documentation). Call after [`reset`].
pub fn exit_on_signals_if_init() {
    if std::process::id() != 1 {
        return;
    }
    let stack: &'static mut [u8] = Box::leak(vec![0u8; ALT_STACK_SIZE].into_boxed_slice());
    let ss = libc::stack_t {
        ss_sp: stack.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: stack.len(),
    };
    // SAFETY: the alternate stack is leaked, so it stays valid for the life of the process.
    unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
    let exit = KernelSigaction {
        handler: exit_on_signal as *const () as usize,
        // The handler never returns, but x86-64 signal delivery requires a restorer.
        flags: libc::SA_ONSTACK as u64 | SA_RESTORER,
        restorer: exit_on_signal as *const () as usize,
        // Nothing interrupts the handler.
        mask: u64::MAX,
    };
    for sig in TERMINATING.into_iter().chain(32..=64) {
        set_action(sig, &exit);
    }
}
