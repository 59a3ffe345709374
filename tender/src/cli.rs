//! The command line of `solo5-spt` (spec §5), plus the `--x-control-fd` extension.
//!
//! Parsing happens in two passes, as upstream does: this first pass finds KERNEL, the guest
//! arguments and the options before them; the options themselves are interpreted later, once
//! the manifest is known (device options name manifest entries).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::RawFd;

/// The usage text printed by `--help` and after option errors.
pub const USAGE: &str = "\
usage: nabla-tender [ OPTIONS ] [ -- ] KERNEL [ ARGS ]
KERNEL is the filename of the unikernel to run.
ARGS are optional arguments passed to the unikernel.
Core options:
  [ --mem=512 ] (guest memory in MB)
    --help (display this help)
    --version (display version information)
Compiled-in module options:
    [ --block:NAME=PATH ] (attach block device/file at PATH as block storage NAME)
    [ --block-sector-size:NAME=N ] (set the sector size of block storage NAME to N bytes;
        a power of two, at least 512; default 512)
    [ --x-block-readonly:NAME ] (open block storage NAME read-only; guest writes fail)
    [ --net:NAME=IFACE | @NN ] (attach tap at IFACE or at fd @NN as network NAME)
    [ --net-mac:NAME=HWADDR ] (set HWADDR for network NAME)
Extensions:
    [ --x-exec-heap ] (make the heap executable. WARNING: dangerous)
    [ --x-control-fd=N ] (report readiness on control socket N and wait for the start command)
    [ --x-user=UID:GID[:GID,...] ] (after opening devices, run as this user with no capabilities)
    [ --x-describe ] (check KERNEL, list the devices its manifest declares, exit 0)
    [ --x-pause ] (alone: hold a pod sandbox, sleeping under a pause/exit_group filter)";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// `--help`: print usage, exit 1 (as upstream).
    Help,
    /// `--version`: print the version, exit 0.
    Version,
    /// Run KERNEL.
    Run(Invocation),
}

/// A parsed invocation: the options before KERNEL (uninterpreted), KERNEL and its arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    /// Options in the order given, `--x-control-fd` excluded.
    pub options: Vec<String>,
    /// Path of the unikernel.
    pub kernel: OsString,
    /// Arguments after KERNEL, passed to the guest verbatim.
    pub guest_args: Vec<OsString>,
    /// The control socket, if `--x-control-fd=N` was given.
    pub control_fd: Option<RawFd>,
    /// `--x-describe`: check KERNEL and report what its manifest declares, then exit.
    pub describe: bool,
}

/// Errors in the first pass over the command line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CliError {
    /// No KERNEL operand.
    #[error("Missing KERNEL operand")]
    MissingKernel,
    /// An option is not valid UTF-8 or is otherwise unknown.
    #[error("Invalid option: `{0}'")]
    InvalidOption(String),
    /// `--x-control-fd` was not a non-negative integer.
    #[error("Malformed argument to --x-control-fd: `{0}'")]
    MalformedControlFd(String),
}

impl CliError {
    /// Whether the usage text should follow the message, as upstream prints it.
    pub fn wants_usage(&self) -> bool {
        !matches!(self, CliError::MalformedControlFd(_))
    }
}

/// First pass: split `args` (without argv\[0\]) into options, KERNEL and guest arguments.
pub fn parse(args: &[OsString]) -> Result<Action, CliError> {
    let mut options = Vec::new();
    let mut control_fd = None;
    let mut describe = false;
    let mut i = 0;
    let kernel_at = loop {
        let Some(arg) = args.get(i) else {
            return Err(CliError::MissingKernel);
        };
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            if i + 1 >= args.len() {
                return Err(CliError::MissingKernel);
            }
            break i + 1;
        }
        if !bytes.starts_with(b"-") {
            break i;
        }
        let Some(opt) = arg.to_str() else {
            return Err(CliError::InvalidOption(
                String::from_utf8_lossy(bytes).into_owned(),
            ));
        };
        match opt {
            "--help" => return Ok(Action::Help),
            "--version" => return Ok(Action::Version),
            "--x-describe" => describe = true,
            _ => {
                if let Some(v) = opt.strip_prefix("--x-control-fd=") {
                    let fd = v
                        .parse::<RawFd>()
                        .ok()
                        .filter(|fd| *fd >= 0)
                        .ok_or_else(|| CliError::MalformedControlFd(v.to_string()))?;
                    control_fd = Some(fd);
                } else {
                    options.push(opt.to_string());
                }
            }
        }
        i += 1;
    };
    Ok(Action::Run(Invocation {
        options,
        kernel: args[kernel_at].clone(),
        guest_args: args[kernel_at + 1..].to_vec(),
        control_fd,
        describe,
    }))
}

