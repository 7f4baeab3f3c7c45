//! Guest stdout/stderr: kept up to a bound for the request's log, never blocking or failing the
//! guest (a chatty extension must not trap because it printed too much). While someone tails
//! the extension, each complete line also goes to the request's journal as it is written.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use alga_edge_capabilities::Journal;
use alga_edge_capabilities::journal::LineSource;
use alga_edge_capabilities::logging::{cut, escape_guest_text};
use bytes::BytesMut;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// A bounded, shared capture of what a guest writes to one output stream.
#[derive(Clone)]
pub struct GuestOutput {
    inner: Arc<Mutex<Captured>>,
}

/// Longest live line passed on; a guest writing more without a newline has it passed on in
/// pieces of this size.
const MAX_LIVE_LINE: usize = 4096;

struct Captured {
    kept: BytesMut,
    capacity: usize,
    dropped: u64,
    source: LineSource,
    journal: Option<Arc<Journal>>,
    /// Bytes of the current unfinished line, kept only while the journal is tapped.
    partial: Vec<u8>,
}

impl Captured {
    /// Passes complete lines of `partial` (all of it when `finish`) to the tapped journal.
    fn pass_lines(&mut self, finish: bool) {
        let Some(journal) = self.journal.clone().filter(|j| j.is_tapped()) else {
            self.partial.clear();
            return;
        };
        let mut start = 0;
        while let Some(end) = self.partial[start..].iter().position(|&b| b == b'\n') {
            pass_line(&journal, self.source, &self.partial[start..start + end]);
            start += end + 1;
        }
        self.partial.drain(..start);
        while self.partial.len() >= MAX_LIVE_LINE {
            let piece: Vec<u8> = self.partial.drain(..MAX_LIVE_LINE).collect();
            pass_line(&journal, self.source, &piece);
        }
        if finish && !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            pass_line(&journal, self.source, &rest);
        }
    }
}

/// One line of output, masked, cut and escaped as log lines are, to the journal's tap.
fn pass_line(journal: &Journal, source: LineSource, line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    let line = line.strip_suffix('\r').unwrap_or(&line);
    if line.trim().is_empty() {
        return;
    }
    let line = cut(&journal.mask(line), MAX_LIVE_LINE);
    journal.output(source, &escape_guest_text(&line));
}

impl GuestOutput {
    /// A capture of the guest's `source` stream (stdout or stderr) keeping at most `capacity`
    /// bytes.
    pub fn new(capacity: usize, source: LineSource) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Captured {
                kept: BytesMut::new(),
                capacity,
                dropped: 0,
                source,
                journal: None,
                partial: Vec::new(),
            })),
        }
    }

    /// Writes into `journal` from now on (the current request's): its secrets are masked and,
    /// when tapped, each line is passed on as it is written.
    pub fn attach(&self, journal: Arc<Journal>) {
        let mut captured = self.lock();
        captured.partial.clear();
        captured.journal = Some(journal);
    }

    /// The kept text (lossy UTF-8, with the request's secrets masked) and how many bytes were
    /// dropped past the bound. An unfinished live line is passed on now.
    pub fn take(&self) -> (String, u64) {
        let mut captured = self.lock();
        captured.pass_lines(true);
        let text = String::from_utf8_lossy(&captured.kept).into_owned();
        let text = match &captured.journal {
            Some(journal) => journal.mask(&text).into_owned(),
            None => text,
        };
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
        if captured.journal.as_ref().is_some_and(|j| j.is_tapped()) {
            captured.partial.extend_from_slice(buf);
            captured.pass_lines(false);
        }
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
        let output = GuestOutput::new(5, LineSource::Stdout);
        let mut writer = Box::into_pin(output.async_stream());
        writer.write_all(b"hello world").await.unwrap();
        let (text, dropped) = output.take();
        assert_eq!(text, "hello");
        assert_eq!(dropped, 6);
    }

    struct Lines(Mutex<Vec<String>>);

    impl alga_edge_capabilities::journal::LiveTap for Lines {
        fn line(&self, source: LineSource, _context: &str, text: &str) {
            self.0.lock().unwrap().push(format!("{source:?}:{text}"));
        }
    }

    #[tokio::test]
    async fn passes_masked_lines_live_and_the_unfinished_one_at_the_end() {
        let lines = Arc::new(Lines(Mutex::new(Vec::new())));
        let journal = Arc::new(Journal::tapped(8, lines.clone()));
        journal.mask_secrets(["s3cr3t-value"]);
        let output = GuestOutput::new(1024, LineSource::Stderr);
        output.attach(journal);
        let mut writer = Box::into_pin(output.async_stream());
        writer.write_all(b"first\r\nkey=s3cr3t-").await.unwrap();
        assert_eq!(*lines.0.lock().unwrap(), ["Stderr:first"]);
        writer.write_all(b"value\n\nthird\x1b[2K").await.unwrap();
        let (text, _) = output.take();
        assert_eq!(
            *lines.0.lock().unwrap(),
            [
                "Stderr:first",
                "Stderr:key=[secret]",
                "Stderr:third\\u{1b}[2K"
            ]
        );
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
