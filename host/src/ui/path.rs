//! Which file of a bundle's `ui/` a request path names: decoded once, then refused when it
//! could leave the bundle or reach something hidden. The result is only ever used as a key of
//! the bundle's index, never as a filesystem path; the checks make bad requests fail loudly
//! (400) instead of quietly missing (404).

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not UTF-8 after percent-decoding.
    NotUtf8,
    /// `..` or `.` segments (plain or encoded).
    Traversal,
    /// A backslash, NUL or other control character.
    BadCharacter,
    /// Starts with `/` (after decoding) or has empty segments.
    Absolute,
    /// A segment starting with `.`.
    Hidden,
}

impl PathError {
    /// A message for the error body.
    pub fn message(self) -> &'static str {
        match self {
            Self::NotUtf8 => "the path is not UTF-8",
            Self::Traversal => "'.' and '..' segments are not allowed",
            Self::BadCharacter => "backslashes and control characters are not allowed",
            Self::Absolute => "absolute paths and empty segments are not allowed",
            Self::Hidden => "hidden files are not served",
        }
    }
}

/// The path below `ui/` named by `raw` (the still percent-encoded rest of the URL path).
pub fn ui_path(raw: &str) -> Result<String, PathError> {
    if raw.contains('\\') {
        return Err(PathError::BadCharacter);
    }
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathError::NotUtf8)?;
    if decoded.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(PathError::BadCharacter);
    }
    if decoded.starts_with('/') {
        return Err(PathError::Absolute);
    }
    let segments: Vec<&str> = decoded.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => return Err(PathError::Traversal),
            // A trailing slash (directory) is fine; `a//b` is not.
            "" if i != last => return Err(PathError::Absolute),
            s if s.starts_with('.') => return Err(PathError::Hidden),
            _ => {}
        }
    }
    Ok(decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_paths_and_directories() {
        assert_eq!(ui_path("").unwrap(), "");
        assert_eq!(ui_path("index.html").unwrap(), "index.html");
        assert_eq!(ui_path("assets/app%20v2.js").unwrap(), "assets/app v2.js");
        assert_eq!(ui_path("docs/").unwrap(), "docs/");
    }

    #[test]
    fn refuses_traversal_plain_and_encoded() {
        for (raw, error) in [
            ("../manifest.json", PathError::Traversal),
            ("a/../../x", PathError::Traversal),
            ("%2e%2e/manifest.json", PathError::Traversal),
            ("%2E%2E%2Fdist%2Fmain.wasm", PathError::Traversal),
            ("..%2fdist/main.wasm", PathError::Traversal),
            ("./index.html", PathError::Traversal),
            ("..\\manifest.json", PathError::BadCharacter),
            ("..%5cmanifest.json", PathError::BadCharacter),
            ("index.html%00.png", PathError::BadCharacter),
            ("%2fetc/passwd", PathError::Absolute),
            ("a//b", PathError::Absolute),
            (".env", PathError::Hidden),
            ("assets/.git/config", PathError::Hidden),
            ("%ff", PathError::NotUtf8),
        ] {
            assert_eq!(ui_path(raw), Err(error), "{raw}");
        }
    }
}
