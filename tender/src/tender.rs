//! The tender's startup, in upstream's order (spec §2.4), which fixes both error precedence
//! and the fd numbers the guest sees.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::RawFd;

use nabla_proto::control::{device::Kind, Device, Ready};
use seccompiler::BpfProgram;

use crate::boot_info::{join_cmdline, BootInfo, CmdlineTooLong};
use crate::cli::{parse_mem_mib, Invocation};
use crate::credentials::{CredentialsError, User};
use crate::devices::block::BlockModule;
use crate::devices::net::{format_mac, NetModule};
use crate::devices::{Attached, DeviceError, DeviceModule};
use crate::elf::{
    ElfError, Executable, Loaded, ABI_NOTE, MANIFEST_NOTE, SPT_ABI_TARGET, SPT_ABI_VERSION,
};
use crate::events::{EventSet, EventsError};
use crate::launch::{close_fds_except, LaunchError};
use crate::manifest::{DeviceKind, Manifest, ManifestError};
use crate::memory::{GuestMemory, MemoryError};
use crate::policy::{Policy, PolicyError};

/// Default guest memory: 512 MiB.
pub const DEFAULT_MEM_MIB: u64 = 512;

/// Everything that stops the tender before the jump. Displayed without the program prefix.
#[derive(Debug, thiserror::Error)]
pub enum TenderError {
    /// KERNEL could not be opened.
    #[error("{file}: Could not open: {source}")]
    Open {
        /// KERNEL as given.
        file: String,
        /// The cause.
        source: std::io::Error,
    },
    /// KERNEL is not a loadable executable.
    #[error("{file}: {source}")]
    Elf {
        /// KERNEL as given.
        file: String,
        /// The problem.
        source: ElfError,
    },
    /// No ABI note.
    #[error("{0}: No Solo5 ABI information found in executable")]
    NoAbi(String),
    /// The ABI note is too short to hold target and version.
    #[error("{0}: Solo5 ABI information is malformed")]
    BadAbi(String),
    /// Built for another Solo5 target.
    #[error("{file}: Executable is not for the solo5-spt target (it is for the {target} target)")]
    WrongTarget {
        /// KERNEL as given.
        file: String,
        /// The target it is built for.
        target: String,
    },
    /// Another ABI version.
    #[error("{file}: Executable requests unsupported ABI version {version} (this tender supports {SPT_ABI_VERSION})")]
    AbiVersion {
        /// KERNEL as given.
        file: String,
        /// The version in the note.
        version: u32,
    },
    /// No manifest note.
    #[error("{0}: No Solo5 manifest found in executable")]
    NoManifest(String),
    /// The manifest fails validation.
    #[error("{file}: Solo5 manifest is invalid: {source}")]
    BadManifest {
        /// KERNEL as given.
        file: String,
        /// What is wrong.
        source: ManifestError,
    },
    /// An option nobody recognises.
    #[error("Invalid option: `{0}'")]
    InvalidOption(String),
    /// `--mem` is not a positive number.
    #[error("Malformed argument to --mem: `{0}'")]
    MalformedMem(String),
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// epoll / timerfd.
    #[error(transparent)]
    Events(#[from] EventsError),
    /// A device option or device setup.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Declared devices left unattached; one line per device, then upstream's hint.
    #[error("{}All declared devices must be attached. See --help for syntax.",
        .0.iter().map(|(n, t)| format!("Device '{n}' of type {t} declared but not attached.\n")).collect::<String>())]
    Unattached(Vec<(String, &'static str)>),
    /// The command line is too long.
    #[error(transparent)]
    Cmdline(#[from] CmdlineTooLong),
    /// The filter could not be built.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// `--x-user`.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// Fd cleanup or seccomp availability.
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

impl TenderError {
    /// Whether upstream follows this message with the usage text.
    pub fn wants_usage(&self) -> bool {
        matches!(
            self,
            TenderError::InvalidOption(_)
                | TenderError::Device(DeviceError::NotDeclared(_))
                | TenderError::Device(DeviceError::Malformed(_))
        )
    }
}

/// A guest ready to run: loaded, devices attached, boot info written, filter compiled.
pub struct Prepared {
    /// The identity to take on before the filter (`--x-user`).
    pub user: Option<User>,
    /// Entry point and kernel end.
    pub loaded: Loaded,
    /// Guest memory (never unmapped).
    pub mem: GuestMemory,
    /// Boot info address.
    pub boot_info: u64,
    /// The compiled filter.
    pub filter: BpfProgram,
    /// The policy the filter was compiled from.
    pub policy: Policy,
    /// Devices attached, in setup order.
    pub attached: Vec<Attached>,
    /// Fds the guest keeps: console, devices, epoll, timer.
    pub guest_fds: Vec<RawFd>,
    events: EventSet,
    modules: Vec<Box<dyn DeviceModule>>,
}

impl Prepared {
    /// The readiness report for the shim.
    pub fn ready_report(&self) -> Ready {
        Ready {
            mem_size: self.mem.size(),
            allowed_syscalls: self.policy.syscall_count() as u32,
            devices: self
                .attached
                .iter()
                .map(|a| Device {
                    name: a.name.clone(),
                    kind: match a.kind {
                        DeviceKind::Block => Kind::Block,
                        DeviceKind::Net => Kind::Net,
                    } as i32,
                    capacity: a.capacity,
                    block_size: u32::from(a.block_size),
                    mac: if a.kind == DeviceKind::Net {
                        format_mac(&a.mac)
                    } else {
                        String::new()
                    },
                    mtu: u32::from(a.mtu),
                })
                .collect(),
        }
    }

    /// Enters the guest; only returns if locking down failed.
    pub fn launch(self) -> Result<std::convert::Infallible, TenderError> {
        let Prepared {
            loaded,
            mem,
            boot_info,
            filter,
            guest_fds,
            events,
            modules,
            ..
        } = self;
        // The guest owns these from now on; they must stay open (and mapped) forever.
        events.hand_over();
        std::mem::forget(modules);
        Ok(crate::launch::launch(
            loaded.entry,
            mem.size(),
            boot_info,
            &guest_fds,
            &filter,
        )?)
    }
}

/// Checks the ELF, its notes and every option; reserves memory, loads the guest, attaches
/// devices and builds the filter. `keep_fds` are inherited fds to leave open (the control
/// socket); every other inherited fd above 2 is closed first.
pub fn prepare(inv: &Invocation, keep_fds: &[RawFd]) -> Result<Prepared, TenderError> {
    let mut keep = keep_fds.to_vec();
    keep.extend(NetModule::inherited_fds(&inv.options));
    close_fds_except(3, &keep).map_err(|e| TenderError::Launch(LaunchError::CloseFds(e)))?;

    let file_name = inv.kernel.to_string_lossy().into_owned();
    let file = File::open(&inv.kernel).map_err(|source| TenderError::Open {
        file: file_name.clone(),
        source,
    })?;
    let elf_err = |source| TenderError::Elf {
        file: file_name.clone(),
        source,
    };
    let (exe, mut manifest) = open_checked(file, &file_name)?;

    // Second pass over the options: core options, then each module in turn.
    let mut mem_mib = DEFAULT_MEM_MIB;
    let mut exec_heap = false;
    let mut user = None;
    let mut block = BlockModule::default();
    let mut net = NetModule::default();
    for opt in &inv.options {
        if let Some(v) = opt.strip_prefix("--mem=") {
            mem_mib = parse_mem_mib(v).ok_or_else(|| TenderError::MalformedMem(v.to_string()))?;
        } else if opt == "--x-exec-heap" {
            exec_heap = true;
        } else if let Some(v) = opt.strip_prefix("--x-user=") {
            user = Some(User::parse(v)?);
        } else if !net.parse_option(opt, &manifest)? && !block.parse_option(opt, &manifest)? {
            return Err(TenderError::InvalidOption(opt.clone()));
        }
    }
    if exec_heap {
        eprintln!(
            "nabla-tender: WARNING: The use of --x-exec-heap is dangerous and not recommended \
             as it makes the heap and stack executable."
        );
    }

    let mut mem = GuestMemory::reserve(GuestMemory::size_from_mib(mem_mib)?, exec_heap)?;
    let events = EventSet::new()?;
    let mut policy = Policy::core(events.epoll_fd(), events.timer_fd());
    let loaded = exe.load(&mut mem).map_err(elf_err)?;
    drop(exe); // closes KERNEL

    // Module setup in upstream's link order: core, net, block.
    let mut modules: Vec<Box<dyn DeviceModule>> = vec![Box::new(net), Box::new(block)];
    let mut attached = Vec::new();
    for m in &mut modules {
        attached.extend(m.setup(&mut manifest, &events, &mut policy)?);
    }
    let missing = manifest.unattached();
    if !missing.is_empty() {
        return Err(TenderError::Unattached(missing));
    }

    let cmdline = join_cmdline(&guest_args_bytes(&inv.guest_args))?;
    let manifest_bytes = manifest.to_bytes();
    let boot_info = BootInfo {
        kernel_end: loaded.kernel_end,
        manifest: &manifest_bytes,
        cmdline: &cmdline,
        epoll_fd: events.epoll_fd(),
        timer_fd: events.timer_fd(),
    }
    .write(&mut mem)?;
    let filter = policy.compile()?;

    let mut guest_fds = vec![1, events.epoll_fd(), events.timer_fd()];
    for m in &modules {
        guest_fds.extend(m.guest_fds());
    }
    Ok(Prepared {
        user,
        loaded,
        mem,
        boot_info,
        filter,
        policy,
        attached,
        guest_fds,
        events,
        modules,
    })
}

/// The ELF header, ABI note and manifest checks of spec §1, in upstream's order.
fn open_checked(file: File, file_name: &str) -> Result<(Executable, Manifest), TenderError> {
    let elf_err = |source| TenderError::Elf {
        file: file_name.to_string(),
        source,
    };
    let exe = Executable::open(file).map_err(elf_err)?;
    check_abi(&exe, file_name)?;
    let desc = exe
        .find_note(MANIFEST_NOTE)
        .map_err(elf_err)?
        .ok_or_else(|| TenderError::NoManifest(file_name.to_string()))?;
    let manifest = Manifest::parse(&desc).map_err(|source| TenderError::BadManifest {
        file: file_name.to_string(),
        source,
    })?;
    Ok((exe, manifest))
}

/// Every check the tender makes on a would-be KERNEL (ELF header, notes, manifest, segment
/// layout for a guest of `mem_size` bytes), without reserving memory or loading anything:
/// the entry point for fuzzing the loader with hostile executables.
pub fn inspect(file: File, mem_size: u64) -> Result<(Manifest, Loaded), TenderError> {
    let (exe, manifest) = open_checked(file, "KERNEL")?;
    let loaded = exe
        .check_layout(mem_size)
        .map_err(|source| TenderError::Elf {
            file: "KERNEL".to_string(),
            source,
        })?;
    Ok((manifest, loaded))
}

/// `--x-describe`: every check [`inspect`] makes (with the `--mem` given, if any), then the
/// devices the manifest declares, in manifest order (entry 0, the reserved one, excluded).
pub fn describe(inv: &Invocation) -> Result<Vec<(String, DeviceKind)>, TenderError> {
    let mut mem_mib = DEFAULT_MEM_MIB;
    for opt in &inv.options {
        if let Some(v) = opt.strip_prefix("--mem=") {
            mem_mib = parse_mem_mib(v).ok_or_else(|| TenderError::MalformedMem(v.to_string()))?;
        }
    }
    let mem_size = GuestMemory::size_from_mib(mem_mib)?;
    let file_name = inv.kernel.to_string_lossy().into_owned();
    let file = File::open(&inv.kernel).map_err(|source| TenderError::Open {
        file: file_name.clone(),
        source,
    })?;
    let (exe, manifest) = open_checked(file, &file_name)?;
    exe.check_layout(mem_size)
        .map_err(|source| TenderError::Elf {
            file: file_name.clone(),
            source,
        })?;
    Ok((1..manifest.len())
        .filter_map(|i| manifest.kind(i).map(|k| (manifest.name(i), k)))
        .collect())
}

/// The control-channel form of a device list from [`describe`].
pub fn declared_devices(devices: &[(String, DeviceKind)]) -> Vec<Device> {
    devices
        .iter()
        .map(|(name, kind)| Device {
            name: name.clone(),
            kind: match kind {
                DeviceKind::Block => Kind::Block,
                DeviceKind::Net => Kind::Net,
            } as i32,
            ..Default::default()
        })
        .collect()
}

/// [`inspect`] on an in-memory image (through a memfd, so the same file-reading code runs).
pub fn inspect_bytes(data: &[u8], mem_size: u64) -> Result<(Manifest, Loaded), TenderError> {
    use std::io::Write;
    let fd =
        nix::sys::memfd::memfd_create(c"nabla-inspect", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| TenderError::Open {
                file: "memfd".into(),
                source: e.into(),
            })?;
    let mut file = File::from(fd);
    file.write_all(data).map_err(|source| TenderError::Open {
        file: "memfd".into(),
        source,
    })?;
    inspect(file, mem_size)
}

fn guest_args_bytes(args: &[OsString]) -> Vec<&[u8]> {
    args.iter().map(|a| a.as_bytes()).collect()
}

fn check_abi(exe: &Executable, file: &str) -> Result<(), TenderError> {
    let desc = exe
        .find_note(ABI_NOTE)
        .map_err(|source| TenderError::Elf {
            file: file.to_string(),
            source,
        })?
        .ok_or_else(|| TenderError::NoAbi(file.to_string()))?;
    if desc.len() < 8 {
        return Err(TenderError::BadAbi(file.to_string()));
    }
    let target = u32::from_le_bytes(desc[0..4].try_into().unwrap());
    let version = u32::from_le_bytes(desc[4..8].try_into().unwrap());
    if target != SPT_ABI_TARGET {
        return Err(TenderError::WrongTarget {
            file: file.to_string(),
            target: match target {
                1 => "solo5-hvt".to_string(),
                3 => "solo5-virtio".to_string(),
                4 => "solo5-muen".to_string(),
                5 => "solo5-genode".to_string(),
                6 => "solo5-xen".to_string(),
                n => format!("unknown ({n})"),
            },
        });
    }
    if version != SPT_ABI_VERSION {
        return Err(TenderError::AbiVersion {
            file: file.to_string(),
            version,
        });
    }
    Ok(())
}
