//! `wasi:logging/logging` (`cap:log.emit`): a guest's log lines go to `tracing` (with request
//! id, tenant and extension) and, bounded, into the request's execution-log row.
//!
//! Linked by hand (no WIT in this repository) under the unversioned name the `wasi-logger`
//! crate ships and the `0.1.0-draft` name of the WASI proposal; the interface is one function.

use std::sync::Arc;

use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use super::{CapabilityMetrics, CapabilityView, Grant, Journal};

/// Interface names this module serves.
const INTERFACES: [&str; 2] = ["wasi:logging/logging", "wasi:logging/logging@0.1.0-draft"];

/// `wasi:logging/logging.level`.
#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum Level {
    /// Variables and control flow.
    #[component(name = "trace")]
    Trace,
    /// Debugging.
    #[component(name = "debug")]
    Debug,
    /// Monitoring.
    #[component(name = "info")]
    Info,
    /// Hazards.
    #[component(name = "warn")]
    Warn,
    /// Errors.
    #[component(name = "error")]
    Error,
    /// Fatal errors.
    #[component(name = "critical")]
    Critical,
}

impl Level {
    /// The level's name as logs print it (`INFO`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
            Self::Critical => "CRITICAL",
        }
    }
}

/// Per-request state behind `wasi:logging/logging`.
pub struct LoggingState {
    granted: bool,
    request_id: String,
    tenant: String,
    extension: String,
    max_message_bytes: usize,
    journal: Arc<Journal>,
    metrics: Arc<CapabilityMetrics>,
}

impl LoggingState {
    /// Logging for `grant`'s request; messages are cut at `max_message_bytes` (the grant's
    /// journal bounds the number of lines kept).
    pub fn new(
        granted: bool,
        grant: &Grant,
        max_message_bytes: usize,
        metrics: Arc<CapabilityMetrics>,
    ) -> Self {
        Self {
            granted,
            request_id: grant.request_id.to_owned(),
            tenant: grant.tenant.to_owned(),
            extension: grant.extension.to_owned(),
            max_message_bytes,
            journal: grant.journal.clone(),
            metrics,
        }
    }

    /// The request's journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// `log`: the interface has no error, so an ungranted call is dropped and counted.
    pub fn log(&self, level: Level, context: &str, message: &str) {
        if !self.granted {
            self.metrics.deny("log", "not_granted");
            return;
        }
        // Masked first (a secret the request opened never reaches any log), then cut, then
        // escaped before anything else sees it: a guest's newline or terminal escape must
        // never start a line of its own in the node log (which a reader would take for the
        // host's). The execution log and the tail get the same text.
        let context = escaped(cut(&self.journal.mask(context), 128));
        let context = context.as_str();
        let message = escaped(cut(&self.journal.mask(message), self.max_message_bytes));
        let (request_id, tenant, extension) = (&self.request_id, &self.tenant, &self.extension);
        match level {
            Level::Trace => {
                tracing::trace!(target: "guest", %request_id, %tenant, %extension, context, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "guest", %request_id, %tenant, %extension, context, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "guest", %request_id, %tenant, %extension, context, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "guest", %request_id, %tenant, %extension, context, "{message}")
            }
            Level::Error | Level::Critical => {
                tracing::error!(target: "guest", %request_id, %tenant, %extension, context, level = level.name(), "{message}")
            }
        }
        self.journal.log(level.name(), context, &message);
    }
}

/// `text` with every control character (newlines, carriage returns, tabs, ESC and the rest of
/// C0, DEL, C1) written as a visible escape (`\n`, `\r`, `\t`, `\u{1b}`) and backslashes
/// doubled, so guest-supplied text is always one line of plain characters in any log format.
pub fn escape_guest_text(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() || c == '\\') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if c.is_control() => escaped.push_str(&c.escape_unicode().to_string()),
            c => escaped.push(c),
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// [`escape_guest_text`] of an owned string, reusing it when nothing needs escaping (the usual
/// case, on every guest log line).
fn escaped(text: String) -> String {
    match escape_guest_text(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[cut, {} bytes]", &text[..end], text.len())
}

/// Links `wasi:logging/logging` under every name in [`INTERFACES`].
pub fn add_to_linker<T: CapabilityView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    for name in INTERFACES {
        linker.instance(name)?.func_wrap(
            "log",
            |mut store, (level, context, message): (Level, String, String)| {
                store
                    .data_mut()
                    .capabilities()
                    .logging
                    .log(level, &context, &message);
                Ok(())
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{cut, escape_guest_text};

    #[test]
    fn guest_text_cannot_start_a_line_or_drive_a_terminal() {
        let forged =
            "ok\n2026-11-30T00:00:00Z  INFO alga_edge::admin: bundle published\r\x1b[2K\\n";
        let escaped = escape_guest_text(forged);
        assert!(!escaped.chars().any(char::is_control), "{escaped}");
        assert_eq!(
            escaped,
            "ok\\n2026-11-30T00:00:00Z  INFO alga_edge::admin: bundle published\\r\\u{1b}[2K\\\\n"
        );
        assert!(matches!(
            escape_guest_text("plain text, ünïcode"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn cuts_long_messages_on_a_character_boundary() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("ééé", 3), "é…[cut, 6 bytes]");
    }
}
