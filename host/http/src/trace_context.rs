//! Distributed traces (OpenTelemetry) shared by every layer: the request's server span, child
//! spans for the work done for it, and the W3C `traceparent` it continues and propagates.
//!
//! Spans go through the global tracer provider, which the node installs at start-up when
//! traces are on ([`enable`]). Until then every function here is a no-op that allocates
//! nothing, so a node without traces pays one relaxed atomic load per call site.
//!
//! Lower layers never receive a context argument: the gateway runs a request within its span
//! ([`within`]), the engine runs the guest within a child of it, and a host capability called by
//! the guest finds its parent with `Context::current()` ([`span`]).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use http::HeaderMap;
use opentelemetry::global::{self, BoxedSpan, BoxedTracer};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    FutureExt, Span as _, SpanKind, Status, TraceContextExt, Tracer as _, WithContext,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;

pub use opentelemetry::Context as TraceContext;

/// The trace id of a response's request, as a response extension (for the node's log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceId(pub String);

static ENABLED: AtomicBool = AtomicBool::new(false);
static TRACER: OnceLock<BoxedTracer> = OnceLock::new();
static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();

/// Switches spans on for this process. Call once, after installing the global tracer
/// provider.
pub fn enable() {
    TRACER.get_or_init(|| global::tracer("alga-edge"));
    ENABLED.store(true, Ordering::Release);
}

/// Whether spans are recorded.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

fn tracer() -> Option<&'static BoxedTracer> {
    enabled().then(|| TRACER.get()).flatten()
}

fn propagator() -> &'static TraceContextPropagator {
    PROPAGATOR.get_or_init(TraceContextPropagator::new)
}

/// A span that ends when dropped (or at [`SpanGuard::end`]); empty when traces are off.
#[derive(Default)]
pub struct SpanGuard(Option<BoxedSpan>);

impl SpanGuard {
    /// Sets attribute `key`.
    pub fn attribute(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(span) = &mut self.0 {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed with `message`.
    pub fn fail(&mut self, message: impl Into<Cow<'static, str>>) {
        if let Some(span) = &mut self.0 {
            span.set_status(Status::error(message));
        }
    }

    /// Ends the span now.
    pub fn end(mut self) {
        if let Some(span) = &mut self.0 {
            span.end();
        }
    }
}

/// A child span of the current context's span: the request's in the gateway, the guest's in
/// a host capability the guest called.
pub fn span(name: &'static str) -> SpanGuard {
    match tracer() {
        Some(tracer) => SpanGuard(Some(tracer.start_with_context(name, &Context::current()))),
        None => SpanGuard(None),
    }
}

/// A child span of `parent` (`None`: no span).
pub fn child_of(parent: Option<&Context>, name: &'static str) -> SpanGuard {
    match (tracer(), parent) {
        (Some(tracer), Some(parent)) => SpanGuard(Some(tracer.start_with_context(name, parent))),
        _ => SpanGuard(None),
    }
}

/// A context holding a new child span of the current one, for a future to run in: the span
/// ends when the last clone of the context is dropped. `None` when traces are off.
pub fn child_context(name: &'static str) -> Option<Context> {
    let tracer = tracer()?;
    let parent = Context::current();
    let span = tracer.start_with_context(name, &parent);
    Some(parent.with_span(span))
}

/// The server span of a request that arrived with `headers`: a child of the caller's
/// `traceparent` when it sent a valid one, else the root of a new trace.
pub fn server_context(
    name: &'static str,
    headers: &HeaderMap,
    route: &'static str,
) -> Option<Context> {
    let tracer = tracer()?;
    let parent = propagator().extract(&HeaderExtractor(headers));
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Server)
        .with_attributes([KeyValue::new("http.route", route)])
        .start_with_context(tracer, &parent);
    Some(parent.with_span(span))
}

/// Sets attribute `key` on the span of `context` to `value()`; `value` runs only when there is
/// a span, so a node without traces builds no attribute text.
pub fn set_attribute<V: Into<Value>>(
    context: Option<&Context>,
    key: &'static str,
    value: impl FnOnce() -> V,
) {
    if let Some(context) = context {
        context.span().set_attribute(KeyValue::new(key, value()));
    }
}

/// Marks the span of `context` failed with `message()` (built only when there is a span).
pub fn set_failed<M: Into<Cow<'static, str>>>(
    context: Option<&Context>,
    message: impl FnOnce() -> M,
) {
    if let Some(context) = context {
        context.span().set_status(Status::error(message()));
    }
}

/// Ends the span of `context` (later ends are ignored).
pub fn end(context: Option<&Context>) {
    if let Some(context) = context {
        context.span().end();
    }
}

/// Writes `context`'s `traceparent` into `headers` (nothing for `None`).
pub fn inject_context(context: Option<&TraceContext>, headers: &mut HeaderMap) {
    if let Some(context) = context
        && context.span().span_context().is_valid()
    {
        propagator().inject_context(context, &mut HeaderInjector(headers));
    }
}

/// The trace id of `context`'s span as 32 lower-case hex digits.
pub fn trace_id(context: Option<&Context>) -> Option<String> {
    let context = context?;
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

pin_project_lite::pin_project! {
    /// A future run within a trace context, or without one ([`within`]).
    #[project = TracedProjection]
    enum Traced<F> {
        Within { #[pin] future: WithContext<F> },
        Plain { #[pin] future: F },
    }
}

impl<F: Future> Future for Traced<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        match self.project() {
            TracedProjection::Within { future } => future.poll(cx),
            TracedProjection::Plain { future } => future.poll(cx),
        }
    }
}

/// `future`, run within `context` when there is one: code it polls sees the context as
/// `Context::current()`.
pub fn within<F: Future>(future: F, context: Option<Context>) -> impl Future<Output = F::Output> {
    match context {
        Some(context) => Traced::Within {
            future: future.with_context(context),
        },
        None => Traced::Plain { future },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn does_nothing_while_off() {
        assert!(!enabled());
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        assert!(server_context("request", &headers, "gateway").is_none());
        assert!(child_context("guest").is_none());
        let mut out = HeaderMap::new();
        inject_context(child_context("egress").as_ref(), &mut out);
        assert!(out.is_empty());
        assert_eq!(trace_id(Some(&Context::current())), None);
    }
}
