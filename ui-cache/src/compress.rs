//! Precompression of text assets: once, at extraction, at the best ratio.

use std::io::Write;

/// A stored representation of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The file as it is.
    Identity,
    /// gzip (`content-encoding: gzip`).
    Gzip,
    /// brotli (`content-encoding: br`).
    Brotli,
}

impl Encoding {
    /// The `content-encoding` token (`None` for identity).
    pub fn token(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Brotli => Some("br"),
        }
    }

    /// Suffix of the stored blob.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Self::Identity => "",
            Self::Gzip => ".gz",
            Self::Brotli => ".br",
        }
    }
}

/// Whether files of `mime` are worth compressing (text-like; images, fonts and archives are
/// already compressed).
pub(crate) fn compressible(mime: &str) -> bool {
    mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript"
                | "application/json"
                | "application/manifest+json"
                | "application/xml"
                | "application/wasm"
                | "image/svg+xml"
                | "image/x-icon"
        )
}

/// How hard to compress one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effort {
    /// gzip 9, brotli 11: the smallest files, about 2 CPU-seconds per MiB.
    Best,
    /// gzip 6, brotli 5: nearly as small, tens of MiB per CPU-second.
    Fast,
}

/// gzip at level 9 ([`Effort::Best`]) or 6.
pub(crate) fn gzip(bytes: &[u8], effort: Effort) -> Vec<u8> {
    let level = match effort {
        Effort::Best => flate2::Compression::best(),
        Effort::Fast => flate2::Compression::default(),
    };
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
    encoder
        .write_all(bytes)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// brotli at quality 11 ([`Effort::Best`]) or 5 (window 22).
pub(crate) fn brotli(bytes: &[u8], effort: Effort) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: match effort {
            Effort::Best => 11,
            Effort::Fast => 5,
        },
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params)
        .expect("compressing from and to memory cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn both_encodings_round_trip() {
        let text = "alga edge ".repeat(200);
        let gz = gzip(text.as_bytes(), Effort::Best);
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, text);
        let br = brotli(text.as_bytes(), Effort::Best);
        let mut back = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut back).unwrap();
        assert_eq!(back, text.as_bytes());
        assert!(br.len() < text.len() / 10 && gz.len() < text.len() / 10);
        assert!(compressible("text/html") && compressible("application/javascript"));
        assert!(!compressible("image/png"));
    }
}
