//! Attack surface: how many distinct host system calls a workload can make.

use crate::containerd::{unique, PrivateContainerd};
use crate::native::static_c_program;

/// System call numbers (0..=max) the running kernel implements: a child process per number
/// makes the call with zero arguments; anything but `ENOSYS` counts. This is what a runc
/// container without a seccomp profile can reach.
pub fn kernel_syscalls() -> usize {
    let prog = static_c_program(
        "syscount",
        r#"#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    int count = 0;
    for (long nr = 0; nr <= 520; nr++) {
        pid_t p = fork();
        if (p == 0) {
            alarm(1);
            long rc = syscall(nr, 0, 0, 0, 0, 0, 0);
            _exit(rc == -1 && errno == ENOSYS ? 1 : 0);
        }
        int st;
        waitpid(p, &st, 0);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 1)) count++;
    }
    printf("%d\n", count);
    return 0;
}
"#,
    );
    let out = std::process::Command::new(prog)
        .output()
        .expect("run syscount");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("count")
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
