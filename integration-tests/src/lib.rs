//! Helpers shared by the integration tests and benchmarks.
pub mod bench;
pub mod census;
pub mod containerd;
pub mod elf_edit;
pub mod native;
pub mod netns;
pub mod oci_image;
pub mod procfs;
pub mod stats;
pub mod tender;
