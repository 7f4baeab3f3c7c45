//! The node's request log: one line per gateway, runner and admin request. Anyone can make a
//! request fail before it proves who it is (no token, a bad token, an unknown extension), so
//! those lines pass a node-wide rate limit; the ones left out are counted
//! (`alga_request_log_suppressed_total`) and summed up in the next line that is written.
//! Requests whose caller was identified ([`CallerIdentified`]) are bounded by their tenant's
//! limits and always logged. Every logged path and method is cut to a bounded length.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::log_writer::{LineFormat, NodeLog, node_log};
use alga_edge_gateway::policy::RateLimiter;
use alga_edge_http::CallerIdentified;
use alga_edge_http::trace_context::TraceId;
use http::{Method, Response};
use prometheus_client::metrics::counter::Counter;

/// Longest path written to the log, in bytes; the rest is replaced by its length.
pub const MAX_LOGGED_PATH: usize = 256;

/// Longest method written to the log, in bytes.
const MAX_LOGGED_METHOD: usize = 16;

/// Lines per second for unidentified callers' failures, node-wide.
const UNIDENTIFIED_PER_SEC: f64 = 10.0;

/// Burst of the same limit.
const UNIDENTIFIED_BURST: f64 = 50.0;

/// Writes request log lines.
pub struct RequestLog {
    limiter: RateLimiter,
    suppressed: Counter,
    /// Lines left out since the last summary.
    pending: AtomicU64,
}

/// One request, as logged.
pub struct RequestLine<'a> {
    /// `gateway`, `execute` or `admin`.
    pub kind: &'a str,
    /// The request id.
    pub request_id: &'a str,
    /// The method.
    pub method: &'a Method,
    /// The path.
    pub path: &'a str,
    /// Milliseconds to the response head.
    pub ms: u64,
}

impl RequestLog {
    /// A log counting suppressed lines in `suppressed`.
    pub fn new(suppressed: Counter) -> Self {
        Self {
            limiter: RateLimiter::default(),
            suppressed,
            pending: AtomicU64::new(0),
        }
    }

    /// Logs `line` answered with `response`, unless the rate limit leaves it out.
    pub fn record<B>(&self, line: RequestLine<'_>, response: &Response<B>) {
        let identified = response.extensions().get::<CallerIdentified>().is_some();
        if !identified
            && self
                .limiter
                .try_take("unidentified", UNIDENTIFIED_PER_SEC, UNIDENTIFIED_BURST)
                .is_err()
        {
            self.suppressed.inc();
            self.pending.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = if identified {
            0
        } else {
            self.pending.swap(0, Ordering::Relaxed)
        };
        let path = bounded(line.path, MAX_LOGGED_PATH);
        let method = bounded(line.method.as_str(), MAX_LOGGED_METHOD);
        let status = response.status().as_u16();
        let kind = line.kind;
        // Absent (not empty) when traces are off.
        let trace_id = response
            .extensions()
            .get::<TraceId>()
            .map(|id| id.0.as_str());
        let fields = Fields {
            message: Message(kind),
            request_id: line.request_id,
            method: &method,
            path: &path,
            status,
            ms: line.ms,
            identified,
            trace_id,
            suppressed_before: (suppressed > 0).then_some(suppressed),
        };
        match node_log() {
            Some(log) if tracing::enabled!(tracing::Level::INFO) => write_line(log, &fields),
            Some(_) => {}
            None => fields.emit(),
        }
    }
}

/// One line's fields, in the order the log shows them.
#[derive(Clone, Copy, serde::Serialize)]
struct Fields<'a> {
    #[serde(serialize_with = "display")]
    message: Message<'a>,
    request_id: &'a str,
    method: &'a str,
    path: &'a str,
    status: u16,
    ms: u64,
    identified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressed_before: Option<u64>,
}

/// The line's message: `{kind} request`.
#[derive(Clone, Copy)]
struct Message<'a>(&'a str);

impl std::fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} request", self.0)
    }
}

fn display<S: serde::Serializer>(value: &Message<'_>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

impl Fields<'_> {
    /// As a `tracing` event (when the node log is not set up: colour, tests).
    fn emit(&self) {
        let Fields {
            message,
            request_id,
            method,
            path,
            status,
            ms,
            identified,
            trace_id,
            suppressed_before,
        } = self;
        let trace_id = trace_id.map(tracing::field::display);
        tracing::info!(request_id = %request_id, method = %method, path = %path, status, ms,
            identified, trace_id, suppressed_before, "{message}");
    }
}

/// Writes `fields` as the INFO line `tracing`'s text or JSON formatter would, straight to the
/// node log (see [`crate::log_writer::node_log`] for why).
fn write_line(log: &NodeLog, fields: &Fields<'_>) {
    if let Some(line) = render(log.format(), fields) {
        log.write_line(line.as_bytes());
    }
}

