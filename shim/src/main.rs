//! containerd-shim-nabla-v2: not implemented yet (see the shim issue).

fn main() {
    eprintln!("containerd-shim-nabla-v2: not implemented yet");
    std::process::exit(1);
}
