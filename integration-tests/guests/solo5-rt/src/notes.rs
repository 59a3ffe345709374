//! The two Solo5 ELF notes (spec §1.3, §1.4): the ABI note, emitted once here, and the
//! manifest, which each guest declares with [`crate::manifest!`].

/// `MFT_DEV_BLOCK_BASIC`.
pub const DEV_BLOCK: u32 = 1;
/// `MFT_DEV_NET_BASIC`.
pub const DEV_NET: u32 = 2;
/// `MFT_RESERVED_FIRST`.
pub const RESERVED_FIRST: u32 = 1 << 30;

const NOTE_NAME: [u8; 8] = *b"Solo5\0\0\0";

/// The ABI note: owner "Solo5", type "ABI1", {target spt = 2, version 2, 0, 0}.
#[repr(C, align(4))]
pub struct AbiNote {
    namesz: u32,
    descsz: u32,
    n_type: u32,
    name: [u8; 8],
    desc: [u32; 4],
}

#[used]
#[link_section = ".note.solo5.abi"]
static ABI_NOTE: AbiNote = AbiNote {
    namesz: 6,
    descsz: 16,
    n_type: 0x3149_4241,
    name: NOTE_NAME,
    desc: [2, 2, 0, 0],
};

/// `struct mft_entry`: 104 bytes.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct MftEntry {
    name: [u8; 68],
    kind: u32,
    u: [u8; 16],
    b: u64,
    attached: u8,
    pad: [u8; 7],
}

impl MftEntry {
    /// Entry 0, which every manifest starts with.
    pub const RESERVED: MftEntry = MftEntry {
        name: [0; 68],
        kind: RESERVED_FIRST,
        u: [0; 16],
        b: 0,
        attached: 0,
        pad: [0; 7],
    };

    /// A device named `name` (1-67 characters of `[A-Za-z0-9]`) of `kind`.
    pub const fn new(name: &str, kind: u32) -> MftEntry {
        let mut e = MftEntry::RESERVED;
        e.kind = kind;
        let b = name.as_bytes();
        assert!(!b.is_empty() && b.len() < 68);
        let mut i = 0;
        while i < b.len() {
            e.name[i] = b[i];
            i += 1;
        }
        e
    }

    /// A device named `prefix` followed by the decimal `n` (for many-device guests).
    pub const fn numbered(prefix: &str, n: usize, kind: u32) -> MftEntry {
        let mut e = MftEntry::new(prefix, kind);
        let mut at = prefix.len();
        let mut digits = [0u8; 20];
        let mut len = 0;
        let mut v = n;
        loop {
            digits[len] = b'0' + (v % 10) as u8;
            len += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while len > 0 {
            len -= 1;
            e.name[at] = digits[len];
            at += 1;
        }
        e
    }
}

/// The manifest note with `N` entries (the reserved one included).
#[repr(C, align(8))]
pub struct MftNote<const N: usize> {
    namesz: u32,
    descsz: u32,
    n_type: u32,
    name: [u8; 8],
    pad: u32,
    version: u32,
    entries: u32,
    e: [MftEntry; N],
}

impl<const N: usize> MftNote<N> {
    /// The note for these entries; `e[0]` must be [`MftEntry::RESERVED`].
    pub const fn new(e: [MftEntry; N]) -> Self {
        assert!(N >= 1 && N <= 64);
        MftNote {
            namesz: 6,
            descsz: (12 + 104 * N) as u32,
            n_type: 0x3154_464d,
            name: NOTE_NAME,
            pad: 0,
            version: 1,
            entries: N as u32,
            e,
        }
    }
}

/// Declares the guest's manifest: `manifest!();` for none, or
/// `manifest!(("storage", DEV_BLOCK), ("service0", DEV_NET));`.
#[macro_export]
macro_rules! manifest {
    ($(($name:expr, $kind:expr)),* $(,)?) => {
        #[used]
        #[link_section = ".note.solo5.manifest"]
        static SOLO5_MANIFEST: $crate::MftNote<{ 1 $(+ { let _ = $name; 1 })* }> =
            $crate::MftNote::new([$crate::MftEntry::RESERVED $(, $crate::MftEntry::new($name, $kind))*]);
    };
}

const _: () = assert!(core::mem::size_of::<MftEntry>() == 104);
const _: () = assert!(core::mem::size_of::<MftNote<1>>() == 32 + 104);
