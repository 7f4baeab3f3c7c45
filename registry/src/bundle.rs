//! Bundles: `manifest.json`, `dist/main.wasm` and `ui/**` in a zstd-compressed tar, addressed by
//! the sha256 of the archive bytes (DESIGN §4).
//!
//! Packing is deterministic (sorted entries, zeroed ownership and times) so the same folder
//! always yields the same content hash. Unpacking treats the archive as hostile: bounded entry
//! count and size (also bounding zstd expansion), and only plain relative files and folders.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Component, Path};

use sha2::{Digest, Sha256};

/// The manifest's path inside a bundle.
pub const MANIFEST_PATH: &str = "manifest.json";
/// The component's path inside a bundle.
pub const COMPONENT_PATH: &str = "dist/main.wasm";
/// The folder of iframe UI assets inside a bundle.
pub const UI_DIR: &str = "ui";
/// Where `ext build` writes a UI built from sources (a `ui/` with a `package.json`); packed
/// as the bundle's `ui/`.
pub const BUILT_UI_DIR: &str = "dist/ui";

/// `sha256:<64 lowercase hex>`, the identity of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(String);

impl ContentHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Result<Self, BundleError> {
        let valid = text.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(BundleError::BadContentHash(text.to_owned()))
        }
    }

    /// The full `sha256:<hex>` form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex digest alone (for storage keys such as `sha256/<hex>`).
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Bounds applied when unpacking a bundle.
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    /// Maximum number of tar entries (files and folders).
    pub max_entries: usize,
    /// Maximum total size of the files once decompressed.
    pub max_total_bytes: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_total_bytes: 256 << 20,
        }
    }
}

