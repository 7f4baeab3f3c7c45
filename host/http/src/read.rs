//! The one bounded request-body reader: a declared `content-length` over the cap is refused
//! before reading; a body that grows past it while streaming is refused too. Either way the
//! rest is drained (up to a bound) before the 413 goes out, so a client that sends its whole
//! body before reading the answer sees the 413 instead of a reset connection. A body that
//! stops arriving for [`BODY_IDLE_TIMEOUT`] is answered 408, so a stalled client holds nothing
//! for long.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Body;

use crate::body::BoxError;
use crate::error::ApiError;

/// Bytes of an oversized body still read (and dropped) before answering 413.
pub const OVERSIZE_DRAIN_BYTES: u64 = 16 << 20;

/// Longest wait for the next piece of a request body (408 past it).
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The request's `content-length`, when it declares a valid one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The whole body, refused with 413 past `limit` bytes; `what` names the body in the
/// message. A body that fails mid-way is a 400; one that stalls for [`BODY_IDLE_TIMEOUT`] a 408.
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
    loop {
        let Ok(next) = tokio::time::timeout(BODY_IDLE_TIMEOUT, body.frame()).await else {
            return Err(ApiError::new(
                http::StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the {what} stopped arriving: nothing for {} s after {seen} bytes",
                    BODY_IDLE_TIMEOUT.as_secs()
                ),
            ));
        };
        let Some(frame) = next else {
            break;
        };
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

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_is_a_408() {
        let error = read_body(&HeaderMap::new(), Stalls { sent: false }, 100, "bundle")
            .await
            .unwrap_err();
        assert_eq!(error.status(), http::StatusCode::REQUEST_TIMEOUT);
        assert!(error.to_string().contains("after 2 bytes"), "{error}");
    }

    /// Sends one chunk, then neither sends again nor ends.
    struct Stalls {
        sent: bool,
    }

    impl Body for Stalls {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
            if self.sent {
                return std::task::Poll::Pending;
            }
            self.sent = true;
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(
                b"12",
            )))))
        }
    }
}
