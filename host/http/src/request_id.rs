//! The id a request is traced by across the platform's systems and ours.

use http::Request;

/// The caller's `x-request-id` when it is a sane token (1–128 characters of
/// `[A-Za-z0-9-_.:]`), else a fresh UUID.
pub fn request_id_for<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_usable_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Whether a caller-chosen request id is a sane token (1–128 characters of
/// `[A-Za-z0-9-_.:]`), safe in log lines and headers.
pub fn is_usable_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}
