//! The one bounded request-body reader: a declared `content-length` over the cap is refused
//! before reading; a body that grows past it while streaming is refused too. Either way the
//! rest is drained (up to a bound) before the 413 goes out, so a client that sends its whole
//! body before reading the answer sees the 413 instead of a reset connection.

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Body;

use crate::body::BoxError;
use crate::error::ApiError;

/// Bytes of an oversized body still read (and dropped) before answering 413.
pub const OVERSIZE_DRAIN_BYTES: u64 = 16 << 20;

/// The request's `content-length`, when it declares a valid one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The whole body, refused with 413 past `limit` bytes; `what` names the body in the
/// message. A body that fails mid-way is a 400.
pub async fn read_body<B>(
    headers: &HeaderMap,
    body: B,
    limit: u64,
    what: &str,
) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let declared = declared_length(headers);
    let mut too_large = declared.is_some_and(|n| n > limit);
    // A declared length far past the cap is not worth draining: the connection closes.
    if declared.is_some_and(|n| n > limit.saturating_add(OVERSIZE_DRAIN_BYTES)) {
        return Err(ApiError::payload_too_large(what, limit));
    }
    let mut body = std::pin::pin!(body);
    let mut collected = bytes::BytesMut::new();
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(format!("could not read the {what}: {}", e.into()))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len() as u64);
        too_large |= seen > limit;
        if too_large {
            if seen > limit.saturating_add(OVERSIZE_DRAIN_BYTES) {
                break;
            }
        } else {
            collected.extend_from_slice(&data);
        }
    }
    if too_large {
        return Err(ApiError::payload_too_large(what, limit));
    }
    Ok(collected.freeze())
}

/// The body parsed as JSON `T` (read as by [`read_body`]); invalid JSON is a 400 naming `what`.
pub async fn read_json<B, T>(
    headers: &HeaderMap,
    body: B,
    limit: u64,
    what: &str,
) -> Result<T, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    T: serde::de::DeserializeOwned,
{
    let bytes = read_body(headers, body, limit, what).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn reads_within_the_cap_and_refuses_past_it() {
        let headers = HeaderMap::new();
        let ok = read_body(&headers, Full::new(Bytes::from_static(b"12345")), 5, "body").await;
        assert_eq!(ok.unwrap(), "12345");
        let over = read_body(
            &headers,
            Full::new(Bytes::from_static(b"123456")),
            5,
            "body",
        )
        .await;
        assert_eq!(
            over.unwrap_err().status(),
            http::StatusCode::PAYLOAD_TOO_LARGE
        );
        let mut declared = HeaderMap::new();
        declared.insert(http::header::CONTENT_LENGTH, "6".parse().unwrap());
        let early = read_body(&declared, Full::new(Bytes::from_static(b"1")), 5, "body").await;
        assert_eq!(early.unwrap_err().code(), "payload_too_large");
    }
}
