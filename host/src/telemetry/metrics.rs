//! The node's Prometheus metrics (text format at `/metrics`). Labels are bounded: route, the
//! extension id (only once resolved; otherwise `-`), status code, denial reason, cache result.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::capabilities::CapabilityMetrics;
use crate::engine::Engine;
use crate::server::Health;
use crate::tenant_auth::TenantAuth;

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
    /// Request body bytes read by components.
    pub bytes_in: Family<ExtensionLabels, Counter>,
    /// Response body bytes sent.
    pub bytes_out: Family<ExtensionLabels, Counter>,
    /// Execution-log rows written.
    pub log_written: Counter,
    /// Execution-log rows dropped (queue full or write failed).
    pub log_dropped: Counter,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~33 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

impl Metrics {
    /// Registers every metric, plus collectors reading `engine`'s compile cache and `auth`'s
    /// token cache at scrape time.
    pub fn new(
        engine: Arc<Engine>,
        auth: Arc<TenantAuth>,
        health: Health,
        capabilities: &CapabilityMetrics,
    ) -> Self {
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
        let instantiation = engine.instantiation_histogram();
        registry.register(
            "instantiation_duration_seconds",
            "Time to instantiate a component for one request",
            instantiation.clone(),
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
        registry.register_collector(Box::new(CacheCollector { engine, auth }));
        registry.register_collector(Box::new(ReplicationCollector(health)));
        Self {
            registry,
            requests,
            duration,
            in_flight,
            denials,
            timeouts,
            bytes_in,
            bytes_out,
            log_written,
            log_dropped,
        }
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

/// Counters owned by other parts (compile cache, token cache), read at scrape time.
#[derive(Debug)]
struct CacheCollector {
    engine: Arc<Engine>,
    auth: Arc<TenantAuth>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

impl std::fmt::Debug for TenantAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantAuth")
    }
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.engine.cache_stats();
        let tokens = self.auth.cache_stats();
        let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        // The registry's `alga_` prefix applies to collectors too.
        let families = [
            (
                "component_cache",
                "Prepared-component lookups by result",
                vec![
                    ("memory_hit", read(&stats.memory_hits)),
                    ("disk_hit", read(&stats.disk_hits)),
                    ("compile", read(&stats.compiles)),
                ],
            ),
            (
                "token_cache",
                "Tenant token verifications by result",
                vec![("hit", read(&tokens.hits)), ("miss", read(&tokens.misses))],
            ),
        ];
        for (name, help, rows) in families {
            let metric_type = ConstCounter::new(0u64).metric_type();
            let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
            for (result, value) in rows {
                let labels = [("result", result)];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Replication state read at scrape time: an edge's staleness and generation, a primary's
/// generation and WAL size.
struct ReplicationCollector(Health);

impl std::fmt::Debug for ReplicationCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplicationCollector")
    }
}

impl Collector for ReplicationCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::gauge::ConstGauge;
        let mut gauge = |name: &str, help: &str, value: f64| {
            let metric = ConstGauge::new(value);
            let family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(family)
        };
        if let Some(replica) = self.0.registry.replica() {
            let age = self.0.staleness().map_or(f64::INFINITY, |d| {
                if d == std::time::Duration::MAX {
                    f64::INFINITY
                } else {
                    d.as_secs_f64()
                }
            });
            gauge(
                "replica_staleness_seconds",
                "Seconds since the edge's last sync that reached the primary",
                age,
            )?;
            gauge(
                "replica_degraded",
                "1 when the edge is staler than its max staleness",
                f64::from(u8::from(self.0.degraded())),
            )?;
            gauge(
                "replica_generation",
                "Replication generation of the edge's replica",
                f64::from(replica.generation().unwrap_or(0)),
            )?;
        }
        if let Some(log) = &self.0.generations {
            let (current, oldest) = log.generations();
            gauge(
                "replication_generation",
                "The primary's current replication generation",
                f64::from(current),
            )?;
            gauge(
                "replication_oldest_generation",
                "Oldest generation whose frames the primary still serves",
                f64::from(oldest),
            )?;
            if let Ok(frames) = log.wal_frames() {
                gauge(
                    "replication_wal_frames",
                    "Committed frames in the primary's WAL (bounded by the rollover)",
                    f64::from(frames),
                )?;
            }
        }
        Ok(())
    }
}
