//! OCI images without a registry: an image-layout tar (`oci-layout`, `index.json`, blobs for the
//! config, the manifest and one gzip layer) that `ctr image import` accepts. Entries have fixed
//! owners and times, so the same inputs give the same digests.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Errors building an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file to put in the image could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing the tar failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The output.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

enum Entry {
    File { data: Vec<u8>, mode: u32 },
    Symlink { target: String },
}

/// An image under construction.
pub struct OciImage {
    reference: String,
    entries: Vec<(String, Entry)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<String>,
    annotations: Vec<(String, String)>,
}

fn sha256(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl OciImage {
    /// A new image named `reference` (e.g. `docker.io/library/nabla-hello:latest`).
    pub fn new(reference: &str) -> Self {
        OciImage {
            reference: reference.to_string(),
            entries: Vec::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: vec!["PATH=/".into()],
            annotations: Vec::new(),
        }
    }

    /// Adds the host file `src` at `dst` in the image, executable.
    pub fn file(mut self, src: &Path, dst: &str) -> Result<Self, ImageError> {
        let data = std::fs::read(src).map_err(|source| ImageError::Read {
            path: src.to_path_buf(),
            source,
        })?;
        self.entries
            .push((dst.to_string(), Entry::File { data, mode: 0o755 }));
        Ok(self)
    }

    /// Adds `data` at `dst` with `mode`.
    pub fn bytes(mut self, data: &[u8], dst: &str, mode: u32) -> Self {
        self.entries.push((
            dst.to_string(),
            Entry::File {
                data: data.to_vec(),
                mode,
            },
        ));
        self
    }

    /// Adds a symbolic link `dst` → `target`.
    pub fn symlink(mut self, target: &str, dst: &str) -> Self {
        self.entries.push((
            dst.to_string(),
            Entry::Symlink {
                target: target.to_string(),
            },
        ));
        self
    }

    /// Sets the entrypoint.
    pub fn entrypoint(mut self, args: &[&str]) -> Self {
        self.entrypoint = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Sets the default arguments.
    pub fn cmd(mut self, args: &[&str]) -> Self {
        self.cmd = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Adds an environment variable `K=V`.
    pub fn env(mut self, kv: &str) -> Self {
        self.env.push(kv.to_string());
        self
    }

    /// Adds an annotation to the manifest.
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.annotations.push((k.to_string(), v.to_string()));
        self
    }

    fn layer(&self) -> std::io::Result<(Vec<u8>, String)> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut dirs_done = std::collections::BTreeSet::new();
        for (dst, entry) in &self.entries {
            let rel = dst.trim_start_matches('/');
            // Parent directories first.
            let mut prefix = String::new();
            let parts: Vec<&str> = rel.split('/').collect();
            for p in &parts[..parts.len().saturating_sub(1)] {
                prefix = if prefix.is_empty() {
                    p.to_string()
                } else {
                    format!("{prefix}/{p}")
                };
                if dirs_done.insert(prefix.clone()) {
                    let mut h = tar::Header::new_ustar();
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    h.set_mtime(0);
                    h.set_uid(0);
                    h.set_gid(0);
                    tar.append_data(&mut h, format!("{prefix}/"), std::io::empty())?;
                }
            }
            let mut h = tar::Header::new_ustar();
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            match entry {
                Entry::File { data, mode } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    tar.append_data(&mut h, rel, data.as_slice())?;
                }
                Entry::Symlink { target } => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    tar.append_link(&mut h, rel, target)?;
                }
            }
        }
        let raw = tar.into_inner()?;
        let diff_id = sha256(&raw);
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw)?;
        Ok((gz.finish()?, diff_id))
    }

    /// Writes the image-layout tar to `out`.
    pub fn write_tar(&self, out: &Path) -> Result<(), ImageError> {
        self.write_inner(out).map_err(|source| ImageError::Write {
            path: out.to_path_buf(),
            source,
        })
    }

    fn write_inner(&self, out: &Path) -> std::io::Result<()> {
        let (layer, diff_id) = self.layer()?;
        let layer_digest = sha256(&layer);
        let mut config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Env": self.env },
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
            "history": [{ "created_by": "nabla-image" }],
        });
        if !self.entrypoint.is_empty() {
            config["config"]["Entrypoint"] = json!(self.entrypoint);
        }
        if !self.cmd.is_empty() {
            config["config"]["Cmd"] = json!(self.cmd);
        }
        let config = serde_json::to_vec(&config)?;
        let config_digest = sha256(&config);
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{config_digest}"),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": format!("sha256:{layer_digest}"),
                "size": layer.len(),
            }],
        });
        if !self.annotations.is_empty() {
            let map: serde_json::Map<String, serde_json::Value> = self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            manifest["annotations"] = serde_json::Value::Object(map);
        }
        let manifest = serde_json::to_vec(&manifest)?;
        let manifest_digest = sha256(&manifest);
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{manifest_digest}"),
                "size": manifest.len(),
                "annotations": { "org.opencontainers.image.ref.name": self.reference },
                "platform": { "architecture": "amd64", "os": "linux" },
            }],
        }))?;

        let file = std::fs::File::create(out)?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let mut add = |name: &str, data: &[u8]| -> std::io::Result<()> {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(0);
            tar.append_data(&mut h, name, data)
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        add("index.json", &index)?;
        add(&format!("blobs/sha256/{config_digest}"), &config)?;
        add(&format!("blobs/sha256/{manifest_digest}"), &manifest)?;
        add(&format!("blobs/sha256/{layer_digest}"), &layer)?;
        tar.into_inner()?.flush()?;
        Ok(())
    }
}

/// The image `nabla.test/NAME:latest` holding the test guest NAME at `/NAME` as its entrypoint.
pub fn guest_image(name: &str, out_dir: &Path) -> (String, PathBuf) {
    let reference = format!("nabla.test/{name}:latest");
    let out = out_dir.join(format!("{name}.tar"));
    OciImage::new(&reference)
        .file(&crate::tender::guest(name), &format!("/{name}"))
        .expect("read guest")
        .entrypoint(&[&format!("/{name}")])
        .write_tar(&out)
        .expect("write image");
    (reference, out)
}
