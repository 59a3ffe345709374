//! Reading and loading a Solo5 spt executable (spec §1).
//!
//! Every field a hostile binary controls is checked before use; the file is read on demand
//! (headers, notes, then each segment straight into guest memory), never as a whole.

use std::fs::File;
use std::os::unix::fs::FileExt;

use object::elf::{FileHeader64, ProgramHeader64};
use object::read::{ReadCache, ReadRef};
use object::LittleEndian as LE;

use crate::memory::{GuestMemory, Protection};

/// The lowest address a guest may load at (`SPT_GUEST_MIN_BASE`).
pub const GUEST_MIN_BASE: u64 = 0x10_0000;
/// Segment start and end alignment on x86_64.
const PAGE_SIZE: u64 = 0x1000;

/// Everything wrong with an executable, each naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// The file could not be read at all.
    #[error("Could not read: {0}")]
    Io(#[from] std::io::Error),
    /// A directory, device or other non-regular file.
    #[error("Invalid or unsupported executable: not a regular file")]
    NotAFile,
    /// Shorter than an ELF header, or a header/note/segment lies past the end.
    #[error("Invalid or unsupported executable: file is truncated ({0})")]
    Truncated(&'static str),
    /// Not ELF, not 64-bit little-endian, or a bad header field.
    #[error("Invalid or unsupported executable: {0}")]
    BadHeader(String),
    /// A PT_NOTE segment is malformed.
    #[error("Invalid or unsupported executable: malformed note: {0}")]
    BadNote(String),
    /// A PT_LOAD segment breaks a loading rule.
    #[error("Invalid executable: segment {index} (p_vaddr {vaddr:#x}): {reason}")]
    BadSegment {
        /// Program header index.
        index: usize,
        /// The segment's p_vaddr.
        vaddr: u64,
        /// What is wrong.
        reason: String,
    },
    /// The entry point is outside the loadable range.
    #[error(
        "Invalid executable: entry point {entry:#x} is outside guest memory \
         [{GUEST_MIN_BASE:#x}, {mem_size:#x}){hint}"
    )]
    BadEntry {
        /// e_entry.
        entry: u64,
        /// Guest memory size.
        mem_size: u64,
        /// A hint when --mem is the likely culprit.
        hint: &'static str,
    },
    /// Loading a segment into guest memory failed.
    #[error("Could not load segment {index}: {source}")]
    Load {
        /// Program header index.
        index: usize,
        /// The cause.
        source: std::io::Error,
    },
    /// mprotect of a segment failed.
    #[error("Could not protect segment {index}: {source}")]
    Protect {
        /// Program header index.
        index: usize,
        /// The cause.
        source: nix::Error,
    },
}

/// A Solo5 note type, with its descriptor alignment and maximum size (spec §1.2–1.4).
#[derive(Debug, Clone, Copy)]
pub struct NoteKind {
    /// `n_type`.
    pub n_type: u32,
    /// Alignment of the descriptor.
    pub align: u64,
    /// Largest accepted `n_descsz`.
    pub max_descsz: u32,
}

/// The ABI note: `"ABI1"`, 4-byte aligned, at most 32 bytes.
pub const ABI_NOTE: NoteKind = NoteKind {
    n_type: 0x3149_4241,
    align: 4,
    max_descsz: 32,
};
/// The manifest note: `"MFT1"`, 8-byte aligned, at most `12 + 64 * 104` bytes.
pub const MANIFEST_NOTE: NoteKind = NoteKind {
    n_type: 0x3154_464d,
    align: 8,
    max_descsz: 12 + 64 * 104,
};

/// The Solo5 spt target and ABI version this tender implements.
pub const SPT_ABI_TARGET: u32 = 2;
/// `SPT_ABI_VERSION`.
pub const SPT_ABI_VERSION: u32 = 2;

/// What loading produced.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    /// e_entry.
    pub entry: u64,
    /// End of the highest loaded segment (excludes `.bss`, as upstream).
    pub kernel_end: u64,
}

/// An opened executable whose ELF header passed every check.
pub struct Executable {
    file: File,
    entry: u64,
    phdrs: Vec<ProgramHeader64<LE>>,
}

impl Executable {
    /// Reads and checks the ELF header and program headers (spec §1.1).
    pub fn open(file: File) -> Result<Self, ElfError> {
        if !file.metadata()?.is_file() {
            return Err(ElfError::NotAFile);
        }
        let (entry, phdrs) = {
            let cache = ReadCache::new(&file);
            let data = &cache;
            let hdr: &FileHeader64<LE> = data
                .read_at(0)
                .map_err(|_| ElfError::Truncated("no complete ELF header"))?;
            check_header(hdr)?;
            let phoff = hdr.e_phoff.get(LE);
            let phnum = usize::from(hdr.e_phnum.get(LE));
            let phdrs: &[ProgramHeader64<LE>] = data
                .read_slice_at(phoff, phnum)
                .map_err(|_| ElfError::Truncated("program headers lie past the end"))?;
            (hdr.e_entry.get(LE), phdrs.to_vec())
        };
        Ok(Executable { file, entry, phdrs })
    }

