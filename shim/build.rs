//! Relinks the shim when `layout/symbol-order`, the function order `make build` links it
//! with, changes (cargo does not otherwise see the linker's inputs).
fn main() {
    println!("cargo:rerun-if-changed=layout/symbol-order");
}
