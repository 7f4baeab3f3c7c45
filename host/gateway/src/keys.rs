//! Node key files: secrets a node needs (admin token, secrets-sealing key, dev token key) that
//! are created on first use under the data directory when not configured, so a single node
//! works with no setup. Files are written owner-only and never logged.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A key file could not be read or created.
#[derive(Debug, thiserror::Error)]
#[error("key file {path}: {source}")]
pub struct KeyFileError {
    /// The file.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Writes `contents` to `path` readable by the owner only (mode 0600 on Unix), replacing it.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), KeyFileError> {
    write_with(path, contents, false)
}

/// The trimmed contents of `path`, creating it from `generate()` first when it does not exist.
/// Concurrent creators agree: only the first `create_new` wins, the others read its value.
pub fn read_or_create(
    path: &Path,
    generate: impl FnOnce() -> String,
) -> Result<String, KeyFileError> {
    let error = |source| KeyFileError {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.trim().to_owned()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(error(e)),
        Err(_) => {}
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    let value = generate();
    match write_with(path, format!("{value}\n").as_bytes(), true) {
        Ok(()) => Ok(value),
        Err(e) if e.source.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .map_err(error)
        }
        Err(e) => Err(e),
    }
}

/// A random 256-bit token from the OS generator, hex-encoded.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the OS random number generator is unavailable");
    hex::encode(bytes)
}

fn write_with(path: &Path, contents: &[u8], create_new: bool) -> Result<(), KeyFileError> {
    let error = |source| KeyFileError {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(error)?;
    file.write_all(contents).map_err(error)?;
    file.sync_all().map_err(error)
}
