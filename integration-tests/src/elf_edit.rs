//! Crafting bad executables for loader tests: a copy of a good guest with one field changed.
//! Offsets are those of the ELF64 file and program headers.

use std::path::{Path, PathBuf};

/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
/// `PT_NOTE`.
pub const PT_NOTE: u32 = 4;
/// `PF_X`, `PF_W`, `PF_R`.
pub const PF_X: u32 = 1;
/// Write permission flag.
pub const PF_W: u32 = 2;
/// Solo5 ABI note type ("ABI1").
pub const NOTE_ABI: u32 = 0x3149_4241;
/// Solo5 manifest note type ("MFT1").
pub const NOTE_MFT: u32 = 0x3154_464d;

/// An executable's bytes, to be edited and written out.
#[derive(Clone)]
pub struct ElfEdit {
    /// The file contents.
    pub bytes: Vec<u8>,
}

impl ElfEdit {
    /// Reads `path`.
    pub fn load(path: &Path) -> Self {
        ElfEdit {
            bytes: std::fs::read(path).expect("read guest"),
        }
    }

    /// Reads a little-endian integer of `N` bytes at `off`.
    pub fn get(&self, off: usize, n: usize) -> u64 {
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(&self.bytes[off..off + n]);
        u64::from_le_bytes(v)
    }

    /// Writes the low `n` bytes of `v` at `off`.
    pub fn set(&mut self, off: usize, n: usize, v: u64) -> &mut Self {
        self.bytes[off..off + n].copy_from_slice(&v.to_le_bytes()[..n]);
        self
    }

    /// Offset of program header `i`.
    pub fn phdr(&self, i: usize) -> usize {
        self.get(32, 8) as usize + i * 56
    }

    /// Number of program headers.
    pub fn phnum(&self) -> usize {
        self.get(56, 2) as usize
    }

    /// Indices of program headers of type `t`, in file order.
    pub fn phdrs_of(&self, t: u32) -> Vec<usize> {
        (0..self.phnum())
            .filter(|&i| self.get(self.phdr(i), 4) == u64::from(t))
            .collect()
    }

    /// Indices of non-empty PT_LOAD headers.
    pub fn loads(&self) -> Vec<usize> {
        self.phdrs_of(PT_LOAD)
            .into_iter()
            .filter(|&i| self.get(self.phdr(i) + 32, 8) != 0)
            .collect()
    }

    /// The PT_NOTE header whose first note is the Solo5 note of type `n_type`.
    pub fn note_phdr(&self, n_type: u32) -> usize {
        self.phdrs_of(PT_NOTE)
            .into_iter()
            .find(|&i| {
                let off = self.get(self.phdr(i) + 8, 8) as usize;
                self.get(off + 8, 4) == u64::from(n_type)
                    && &self.bytes[off + 12..off + 18] == b"Solo5\0"
            })
            .expect("guest has the Solo5 note")
    }

    /// File offset of the descriptor of the Solo5 note `n_type` (after its padding).
    pub fn note_desc(&self, n_type: u32) -> usize {
        let off = self.get(self.phdr(self.note_phdr(n_type)) + 8, 8) as usize;
        off + if n_type == NOTE_MFT { 24 } else { 20 }
    }

    /// Writes the edited executable to `dir/name` and returns its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, &self.bytes).expect("write crafted ELF");
        p
    }
}
