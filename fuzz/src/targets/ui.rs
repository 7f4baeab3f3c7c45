//! UI path normalisation and range parsing (host/src/ui): a path `ui_path` accepts is a plain
//! relative key below `ui/` (no `.`/`..`, no empty, hidden, backslash or control segments),
//! percent-encoding it again gives it back, and the index lookup only ever returns a file of
//! the index; a `Range` answer lies inside the file, and a stale `If-Range` means the whole
//! file. Input: `path \n range \n size \n if-range`.

use alga_edge::ui::http_rules::{self, RangeAnswer};
use alga_edge::ui::ui_path;
use alga_edge_ui_cache::{UiFile, UiIndex};
use http::header::{ACCEPT_ENCODING, HeaderMap, HeaderValue, IF_NONE_MATCH, IF_RANGE, RANGE};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What re-encoding a decoded path escapes: everything but letters, digits and `/`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC.remove(b'/');

/// Runs one input.
pub fn run(data: &[u8]) {
    let [path, range, size, if_range] = crate::fields(data);
    check_path(&String::from_utf8_lossy(path));
    let size = std::str::from_utf8(size)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(data.len() as u64);
    check_range(range, size, if_range);
}

fn check_path(raw: &str) {
    let Ok(path) = ui_path(raw) else {
        return;
    };
    assert!(!path.starts_with('/'), "absolute: {path:?}");
    assert!(
        !path.chars().any(|c| c == '\\' || c.is_control()),
        "backslash or control character in {path:?}"
    );
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        assert!(*segment != "." && *segment != "..", "traversal in {path:?}");
        assert!(
            !segment.is_empty() || i + 1 == segments.len(),
            "empty segment in {path:?}"
        );
        assert!(!segment.starts_with('.'), "hidden segment in {path:?}");
    }
    // Decoding happened once: the decoded path, encoded again, decodes to itself.
    let encoded = utf8_percent_encode(&path, PATH).to_string();
    assert_eq!(ui_path(&encoded).as_deref(), Ok(path.as_str()));

    let file = |size| UiFile {
        sha256: "ab".repeat(32),
        size,
        mime: "text/html".into(),
        gzip: None,
        br: None,
    };
    let mut index = UiIndex::default();
    for (name, size) in [
        ("index.html", 1),
        ("assets/app.js", 2),
        ("docs/index.html", 3),
    ] {
        index.files.insert(name.into(), file(size));
    }
    index
        .files
        .insert(path.trim_end_matches('/').into(), file(4));
    if let Some((name, _)) = index.lookup(&path) {
        assert!(index.files.contains_key(&name), "lookup named {name:?}");
        let trimmed = path.trim_end_matches('/');
        assert!(
            name == trimmed || name == format!("{trimmed}/index.html") || name == "index.html",
            "{path:?} looked up {name:?}"
        );
    }
}

fn check_range(range: &[u8], size: u64, if_range: &[u8]) {
    let Ok(range) = HeaderValue::from_bytes(range) else {
        return;
    };
    let file = UiFile {
        sha256: "cd".repeat(32),
        size,
        mime: "application/javascript".into(),
        gzip: Some(size / 2),
        br: None,
    };
    let etag = http_rules::etag(&file);
    let mut headers = HeaderMap::new();
    headers.insert(RANGE, range.clone());
    // The same bytes as the other negotiated headers, for their parsers.
    headers.insert(ACCEPT_ENCODING, range.clone());
    headers.insert(IF_NONE_MATCH, range);
    let stale = match HeaderValue::from_bytes(if_range) {
        Ok(value) if !if_range.is_empty() => {
            let stale = !value.to_str().is_ok_and(|v| v.trim() == etag);
            headers.insert(IF_RANGE, value);
            stale
        }
        _ => false,
    };
    let encoding = http_rules::negotiate(&headers, &file);
    assert!(
        file.has(encoding),
        "negotiated {encoding:?}, which is not stored"
    );
    let _ = http_rules::not_modified(&headers, &etag);
    match http_rules::range(&headers, size, &etag) {
        RangeAnswer::Partial { start, end } => {
            assert!(!stale, "a range despite a stale If-Range");
            assert!(start <= end && end < size, "{start}-{end} of {size} bytes");
        }
        RangeAnswer::Unsatisfiable => assert!(!stale, "416 despite a stale If-Range"),
        RangeAnswer::Full => {}
    }
}
