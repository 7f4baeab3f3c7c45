//! The body of every response a node sends, and constructors for whole bodies.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Error type of response bodies (a guest's body stream can fail mid-way).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body of every response the host sends.
pub type HostBody = UnsyncBoxBody<Bytes, BoxError>;

/// A whole body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> HostBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> HostBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A JSON response with `status` and `no-store` caching (errors and API answers are never
/// cached).
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<HostBody> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A 200 response of raw bytes (`application/octet-stream`).
pub fn bytes_response(bytes: impl Into<Bytes>) -> Response<HostBody> {
    let mut response = Response::new(full(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}
