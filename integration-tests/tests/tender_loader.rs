//! Every loader rule of spec §1, each with a crafted bad executable: exit 1 and a message
//! naming the problem. The good executable they start from is the hello guest.

use std::path::Path;
use std::time::Duration;

use nabla_integration_tests::elf_edit::*;
use nabla_integration_tests::tender::{guest, run_tender, Run};

const T: Duration = Duration::from_secs(10);

fn hello() -> ElfEdit {
    ElfEdit::load(&guest("hello"))
}

fn run_file(path: &Path, mem: Option<&str>) -> Run {
    let mut args = Vec::new();
    if let Some(m) = mem {
        args.push(format!("--mem={m}"));
    }
    args.push(path.to_string_lossy().into_owned());
    run_tender(&args, T)
}

/// Runs the crafted executable and checks it is refused with `needle` in the message.
fn refused(e: &ElfEdit, name: &str, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = e.write(dir.path(), name);
    let r = run_file(&p, None);
    assert_eq!(r.status, 1, "{name}: expected exit 1, got {r:?}");
    assert!(
        r.stderr.starts_with("nabla-tender: ") && r.stderr.contains(needle),
        "{name}: expected `{needle}` in stderr, got {:?}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{name}: guest ran: {:?}", r.stdout);
}

#[test]
fn good_guest_loads() {
    let r = run_tender([guest("hello")], T);
    assert_eq!(r.status, 0, "{r:?}");
}

#[test]
fn not_elf_and_header_checks() {
    refused(
        &ElfEdit {
            bytes: b"#!/bin/sh\necho hi\n".to_vec(),
        },
        "script",
        "truncated",
    );
    refused(
        &ElfEdit {
            bytes: vec![b'x'; 200],
        },
        "junk",
        "not an ELF file",
    );
    refused(&ElfEdit { bytes: Vec::new() }, "empty", "truncated");
    refused(hello().set(4, 1, 1), "elf32", "not a 64-bit ELF file");
    refused(hello().set(5, 1, 2), "bigendian", "not a little-endian");
    refused(hello().set(6, 1, 0), "version", "unknown ELF version");
    refused(
        hello().set(16, 2, 3),
        "pie",
        "position-independent (ET_DYN)",
    );
    refused(hello().set(16, 2, 1), "relocatable", "not an executable");
    refused(hello().set(18, 2, 183), "aarch64", "another architecture");
    refused(hello().set(54, 2, 32), "phentsize", "program header size");
    refused(hello().set(56, 2, 0), "nophdrs", "no program headers");
    refused(hello().set(32, 8, 1 << 40), "phoff", "truncated");
}

#[test]
fn notes() {
    let mut e = hello();
    let abi = e.note_desc(NOTE_ABI);
    refused(
        e.clone().set(abi, 4, 1),
        "hvt",
        "not for the solo5-spt target (it is for the solo5-hvt target)",
    );
    refused(
        e.clone().set(abi + 4, 4, 1),
        "abiv1",
        "unsupported ABI version 1",
    );
    let abi_ph = e.phdr(e.note_phdr(NOTE_ABI));
    let mft_ph = e.phdr(e.note_phdr(NOTE_MFT));
    refused(
        e.clone().set(mft_ph, 4, 0),
        "nomanifest",
        "No Solo5 manifest found",
    );
    e.set(abi_ph, 4, 0);
    refused(&e, "noabi", "No Solo5 ABI information found");
    e.set(mft_ph, 4, 0);
    refused(&e, "nonotes", "No Solo5 ABI information found");

    let e = hello();
    let abi_ph = e.phdr(e.note_phdr(NOTE_ABI));
    let abi_note = e.get(abi_ph + 8, 8) as usize;
    refused(
        e.clone().set(abi_ph + 32, 8, 8),
        "notetiny",
        "malformed note",
    );
    refused(
        e.clone().set(abi_note + 4, 4, 33),
        "descbig",
        "descriptor size 33",
    );
    refused(
        e.clone().set(abi_note + 4, 4, 0),
        "desczero",
        "descriptor size 0",
    );
    refused(
        e.clone().set(abi_ph + 32, 8, 24),
        "notecut",
        "larger than its segment",
    );
    refused(
        e.clone().set(abi_ph + 8, 8, 1 << 40),
        "noteoff",
        "truncated",
    );
}

