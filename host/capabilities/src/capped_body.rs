//! A body capped while it streams: past the cap the next read fails with a wasi:http error
//! (`HTTP-request-body-size` by default) instead of the node buffering without bound. Used for
//! inbound request bodies and for outbound (egress) bodies both ways.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use wasmtime_wasi_http::Error as HttpError;

/// `inner`, failing once more than `limit` bytes have passed.
pub struct CappedBody<B> {
    inner: B,
    limit: u64,
    seen: u64,
    counters: Vec<Counter>,
    exceeded: fn(Option<u64>) -> HttpError,
}

impl<B> CappedBody<B> {
    /// Caps `inner` at `limit` bytes.
    pub fn new(inner: B, limit: u64) -> Self {
        Self {
            inner,
            limit,
            seen: 0,
            counters: Vec::new(),
            exceeded: HttpError::HttpRequestBodySize,
        }
    }

    /// Also adds every byte read to `counter` (may be called more than once).
    pub fn counting(mut self, counter: Counter) -> Self {
        self.counters.push(counter);
        self
    }

    /// The error past the cap, given the bytes seen (default: `HTTP-request-body-size`).
    pub fn on_exceeded(mut self, error: fn(Option<u64>) -> HttpError) -> Self {
        self.exceeded = error;
        self
    }
}

impl<B> Body for CappedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<HttpError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    for counter in &this.counters {
                        counter.inc_by(data.len() as u64);
                    }
                    if this.seen > this.limit {
                        return Poll::Ready(Some(Err((this.exceeded)(Some(this.seen)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn passes_bodies_within_the_cap_and_fails_past_it() {
        let ok = CappedBody::new(Full::new(Bytes::from_static(b"12345")), 5);
        assert_eq!(ok.collect().await.unwrap().to_bytes(), "12345");
        let over = CappedBody::new(Full::new(Bytes::from_static(b"123456")), 5);
        assert!(matches!(
            over.collect().await,
            Err(HttpError::HttpRequestBodySize(Some(6)))
        ));
    }
}
