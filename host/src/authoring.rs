//! Author commands that work on local files: `keygen`, `pack`, `sign`. (`publish` and the
//! install commands talk to a node's admin API: see the binary's `cmd::remote`.)

use std::path::{Path, PathBuf};

use alga_edge_registry::bundle::{self, UnpackLimits};
use alga_edge_registry::manifest::{Manifest, ManifestError};
use alga_edge_registry::signing::{BundleClaims, SigningError, SigningKey};

/// Why an author command failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthoringError {
    /// A file exists and `--force` was not given.
    #[error("{0} already exists; pass --force to overwrite it")]
    Exists(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The extension folder or bundle is not a valid bundle.
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    /// The manifest breaks rules.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A key is invalid, or signing failed.
    #[error(transparent)]
    Signing(#[from] SigningError),
}

/// Files written by [`keygen`].
#[derive(Debug)]
pub struct GeneratedKey {
    /// The private key (PKCS#8 PEM, mode 0600).
    pub private_key: PathBuf,
    /// The public key (SPKI PEM), the line to add to a node's trust bundle.
    pub public_key: PathBuf,
    /// `sha256:<hex>` of the public key.
    pub fingerprint: String,
}

/// Writes a new publisher key pair into `dir` as `publisher.pem` and `publisher.pub.pem`.
pub fn keygen(dir: &Path, force: bool) -> Result<GeneratedKey, AuthoringError> {
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    let private_key = dir.join("publisher.pem");
    let public_key = dir.join("publisher.pub.pem");
    for path in [&private_key, &public_key] {
        if path.exists() && !force {
            return Err(AuthoringError::Exists(path.clone()));
        }
    }
    let key = SigningKey::generate();
    write_private(&private_key, key.to_pem().as_bytes())?;
    std::fs::write(&public_key, key.public_pem()).map_err(|source| io(&public_key, source))?;
    Ok(GeneratedKey {
        private_key,
        public_key,
        fingerprint: key.fingerprint(),
    })
}

/// A packed bundle on disk.
#[derive(Debug)]
pub struct PackedFile {
    /// Where it was written.
    pub path: PathBuf,
    /// `sha256:<hex>` of its bytes.
    pub content_hash: String,
    /// Manifest name and version.
    pub name: String,
    /// Manifest version.
    pub version: String,
}

/// Packs `extension_dir` (validating its manifest against the packed files) into `out`, by
/// default `<name>-<version>.tar.zst` in the current directory.
pub fn pack(extension_dir: &Path, out: Option<&Path>) -> Result<PackedFile, AuthoringError> {
    let packed = bundle::pack(extension_dir)?;
    let files = bundle::unpack(&packed.bytes, UnpackLimits::default())?;
    let manifest = Manifest::from_bundle(&files)?;
    let path = out.map(Path::to_owned).unwrap_or_else(|| {
        PathBuf::from(format!("{}-{}.tar.zst", manifest.name, manifest.version))
    });
    std::fs::write(&path, &packed.bytes).map_err(|source| io(&path, source))?;
    Ok(PackedFile {
        path,
        content_hash: packed.content_hash.to_string(),
        name: manifest.name,
        version: manifest.version,
    })
}

/// Signs the bundle at `bundle_path` with the private key at `key_path`, writing the detached
/// compact JWS to `out` (default `<bundle>.sig`). Returns the signature path.
pub fn sign(
    bundle_path: &Path,
    key_path: &Path,
    out: Option<&Path>,
) -> Result<PathBuf, AuthoringError> {
    let bytes = std::fs::read(bundle_path).map_err(|source| io(bundle_path, source))?;
    let files = bundle::unpack(&bytes, UnpackLimits::default())?;
    let manifest = Manifest::from_bundle(&files)?;
    let pem = std::fs::read_to_string(key_path).map_err(|source| io(key_path, source))?;
    let key = SigningKey::from_pem(&pem)?;
    let signature = key.sign(&BundleClaims {
        content_hash: bundle::ContentHash::of(&bytes).to_string(),
        name: manifest.name,
        version: manifest.version,
        publisher: manifest.publisher,
    })?;
    let path = out.map(Path::to_owned).unwrap_or_else(|| {
        let mut name = bundle_path.as_os_str().to_owned();
        name.push(".sig");
        PathBuf::from(name)
    });
    std::fs::write(&path, format!("{signature}\n")).map_err(|source| io(&path, source))?;
    Ok(path)
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), AuthoringError> {
    alga_edge_gateway::keys::write_private(path, contents).map_err(|e| io(&e.path, e.source))
}

fn io(path: &Path, source: std::io::Error) -> AuthoringError {
    AuthoringError::Io {
        path: path.to_owned(),
        source,
    }
}
