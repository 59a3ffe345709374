//! The Solo5 application manifest (`struct mft`, spec §1.4): parsed from the MFT1 note,
//! validated as upstream does, filled in by the device modules and copied into guest memory.

/// Bytes in one `struct mft_entry`.
pub const ENTRY_SIZE: usize = 104;
/// Bytes of `struct mft` before the entries (version, entries).
pub const HEADER_SIZE: usize = 8;
/// Most entries a manifest may hold, the reserved entry 0 included.
pub const MAX_ENTRIES: u32 = 64;
/// `MFT_NAME_SIZE`: a name is at most 67 characters plus NUL.
pub const NAME_SIZE: usize = 68;
const MFT_VERSION: u32 = 1;

const OFF_TYPE: usize = 68;
const OFF_U: usize = 72;
const OFF_HOSTFD: usize = 88;
const OFF_ATTACHED: usize = 96;

/// `MFT_DEV_BLOCK_BASIC`.
pub const TYPE_BLOCK_BASIC: u32 = 1;
/// `MFT_DEV_NET_BASIC`.
pub const TYPE_NET_BASIC: u32 = 2;
/// `MFT_RESERVED_FIRST`: entry 0's type, and the first type that is not a device.
pub const TYPE_RESERVED_FIRST: u32 = 1 << 30;

/// Why a manifest is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// The descriptor is too short to hold the header.
    #[error("descriptor of {0} bytes is too short")]
    TooShort(usize),
    /// Unknown manifest version.
    #[error("version {0} is not supported (expected 1)")]
    Version(u32),
    /// Entry count out of 1..=64.
    #[error("{0} entries (expected 1 to 64)")]
    EntryCount(u32),
    /// The descriptor size does not match the entry count.
    #[error("descriptor is {actual} bytes, {entries} entries need {expected}")]
    Size {
        /// Bytes present.
        actual: usize,
        /// Entry count.
        entries: u32,
        /// Bytes required.
        expected: usize,
    },
    /// Entry 0 is not the reserved entry.
    #[error("entry 0 is not the reserved entry")]
    NoReservedEntry,
    /// A name is not NUL-terminated within 68 bytes.
    #[error("entry {0} has a name without a terminating NUL")]
    NameNotTerminated(usize),
    /// An entry claims to be attached already.
    #[error("entry {0} is marked attached")]
    PreAttached(usize),
}

/// A device kind the tender can attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// `MFT_DEV_BLOCK_BASIC`.
    Block,
    /// `MFT_DEV_NET_BASIC`.
    Net,
}

impl DeviceKind {
    /// The upstream name of the type, as in messages.
    pub fn type_name(self) -> &'static str {
        match self {
            DeviceKind::Block => "BLOCK_BASIC",
            DeviceKind::Net => "NET_BASIC",
        }
    }
}

/// A validated manifest; entries are kept as raw bytes so unknown fields survive untouched.
#[derive(Debug, Clone)]
pub struct Manifest {
    entries: Vec<[u8; ENTRY_SIZE]>,
}

impl Manifest {
    /// Parses and validates the MFT1 descriptor (after its padding), as `mft_validate` does.
    pub fn parse(desc: &[u8]) -> Result<Self, ManifestError> {
        if desc.len() < HEADER_SIZE {
            return Err(ManifestError::TooShort(desc.len()));
        }
        let version = u32::from_le_bytes(desc[0..4].try_into().unwrap());
        let count = u32::from_le_bytes(desc[4..8].try_into().unwrap());
        if version != MFT_VERSION {
            return Err(ManifestError::Version(version));
        }
        if count == 0 || count > MAX_ENTRIES {
            return Err(ManifestError::EntryCount(count));
        }
        let expected = HEADER_SIZE + count as usize * ENTRY_SIZE;
        if desc.len() != expected {
            return Err(ManifestError::Size {
                actual: desc.len(),
                entries: count,
                expected,
            });
        }
        let entries: Vec<[u8; ENTRY_SIZE]> = desc[HEADER_SIZE..]
            .chunks_exact(ENTRY_SIZE)
            .map(|c| c.try_into().unwrap())
            .collect();
        let m = Manifest { entries };
        if m.raw_type(0) != TYPE_RESERVED_FIRST || m.entries[0][0] != 0 {
            return Err(ManifestError::NoReservedEntry);
        }
        for (i, e) in m.entries.iter().enumerate() {
            if e[NAME_SIZE - 1] != 0 {
                return Err(ManifestError::NameNotTerminated(i));
            }
            if e[OFF_ATTACHED] != 0 {
                return Err(ManifestError::PreAttached(i));
            }
        }
        Ok(m)
    }

    /// Number of entries, the reserved one included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: a valid manifest holds the reserved entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name of entry `index` (bytes before the NUL, lossily decoded).
    pub fn name(&self, index: usize) -> String {
        let e = &self.entries[index];
        let n = e[..NAME_SIZE]
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(NAME_SIZE);
        String::from_utf8_lossy(&e[..n]).into_owned()
    }

    fn raw_type(&self, index: usize) -> u32 {
        u32::from_le_bytes(
            self.entries[index][OFF_TYPE..OFF_TYPE + 4]
                .try_into()
                .unwrap(),
        )
    }

    /// The device kind of entry `index`, if it is a device this tender knows.
    pub fn kind(&self, index: usize) -> Option<DeviceKind> {
        match self.raw_type(index) {
            TYPE_BLOCK_BASIC => Some(DeviceKind::Block),
            TYPE_NET_BASIC => Some(DeviceKind::Net),
            _ => None,
        }
    }

