//! Extension iframe UI files by bundle content hash (DESIGN §6).
//!
//! - [`extract`]: a bundle's `ui/` files → an [`UiIndex`] (path → sha256, size, MIME type) and
//!   the blobs to store, text assets precompressed once with gzip and brotli.
//! - [`UiCache`]: extracted bundles on disk (`<dir>/<content-hex>/index.json` and
//!   `f/<file-sha256>[.gz|.br]`), bounded by total bytes, least recently used bundles evicted;
//!   indexes and small hot files in memory, bounded too.
//!
//! Request paths never reach the filesystem: a file is found in the index by its exact path
//! and read from disk under its own sha256, so no request can name a file outside its bundle.

mod compress;
mod index;
mod store;

pub use compress::Encoding;
pub use index::{Precompression, UiFile, UiIndex, extract, extract_with};
pub use store::{UiCache, UiCacheError, UiCacheLimits};
