//! Protocol types shared by `nabla-tender` and `containerd-shim-nabla-v2`.
//!
//! [`control`] holds the messages of the shim↔tender control channel
//! (`proto/control.proto`); [`runtimeoptions`] the runtime options containerd passes to
//! the shim (`proto/runtimeoptions.proto`).

/// The shim↔tender control channel (`nabla.control.v1`).
pub mod control {
    include!(concat!(env!("OUT_DIR"), "/nabla.control.v1.rs"));
}

/// The runtime options containerd sends to the shim (`runtimeoptions.v1`).
pub mod runtimeoptions {
    include!(concat!(env!("OUT_DIR"), "/runtimeoptions.v1.rs"));

    /// The type URL containerd gives these options in an `Any`.
    pub const TYPE_URL: &str = "runtimeoptions.v1.Options";
}