    /// Finds the first Solo5 note of `kind` and returns its descriptor (spec §1.2).
    /// `Ok(None)` when no PT_NOTE segment starts with such a note.
    pub fn find_note(&self, kind: NoteKind) -> Result<Option<Vec<u8>>, ElfError> {
        for ph in self
            .phdrs
            .iter()
            .filter(|ph| ph.p_type.get(LE) == object::elf::PT_NOTE)
        {
            let filesz = ph.p_filesz.get(LE);
            let offset = ph.p_offset.get(LE);
            if filesz < 12 {
                return Err(ElfError::BadNote(format!(
                    "PT_NOTE segment at offset {offset:#x} is only {filesz} bytes"
                )));
            }
            if filesz < 20 {
                continue;
            }
            let mut head = [0u8; 20];
            self.read_exact_at(&mut head, offset, "note header lies past the end")?;
            let word = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().unwrap());
            let (namesz, descsz, n_type) = (word(0), word(4), word(8));
            if namesz != 6 || &head[12..18] != b"Solo5\0" || n_type != kind.n_type {
                continue;
            }
            if descsz < 1 || descsz > kind.max_descsz {
                return Err(ElfError::BadNote(format!(
                    "Solo5 note of type {n_type:#x} has descriptor size {descsz} \
                     (expected 1..={})",
                    kind.max_descsz
                )));
            }
            if filesz < 20 + u64::from(descsz) {
                return Err(ElfError::BadNote(format!(
                    "Solo5 note of type {n_type:#x} is larger than its segment \
                     ({descsz} + 20 > {filesz} bytes)"
                )));
            }
            let desc_off = align_up(20, kind.align).expect("small constant");
            let pad = desc_off - 20;
            let Some(len) = u64::from(descsz).checked_sub(pad).filter(|l| *l > 0) else {
                return Err(ElfError::BadNote(format!(
                    "Solo5 note of type {n_type:#x} has descriptor size {descsz}, \
                     no room after its {pad} bytes of padding"
                )));
            };
            let start = offset
                .checked_add(desc_off)
                .ok_or(ElfError::Truncated("note offset overflows"))?;
            let mut desc = vec![0u8; len as usize];
            self.read_exact_at(&mut desc, start, "note descriptor lies past the end")?;
            return Ok(Some(desc));
        }
        Ok(None)
    }

    /// Checks the entry point and every PT_LOAD rule (spec §1.5) against a guest of
    /// `mem_size` bytes, and that each segment's contents lie inside the file, without
    /// loading anything. [`Executable::load`] makes the same checks.
    pub fn check_layout(&self, mem_size: u64) -> Result<Loaded, ElfError> {
        self.check_entry(mem_size)?;
        let file_len = self.file.metadata()?.len();
        let segments = plan_segments(&self.phdrs, mem_size)?;
        let mut kernel_end = 0;
        for seg in &segments {
            if seg
                .offset
                .checked_add(seg.filesz)
                .is_none_or(|end| end > file_len)
            {
                return Err(ElfError::Truncated("a segment's contents lie past the end"));
            }
            kernel_end = kernel_end.max(seg.end);
        }
        Ok(Loaded {
            entry: self.entry,
            kernel_end,
        })
    }

    fn check_entry(&self, mem_size: u64) -> Result<(), ElfError> {
        if self.entry < GUEST_MIN_BASE || self.entry >= mem_size {
            return Err(ElfError::BadEntry {
                entry: self.entry,
                mem_size,
                hint: if self.entry >= GUEST_MIN_BASE {
                    " (is --mem too small?)"
                } else {
                    ""
                },
            });
        }
        Ok(())
    }

    /// Loads every non-empty PT_LOAD segment into `mem` and protects it (spec §1.5).
    pub fn load(&self, mem: &mut GuestMemory) -> Result<Loaded, ElfError> {
        let mem_size = mem.size();
        self.check_entry(mem_size)?;
        let segments = plan_segments(&self.phdrs, mem_size)?;
        let mut kernel_end = 0;
        for seg in &segments {
            self.file
                .read_exact_at(mem.slice_mut(seg.vaddr, seg.filesz), seg.offset)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => {
                        ElfError::Truncated("a segment's contents lie past the end")
                    }
                    _ => ElfError::Load {
                        index: seg.index,
                        source: e,
                    },
                })?;
            // The rest of the segment (p_memsz - p_filesz) is already zero: guest memory is
            // fresh anonymous memory, and zeroing it here would only pre-touch it.
            mem.protect(seg.start, seg.end - seg.start, seg.prot)
                .map_err(|source| ElfError::Protect {
                    index: seg.index,
                    source,
                })?;
            kernel_end = kernel_end.max(seg.end);
        }
        Ok(Loaded {
            entry: self.entry,
            kernel_end,
        })
    }

    fn read_exact_at(
        &self,
        buf: &mut [u8],
        offset: u64,
        what: &'static str,
    ) -> Result<(), ElfError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => ElfError::Truncated(what),
                _ => ElfError::Io(e),
            })
    }
}

