//! The node's request log: one line per gateway, runner and admin request. Anyone can make a
//! request fail before it proves who it is (no token, a bad token, an unknown extension), so
//! those lines pass a node-wide rate limit; the ones left out are counted
//! (`alga_request_log_suppressed_total`) and summed up in the next line that is written.
//! Requests whose caller was identified ([`CallerIdentified`]) are bounded by their tenant's
//! limits and always logged. Every logged path and method is cut to a bounded length.

use std::sync::atomic::{AtomicU64, Ordering};

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
            .map(|id| tracing::field::display(id.0.as_str()));
        if suppressed > 0 {
            tracing::info!(request_id = %line.request_id, %method, %path, status, ms = line.ms,
                identified, trace_id, suppressed_before = suppressed, "{kind} request");
        } else {
            tracing::info!(request_id = %line.request_id, %method, %path, status, ms = line.ms,
                identified, trace_id, "{kind} request");
        }
    }
}

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

    #[test]
    fn long_paths_are_cut_at_a_character_boundary() {
        let path = format!("/{}", "é".repeat(300));
        let cut = bounded(&path, MAX_LOGGED_PATH);
        assert!(cut.len() < MAX_LOGGED_PATH + 32, "{}", cut.len());
        assert!(cut.ends_with("more bytes]"), "{cut}");
        assert_eq!(bounded("/short", MAX_LOGGED_PATH), "/short");
    }
}
