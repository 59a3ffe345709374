//! `nabla-image`: packages a unikernel as an OCI image tar for `ctr image import`, without a
//! registry or docker.
//!
//! ```text
//! nabla-image --ref docker.io/library/hello:latest --file target/guests/release/hello:/hello \
//!     --entrypoint /hello [--cmd ARG]... [--file SRC:DST]... [--symlink TARGET:DST]... \
//!     [--env K=V]... [--annotation K=V]... -o hello.tar
//! ```

use std::path::PathBuf;
use std::process::exit;

use nabla_integration_tests::oci_image::OciImage;

const USAGE: &str = "usage: nabla-image --ref REF --file SRC:DST [--file SRC:DST]... \
[--entrypoint PATH] [--cmd ARG]... [--symlink TARGET:DST]... [--env K=V]... \
[--annotation K=V]... -o OUT.tar";

fn fail(msg: &str) -> ! {
    eprintln!("nabla-image: {msg}\n{USAGE}");
    exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut reference = None;
    let mut out = None;
    let mut files = Vec::new();
    let mut links = Vec::new();
    let mut entrypoint = Vec::new();
    let mut cmd = Vec::new();
    let mut env = Vec::new();
    let mut annotations = Vec::new();
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| fail(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--ref" => reference = Some(val()),
            "-o" | "--output" => out = Some(PathBuf::from(val())),
            "--file" => files.push(val()),
            "--symlink" => links.push(val()),
            "--entrypoint" => entrypoint.push(val()),
            "--cmd" => cmd.push(val()),
            "--env" => env.push(val()),
            "--annotation" => annotations.push(val()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    let reference = reference.unwrap_or_else(|| fail("--ref is required"));
    let out = out.unwrap_or_else(|| fail("-o is required"));
    let mut img = OciImage::new(&reference);
    for f in &files {
        let (src, dst) = f
            .split_once(':')
            .unwrap_or_else(|| fail(&format!("--file {f}: expected SRC:DST")));
        img = img
            .file(src.as_ref(), dst)
            .unwrap_or_else(|e| fail(&e.to_string()));
    }
    for l in &links {
        let (target, dst) = l
            .split_once(':')
            .unwrap_or_else(|| fail(&format!("--symlink {l}: expected TARGET:DST")));
        img = img.symlink(target, dst);
    }
    for e in &env {
        img = img.env(e);
    }
    for kv in &annotations {
        let (k, v) = kv
            .split_once('=')
            .unwrap_or_else(|| fail(&format!("--annotation {kv}: expected K=V")));
        img = img.annotation(k, v);
    }
    let ep: Vec<&str> = entrypoint.iter().map(String::as_str).collect();
    let cm: Vec<&str> = cmd.iter().map(String::as_str).collect();
    img = img.entrypoint(&ep).cmd(&cm);
    if let Err(e) = img.write_tar(&out) {
        eprintln!("nabla-image: {e}");
        exit(1);
    }
    println!("{}", out.display());
}
