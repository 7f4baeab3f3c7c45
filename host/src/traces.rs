//! OpenTelemetry trace export: the tracer provider every layer's spans go to (see
//! `alga_edge_http::trace_context`), sampling, and a batch exporter over OTLP/HTTP protobuf.
//!
//! Requests never wait for the collector: a finished span joins a bounded queue that the SDK's
//! batch thread drains; a full queue drops the span, an export that fails (collector down or
//! slow) drops its batch, and both are counted (`alga_trace_spans_total{result}`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};

/// Trace export settings (`[telemetry]` in the configuration file).
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// OTLP/HTTP traces endpoint (the full URL, `…/v1/traces`).
    pub endpoint: String,
    /// Fraction of new traces recorded; a caller's sampled `traceparent` is always followed.
    pub sample_ratio: f64,
    /// Finished spans waiting for export before new ones are dropped.
    pub queue: usize,
    /// `service.name` of the spans.
    pub service_name: String,
}

/// What happened to finished spans.
#[derive(Debug, Default)]
pub struct TraceStats {
    exported: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_export_failed: AtomicU64,
    /// Spans handed to the batch processor and not yet exported or dropped.
    queued: AtomicUsize,
}

impl TraceStats {
    /// `(result, spans)` for the metrics.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("exported", self.exported.load(Ordering::Relaxed)),
            (
                "dropped_queue_full",
                self.dropped_queue_full.load(Ordering::Relaxed),
            ),
            (
                "dropped_export_failed",
                self.dropped_export_failed.load(Ordering::Relaxed),
            ),
        ]
    }
}

/// Running trace export; [`Traces::shutdown`] flushes what is queued.
pub struct Traces {
    provider: SdkTracerProvider,
    /// Span counts for the metrics.
    pub stats: Arc<TraceStats>,
}

/// How long one export may take (a collector slower than this loses the batch, counted).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Spans per export request.
const MAX_BATCH: usize = 512;

/// Longest a finished span waits before its batch is sent.
const SCHEDULED_DELAY: Duration = Duration::from_millis(500);

impl Traces {
    /// Installs the global tracer provider and switches spans on. Call outside the async
    /// runtime: the exporter's blocking HTTP client owns its own.
    pub fn start(settings: &TraceSettings) -> anyhow::Result<Self> {
        let stats = Arc::new(TraceStats::default());
        // reqwest refuses to build a client until a TLS provider is installed (even for http
        // endpoints); one installed earlier is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let otlp = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            // A failed batch is dropped and counted, not retried: retries would hold the
            // queue while the collector is down and drop newer spans instead.
            .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
            .build()
            .map_err(|e| anyhow::anyhow!("traces: cannot build the OTLP exporter: {e}"))?;
        let batches = BatchSpanProcessor::builder(CountingExporter {
            inner: otlp,
            stats: stats.clone(),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(settings.queue)
                .with_max_export_batch_size(MAX_BATCH.min(settings.queue))
                .with_scheduled_delay(SCHEDULED_DELAY)
                .build(),
        )
        .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BoundedQueue {
                inner: batches,
                stats: stats.clone(),
                capacity: settings.queue,
            })
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        alga_edge_http::trace_context::enable();
        Ok(Self { provider, stats })
    }

    /// Exports what is queued (bounded by the export timeout) and stops the batch thread.
    /// Blocking: call outside the async runtime.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("traces: shutdown: {e}");
        }
    }
}

/// The OTLP exporter, counting the spans of each export by outcome.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    stats: Arc<TraceStats>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        self.stats.queued.fetch_sub(spans, Ordering::AcqRel);
        let result = self.inner.export(batch).await;
        let counter = match &result {
            Ok(()) => &self.stats.exported,
            Err(e) => {
                tracing::debug!("traces: export of {spans} spans failed: {e}");
                &self.stats.dropped_export_failed
            }
        };
        counter.fetch_add(spans as u64, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The batch processor behind a queue bound this node counts: the SDK drops spans past its
/// own queue size too, but does not say how many.
#[derive(Debug)]
struct BoundedQueue {
    inner: BatchSpanProcessor,
    stats: Arc<TraceStats>,
    capacity: usize,
}

impl SpanProcessor for BoundedQueue {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, context: &Context) {
        self.inner.on_start(span, context);
    }

    fn on_end(&self, span: SpanData) {
        if self.stats.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.stats.queued.fetch_sub(1, Ordering::AcqRel);
            self.stats
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
