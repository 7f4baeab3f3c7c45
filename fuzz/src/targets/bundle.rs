//! Bundle unpack (registry/src/bundle.rs): whatever the archive, unpacking stays within its
//! limits, yields only plain relative paths, and what it yields packs and unpacks again to the
//! same files. The first byte picks the input's form: even, a tar that the target compresses
//! (so mutations reach the tar layer); odd, the `.tar.zst` bytes themselves.

use std::collections::BTreeMap;

use alga_edge_registry::bundle::{self, UnpackLimits};
use alga_edge_registry::manifest::Manifest;

/// Small limits, so the fuzzer reaches them.
const LIMITS: UnpackLimits = UnpackLimits {
    max_entries: 64,
    max_total_bytes: 1 << 20,
};

/// Runs one input: a form byte, then a tar or a `.tar.zst`.
pub fn run(data: &[u8]) {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let archive = if form & 1 == 0 {
        zstd::encode_all(rest, 1).expect("zstd compresses in memory")
    } else {
        rest.to_vec()
    };
    let Ok(files) = bundle::unpack(&archive, LIMITS) else {
        return;
    };
    let unpacked: BTreeMap<String, Vec<u8>> = files
        .paths()
        .map(|p| (p.to_owned(), files.get(p).expect("listed").to_vec()))
        .collect();
    assert!(unpacked.len() <= LIMITS.max_entries);
    let total: usize = unpacked.values().map(Vec::len).sum();
    assert!(total as u64 <= LIMITS.max_total_bytes, "{total} bytes");
    for path in unpacked.keys() {
        assert_plain_relative(path);
    }

    let repacked = crate::pack(unpacked.iter().map(|(p, d)| (p.as_str(), d.as_slice())))
        .expect("unpacked paths pack again");
    let again = bundle::unpack(&repacked, LIMITS).expect("a repacked bundle unpacks");
    let again: BTreeMap<String, Vec<u8>> = again
        .paths()
        .map(|p| (p.to_owned(), again.get(p).expect("listed").to_vec()))
        .collect();
    assert_eq!(again, unpacked, "pack ∘ unpack is not the identity");

    // Publishing reads the manifest of whatever unpacked.
    let _ = Manifest::from_bundle(&files);
}

/// `a/b/c` only: nothing that could name a file outside the unpack root.
fn assert_plain_relative(path: &str) {
    assert!(!path.is_empty(), "empty path");
    assert!(!path.starts_with('/'), "absolute path {path:?}");
    assert!(
        !path.contains('\\') && !path.contains('\0'),
        "backslash or NUL in {path:?}"
    );
    for segment in path.split('/') {
        assert!(
            !segment.is_empty() && segment != "." && segment != "..",
            "segment {segment:?} in {path:?}"
        );
    }
}
