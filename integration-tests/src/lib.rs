//! Helpers shared by the integration tests and benchmarks.
pub mod elf_edit;
pub mod native;
pub mod netns;
pub mod stats;
pub mod tender;
