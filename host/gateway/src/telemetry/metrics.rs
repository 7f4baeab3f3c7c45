//! The node's Prometheus metrics (text format at `/metrics`). Labels are bounded: route, the
//! extension id (only once resolved; otherwise `-`), status code, denial reason, cache result.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use alga_edge_capabilities::CapabilityMetrics;

/// Labels of per-request series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `gateway` or `execute`.
    pub route: &'static str,
    /// Extension id, `-` when the request never resolved to one.
    pub extension: String,
    /// HTTP status answered.
    pub status: u16,
}

/// Labels of per-extension series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExtensionLabels {
    /// Extension id.
    pub extension: String,
}

/// Labels of denials.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    /// `gateway` or `execute`.
    pub route: &'static str,
    /// Why (`unauthorized`, `tenant_rate`, `payload_too_large`…).
    pub reason: &'static str,
}

type HistogramFamily = Family<ExtensionLabels, Histogram, fn() -> Histogram>;

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by route, extension and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency (to the last response byte) by extension.
    pub duration: HistogramFamily,
    /// Requests being served.
    pub in_flight: Gauge,
    /// Requests refused before any extension code ran, by reason.
    pub denials: Family<DenialLabels, Counter>,
    /// Requests that hit their deadline, by extension.
    pub timeouts: Family<ExtensionLabels, Counter>,
    /// Requests stopped at their CPU budget, by extension.
    pub cpu_budget_exceeded: Family<ExtensionLabels, Counter>,
    /// Request body bytes read by components.
    pub bytes_in: Family<ExtensionLabels, Counter>,
    /// Response body bytes sent.
    pub bytes_out: Family<ExtensionLabels, Counter>,
    /// Execution-log rows written.
    pub log_written: Counter,
    /// Execution-log rows dropped (queue full or write failed).
    pub log_dropped: Counter,
    /// Node request-log lines of unidentified callers' failures left out by the rate limit.
    pub request_log_suppressed: Counter,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~33 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

impl Metrics {
    /// Registers the gateway's metrics and `capabilities`' counters; other parts add theirs
    /// with [`Metrics::register`] and [`Metrics::register_collector`].
    pub fn new(capabilities: &CapabilityMetrics) -> Self {
        let mut registry = Registry::with_prefix("alga");
        registry.register(
            "capability_denials",
            "Capability calls refused, by capability and reason",
            capabilities.denials.clone(),
        );
        registry.register(
            "egress_bytes",
            "Outbound HTTP body bytes, by extension and direction (sent/received)",
            capabilities.egress_bytes.clone(),
        );
        registry.register(
            "egress_requests",
            "Outbound HTTP requests sent, by extension and outcome (ok/failed)",
            capabilities.egress_requests.clone(),
        );
        registry.register(
            "platform_requests",
            "Platform broker calls (clients, services, invoicing, ui_proxy), by extension, interface and outcome",
            capabilities.platform_requests.clone(),
        );
        registry.register(
            "platform_bytes",
            "Platform broker body bytes, by extension, interface and direction (sent/received)",
            capabilities.platform_bytes.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests served, by route, extension and status",
            requests.clone(),
        );
        let duration = HistogramFamily::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Request latency to the last response byte, by extension",
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Requests being served",
            in_flight.clone(),
        );
        let denials = Family::<DenialLabels, Counter>::default();
        registry.register(
            "denials",
            "Requests refused before extension code ran, by reason",
            denials.clone(),
        );
        let timeouts = Family::<ExtensionLabels, Counter>::default();
        registry.register(
            "timeouts",
            "Requests that hit their deadline, by extension",
            timeouts.clone(),
        );
        let cpu_budget_exceeded = Family::<ExtensionLabels, Counter>::default();
        registry.register(
            "cpu_budget_exceeded",
            "Requests stopped because their guest used its CPU budget, by extension",
            cpu_budget_exceeded.clone(),
        );
        let bytes_in = Family::<ExtensionLabels, Counter>::default();
        registry.register(
            "request_body_bytes",
            "Request body bytes read by components",
            bytes_in.clone(),
        );
        let bytes_out = Family::<ExtensionLabels, Counter>::default();
        registry.register(
            "response_body_bytes",
            "Response body bytes sent",
            bytes_out.clone(),
        );
        let log_written = Counter::default();
        registry.register(
            "execution_log_written",
            "Execution-log rows written",
            log_written.clone(),
        );
        let log_dropped = Counter::default();
        registry.register(
            "execution_log_dropped",
            "Execution-log rows dropped because the queue was full or the write failed",
            log_dropped.clone(),
        );
        let request_log_suppressed = Counter::default();
        registry.register(
            "request_log_suppressed",
            "Request log lines left out: failures of callers that proved no identity, past the log's rate limit",
            request_log_suppressed.clone(),
        );
        Self {
            registry,
            request_log_suppressed,
            requests,
            duration,
            in_flight,
            denials,
            timeouts,
            cpu_budget_exceeded,
            bytes_in,
            bytes_out,
            log_written,
            log_dropped,
        }
    }

    /// Registers `metric` another part owns (under the `alga_` prefix).
    pub fn register(
        &mut self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry.register(name, help, metric);
    }

    /// Registers `collector`, read at every scrape.
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The per-extension label set.
    pub fn extension(extension: &str) -> ExtensionLabels {
        ExtensionLabels {
            extension: extension.to_owned(),
        }
    }
}

/// A counter family labelled by `result`, read at scrape time from state another part owns
/// (the engine's compile cache, the tenant token cache): the composition root registers one
/// per source, so this module imports none of them.
pub struct ResultCounters<F> {
    name: &'static str,
    help: &'static str,
    read: F,
}

impl<F> ResultCounters<F>
where
    F: Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
{
    /// The family `name` (under the registry's `alga_` prefix) whose rows `read` returns.
    pub fn new(name: &'static str, help: &'static str, read: F) -> Box<Self> {
        Box::new(Self { name, help, read })
    }
}

impl<F> std::fmt::Debug for ResultCounters<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl<F> Collector for ResultCounters<F>
where
    F: Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metric_type = ConstCounter::new(0u64).metric_type();
        let mut family = encoder.encode_descriptor(self.name, self.help, None, metric_type)?;
        for (result, value) in (self.read)() {
            let labels = [("result", result)];
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// A gauge family with one label, read at scrape time from state another part owns (the
/// memory budget, the CPU scheduler), like [`ResultCounters`].
pub struct Readings<F> {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    read: F,
}

impl<F> Readings<F>
where
    F: Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
{
    /// The gauge family `name` whose rows, labelled `label`, `read` returns.
    pub fn gauges(
        name: &'static str,
        help: &'static str,
        label: &'static str,
        read: F,
    ) -> Box<Self> {
        Box::new(Self {
            name,
            help,
            label,
            read,
        })
    }
}

impl<F> std::fmt::Debug for Readings<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl<F> Collector for Readings<F>
where
    F: Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metric_type = ConstGauge::new(0i64).metric_type();
        let mut family = encoder.encode_descriptor(self.name, self.help, None, metric_type)?;
        for (value_label, value) in (self.read)() {
            let labels = [(self.label, value_label)];
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
                .encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
