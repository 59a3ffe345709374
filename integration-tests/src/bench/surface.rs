//! Attack surface: how many distinct host system calls a workload can make.

use super::RUNC;
use crate::containerd::{unique, PrivateContainerd};

/// The sweep behind [`kernel_syscalls`]: a child process per number makes the call with zero
/// arguments; anything but `ENOSYS` counts. Zero arguments are not harmless (`fchmod(0, 0)`,
/// `sethostname(NULL, 0)`, `msgget(IPC_PRIVATE, 0)`, ...), so each child first points fds 0-2 at
/// a private memfd, and the sweep only ever runs inside a runc container (its own UTS, IPC,
/// mount and network namespaces, runc's default capabilities), never on the host.
pub const SYSCOUNT: &str = r#"#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    int count = 0;
    for (long nr = 0; nr <= 520; nr++) {
        pid_t p = fork();
        if (p == 0) {
            int fd = memfd_create("scratch", 0);
            if (fd < 0) _exit(2);
            dup2(fd, 0); dup2(fd, 1); dup2(fd, 2);
            if (fd > 2) close(fd);
            alarm(1);
            long rc = syscall(nr, 0, 0, 0, 0, 0, 0);
            _exit(rc == -1 && errno == ENOSYS ? 1 : 0);
        }
        int st;
        waitpid(p, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 2) return 2;
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 1)) count++;
    }
    printf("%d\n", count);
    return 0;
}
"#;

/// System call numbers (0..=520) the running kernel implements, counted by [`SYSCOUNT`] at
/// `/syscount` of `image` in a runc container without a seccomp profile: what such a container
/// can reach.
pub fn kernel_syscalls(c: &PrivateContainerd, image: &str) -> usize {
    let id = unique("surface");
    let out = c.ctr(&["run", "--rm", "--runtime", RUNC, image, &id, "/syscount"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "syscount in runc: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim().parse().expect("syscount prints a count")
}

/// Distinct system calls containerd's default seccomp profile (Docker's) allows, read from the
/// spec `ctr` generates with `--seccomp`.
pub fn default_profile_syscalls(c: &PrivateContainerd, image: &str) -> usize {
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
    names.len()
}
