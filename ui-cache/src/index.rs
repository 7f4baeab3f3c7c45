//! The index of one bundle's UI files, and extraction into it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::compress::{self, Effort, Encoding};

/// A compressed variant is kept only when at most this fraction of the original.
const WORTH_IT: f64 = 0.9;

/// How much of one bundle's UI is precompressed, and how hard: extraction costs bounded CPU
/// whatever the bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precompression {
    /// Bytes compressed at the best ratio (gzip 9, brotli 11: ~2 CPU-s per MiB); the next
    /// ones at a fast level.
    pub best_bytes: u64,
    /// Bytes compressed at all; files past it are served as they are.
    pub max_bytes: u64,
}

impl Default for Precompression {
    /// 4 MiB at the best ratio (≈ 8 CPU-seconds at most), 64 MiB in all (≈ 3 more).
    fn default() -> Self {
        Self {
            best_bytes: 4 << 20,
            max_bytes: 64 << 20,
        }
    }
}

/// One UI file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiFile {
    /// Hex sha256 of the file (its strong ETag and blob name).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type by extension (`application/octet-stream` when unknown).
    pub mime: String,
    /// Size of the gzip variant, when one is kept.
    pub gzip: Option<u64>,
    /// Size of the brotli variant, when one is kept.
    pub br: Option<u64>,
}

impl UiFile {
    /// Whether a variant in `encoding` is stored.
    pub fn has(&self, encoding: Encoding) -> bool {
        match encoding {
            Encoding::Identity => true,
            Encoding::Gzip => self.gzip.is_some(),
            Encoding::Brotli => self.br.is_some(),
        }
    }

    /// Size of the variant in `encoding`.
    pub fn size_of(&self, encoding: Encoding) -> Option<u64> {
        match encoding {
            Encoding::Identity => Some(self.size),
            Encoding::Gzip => self.gzip,
            Encoding::Brotli => self.br,
        }
    }
}

/// The UI files of one bundle, by path below `ui/` (`index.html`, `assets/app.js`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiIndex {
    /// Files by path.
    pub files: BTreeMap<String, UiFile>,
}

impl UiIndex {
    /// The file a request path names: the file itself, or `index.html` of a directory (an
    /// empty path, a trailing `/`, or a path that is a directory holding one). The path must
    /// already be checked (no `..`, no hidden segments): this is an exact lookup.
    pub fn lookup(&self, path: &str) -> Option<(String, &UiFile)> {
        let trimmed = path.trim_end_matches('/');
        let candidates = if trimmed.is_empty() {
            vec!["index.html".to_owned()]
        } else if path.ends_with('/') {
            vec![format!("{trimmed}/index.html")]
        } else {
            vec![trimmed.to_owned(), format!("{trimmed}/index.html")]
        };
        candidates
            .into_iter()
            .find_map(|c| self.files.get(&c).map(|f| (c, f)))
    }

    /// Bytes of every stored blob (all variants).
    pub fn stored_bytes(&self) -> u64 {
        self.files
            .values()
            .map(|f| f.size + f.gzip.unwrap_or(0) + f.br.unwrap_or(0))
            .sum()
    }
}

/// Indexes `files` (path below `ui/`, bytes) and returns the blobs to store, named
/// `<sha256><suffix>`, identical files stored once, text precompressed within the default
/// [`Precompression`] budget. CPU-heavy: run it off the async workers.
pub fn extract<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> (UiIndex, Vec<(String, Vec<u8>)>) {
    extract_with(files, Precompression::default())
}

/// [`extract`] within `budget`.
pub fn extract_with<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    budget: Precompression,
) -> (UiIndex, Vec<(String, Vec<u8>)>) {
    let mut index = UiIndex::default();
    let mut compressed = 0u64;
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (path, bytes) in files {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let mime = mime_guess::from_path(path)
            .first_raw()
            .unwrap_or("application/octet-stream")
            .to_owned();
        let mut file = UiFile {
            sha256: sha256.clone(),
            size: bytes.len() as u64,
            mime,
            gzip: None,
            br: None,
        };
        if !blobs.contains_key(&sha256) {
            blobs.insert(sha256.clone(), bytes.to_vec());
            let size = bytes.len() as u64;
            if compress::compressible(&file.mime)
                && bytes.len() >= 64
                && compressed + size <= budget.max_bytes
            {
                let effort = if compressed + size <= budget.best_bytes {
                    Effort::Best
                } else {
                    Effort::Fast
                };
                compressed += size;
                let keep = |packed: &[u8]| packed.len() as f64 <= bytes.len() as f64 * WORTH_IT;
                let gz = compress::gzip(bytes, effort);
                if keep(&gz) {
                    blobs.insert(format!("{sha256}{}", Encoding::Gzip.suffix()), gz);
                }
                let br = compress::brotli(bytes, effort);
                if keep(&br) {
                    blobs.insert(format!("{sha256}{}", Encoding::Brotli.suffix()), br);
                }
            }
        }
        let size_of = |encoding: Encoding| {
            blobs
                .get(&format!("{sha256}{}", encoding.suffix()))
                .map(|b| b.len() as u64)
        };
        file.gzip = size_of(Encoding::Gzip);
        file.br = size_of(Encoding::Brotli);
        index.files.insert(path.to_owned(), file);
    }
    (index, blobs.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_types_hashes_and_precompresses_text_only() {
        let html = "<!doctype html><p>hello</p>".repeat(20);
        let png = [0x89u8, b'P', b'N', b'G'].repeat(40);
        let (index, blobs) = extract([
            ("index.html", html.as_bytes()),
            ("img/logo.png", &png[..]),
            ("copy.html", html.as_bytes()),
        ]);
        let page = &index.files["index.html"];
        assert_eq!(page.mime, "text/html");
        assert_eq!(page.size, html.len() as u64);
        assert!(page.gzip.is_some() && page.br.is_some());
        assert_eq!(index.files["img/logo.png"].mime, "image/png");
        assert_eq!(index.files["img/logo.png"].gzip, None);
        assert_eq!(index.files["copy.html"], *page);
        // index.html and its copy share their blobs: html, .gz, .br, png.
        assert_eq!(blobs.len(), 4);
        assert_eq!(
            index.lookup("").map(|(p, _)| p),
            Some("index.html".to_owned())
        );
        assert!(index.lookup("img").is_none());
        assert!(index.lookup("img/logo.png").is_some());
    }

    #[test]
    fn precompression_stays_within_its_budget() {
        // Three distinct 1000-byte scripts; 1500 bytes at the best effort, 2500 in all.
        let scripts: Vec<String> = (0..3)
            .map(|i| format!("let v{i} = {i};\n").repeat(100)[..1000].to_owned())
            .collect();
        let budget = Precompression {
            best_bytes: 1500,
            max_bytes: 2500,
        };
        let (index, _) = extract_with(
            scripts
                .iter()
                .enumerate()
                .map(|(i, s)| (["a.js", "b.js", "c.js"][i], s.as_bytes())),
            budget,
        );
        // a.js best, b.js fast (past 1500), c.js not at all (past 2500).
        assert!(index.files["a.js"].br.is_some());
        assert!(index.files["b.js"].br.is_some() && index.files["b.js"].gzip.is_some());
        assert_eq!(index.files["c.js"].br, None);
        assert_eq!(index.files["c.js"].gzip, None);
    }
}