/// Parses `--mem=N` the way upstream's `sscanf("%zd")` does: optional leading blanks and sign,
/// then decimal digits; trailing characters are ignored (`16M` is 16). Returns MiB, or `None`
/// when no positive number could be read (`0`, `abc`, `0x10`).
pub fn parse_mem_mib(value: &str) -> Option<u64> {
    let v = value.trim_start();
    let (neg, v) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    // A number too large for %zd is as malformed as a negative one for our purposes.
    let n: u64 = v[..digits].parse().ok()?;
    if neg || n == 0 {
        return None;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn run(v: &[&str]) -> Invocation {
        match parse(&args(v)).unwrap() {
            Action::Run(inv) => inv,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn options_kernel_and_args() {
        let inv = run(&["--mem=16", "--x-control-fd=7", "k.spt", "a", "--mem=5"]);
        assert_eq!(inv.options, vec!["--mem=16"]);
        assert_eq!(inv.kernel, "k.spt");
        assert_eq!(inv.guest_args, args(&["a", "--mem=5"]));
        assert_eq!(inv.control_fd, Some(7));
    }

    #[test]
    fn double_dash_ends_options() {
        let inv = run(&["--", "k", "--mem=5", "Hello"]);
        assert!(inv.options.is_empty());
        assert_eq!(inv.kernel, "k");
        assert_eq!(inv.guest_args, args(&["--mem=5", "Hello"]));
        // A kernel whose name starts with '-' needs `--`.
        assert_eq!(run(&["--", "-k"]).kernel, "-k");
    }

    #[test]
    fn help_version_and_missing_kernel() {
        assert_eq!(parse(&args(&["--help", "k"])), Ok(Action::Help));
        assert_eq!(parse(&args(&["--mem=2", "--version"])), Ok(Action::Version));
        assert_eq!(parse(&args(&[])), Err(CliError::MissingKernel));
        assert_eq!(parse(&args(&["--mem=2"])), Err(CliError::MissingKernel));
        assert_eq!(parse(&args(&["--"])), Err(CliError::MissingKernel));
        // After KERNEL, --help is a guest argument.
        assert!(matches!(parse(&args(&["k", "--help"])), Ok(Action::Run(_))));
    }

    #[test]
    fn control_fd_must_be_a_number() {
        assert!(matches!(
            parse(&args(&["--x-control-fd=x", "k"])),
            Err(CliError::MalformedControlFd(_))
        ));
        assert!(matches!(
            parse(&args(&["--x-control-fd=-1", "k"])),
            Err(CliError::MalformedControlFd(_))
        ));
    }

    #[test]
    fn mem_parses_like_sscanf_zd() {
        assert_eq!(parse_mem_mib("16"), Some(16));
        assert_eq!(parse_mem_mib("16M"), Some(16));
        assert_eq!(parse_mem_mib(" +8"), Some(8));
        assert_eq!(parse_mem_mib("0"), None);
        assert_eq!(parse_mem_mib("0x10"), None);
        assert_eq!(parse_mem_mib("abc"), None);
        assert_eq!(parse_mem_mib(""), None);
        assert_eq!(parse_mem_mib("-1"), None);
        assert_eq!(parse_mem_mib("99999999999999999999999"), None);
    }
}
