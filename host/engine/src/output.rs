//! Guest stdout/stderr: kept up to a bound for the request's log, never blocking or failing the
//! guest (a chatty extension must not trap because it printed too much).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// A bounded, shared capture of what a guest writes to one output stream.
#[derive(Clone)]
pub struct GuestOutput {
    inner: Arc<Mutex<Captured>>,
}

struct Captured {
    kept: BytesMut,
    capacity: usize,
    dropped: u64,
}

impl GuestOutput {
    /// A capture keeping at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Captured {
                kept: BytesMut::new(),
                capacity,
                dropped: 0,
            })),
        }
    }

    /// The kept text (lossy UTF-8) and how many bytes were dropped past the bound.
    pub fn take(&self) -> (String, u64) {
        let mut captured = self.lock();
        let text = String::from_utf8_lossy(&captured.kept).into_owned();
        captured.kept.clear();
        (text, std::mem::take(&mut captured.dropped))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        // A poisoned lock only means another writer panicked mid-append; the bytes are still valid.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut captured = self.lock();
        let room = captured.capacity.saturating_sub(captured.kept.len());
        let kept = room.min(buf.len());
        captured.kept.extend_from_slice(&buf[..kept]);
        captured.dropped += (buf.len() - kept) as u64;
        // Report everything as written: the guest must not retry or fail on a full log.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn keeps_up_to_capacity_and_counts_the_rest() {
        let output = GuestOutput::new(5);
        let mut writer = Box::into_pin(output.async_stream());
        writer.write_all(b"hello world").await.unwrap();
        let (text, dropped) = output.take();
        assert_eq!(text, "hello");
        assert_eq!(dropped, 6);
    }
}