/// Why a bundle could not be packed or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not `sha256:<64 lowercase hex>`.
    #[error("invalid content hash '{0}': expected sha256:<64 lowercase hex digits>")]
    BadContentHash(String),
    /// A file the bundle must contain is absent.
    #[error("the bundle has no {0}")]
    Missing(&'static str),
    /// An entry path is absolute, climbs out with `..`, or is otherwise not a plain relative path.
    #[error("unsafe path in bundle: '{0}' (only plain relative paths are allowed)")]
    UnsafePath(String),
    /// An entry is a link, device, fifo or other non-regular file.
    #[error("bundle entry '{path}' is a {kind}; only regular files and folders are allowed")]
    ForbiddenEntry {
        /// The entry path.
        path: String,
        /// What it is.
        kind: String,
    },
    /// The same path appears twice.
    #[error("bundle entry '{0}' appears more than once")]
    Duplicate(String),
    /// Too many entries.
    #[error("the bundle has more than {0} entries")]
    TooManyEntries(usize),
    /// Too large once decompressed.
    #[error("the bundle is larger than {0} bytes once decompressed")]
    TooLarge(u64),
    /// While packing: a file that must not be shipped (hidden, a link…).
    #[error("cannot pack '{path}': {reason}")]
    Unpackable {
        /// The offending path, relative to the extension folder.
        path: String,
        /// Why.
        reason: String,
    },
    /// The archive is not a valid zstd-compressed tar.
    #[error("the bundle is not a valid tar.zst archive: {0}")]
    Corrupt(String),
    /// Reading the extension folder failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A packed bundle: the archive bytes and their content hash.
#[derive(Debug, Clone)]
pub struct PackedBundle {
    /// The `.tar.zst` bytes.
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`.
    pub content_hash: ContentHash,
}

/// An unpacked bundle's files, by relative path (folders are implied).
#[derive(Debug, Clone, Default)]
pub struct BundleFiles {
    files: BTreeMap<String, Vec<u8>>,
}

impl BundleFiles {
    /// The bytes of `path`, if the bundle has that file.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// Whether the bundle has the file `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// Every file path, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The manifest bytes.
    pub fn manifest(&self) -> Result<&[u8], BundleError> {
        self.get(MANIFEST_PATH)
            .ok_or(BundleError::Missing(MANIFEST_PATH))
    }

    /// The component bytes.
    pub fn component(&self) -> Result<&[u8], BundleError> {
        self.get(COMPONENT_PATH)
            .ok_or(BundleError::Missing(COMPONENT_PATH))
    }
}

/// Packs an extension folder: `manifest.json`, `dist/main.wasm`, and every file under `ui/`
/// (or, for a UI built from sources — `ui/package.json` — under `dist/ui/`, as `ui/`).
/// Hidden files and links are refused rather than silently skipped, so an author learns why a
/// file is missing from the bundle.
pub fn pack(extension_dir: &Path) -> Result<PackedBundle, BundleError> {
    let mut paths = vec![MANIFEST_PATH.to_owned(), COMPONENT_PATH.to_owned()];
    for required in [MANIFEST_PATH, COMPONENT_PATH] {
        if !extension_dir.join(required).is_file() {
            return Err(BundleError::Missing(required));
        }
    }
    // A UI with a package.json is source: `ext build` writes what the browser loads to
    // dist/ui/, and that goes into the bundle's ui/.
    let source_ui = extension_dir.join(UI_DIR).join("package.json").is_file();
    let (ui_root, ui) = if source_ui {
        let built = extension_dir.join(BUILT_UI_DIR);
        if !built.is_dir() {
            return Err(BundleError::Missing(BUILT_UI_DIR));
        }
        (extension_dir.join("dist"), built)
    } else {
        (extension_dir.to_owned(), extension_dir.join(UI_DIR))
    };
    if ui.is_dir() {
        collect_files(&ui_root, &ui, &mut paths)?;
    }
    paths.sort();

    let mut tar = tar::Builder::new(Vec::new());
    for path in &paths {
        let full = if source_ui && path.starts_with("ui/") {
            ui_root.join(path)
        } else {
            extension_dir.join(path)
        };
        let data = std::fs::read(&full).map_err(|source| io_error(&full, source))?;
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        tar.append_data(&mut header, path, data.as_slice())
            .map_err(|source| io_error(&full, source))?;
    }
    let archive = tar
        .into_inner()
        .map_err(|source| io_error(extension_dir, source))?;
    let bytes = zstd::encode_all(archive.as_slice(), 19)
        .map_err(|source| io_error(extension_dir, source))?;
    Ok(PackedBundle {
        content_hash: ContentHash::of(&bytes),
        bytes,
    })
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), BundleError> {
    let entries = std::fs::read_dir(dir).map_err(|source| io_error(dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| io_error(dir, source))?;
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .expect("walked below root")
            .to_string_lossy()
            .replace('\\', "/");
        let unpackable = |reason: &str| BundleError::Unpackable {
            path: relative.clone(),
            reason: reason.to_owned(),
        };
        if entry.file_name().to_string_lossy().starts_with('.') {
            return Err(unpackable(
                "hidden files are not allowed in a bundle; remove or rename it",
            ));
        }
        let kind = entry
            .file_type()
            .map_err(|source| io_error(&path, source))?;
        if kind.is_symlink() {
            return Err(unpackable(
                "links are not allowed in a bundle; copy the file instead",
            ));
        } else if kind.is_dir() {
            collect_files(root, &path, out)?;
        } else if kind.is_file() {
            out.push(relative);
        } else {
            return Err(unpackable("only regular files can be packed"));
        }
    }
    Ok(())
}

/// Unpacks and checks a bundle archive within `limits`.
pub fn unpack(bytes: &[u8], limits: UnpackLimits) -> Result<BundleFiles, BundleError> {
    let decoder = zstd::Decoder::new(bytes).map_err(|e| BundleError::Corrupt(e.to_string()))?;
    // Bounds total decompressed bytes, headers included, whatever the archive claims.
    let mut archive = tar::Archive::new(decoder.take(limits.max_total_bytes + (1 << 20)));
    let mut files = BTreeMap::new();
    let mut total: u64 = 0;
    let entries = archive
        .entries()
        .map_err(|e| BundleError::Corrupt(e.to_string()))?;
    for (index, entry) in entries.enumerate() {
        if index >= limits.max_entries {
            return Err(BundleError::TooManyEntries(limits.max_entries));
        }
        let mut entry = entry.map_err(|e| BundleError::Corrupt(e.to_string()))?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = safe_relative_path(&raw_path)?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            other => {
                return Err(BundleError::ForbiddenEntry {
                    path: raw_path,
                    kind: entry_kind_name(other),
                });
            }
        }
        let size = entry
            .header()
            .size()
            .map_err(|e| BundleError::Corrupt(e.to_string()))?;
        total = total.saturating_add(size);
        if total > limits.max_total_bytes {
            return Err(BundleError::TooLarge(limits.max_total_bytes));
        }
        let mut data = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| BundleError::Corrupt(e.to_string()))?;
        if files.insert(path.clone(), data).is_some() {
            return Err(BundleError::Duplicate(path));
        }
    }
    Ok(BundleFiles { files })
}

/// Accepts only `a/b/c`-style paths: no root, no `..`, no `.`, no empty or backslash segments.
fn safe_relative_path(raw: &str) -> Result<String, BundleError> {
    let unsafe_path = || BundleError::UnsafePath(raw.to_owned());
    let trimmed = raw.strip_suffix('/').unwrap_or(raw);
    if trimmed.is_empty() || trimmed.contains('\\') || trimmed.contains('\0') {
        return Err(unsafe_path());
    }
    let mut parts = Vec::new();
    for component in Path::new(trimmed).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().ok_or_else(unsafe_path)?),
            _ => return Err(unsafe_path()),
        }
    }
    let normal = parts.join("/");
    // `Path::components` silently drops `.` and doubled slashes; refuse them instead.
    if normal != trimmed {
        return Err(unsafe_path());
    }
    Ok(normal)
}

fn entry_kind_name(kind: tar::EntryType) -> String {
    match kind {
        tar::EntryType::Symlink => "symbolic link".into(),
        tar::EntryType::Link => "hard link".into(),
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Fifo => "fifo".into(),
        other => format!("{other:?} entry"),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> BundleError {
    BundleError::Io {
        path: path.display().to_string(),
        source,
    }
}