    /// Finds the entry named `name` of kind `kind`.
    pub fn find(&self, name: &str, kind: DeviceKind) -> Option<usize> {
        (1..self.len()).find(|&i| self.kind(i) == Some(kind) && self.name(i) == name)
    }

    /// Whether entry `index` has been attached.
    pub fn is_attached(&self, index: usize) -> bool {
        self.entries[index][OFF_ATTACHED] != 0
    }

    /// Declared devices (type below `MFT_RESERVED_FIRST`) that are not attached, with the
    /// upstream type name (`UNKNOWN` for types this tender does not know).
    pub fn unattached(&self) -> Vec<(String, &'static str)> {
        (0..self.len())
            .filter(|&i| self.raw_type(i) < TYPE_RESERVED_FIRST && !self.is_attached(i))
            .map(|i| {
                (
                    self.name(i),
                    self.kind(i).map_or("UNKNOWN", DeviceKind::type_name),
                )
            })
            .collect()
    }

    /// Marks a block entry attached with its capacity, block size and host fd.
    pub fn attach_block(&mut self, index: usize, capacity: u64, block_size: u16, hostfd: i32) {
        let e = &mut self.entries[index];
        e[OFF_U..OFF_U + 8].copy_from_slice(&capacity.to_le_bytes());
        e[OFF_U + 8..OFF_U + 10].copy_from_slice(&block_size.to_le_bytes());
        Self::finish_attach(e, hostfd);
    }

    /// Marks a net entry attached with its MAC, MTU and host fd.
    pub fn attach_net(&mut self, index: usize, mac: [u8; 6], mtu: u16, hostfd: i32) {
        let e = &mut self.entries[index];
        e[OFF_U..OFF_U + 6].copy_from_slice(&mac);
        e[OFF_U + 6..OFF_U + 8].copy_from_slice(&mtu.to_le_bytes());
        Self::finish_attach(e, hostfd);
    }

    fn finish_attach(e: &mut [u8; ENTRY_SIZE], hostfd: i32) {
        e[OFF_HOSTFD..OFF_HOSTFD + 8].fill(0);
        e[OFF_HOSTFD..OFF_HOSTFD + 4].copy_from_slice(&hostfd.to_le_bytes());
        e[OFF_ATTACHED] = 1;
    }

    /// The manifest as the guest sees it: `struct mft` with every entry.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_SIZE + self.len() * ENTRY_SIZE);
        out.extend_from_slice(&MFT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, ty: u32) -> [u8; ENTRY_SIZE] {
        let mut e = [0u8; ENTRY_SIZE];
        e[..name.len()].copy_from_slice(name.as_bytes());
        e[OFF_TYPE..OFF_TYPE + 4].copy_from_slice(&ty.to_le_bytes());
        e
    }

    fn desc(entries: &[[u8; ENTRY_SIZE]]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&1u32.to_le_bytes());
        d.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in entries {
            d.extend_from_slice(e);
        }
        d
    }

    #[test]
    fn valid_manifest_round_trips() {
        let d = desc(&[
            entry("", TYPE_RESERVED_FIRST),
            entry("storage", TYPE_BLOCK_BASIC),
        ]);
        let mut m = Manifest::parse(&d).unwrap();
        assert_eq!(m.to_bytes(), d);
        assert_eq!(m.find("storage", DeviceKind::Block), Some(1));
        assert_eq!(m.find("storage", DeviceKind::Net), None);
        assert_eq!(m.unattached(), vec![("storage".to_string(), "BLOCK_BASIC")]);
        m.attach_block(1, 4096, 512, 4);
        assert!(m.unattached().is_empty());
        let b = m.to_bytes();
        assert_eq!(&b[8 + 104 + 72..8 + 104 + 80], &4096u64.to_le_bytes());
        assert_eq!(b[8 + 104 + 96], 1);
    }

    #[test]
    fn invalid_manifests_are_refused() {
        let r = entry("", TYPE_RESERVED_FIRST);
        let mut bad_version = desc(&[r]);
        bad_version[0] = 2;
        assert_eq!(
            Manifest::parse(&bad_version).unwrap_err(),
            ManifestError::Version(2)
        );
        assert_eq!(
            Manifest::parse(&desc(&[])).unwrap_err(),
            ManifestError::EntryCount(0)
        );
        let mut short = desc(&[r]);
        short.pop();
        assert!(matches!(
            Manifest::parse(&short),
            Err(ManifestError::Size { .. })
        ));
        let mut many = desc(&[r]);
        many[4..8].copy_from_slice(&65u32.to_le_bytes());
        assert_eq!(
            Manifest::parse(&many).unwrap_err(),
            ManifestError::EntryCount(65)
        );
        assert_eq!(
            Manifest::parse(&desc(&[entry("x", TYPE_BLOCK_BASIC)])).unwrap_err(),
            ManifestError::NoReservedEntry
        );
        let mut unterminated = entry("", TYPE_BLOCK_BASIC);
        unterminated[..NAME_SIZE].fill(b'a');
        assert_eq!(
            Manifest::parse(&desc(&[r, unterminated])).unwrap_err(),
            ManifestError::NameNotTerminated(1)
        );
        let mut attached = entry("n", TYPE_NET_BASIC);
        attached[OFF_ATTACHED] = 1;
        assert_eq!(
            Manifest::parse(&desc(&[r, attached])).unwrap_err(),
            ManifestError::PreAttached(1)
        );
        assert_eq!(
            Manifest::parse(&[0; 4]).unwrap_err(),
            ManifestError::TooShort(4)
        );
    }
}