#[test]
fn manifest_validation() {
    let e = hello();
    let mft = e.note_desc(NOTE_MFT);
    refused(
        e.clone().set(mft, 4, 2),
        "mftver",
        "Solo5 manifest is invalid: version 2",
    );
    refused(
        e.clone().set(mft + 4, 4, 0),
        "mft0",
        "manifest is invalid: 0 entries",
    );
    refused(
        e.clone().set(mft + 4, 4, 65),
        "mft65",
        "manifest is invalid: 65 entries",
    );
    refused(
        e.clone().set(mft + 4, 4, 2),
        "mftsize",
        "manifest is invalid: descriptor is",
    );
    // Entry 0 must be the reserved entry, with an empty name.
    refused(
        e.clone().set(mft + 8 + 68, 4, 1),
        "mftres",
        "entry 0 is not the reserved entry",
    );
    refused(
        e.clone().set(mft + 8, 1, b'a' as u64),
        "mftname0",
        "entry 0 is not the reserved entry",
    );
    let mut unterminated = e.clone();
    unterminated.bytes[mft + 8 + 67] = b'a';
    refused(&unterminated, "mftnul", "without a terminating NUL");
    refused(
        e.clone().set(mft + 8 + 96, 1, 1),
        "mftattached",
        "marked attached",
    );
}

#[test]
fn segments() {
    let e = hello();
    let loads = e.loads();
    assert!(loads.len() >= 2, "hello has text and data segments");
    let (text, data) = (e.phdr(loads[0]), e.phdr(loads[1]));
    let flags = e.get(text + 4, 4);
    refused(
        e.clone().set(text + 4, 4, flags | u64::from(PF_W | PF_X)),
        "wx",
        "requests WRITE and EXEC permissions",
    );
    let text_vaddr = e.get(text + 16, 8);
    refused(
        e.clone().set(data + 16, 8, text_vaddr + 0x1000),
        "overlap",
        "overlaps the previous segment",
    );
    // The last segment placed just below the one before it, still above 0x100000.
    let (prev, last) = (
        e.phdr(loads[loads.len() - 2]),
        e.phdr(loads[loads.len() - 1]),
    );
    let prev_vaddr = e.get(prev + 16, 8);
    assert!(
        prev_vaddr >= 0x101000,
        "hello has at least two segments above the first page"
    );
    refused(
        e.clone().set(last + 16, 8, prev_vaddr - 0x1000),
        "unordered",
        "ascending",
    );
    refused(
        e.clone().set(text + 16, 8, 0x8000),
        "low",
        "loads below 0x100000",
    );
    refused(
        e.clone().set(text + 48, 8, 0x3000),
        "align3",
        "not a power of two",
    );
    refused(
        e.clone().set(text + 48, 8, 0),
        "align0",
        "not a power of two",
    );
    refused(
        e.clone()
            .set(text + 48, 8, 16)
            .set(text + 16, 8, text_vaddr + 16),
        "unaligned",
        "not aligned",
    );
    let memsz = e.get(text + 40, 8);
    refused(
        e.clone().set(text + 32, 8, memsz + 1),
        "filesz",
        "larger than p_memsz",
    );
    refused(
        e.clone().set(text + 40, 8, u64::MAX - 0x1000),
        "memsz",
        "beyond guest memory",
    );
    refused(
        e.clone()
            .set(text + 32, 8, u64::MAX)
            .set(text + 40, 8, u64::MAX),
        "filesz-huge",
        "beyond guest memory",
    );
    refused(
        e.clone().set(text + 16, 8, 0x7fff_ffff_f000),
        "far",
        "beyond guest memory",
    );
    refused(e.clone().set(text + 8, 8, 1 << 40), "segoff", "truncated");
    refused(
        e.clone().set(24, 8, 0x1000),
        "entrylow",
        "entry point 0x1000 is outside guest memory",
    );
    refused(
        e.clone().set(24, 8, 1 << 40),
        "entryhigh",
        "entry point 0x10000000000 is outside",
    );
    let mut cut = e.clone();
    let text_end = (e.get(text + 8, 8) + e.get(text + 32, 8)) as usize;
    cut.bytes.truncate(text_end - 1);
    refused(&cut, "cut", "truncated");
}

#[test]
fn entry_beyond_small_memory_names_mem() {
    let r = run_tender(["--mem=1".as_ref(), guest("hello").as_os_str()], T);
    assert_eq!(r.status, 1);
    assert!(
        r.stderr.contains("is outside guest memory") && r.stderr.contains("--mem"),
        "{r:?}"
    );
}

#[test]
fn missing_and_unreadable_kernel() {
    let r = run_tender(["/nonexistent/k.spt"], T);
    assert_eq!(r.status, 1);
    assert!(
        r.stderr
            .contains("/nonexistent/k.spt: Could not open: No such file or directory"),
        "{r:?}"
    );
    let r = run_tender(["/"], T);
    assert_eq!(r.status, 1);
    assert!(
        r.stderr
            .contains("/: Invalid or unsupported executable: not a regular file"),
        "{r:?}"
    );
}
