//! Fuzz targets of Alga Edge's input-facing code. Each target is a plain `fn(&[u8])` that
//! feeds the bytes to the real code and asserts its invariants (a normalised UI path never
//! leaves `ui/`, a byte range lies inside the file, filtered headers hold only allowlisted
//! names, a parsed value survives its own serialisation…), panicking when one breaks.
//!
//! The same functions run under AFL++ (`src/bin/*`, feature `afl`, built and run by
//! `scripts/fuzz.sh`) and in the smoke test (`tests/smoke.rs`), which replays the committed
//! seed corpora (`corpus/<target>/`) and a bounded number of their mutations through every
//! target in a plain `cargo test`.

pub mod targets;

use std::sync::OnceLock;

/// One fuzz target: its name (the AFL binary is `fuzz-<name>`, its seeds `corpus/<name>/`)
/// and its entry point.
#[derive(Clone, Copy)]
pub struct Target {
    /// Name used by `scripts/fuzz.sh TARGET SECONDS`.
    pub name: &'static str,
    /// Feeds one input to the code under test; panics when an invariant breaks.
    pub run: fn(&[u8]),
}

/// Every target, in the order `scripts/fuzz.sh list` prints them.
pub const TARGETS: [Target; 8] = [
    Target {
        name: "manifest",
        run: targets::manifest::run,
    },
    Target {
        name: "bundle",
        run: targets::bundle::run,
    },
    Target {
        name: "ui",
        run: targets::ui::run,
    },
    Target {
        name: "headers",
        run: targets::headers::run,
    },
    Target {
        name: "tenant_token",
        run: targets::tenant_token::run,
    },
    Target {
        name: "runner_envelope",
        run: targets::runner_envelope::run,
    },
    Target {
        name: "kv",
        run: targets::kv::run,
    },
    Target {
        name: "abi",
        run: targets::abi::run,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

/// One current-thread runtime for the targets that call async code (built once: a fuzzer
/// runs millions of inputs in one process).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
}

/// `data` split at its first `n - 1` newlines; missing fields are empty.
pub(crate) fn fields<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&[][..]; N];
    let mut rest = data;
    for (i, field) in out.iter_mut().enumerate() {
        if i + 1 == N {
            *field = rest;
            break;
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(at) => {
                *field = &rest[..at];
                rest = &rest[at + 1..];
            }
            None => {
                *field = rest;
                rest = &[];
            }
        }
    }
    out
}

/// A `.tar.zst` bundle of `files` (GNU headers, so long paths fit), as authors' tools make
/// them; `None` when the tar format cannot hold one of the paths (e.g. a NUL byte).
pub(crate) fn pack<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Option<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, path, data).ok()?;
    }
    let archive = tar.into_inner().ok()?;
    Some(zstd::encode_all(archive.as_slice(), 1).expect("zstd compresses in memory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_fields_and_pads_missing_ones() {
        assert_eq!(fields::<3>(b"a\nb\nc\nd"), [&b"a"[..], b"b", b"c\nd"]);
        assert_eq!(fields::<3>(b"a"), [&b"a"[..], b"", b""]);
    }

    #[test]
    fn names_are_unique() {
        for (i, t) in TARGETS.iter().enumerate() {
            assert!(TARGETS[..i].iter().all(|u| u.name != t.name), "{}", t.name);
            assert!(target(t.name).is_some());
        }
    }
}
