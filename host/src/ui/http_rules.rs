//! The HTTP rules of immutable asset serving: content negotiation, conditional requests and
//! byte ranges (RFC 9110), kept apart from routing so each is tested on its own.

use http::HeaderMap;
use http::header::{ACCEPT_ENCODING, IF_NONE_MATCH, IF_RANGE, RANGE};

use alga_edge_ui_cache::{Encoding, UiFile};

/// The strong entity tag of a file: its sha256.
pub fn etag(file: &UiFile) -> String {
    format!("\"{}\"", file.sha256)
}

/// Whether `If-None-Match` matches `etag` (weak comparison, as RFC 9110 §13.1.2 asks).
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    let opaque = etag.trim_start_matches("W/");
    headers.get_all(IF_NONE_MATCH).iter().any(|value| {
        value.to_str().is_ok_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == opaque)
        })
    })
}

/// The best stored encoding the client accepts: br, then gzip, else identity.
pub fn negotiate(headers: &HeaderMap, file: &UiFile) -> Encoding {
    let accepted = |token: &str| {
        headers.get_all(ACCEPT_ENCODING).iter().any(|value| {
            value.to_str().is_ok_and(|list| {
                list.split(',').any(|item| {
                    let mut parts = item.split(';').map(str::trim);
                    let name = parts.next().unwrap_or("");
                    let q = parts
                        .find_map(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()))
                        .unwrap_or(1.0);
                    name.eq_ignore_ascii_case(token) && q > 0.0
                })
            })
        })
    };
    [Encoding::Brotli, Encoding::Gzip]
        .into_iter()
        .find(|e| file.has(*e) && e.token().is_some_and(accepted))
        .unwrap_or(Encoding::Identity)
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No (usable) range: send everything.
    Full,
    /// Bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// The range lies outside the file (416).
    Unsatisfiable,
}

/// Interprets `Range` (one `bytes=` range; several ranges are answered in full, which RFC
/// 9110 allows) and `If-Range` (a different tag means the whole file).
pub fn range(headers: &HeaderMap, size: u64, etag: &str) -> RangeAnswer {
    let Some(spec) = headers.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Full;
    };
    // An `If-Range` that is not our tag, unreadable text included, means the whole file
    // (RFC 9110 §13.1.5): a client resuming a stale copy must never get a part of a new one.
    if let Some(if_range) = headers.get(IF_RANGE)
        && !if_range.to_str().is_ok_and(|v| v.trim() == etag)
    {
        return RangeAnswer::Full;
    }
    let Some(ranges) = spec.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if ranges.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = ranges.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) => return RangeAnswer::Unsatisfiable,
            Some(n) => (size.saturating_sub(n), size.saturating_sub(1)),
            None => return RangeAnswer::Full,
        },
        // bytes=N-: from N to the end.
        (false, true) => match parse(first) {
            Some(start) => (start, size.saturating_sub(1)),
            None => return RangeAnswer::Full,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
            _ => return RangeAnswer::Full,
        },
        (true, true) => return RangeAnswer::Full,
    };
    if size == 0 || start >= size {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn file() -> UiFile {
        UiFile {
            sha256: "ab".repeat(32),
            size: 100,
            mime: "text/html".into(),
            gzip: Some(40),
            br: Some(30),
        }
    }

    #[test]
    fn negotiates_the_best_accepted_stored_encoding() {
        let f = file();
        assert_eq!(
            negotiate(&headers(&[("accept-encoding", "gzip, br")]), &f),
            Encoding::Brotli
        );
        assert_eq!(
            negotiate(&headers(&[("accept-encoding", "gzip, br;q=0")]), &f),
            Encoding::Gzip
        );
        assert_eq!(negotiate(&headers(&[]), &f), Encoding::Identity);
        let plain = UiFile {
            br: None,
            gzip: None,
            ..file()
        };
        assert_eq!(
            negotiate(&headers(&[("accept-encoding", "br")]), &plain),
            Encoding::Identity
        );
    }

    #[test]
    fn matches_entity_tags() {
        let tag = etag(&file());
        assert!(not_modified(&headers(&[("if-none-match", &tag)]), &tag));
        assert!(not_modified(
            &headers(&[("if-none-match", &format!("\"x\", W/{tag}"))]),
            &tag
        ));
        assert!(not_modified(&headers(&[("if-none-match", "*")]), &tag));
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"other\"")]),
            &tag
        ));
    }

    #[test]
    fn reads_single_byte_ranges() {
        let tag = etag(&file());
        let r = |spec: &str| range(&headers(&[("range", spec)]), 100, &tag);
        assert_eq!(r("bytes=0-9"), RangeAnswer::Partial { start: 0, end: 9 });
        assert_eq!(r("bytes=90-"), RangeAnswer::Partial { start: 90, end: 99 });
        assert_eq!(r("bytes=-10"), RangeAnswer::Partial { start: 90, end: 99 });
        assert_eq!(
            r("bytes=95-200"),
            RangeAnswer::Partial { start: 95, end: 99 }
        );
        assert_eq!(r("bytes=100-"), RangeAnswer::Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6"), RangeAnswer::Full);
        assert_eq!(r("items=0-1"), RangeAnswer::Full);
        let stale = headers(&[("range", "bytes=0-9"), ("if-range", "\"old\"")]);
        assert_eq!(range(&stale, 100, &tag), RangeAnswer::Full);
        // Found by fuzzing (fuzz/regressions/ui): an If-Range that is not text was ignored.
        let mut unreadable = headers(&[("range", "bytes=0-9")]);
        unreadable.insert(
            IF_RANGE,
            http::HeaderValue::from_bytes(b"W\xaa\"x\"").unwrap(),
        );
        assert_eq!(range(&unreadable, 100, &tag), RangeAnswer::Full);
        unreadable.insert(RANGE, http::HeaderValue::from_static("bytes=5-"));
        assert_eq!(range(&unreadable, 0, &tag), RangeAnswer::Full);
    }
}
