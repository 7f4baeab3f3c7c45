//! What the node tells operators about requests: Prometheus [`metrics`], the batched
//! [`execution_log`] and the live [`tail`]. A [`RequestTrace`] follows one request from arrival
//! to its last response byte and reports it exactly once.

pub mod execution_log;
pub mod metrics;
pub mod tail;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use alga_edge_registry::ExecutionRecord;
use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use alga_edge_engine::InvokeError;

use crate::error::GatewayError;
use alga_edge_capabilities::Journal;
use alga_edge_http::trace_context::{self, SpanGuard, TraceContext};
use alga_edge_http::{BoxError, HostBody};
pub use execution_log::{ExecutionLog, ExecutionLogConfig, LogWriter};
pub use metrics::Metrics;
use metrics::{DenialLabels, RequestLabels};
pub use tail::{TailConfig, TailHub};

/// Metrics, the execution log and the live tail, shared by every route that runs extensions.
pub struct Telemetry {
    /// The Prometheus metrics.
    pub metrics: Metrics,
    log: ExecutionLog,
    /// Who watches which extension live.
    pub tail: Arc<TailHub>,
}

/// The install a request resolved to (what its execution-log row names).
#[derive(Debug, Clone)]
pub struct Target {
    /// Tenant.
    pub tenant: String,
    /// Extension id.
    pub extension: String,
    /// Version.
    pub version: String,
    /// Bundle content hash.
    pub content_hash: String,
}

/// One request in flight.
pub struct RequestTrace {
    route: &'static str,
    request_id: String,
    started: Instant,
    at: i64,
    target: Option<Target>,
    identified: bool,
    journal: Option<Arc<Journal>>,
    tap: Option<Arc<tail::RequestTap>>,
    trigger: Option<&'static str>,
    /// The request's server span (traces on).
    span: Option<TraceContext>,
    telemetry: Arc<Telemetry>,
}

impl RequestTrace {
    /// Marks the request as started by `trigger` (`schedule`), not by a caller; its
    /// execution-log row says so.
    pub fn triggered_by(&mut self, trigger: &'static str) {
        self.trigger = Some(trigger);
    }

    /// Follows the request under the caller's own id from now on (the runner envelope's
    /// `context.request_id`), so its execution-log row carries that id.
    pub fn rename(&mut self, request_id: &str) {
        request_id.clone_into(&mut self.request_id);
    }
}

impl Telemetry {
    /// Telemetry reporting into `metrics`, `log` and `tail` (whose counters it registers).
    pub fn new(mut metrics: Metrics, log: ExecutionLog, tail: Arc<TailHub>) -> Self {
        metrics.register(
            "tail_events_lost",
            "Tail events dropped because a subscriber's queue was full",
            tail.lost.clone(),
        );
        metrics.register(
            "tail_subscribers",
            "Live tails connected to this node",
            tail.active.clone(),
        );
        Self { metrics, log, tail }
    }

    /// Starts following a request on `route` (`gateway`, `execute` or `schedule`) that arrived
    /// with `headers`: with traces on, its server span continues the caller's `traceparent`.
    pub fn begin(
        self: &Arc<Self>,
        route: &'static str,
        request_id: &str,
        headers: &http::HeaderMap,
    ) -> RequestTrace {
        self.metrics.in_flight.inc();
        let span = trace_context::server_context("request", headers, route);
        trace_context::set_attribute(span.as_ref(), "alga.request_id", || request_id.to_owned());
        RequestTrace {
            route,
            request_id: request_id.to_owned(),
            started: Instant::now(),
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            target: None,
            identified: false,
            journal: None,
            tap: None,
            trigger: None,
            span,
            telemetry: self.clone(),
        }
    }
}

impl RequestTrace {
    /// Names the install the request resolved to; from here on it gets an execution-log row.
    pub fn resolved(&mut self, target: Target) {
        let span = self.span.as_ref();
        trace_context::set_attribute(span, "alga.tenant", || target.tenant.clone());
        trace_context::set_attribute(span, "alga.extension", || target.extension.clone());
        trace_context::set_attribute(span, "alga.version", || target.version.clone());
        self.target = Some(target);
    }

    /// The request's trace context, for the work done for it to run within (`None`: traces
    /// are off).
    pub fn context(&self) -> Option<TraceContext> {
        self.span.clone()
    }

    /// A child span of the request's.
    pub fn span(&self, name: &'static str) -> SpanGuard {
        trace_context::child_of(self.span.as_ref(), name)
    }

    /// The request's trace id (traces on).
    pub fn trace_id(&self) -> Option<String> {
        trace_context::trace_id(self.span.as_ref())
    }

    /// The journal the request's capabilities write into (log lines kept up to `max_lines`);
    /// its contents go into the request's execution-log row and, while someone tails the
    /// resolved extension, every line goes to the tail as it happens.
    pub fn journal(&mut self, max_lines: usize) -> Arc<Journal> {
        if let Some(journal) = &self.journal {
            return journal.clone();
        }
        self.tap = self.target.as_ref().and_then(|target| {
            self.telemetry
                .tail
                .tap(&target.tenant, &target.extension, &self.request_id)
        });
        let journal = Arc::new(match &self.tap {
            Some(tap) => Journal::tapped(max_lines, tap.clone()),
            None => Journal::new(max_lines),
        });
        self.journal = Some(journal.clone());
        journal
    }