/// A PT_LOAD segment that passed every check.
#[derive(Debug, PartialEq, Eq)]
struct Segment {
    index: usize,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    start: u64,
    end: u64,
    prot: Protection,
}

fn check_header(hdr: &FileHeader64<LE>) -> Result<(), ElfError> {
    use object::elf::*;
    let bad = |s: &str| Err(ElfError::BadHeader(s.to_string()));
    let id = &hdr.e_ident;
    if id.magic != ELFMAG {
        return bad("not an ELF file");
    }
    if id.class != ELFCLASS64 {
        return bad("not a 64-bit ELF file");
    }
    if id.data != ELFDATA2LSB {
        return bad("not a little-endian ELF file");
    }
    if id.version != EV_CURRENT {
        return bad("unknown ELF version");
    }
    if hdr.e_ehsize.get(LE) != 64 || hdr.e_phentsize.get(LE) != 56 {
        return bad("unexpected ELF header or program header size");
    }
    if hdr.e_phnum.get(LE) == 0 {
        return bad("no program headers");
    }
    match hdr.e_type.get(LE) {
        ET_EXEC => {}
        ET_DYN => {
            return bad(
                "position-independent (ET_DYN) executables are not supported, link with -no-pie",
            )
        }
        t => {
            return Err(ElfError::BadHeader(format!(
                "not an executable (e_type {t})"
            )))
        }
    }
    let machine = hdr.e_machine.get(LE);
    if machine != EM_X86_64 {
        return Err(ElfError::BadHeader(format!(
            "built for another architecture (e_machine {machine}, this host is x86_64)"
        )));
    }
    Ok(())
}

/// Applies the loading rules of spec §1.5 to the program headers, in file order.
fn plan_segments(phdrs: &[ProgramHeader64<LE>], mem_size: u64) -> Result<Vec<Segment>, ElfError> {
    let mut out = Vec::new();
    let mut prev_vaddr = 0;
    let mut e_end = 0;
    for (index, ph) in phdrs.iter().enumerate() {
        let filesz = ph.p_filesz.get(LE);
        // Empty segments (.bss, an empty .tdata at p_vaddr 0) are skipped before any check.
        if ph.p_type.get(LE) != object::elf::PT_LOAD || filesz == 0 {
            continue;
        }
        let vaddr = ph.p_vaddr.get(LE);
        let memsz = ph.p_memsz.get(LE);
        let align = ph.p_align.get(LE);
        let flags = ph.p_flags.get(LE);
        let fail = |reason: String| ElfError::BadSegment {
            index,
            vaddr,
            reason,
        };
        if vaddr < GUEST_MIN_BASE {
            return Err(fail(format!("loads below {GUEST_MIN_BASE:#x}")));
        }
        if vaddr < prev_vaddr {
            return Err(fail("segments are not in ascending address order".into()));
        }
        if align == 0 || !align.is_power_of_two() {
            return Err(fail(format!("alignment {align:#x} is not a power of two")));
        }
        let start = vaddr & !(align - 1);
        if start < GUEST_MIN_BASE {
            return Err(fail(format!(
                "aligned start {start:#x} is below {GUEST_MIN_BASE:#x}"
            )));
        }
        if start < e_end {
            return Err(fail(format!(
                "overlaps the previous segment (which ends at {e_end:#x})"
            )));
        }
        if vaddr >= mem_size {
            return Err(fail(format!(
                "lies beyond guest memory ({mem_size:#x} bytes)"
            )));
        }
        match vaddr.checked_add(filesz) {
            Some(e) if e <= mem_size => {}
            _ => {
                return Err(fail(format!(
                    "file size {filesz:#x} reaches beyond guest memory"
                )))
            }
        }
        if memsz < filesz {
            return Err(fail(format!(
                "p_filesz {filesz:#x} is larger than p_memsz {memsz:#x}"
            )));
        }
        let end = match vaddr.checked_add(memsz).and_then(|e| align_up(e, align)) {
            Some(e) if e <= mem_size => e,
            _ => {
                return Err(fail(format!(
                    "memory size {memsz:#x} reaches beyond guest memory"
                )))
            }
        };
        if start % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 {
            return Err(fail(format!(
                "[{start:#x}, {end:#x}) is not aligned to {PAGE_SIZE:#x} bytes"
            )));
        }
        let prot = Protection {
            read: flags & object::elf::PF_R != 0,
            write: flags & object::elf::PF_W != 0,
            exec: flags & object::elf::PF_X != 0,
        };
        if prot.write && prot.exec {
            return Err(fail("requests WRITE and EXEC permissions".into()));
        }
        out.push(Segment {
            index,
            offset: ph.p_offset.get(LE),
            vaddr,
            filesz,
            start,
            end,
            prot,
        });
        prev_vaddr = vaddr;
        e_end = end;
    }
    Ok(out)
}

