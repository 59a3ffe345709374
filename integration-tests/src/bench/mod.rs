//! The containerd-level benchmarks of `make bench`: nabla through its shim against runc through
//! containerd's own runc shim, on one private containerd, in the same run.

pub mod chart;
pub mod ctr;
pub mod memory;
pub mod surface;
pub mod timeline;

use std::path::{Path, PathBuf};

use crate::containerd::PrivateContainerd;
use crate::native::static_c_program;
use crate::oci_image::{guest_image, OciImage};

/// The runtime names.
pub const NABLA: &str = "io.containerd.nabla.v2";
/// containerd's runc shim.
pub const RUNC: &str = "io.containerd.runc.v2";

/// Images both runtimes run, imported into one daemon.
pub struct Images {
    /// nabla: hello, clock (long-running), flood.
    pub nabla_hello: String,
    /// nabla: a guest that sleeps (prints one line, then yields forever).
    pub nabla_sleep: String,
    /// nabla: console flood guest.
    pub nabla_flood: String,
    /// runc: static hello, sleeper, writer and the syscall sweep at /hello, /sleep, /writer,
    /// /syscount.
    pub runc: String,
}

/// Static Linux programs for the runc side.
pub fn runc_programs() -> Vec<(PathBuf, &'static str)> {
    vec![
        (
            static_c_program(
                "hello",
                "#include <unistd.h>\nint main(void) { write(1, \"Hello from runc\\n\", 16); return 0; }\n",
            ),
            "/hello",
        ),
        (
            static_c_program(
                "sleeper",
                "#include <unistd.h>\nint main(void) { write(1, \"sleeping\\n\", 9); for (;;) pause(); }\n",
            ),
            "/sleep",
        ),
        (
            static_c_program(
                "writer",
                r#"#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 1;
    static char buf[65536];
    for (int i = 0; i < (int)sizeof buf; i += 64) { memset(buf + i, 'x', 63); buf[i + 63] = '\n'; }
    for (long n = 0; n < mib * 16; n++) {
        size_t off = 0;
        while (off < sizeof buf) { ssize_t w = write(1, buf + off, sizeof buf - off); if (w <= 0) return 1; off += w; }
    }
    return 0;
}
"#,
            ),
            "/writer",
        ),
        (static_c_program("syscount", surface::SYSCOUNT), "/syscount"),
    ]
}

/// Builds and imports the benchmark images into `c`.
pub fn import_images(c: &PrivateContainerd, dir: &Path) -> Images {
    let import = |name: &str| {
        let (r, tar) = guest_image(name, dir);
        c.import(&tar);
        r
    };
    let nabla_hello = import("hello");
    let nabla_sleep = import("clock");
    let nabla_flood = import("flood");
    let runc = "nabla.test/runc-baseline:latest".to_string();
    let mut img = OciImage::new(&runc);
    for (src, dst) in runc_programs() {
        img = img.file(&src, dst).expect("read baseline program");
    }
    let tar = dir.join("runc-baseline.tar");
    img.entrypoint(&["/hello"])
        .write_tar(&tar)
        .expect("write runc image");
    c.import(&tar);
    Images {
        nabla_hello,
        nabla_sleep,
        nabla_flood,
        runc,
    }
}
