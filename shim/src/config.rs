//! The shim's configuration: a TOML file whose path comes with the runtime options
//! containerd sends (`runtimeoptions.v1.Options.config_path`, set by a CRI runtime
//! handler's `options.ConfigPath` or by `ctr run --runtime-config-path`), or inline TOML
//! (`config_body`). Without options the shim reads [`DEFAULT_CONFIG_PATH`]; if that file
//! does not exist, every setting takes its default.
//!
//! ```toml
//! # Path of nabla-tender. Default: `nabla-tender` beside the shim binary, else on PATH.
//! tender_path = "/usr/local/bin/nabla-tender"
//! # Guest memory in MiB when the spec sets no memory limit. Default 512.
//! default_memory_mib = 512
//! # Shim log level: error, warn, info, debug or trace. Default "info".
//! log_level = "info"
//! ```

use std::path::{Path, PathBuf};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use nabla_proto::runtimeoptions;
use prost::Message;
use serde::Deserialize;

/// Where the configuration lives when containerd names none.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/nabla/config.toml";

/// Environment variable through which `start` passes the configuration path to the daemon.
pub const CONFIG_PATH_ENV: &str = "NABLA_SHIM_CONFIG_PATH";

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The runtime options could not be decoded.
    #[error("runtime options ({type_url}) could not be decoded: {source}")]
    Options {
        /// The Any's type URL.
        type_url: String,
        /// The cause.
        source: prost::DecodeError,
    },
    /// The configuration file named in the runtime options does not exist or is unreadable.
    #[error("nabla shim configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or ill-typed keys.
    #[error("nabla shim configuration {origin}: {source}")]
    Parse {
        /// The file, or "inline configuration".
        origin: String,
        /// The cause.
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("nabla shim configuration {origin}: {message}")]
    Invalid {
        /// The file, or "inline configuration".
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// The shim's settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Path of `nabla-tender`; `None` means beside the shim, else on PATH.
    pub tender_path: Option<PathBuf>,
    /// Guest memory (MiB) when the spec sets no memory limit.
    pub default_memory_mib: u64,
    /// Log level of the shim's own log.
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tender_path: None,
            default_memory_mib: 512,
            log_level: "info".to_string(),
        }
    }
}

/// Where a configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The default path; a missing file means defaults.
    Default,
    /// A path named in the runtime options; it must exist.
    Path(PathBuf),
    /// Inline TOML from the runtime options.
    Body(String),
}

impl Source {
    /// The source the runtime options (an `Any` from containerd, if any) name.
    pub fn from_options(options: Option<&Any>) -> Result<Source, ConfigError> {
        let Some(any) = options.filter(|a| !a.type_url.is_empty()) else {
            return Ok(Source::Default);
        };
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        if name != runtimeoptions::TYPE_URL {
            // Other runtimes' options (runc's, say) carry nothing for us.
            return Ok(Source::Default);
        }
        let opts = runtimeoptions::Options::decode(any.value.as_slice()).map_err(|source| {
            ConfigError::Options {
                type_url: any.type_url.clone(),
                source,
            }
        })?;
        Ok(if !opts.config_body.is_empty() {
            Source::Body(opts.config_body)
        } else if !opts.config_path.is_empty() {
            Source::Path(PathBuf::from(opts.config_path))
        } else {
            Source::Default
        })
    }

    /// The path to hand to the daemon through [`CONFIG_PATH_ENV`], if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Source::Path(p) => Some(p),
            _ => None,
        }
    }
}

impl Config {
    /// Reads the configuration from `source`.
    pub fn load(source: &Source) -> Result<Config, ConfigError> {
        match source {
            Source::Default => match std::fs::read_to_string(DEFAULT_CONFIG_PATH) {
                Ok(text) => Self::parse(&text, DEFAULT_CONFIG_PATH),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
                Err(source) => Err(ConfigError::Read {
                    path: DEFAULT_CONFIG_PATH.into(),
                    source,
                }),
            },
            Source::Path(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Self::parse(&text, &path.display().to_string())
            }
            Source::Body(text) => Self::parse(text, "inline configuration (ConfigBody)"),
        }
    }

    /// Parses and checks TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        if config.default_memory_mib == 0 {
            return Err(invalid("default_memory_mib must be at least 1".into()));
        }
        if config.log_level.parse::<tracing::Level>().is_err() {
            return Err(invalid(format!(
                "log_level {:?} is not one of error, warn, info, debug, trace",
                config.log_level
            )));
        }
        Ok(config)
    }

    /// The tender binary to run: the configured path, else `nabla-tender` beside the
    /// shim's own executable, else `nabla-tender` looked up on PATH.
    pub fn tender(&self) -> PathBuf {
        if let Some(p) = &self.tender_path {
            return p.clone();
        }
        if let Some(beside) = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("nabla-tender")))
            .filter(|p| p.is_file())
        {
            return beside;
        }
        PathBuf::from("nabla-tender")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_full_file() {
        assert_eq!(Config::parse("", "t").unwrap(), Config::default());
        let c = Config::parse(
            "tender_path = \"/opt/t\"\ndefault_memory_mib = 64\nlog_level = \"debug\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.tender_path.as_deref(), Some(Path::new("/opt/t")));
        assert_eq!(c.default_memory_mib, 64);
        assert_eq!(c.tender(), PathBuf::from("/opt/t"));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let e = Config::parse("memory = 3", "/etc/x.toml").unwrap_err();
        assert!(e.to_string().contains("/etc/x.toml"), "{e}");
        assert!(e.to_string().contains("memory"), "{e}");
        let e = Config::parse("default_memory_mib = 0", "f").unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
        let e = Config::parse("log_level = \"loud\"", "f").unwrap_err();
        assert!(e.to_string().contains("loud"), "{e}");
    }

    #[test]
    fn options_name_the_source() {
        assert_eq!(Source::from_options(None).unwrap(), Source::Default);
        let opts = runtimeoptions::Options {
            config_path: "/etc/n.toml".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: runtimeoptions::TYPE_URL.into(),
            value: opts.encode_to_vec(),
            ..Default::default()
        };
        assert_eq!(
            Source::from_options(Some(&any)).unwrap(),
            Source::Path("/etc/n.toml".into())
        );
        let missing = Config::load(&Source::Path("/nonexistent/n.toml".into())).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/n.toml"));
    }
}
