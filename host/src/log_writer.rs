//! The node log's writer. Lines are gathered in memory and written to stderr together every
//! 50 ms by a background thread, so a loaded node does not make one `write` call per request
//! line (about 5% of a warm request's CPU). WARN and ERROR lines, a buffer past 64 KiB, a panic
//! and the end of `main` flush at once, so nothing important waits and nothing is lost on a
//! clean exit.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How often gathered lines are written.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Gathered bytes past which a line is written at once.
const MAX_GATHERED: usize = 64 << 10;

/// A `MakeWriter` for the node log: buffered stderr.
#[derive(Clone)]
pub struct BufferedStderr {
    shared: Arc<Shared>,
}

struct Shared {
    /// Lines not yet written.
    gathered: Mutex<Vec<u8>>,
    /// Held while writing to stderr, so lines leave in the order they were gathered.
    out: Mutex<()>,
}

impl Shared {
    fn flush(&self) {
        let _out = lock(&self.out);
        let lines = std::mem::take(&mut *lock(&self.gathered));
        if !lines.is_empty() {
            // Nowhere to report a failed log write; the process goes on.
            let _ = io::stderr().lock().write_all(&lines);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Flushes the log when dropped (at the end of `main`).
pub struct FlushOnDrop(Arc<Shared>);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.0.flush();
    }
}

impl BufferedStderr {
    /// The writer, its flushing thread, and a guard that flushes at the end of `main`. A panic
    /// flushes too, before the panic message is printed.
    pub fn start() -> (Self, FlushOnDrop) {
        let shared = Arc::new(Shared {
            gathered: Mutex::new(Vec::with_capacity(MAX_GATHERED)),
            out: Mutex::new(()),
        });
        let flusher = Arc::downgrade(&shared);
        // Without the thread lines still leave at WARN, past 64 KiB and at exit.
        let _ = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    match flusher.upgrade() {
                        Some(shared) => shared.flush(),
                        None => return,
                    }
                }
            });
        let on_panic = Arc::downgrade(&shared);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(shared) = on_panic.upgrade() {
                shared.flush();
            }
            previous(info);
        }));
        (
            Self {
                shared: shared.clone(),
            },
            FlushOnDrop(shared),
        )
    }
}

/// One event's writer: gathers its line, or writes it at once when `urgent`.
pub struct LineWriter {
    shared: Arc<Shared>,
    urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let full = {
            let mut gathered = lock(&self.shared.gathered);
            gathered.extend_from_slice(bytes);
            gathered.len() >= MAX_GATHERED
        };
        if self.urgent || full {
            self.shared.flush();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: self.shared.clone(),
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter {
            shared: self.shared.clone(),
            // Levels order by verbosity: WARN and ERROR are the ones at or below WARN.
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// How the node log writes its lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// tracing-subscriber's full text format, without colour.
    Text,
    /// tracing-subscriber's JSON format.
    Json,
}

/// The node log's writer and format, for the lines the node writes without going through
/// `tracing`'s formatter (see [`node_log`]).
#[derive(Clone)]
pub struct NodeLog {
    writer: BufferedStderr,
    format: LineFormat,
}

static NODE_LOG: OnceLock<NodeLog> = OnceLock::new();

impl NodeLog {
    /// Makes `writer` in `format` the node log [`node_log`] returns (the first call wins).
    pub fn install(writer: BufferedStderr, format: LineFormat) {
        let _ = NODE_LOG.set(NodeLog { writer, format });
    }

    /// The format lines must be written in.
    pub fn format(&self) -> LineFormat {
        self.format
    }

    /// Gathers one finished line (`line` ends with a newline), like an INFO event's.
    pub fn write_line(&self, line: &[u8]) {
        let mut writer = self.writer.make_writer();
        let _ = writer.write_all(line);
    }
}

/// The node log, when the node set one up without colour. The request log writes its lines
/// here directly: formatting them through `tracing`'s formatter cost about 7% of a warm
/// request's CPU (`bench/run.sh`-style A/B with the request log filtered out).
pub fn node_log() -> Option<&'static NodeLog> {
    NODE_LOG.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_lines_in_order_and_flushes_urgent_ones_at_once() {
        let shared = Arc::new(Shared {
            gathered: Mutex::new(Vec::new()),
            out: Mutex::new(()),
        });
        let writer = BufferedStderr {
            shared: shared.clone(),
        };
        let mut info = writer.make_writer();
        info.write_all(b"one\n").unwrap();
        info.write_all(b"two\n").unwrap();
        assert_eq!(*lock(&shared.gathered), b"one\ntwo\n");
        let mut urgent = LineWriter {
            shared: shared.clone(),
            urgent: true,
        };
        urgent.write_all(b"three\n").unwrap();
        assert!(
            lock(&shared.gathered).is_empty(),
            "written with the urgent line"
        );
    }
}
