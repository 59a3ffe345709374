//! Attack surface: how many distinct host system calls a workload can make.

use super::RUNC;
use crate::containerd::{unique, PrivateContainerd};

/// The sweep behind [`kernel_syscalls`] and [`default_profile_syscalls`]: a child process per
/// number makes the call with zero arguments and the sweep prints `NR OUTCOME` per number, the
/// outcome being the call's errno (0 when it did not fail, 1000 + signal when it killed the
/// child). Zero arguments are not harmless (`fchmod(0, 0)`, `sethostname(NULL, 0)`,
/// `msgget(IPC_PRIVATE, 0)`, ...), so each child first points fds 0-2 at a private memfd, and
/// the sweep only ever runs inside a runc container (its own UTS, IPC, mount and network
/// namespaces, runc's default capabilities), never on the host.
pub const SYSCOUNT: &str = r#"#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    for (long nr = 0; nr <= 520; nr++) {
        pid_t p = fork();
        if (p == 0) {
            int fd = memfd_create("scratch", 0);
            if (fd < 0) _exit(255);
            dup2(fd, 0); dup2(fd, 1); dup2(fd, 2);
            if (fd > 2) close(fd);
            alarm(1);
            long rc = syscall(nr, 0, 0, 0, 0, 0, 0);
            _exit(rc == -1 ? (errno < 255 ? errno : 254) : 0);
        }
        int st;
        waitpid(p, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 255) return 2;
        printf("%ld %d\n", nr, WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st));
    }
    return 0;
}
"#;

const ENOSYS: i32 = 38;
const EPERM: i32 = 1;

/// Each swept number with its outcome.
pub type Outcomes = Vec<(u32, i32)>;

/// Runs the sweep at `/syscount` of `image` in a runc container (`extra` are `ctr run` options
/// before the image, e.g. `--seccomp`): each number's outcome.
pub fn sweep(c: &PrivateContainerd, image: &str, extra: &[&str]) -> Outcomes {
    let id = unique("surface");
    let mut args = vec!["run", "--rm", "--runtime", RUNC];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[image, &id, "/syscount"]);
    let out = c.ctr(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "syscount in runc {extra:?}: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let outcomes: Vec<(u32, i32)> = text
        .lines()
        .filter_map(|l| {
            let (nr, outcome) = l.split_once(' ')?;
            Some((nr.parse().ok()?, outcome.trim().parse().ok()?))
        })
        .collect();
    assert_eq!(outcomes.len(), 521, "syscount printed {text}");
    outcomes
}

/// System call numbers (0..=520) the running kernel implements, from the [`sweep`] of a runc
/// container without a seccomp profile (`open`): what such a container can reach.
pub fn kernel_syscalls(open: &Outcomes) -> usize {
    open.iter().filter(|(_, o)| *o != ENOSYS).count()
}

/// The x86_64 system call numbers by name, from the kernel headers gcc builds the sweep with.
fn syscall_numbers() -> std::collections::HashMap<String, u32> {
    let header = std::fs::read_to_string("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
        .expect("the kernel headers (linux-libc-dev) for the syscall table");
    header
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("#define __NR_")?;
            let (name, nr) = rest.split_once(char::is_whitespace)?;
            Some((name.to_string(), nr.trim().parse().ok()?))
        })
        .collect()
}

/// The names containerd's default seccomp profile (Docker's) allows, read from the spec `ctr`
/// generates with `--seccomp`.
fn default_profile_names(c: &PrivateContainerd, image: &str) -> std::collections::BTreeSet<String> {
    let id = unique("surface");
    let out = c.ctr(&["container", "create", "--seccomp", image, &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = c.ctr(&["container", "info", &id]);
    let _ = c.ctr(&["container", "delete", &id]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("container info");
    let mut names = std::collections::BTreeSet::new();
    for rule in v["Spec"]["linux"]["seccomp"]["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if rule["action"] == "SCMP_ACT_ALLOW" {
            for n in rule["names"].as_array().into_iter().flatten() {
                if let Some(s) = n.as_str() {
                    names.insert(s.to_string());
                }
            }
        }
    }
    names
}

/// Distinct system calls a runc container under containerd's default seccomp profile
/// (Docker's, `ctr run --seccomp`) can reach, probed by the same sweep: numbers the kernel
/// implements that the profile does not answer with its `EPERM` (or `ENOSYS`). A call that
/// fails with `EPERM` with and without the profile (one that needs a capability) is told apart
/// by the profile's own list of names. `open` is the sweep without a profile.
pub fn default_profile_syscalls(c: &PrivateContainerd, image: &str, open: &Outcomes) -> usize {
    let confined = sweep(c, image, &["--seccomp"]);
    let allowed: std::collections::BTreeSet<u32> = {
        let numbers = syscall_numbers();
        default_profile_names(c, image)
            .iter()
            .filter_map(|n| numbers.get(n).copied())
            .collect()
    };
    open.iter()
        .zip(&confined)
        .filter(|((nr, without), (_, with))| {
            let filtered = *with == EPERM && (*without != EPERM || !allowed.contains(nr));
            *without != ENOSYS && *with != ENOSYS && !filtered
        })
        .count()
}
