//! Node key files: secrets a node needs (admin token, secrets-sealing key, dev token key) that
//! are created on first use under the data directory when not configured, so a single node
//! works with no setup. Files are written owner-only and never logged.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::Digest;

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

/// A static bearer secret (admin token, runner service token), kept only as its SHA-256 and
/// compared without early exit, so timing does not reveal how much of a guess matched.
pub struct BearerSecret {
    digest: [u8; 32],
}

impl BearerSecret {
    /// Accepts exactly `secret`.
    pub fn new(secret: &str) -> Self {
        Self {
            digest: sha2::Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// Whether the `authorization` header value carries the secret as a bearer token; `None`
    /// when there is no bearer token at all.
    pub fn check(&self, authorization: Option<&str>) -> Option<bool> {
        let token = crate::tenant_auth::bearer_token(authorization)?;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let differs = digest
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        Some(differs == 0)
    }
}
