//! Protocol types shared by `nabla-tender` and `containerd-shim-nabla-v2`.
//!
//! [`control`] holds the messages of the shim↔tender control channel
//! (`proto/control.proto`).

/// The shim↔tender control channel (`nabla.control.v1`).
pub mod control {
    include!(concat!(env!("OUT_DIR"), "/nabla.control.v1.rs"));
}