fn align_up(v: u64, align: u64) -> Option<u64> {
    v.checked_add(align - 1).map(|x| x & !(align - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::elf::{PF_R, PF_W, PF_X, PT_LOAD, PT_TLS};
    use object::U32;
    use object::U64;

    fn ph(
        p_type: u32,
        flags: u32,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
        align: u64,
    ) -> ProgramHeader64<LE> {
        ProgramHeader64 {
            p_type: U32::new(LE, p_type),
            p_flags: U32::new(LE, flags),
            p_offset: U64::new(LE, 0x1000),
            p_vaddr: U64::new(LE, vaddr),
            p_paddr: U64::new(LE, vaddr),
            p_filesz: U64::new(LE, filesz),
            p_memsz: U64::new(LE, memsz),
            p_align: U64::new(LE, align),
        }
    }

    const MEM: u64 = 2 << 20;

    fn reason(phdrs: &[ProgramHeader64<LE>]) -> String {
        plan_segments(phdrs, MEM).unwrap_err().to_string()
    }

    #[test]
    fn upstream_layout_loads_and_skips_empty_segments() {
        let segs = plan_segments(
            &[
                ph(PT_LOAD, PF_R | PF_X, 0x100000, 0x5000, 0x5000, 0x1000),
                ph(PT_LOAD, PF_R | PF_W, 0x105000, 0x100, 0x1000, 0x1000),
                ph(PT_LOAD, PF_R, 0, 0, 0, 0x1000), // empty tdata at 0
                ph(PT_TLS, PF_R, 0, 0, 0, 8),
                ph(PT_LOAD, PF_R | PF_W, 0x106000, 0, 0x5000, 0x1000), // bss
            ],
            MEM,
        )
        .unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[1].start, segs[1].end), (0x105000, 0x106000));
    }

    #[test]
    fn each_rule_names_its_problem() {
        let rx = PF_R | PF_X;
        assert!(reason(&[ph(PT_LOAD, rx, 0xf000, 1, 1, 0x1000)]).contains("below"));
        assert!(reason(&[
            ph(PT_LOAD, rx, 0x102000, 1, 1, 0x1000),
            ph(PT_LOAD, PF_R, 0x100000, 1, 1, 0x1000)
        ])
        .contains("ascending"));
        assert!(reason(&[ph(PT_LOAD, rx, 0x100000, 1, 1, 3)]).contains("power of two"));
        assert!(reason(&[ph(PT_LOAD, rx, 0x100000, 1, 1, 0)]).contains("power of two"));
        assert!(reason(&[
            ph(PT_LOAD, rx, 0x100000, 0x2000, 0x2000, 0x1000),
            ph(PT_LOAD, PF_R, 0x101000, 1, 1, 0x1000)
        ])
        .contains("overlaps"));
        assert!(reason(&[ph(PT_LOAD, rx, MEM, 1, 1, 0x1000)]).contains("beyond"));
        assert!(
            reason(&[ph(PT_LOAD, rx, 0x100000, u64::MAX, u64::MAX, 0x1000)]).contains("beyond")
        );
        assert!(reason(&[ph(PT_LOAD, rx, 0x100000, 2, 1, 0x1000)]).contains("larger than p_memsz"));
        assert!(
            reason(&[ph(PT_LOAD, rx, 0x100000, 1, u64::MAX - 0x100000, 0x1000)]).contains("beyond")
        );
        assert!(reason(&[ph(PT_LOAD, rx, 0x100000, 1, 1, 0x10)]).contains("not aligned"));
        assert!(
            reason(&[ph(PT_LOAD, PF_R | PF_W | PF_X, 0x100000, 1, 1, 0x1000)])
                .contains("WRITE and EXEC")
        );
    }
}
