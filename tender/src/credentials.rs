//! `--x-user=UID:GID[:GID,...]`: the identity the guest runs as. The tender opens its devices
//! first (block files may need root), then takes on this identity and drops every capability
//! (effective, permitted, inheritable, ambient and the bounding set), so that even before the
//! filter is installed the process holds nothing it does not need.

/// Errors in the option or in changing identity.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The option value is not `UID:GID[:GID,...]`.
    #[error("Malformed argument to --x-user: `{0}' (expected UID:GID[:GID,...])")]
    Malformed(String),
    /// A system call failed.
    #[error("Could not switch to user {uid}:{gid}: {what}: {source}")]
    Switch {
        /// Target uid.
        uid: u32,
        /// Target gid.
        gid: u32,
        /// The step.
        what: &'static str,
        /// The cause.
        source: nix::Error,
    },
}

/// The identity to take on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Additional groups.
    pub groups: Vec<u32>,
}

impl User {
    /// Parses `UID:GID[:GID,...]`.
    pub fn parse(v: &str) -> Result<User, CredentialsError> {
        let bad = || CredentialsError::Malformed(v.to_string());
        let mut parts = v.splitn(3, ':');
        let uid = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let gid = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let groups = match parts.next() {
            None | Some("") => Vec::new(),
            Some(g) => g
                .split(',')
                .map(|x| x.parse().map_err(|_| bad()))
                .collect::<Result<_, _>>()?,
        };
        Ok(User { uid, gid, groups })
    }

    /// Switches to this identity and drops every capability.
    pub fn assume(&self) -> Result<(), CredentialsError> {
        let err = |what, source| CredentialsError::Switch {
            uid: self.uid,
            gid: self.gid,
            what,
            source,
        };
        let groups: Vec<nix::unistd::Gid> = self.groups.iter().map(|g| (*g).into()).collect();
        nix::unistd::setgroups(&groups).map_err(|e| err("setgroups", e))?;
        let gid = nix::unistd::Gid::from_raw(self.gid);
        nix::unistd::setresgid(gid, gid, gid).map_err(|e| err("setresgid", e))?;
        // The bounding set can only be changed while CAP_SETPCAP is still held.
        for cap in 0..=63 {
            // SAFETY: prctl with integer arguments; EINVAL for caps this kernel lacks.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        }
        // SAFETY: prctl with integer arguments.
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )
        };
        let uid = nix::unistd::Uid::from_raw(self.uid);
        nix::unistd::setresuid(uid, uid, uid).map_err(|e| err("setresuid", e))?;
        clear_capabilities().map_err(|e| err("capset", e))
    }
}

/// Empties the effective, permitted and inheritable sets (a uid 0 keeps them otherwise).
fn clear_capabilities() -> Result<(), nix::Error> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut hdr = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads one header and two data structs of the v3 layout, both live for
    // the whole call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    nix::errno::Errno::result(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uid_gid_groups() {
        assert_eq!(
            User::parse("1000:100").unwrap(),
            User {
                uid: 1000,
                gid: 100,
                groups: vec![]
            }
        );
        assert_eq!(User::parse("0:0:1,2").unwrap().groups, vec![1, 2]);
        for bad in ["", "1000", "a:b", "1:2:x", "-1:0"] {
            assert!(User::parse(bad).is_err(), "{bad}");
        }
    }
}
