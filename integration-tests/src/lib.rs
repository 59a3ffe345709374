//! Helpers shared by the integration tests and benchmarks.
pub mod tender;
pub mod elf_edit;