/// `fields` as one log line in `format`, ending with a newline.
fn render(format: LineFormat, fields: &Fields<'_>) -> Option<String> {
    use std::fmt::Write as _;
    let timestamp = humantime::format_rfc3339_micros(std::time::SystemTime::now());
    let mut line = String::with_capacity(256);
    match format {
        LineFormat::Text => {
            let _ = write!(
                line,
                "{timestamp}  INFO {TARGET}: {} request_id={} method={} path={} status={} ms={} identified={}",
                fields.message,
                fields.request_id,
                fields.method,
                fields.path,
                fields.status,
                fields.ms,
                fields.identified
            );
            if let Some(trace_id) = fields.trace_id {
                let _ = write!(line, " trace_id={trace_id}");
            }
            if let Some(suppressed) = fields.suppressed_before {
                let _ = write!(line, " suppressed_before={suppressed}");
            }
        }
        LineFormat::Json => {
            #[derive(serde::Serialize)]
            struct Event<'a> {
                timestamp: String,
                level: &'static str,
                fields: &'a Fields<'a>,
                target: &'static str,
            }
            let event = Event {
                timestamp: timestamp.to_string(),
                level: "INFO",
                fields,
                target: TARGET,
            };
            line = serde_json::to_string(&event).ok()?;
        }
    }
    line.push('\n');
    Some(line)
}

/// The target request log lines carry (what `RUST_LOG` filters on).
const TARGET: &str = module_path!();

/// `text` cut to at most `max` bytes (at a character boundary), with the length of the rest.
pub fn bounded(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} more bytes]", &text[..end], text.len() - end).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn answer(identified: bool) -> Response<()> {
        let mut response = Response::builder().status(401).body(()).unwrap();
        if identified {
            response.extensions_mut().insert(CallerIdentified);
        }
        response
    }

    #[test]
    fn unidentified_failures_are_limited_and_counted_identified_ones_never() {
        let counter = Counter::default();
        let log = RequestLog::new(counter.clone());
        let line = || RequestLine {
            kind: "gateway",
            request_id: "r",
            method: &Method::GET,
            path: "/api/ext/x/y",
            ms: 1,
        };
        for _ in 0..1000 {
            log.record(line(), &answer(false));
        }
        // The burst passes (plus what refilled while looping), the rest is counted.
        let left_out = counter.get();
        assert!(
            (900..=1000 - UNIDENTIFIED_BURST as u64).contains(&left_out),
            "{left_out}"
        );
        for _ in 0..1000 {
            log.record(line(), &answer(true));
        }
        assert_eq!(
            counter.get(),
            left_out,
            "identified callers are never left out"
        );
    }

    /// What `tracing`'s formatter writes for `fields`, with the given subscriber builder.
    fn through_tracing(json: bool, fields: &Fields<'_>) -> String {
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let out = captured.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || out.clone());
        if json {
            tracing::subscriber::with_default(builder.json().finish(), || fields.emit());
        } else {
            tracing::subscriber::with_default(builder.finish(), || fields.emit());
        }
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn lines_written_directly_read_as_tracing_would_write_them() {
        let all = Fields {
            message: Message("gateway"),
            request_id: "3f1e4ea0-0271",
            method: "GET",
            path: "/api/ext/hello/a \"b\"",
            status: 200,
            ms: 8,
            identified: true,
            trace_id: Some("0af7651916cd43dd8448eb211c80319c"),
            suppressed_before: Some(3),
        };
        let fewer = Fields {
            trace_id: None,
            suppressed_before: None,
            status: 401,
            identified: false,
            ..all
        };
        for fields in [&all, &fewer] {
            // Text: the same line after the timestamp.
            let ours = render(LineFormat::Text, fields).unwrap();
            let theirs = through_tracing(false, fields);
            let after_time = |line: &str| line.split_once(' ').unwrap().1.to_owned();
            assert_eq!(after_time(&ours), after_time(&theirs));
            // JSON: the same object apart from the timestamp, keys in the same order.
            let mut ours: serde_json::Value =
                serde_json::from_str(&render(LineFormat::Json, fields).unwrap()).unwrap();
            let mut theirs: serde_json::Value =
                serde_json::from_str(&through_tracing(true, fields)).unwrap();
            for value in [&mut ours, &mut theirs] {
                let stamp = value["timestamp"].take();
                assert!(
                    humantime::parse_rfc3339(stamp.as_str().unwrap()).is_ok(),
                    "{stamp}"
                );
            }
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn long_paths_are_cut_at_a_character_boundary() {
        let path = format!("/{}", "é".repeat(300));
        let cut = bounded(&path, MAX_LOGGED_PATH);
        assert!(cut.len() < MAX_LOGGED_PATH + 32, "{}", cut.len());
        assert!(cut.ends_with("more bytes]"), "{cut}");
        assert_eq!(bounded("/short", MAX_LOGGED_PATH), "/short");
    }
}