    /// Records that the caller proved who it is (see [`alga_edge_http::CallerIdentified`]).
    pub fn identified(&mut self) {
        self.identified = true;
    }

    /// Whether [`RequestTrace::identified`] was called.
    pub fn is_identified(&self) -> bool {
        self.identified
    }

    /// The extension label of this request's series.
    pub fn extension_label(&self) -> &str {
        self.target.as_ref().map_or("-", |t| t.extension.as_str())
    }

    /// Reports a request answered with `error`.
    pub fn fail(self, error: &GatewayError) {
        let metrics = &self.telemetry.metrics;
        if let Some(reason) = error.denial_reason() {
            metrics
                .denials
                .get_or_create(&DenialLabels {
                    route: self.route,
                    reason,
                })
                .inc();
        }
        let stopped = match error {
            GatewayError::Invoke(InvokeError::Timeout { .. }) => Some(&metrics.timeouts),
            GatewayError::Invoke(InvokeError::CpuBudget { .. }) => {
                Some(&metrics.cpu_budget_exceeded)
            }
            _ => None,
        };
        if let Some(counter) = stopped {
            counter
                .get_or_create(&Metrics::extension(self.extension_label()))
                .inc();
        }
        self.report(error.status().as_u16(), Some(error.code().to_owned()), 0);
    }

    /// Wraps `response` so the request is reported when its body ends (or is dropped).
    pub fn succeed(self, response: Response<HostBody>) -> Response<HostBody> {
        let status = response.status().as_u16();
        response.map(|inner| {
            TracedBody {
                inner,
                status,
                sent: 0,
                failed: false,
                trace: Some(self),
            }
            .boxed_unsync()
        })
    }

    fn report(mut self, status: u16, error_class: Option<String>, bytes_out: u64) {
        let span = self.span.take();
        trace_context::set_attribute(span.as_ref(), "http.response.status_code", || {
            i64::from(status)
        });
        if let Some(class) = &error_class {
            trace_context::set_attribute(span.as_ref(), "error.type", || class.clone());
        }
        if status >= 500 {
            trace_context::set_failed(span.as_ref(), || error_class.clone().unwrap_or_default());
        }
        let metrics = &self.telemetry.metrics;
        let elapsed = self.started.elapsed();
        let extension = self.extension_label().to_owned();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                route: self.route,
                extension: extension.clone(),
                status,
            })
            .inc();
        if let Some(target) = self.target.take() {
            let labels = Metrics::extension(&extension);
            metrics
                .duration
                .get_or_create(&labels)
                .observe(elapsed.as_secs_f64());
            if bytes_out > 0 {
                metrics.bytes_out.get_or_create(&labels).inc_by(bytes_out);
            }
            let (logs, egress_bytes) = self
                .journal
                .take()
                .map_or((Vec::new(), 0), |j| (j.take_lines(), j.egress_bytes()));
            // With nobody tailing, no summary is built (four string copies per request).
            let tap = self.tap.take();
            if tap.is_some() || !self.telemetry.tail.is_idle() {
                self.telemetry.tail.finish(
                    &target.tenant,
                    &target.extension,
                    tap,
                    tail::RequestSummary {
                        request_id: self.request_id.clone(),
                        route: self.route,
                        trigger: self.trigger,
                        status,
                        duration_ms: elapsed.as_millis() as u64,
                        error_class: error_class.clone(),
                        version: target.version.clone(),
                        content_hash: target.content_hash.clone(),
                    },
                );
            }
            // The row joins the batch writer's queue; the batch is written for many requests.
            let mut write = trace_context::child_of(span.as_ref(), "execution_log");
            let queued = self.telemetry.log.record(ExecutionRecord {
                tenant: target.tenant,
                extension: target.extension,
                version: target.version,
                content_hash: target.content_hash,
                request_id: std::mem::take(&mut self.request_id),
                status,
                duration_ms: elapsed.as_millis() as u64,
                error_class,
                at: self.at,
                logs,
                egress_bytes,
                trigger: self.trigger.map(str::to_owned),
                trace_id: trace_context::trace_id(span.as_ref()),
            });
            write.attribute(
                "alga.execution_log",
                if queued { "queued" } else { "dropped" },
            );
            write.end();
        }
        trace_context::end(span.as_ref());
    }
}

impl Drop for RequestTrace {
    fn drop(&mut self) {
        self.telemetry.metrics.in_flight.dec();
    }
}

/// A response body that reports its request when it ends, fails, or is dropped unfinished
/// (client gone).
struct TracedBody {
    inner: HostBody,
    status: u16,
    sent: u64,
    failed: bool,
    trace: Option<RequestTrace>,
}

impl TracedBody {
    fn finish(&mut self, error_class: Option<&str>) {
        if let Some(trace) = self.trace.take() {
            trace.report(self.status, error_class.map(str::to_owned), self.sent);
        }
    }
}

impl Body for TracedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish(None);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.failed = true;
                this.finish(Some("response_stream_failed"));
            }
            Poll::Ready(None) => this.finish(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TracedBody {
    fn drop(&mut self) {
        if !self.failed && !self.inner.is_end_stream() {
            self.finish(Some("client_disconnected"));
        } else {
            self.finish(None);
        }
    }
}
