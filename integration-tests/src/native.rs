//! Small static Linux programs used as baselines (a do-nothing process, a `pread64` loop, …),
//! compiled from C with the machine's gcc into `target/native/` on first use.

use std::path::PathBuf;
use std::process::Command;

use crate::tender::workspace_root;

/// Compiles `source` (C) into a static executable `target/native/NAME` unless it is already
/// there with the same source, and returns its path.
pub fn static_c_program(name: &str, source: &str) -> PathBuf {
    let dir = workspace_root().join("target/native");
    std::fs::create_dir_all(&dir).expect("create target/native");
    let bin = dir.join(name);
    let src = dir.join(format!("{name}.c"));
    let same = std::fs::read_to_string(&src).is_ok_and(|s| s == source);
    if same && bin.exists() {
        return bin;
    }
    std::fs::write(&src, source).expect("write C source");
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// A static process that does nothing and exits 0 (`/bin/true`, statically linked).
pub fn true_binary() -> PathBuf {
    static_c_program("true", "int main(void) { return 0; }\n")
}

/// `preadloop PATH BS [write] [seccomp]`: one pass over PATH with `pread64`/`pwrite64` of BS
/// bytes, the same I/O pattern a Solo5 guest makes; prints `bytes=N ns=T`. With `seccomp`, the
/// loop runs under a one-instruction allow-everything filter: the cost any seccomp filter adds
/// to each system call, whatever its rules.
pub fn pread_loop_binary() -> PathBuf {
    static_c_program(
        "preadloop",
        r#"#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int wr = 0, filter = 0;
    for (int i = 3; i < argc; i++) {
        wr |= strcmp(argv[i], "write") == 0;
        filter |= strcmp(argv[i], "seccomp") == 0;
    }
    int fd = open(argv[1], wr ? O_RDWR : O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    size_t bs = strtoul(argv[2], 0, 10);
    off_t cap = lseek(fd, 0, SEEK_END);
    char *buf = aligned_alloc(4096, bs);
    memset(buf, 0x5a, bs);
    if (filter) {
        struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        struct sock_fprog prog = { 1, &allow };
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) {
            perror("seccomp");
            return 1;
        }
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (off_t off = 0; off + (off_t)bs <= cap; off += bs) {
        ssize_t n = wr ? pwrite(fd, buf, bs, off) : pread(fd, buf, bs, off);
        if (n != (ssize_t)bs) { perror("io"); return 1; }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    long long ns = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
    printf("bytes=%lld ns=%lld\n", (long long)cap, ns);
    return 0;
}
"#,
    )
}

/// `udpecho PORT`: a UDP echo server on 0.0.0.0:PORT that runs until killed.
pub fn udp_echo_binary() -> PathBuf {
    static_c_program(
        "udpecho",
        r#"#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
    puts("udpecho ready"); fflush(stdout);
    char buf[65536];
    for (;;) {
        struct sockaddr_in from; socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n >= 0) sendto(s, buf, n, 0, (struct sockaddr *)&from, fl);
    }
}
"#,
    )
}

/// `denyall NR`: installs a filter that allows only `write` and `exit_group` (built here, not
/// by the tender), then makes system call NR. Exit 159 (SIGSYS) is what seccomp should do;
/// anything else means the host kernel handles NR before seccomp sees it (some sandbox
/// kernels do), which the syscall census must not blame on the tender's filter.
pub fn deny_all_binary() -> PathBuf {
    static_c_program(
        "denyall",
        r#"#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long nr = strtol(argv[1], 0, 0);
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit_group, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_THREAD),
    };
    struct sock_fprog p = { .len = sizeof f / sizeof f[0], .filter = f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p))
        return 3;
    syscall(nr, 0, 0, 0, 0, 0, 0);
    syscall(SYS_exit_group, 0);
    return 0;
}
"#,
    )
}

/// Whether the host kernel lets system call `nr` past a deny-all seccomp filter (see
/// [`deny_all_binary`]).
pub fn host_bypasses_seccomp(nr: u64) -> bool {
    let st = Command::new(deny_all_binary())
        .arg(format!("{nr:#x}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run denyall");
    crate::tender::shell_status(st) != 159
}
