//! What one request's capabilities leave behind: the guest's log lines (bounded) for its
//! execution-log row, its outbound HTTP bytes, and, while someone tails the extension, every
//! line as it happens ([`LiveTap`]). Shared between the request's `Store` and its trace, which
//! reads it when the request ends.
//!
//! The journal also knows the secret values the request opened and writes `[secret]` in their
//! place in every line it passes on, so a guest that logs or prints a secret does not put it
//! into the execution log, the node log or a tail.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;

/// Secret values shorter than this are not masked: masking every `"a"` or `"1"` of a log would
/// make it unreadable and protect nothing.
pub const MIN_MASKED_SECRET_BYTES: usize = 4;

/// What a masked secret value becomes.
pub const SECRET_MASK: &str = "[secret]";

/// Where a live line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineSource {
    /// A `wasi:logging` or Alga `logging` call, with its level name (`TRACE` … `CRITICAL`).
    Log(&'static str),
    /// A line the guest wrote to stdout.
    Stdout,
    /// A line the guest wrote to stderr.
    Stderr,
}

/// Receives a request's lines as they happen (the live tail). Implementations must never
/// block: they run on the guest's turn.
pub trait LiveTap: Send + Sync {
    /// One line; `context` is the logging call's context (empty for stdout/stderr). The text
    /// is already escaped (one line of plain characters) and masked.
    fn line(&self, source: LineSource, context: &str, text: &str);
}

/// Log lines and egress bytes of one request.
pub struct Journal {
    lines: Mutex<Vec<String>>,
    max_lines: usize,
    dropped: AtomicU64,
    egress_bytes: Counter,
    masked: Mutex<Vec<String>>,
    tap: Option<Arc<dyn LiveTap>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("max_lines", &self.max_lines)
            .field("tapped", &self.tap.is_some())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// A journal keeping at most `max_lines` lines.
    pub fn new(max_lines: usize) -> Self {
        Self {
            lines: Mutex::new(Vec::new()),
            max_lines,
            dropped: AtomicU64::new(0),
            egress_bytes: Counter::default(),
            masked: Mutex::new(Vec::new()),
            tap: None,
        }
    }

    /// A journal that also passes every line to `tap` as it happens.
    pub fn tapped(max_lines: usize, tap: Arc<dyn LiveTap>) -> Self {
        Self {
            tap: Some(tap),
            ..Self::new(max_lines)
        }
    }

    /// Whether lines are streamed live (stdout/stderr are split into lines only then).
    pub fn is_tapped(&self) -> bool {
        self.tap.is_some()
    }

    /// Masks `values` (the request's opened secrets) in every line from now on.
    pub fn mask_secrets<'a>(&self, values: impl IntoIterator<Item = &'a str>) {
        let mut masked = self.masked.lock().unwrap_or_else(|e| e.into_inner());
        for value in values {
            if value.len() >= MIN_MASKED_SECRET_BYTES && !masked.iter().any(|m| m == value) {
                masked.push(value.to_owned());
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        masked.sort_by_key(|m| std::cmp::Reverse(m.len()));
    }

    /// `text` with every masked secret replaced by [`SECRET_MASK`].
    pub fn mask<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        let masked = self.masked.lock().unwrap_or_else(|e| e.into_inner());
        if masked.is_empty() || !masked.iter().any(|m| text.contains(m.as_str())) {
            return std::borrow::Cow::Borrowed(text);
        }
        let mut text = text.to_owned();
        for value in masked.iter() {
            text = text.replace(value.as_str(), SECRET_MASK);
        }
        std::borrow::Cow::Owned(text)
    }

    /// Keeps a log line (`level context: message`, already escaped and masked) and passes it
    /// to the tap; once the journal is full, the line is only counted (the tap still sees it).
    pub fn log(&self, level: &'static str, context: &str, message: &str) {
        if let Some(tap) = &self.tap {
            tap.line(LineSource::Log(level), context, message);
        }
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() < self.max_lines {
            lines.push(format!("{level} {context}: {message}"));
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Passes one line of guest output (already escaped and masked) to the tap, if any.
    pub fn output(&self, source: LineSource, text: &str) {
        if let Some(tap) = &self.tap {
            tap.line(source, "", text);
        }
    }

    /// The counter outbound HTTP bytes are added to as they stream.
    pub fn egress_counter(&self) -> Counter {
        self.egress_bytes.clone()
    }

    /// The kept lines (plus a note of how many were not kept), leaving the journal empty.
    pub fn take_lines(&self) -> Vec<String> {
        let mut lines = std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()));
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            lines.push(format!("({dropped} more lines not kept)"));
        }
        lines
    }

    /// Outbound HTTP bytes so far.
    pub fn egress_bytes(&self) -> u64 {
        self.egress_bytes.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_number_of_lines_and_counts_the_rest() {
        let journal = Journal::new(2);
        for i in 0..5 {
            journal.log("INFO", "c", &format!("line {i}"));
        }
        journal.egress_counter().inc_by(7);
        journal.egress_counter().inc_by(3);
        assert_eq!(
            journal.take_lines(),
            [
                "INFO c: line 0",
                "INFO c: line 1",
                "(3 more lines not kept)"
            ]
        );
        assert!(journal.take_lines().is_empty());
        assert_eq!(journal.egress_bytes(), 10);
    }

    struct Recorder(Mutex<Vec<String>>);

    impl LiveTap for Recorder {
        fn line(&self, source: LineSource, context: &str, text: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{source:?} {context} {text}"));
        }
    }

    #[test]
    fn a_tap_sees_every_line_even_past_the_kept_bound() {
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        let journal = Journal::tapped(1, recorder.clone());
        assert!(journal.is_tapped());
        journal.log("WARN", "c", "one");
        journal.log("INFO", "c", "two");
        journal.output(LineSource::Stderr, "three");
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                "Log(\"WARN\") c one",
                "Log(\"INFO\") c two",
                "Stderr  three"
            ]
        );
        assert_eq!(
            journal.take_lines(),
            ["WARN c: one", "(1 more lines not kept)"]
        );
    }

    #[test]
    fn masks_opened_secrets_longest_first_and_ignores_tiny_ones() {
        let journal = Journal::new(4);
        journal.mask_secrets(["hunter22", "hunter22-extended", "ab"]);
        assert_eq!(
            journal.mask("k=hunter22-extended, j=hunter22, ab"),
            "k=[secret], j=[secret], ab"
        );
        assert!(matches!(
            journal.mask("nothing here"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
