//! What the probes and the replication gauges report: the registry's reachability and, by
//! role, an edge's staleness or a primary's generations.

use std::sync::Arc;
use std::time::Duration;

use alga_edge_registry::Registry;
use alga_edge_registry::replication::GenerationLog;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// What the probes report: the registry, and replication state by role.
#[derive(Clone)]
pub struct Health {
    /// The registry (a replica on edges).
    pub registry: Arc<Registry>,
    /// The primary's generations.
    pub generations: Option<Arc<GenerationLog>>,
    /// Edge: staleness past which the node reports degraded.
    pub max_staleness: Duration,
}

impl Health {
    /// Edge: time since the last sync that reached the primary (`None` on a primary; `MAX`
    /// when it never synced in this process).
    pub fn staleness(&self) -> Option<Duration> {
        let replica = self.registry.replica()?;
        Some(replica.status().staleness().unwrap_or(Duration::MAX))
    }

    /// Whether an edge is staler than allowed.
    pub fn degraded(&self) -> bool {
        self.staleness().is_some_and(|age| age > self.max_staleness)
    }

    /// The `/healthz` document.
    pub fn report(&self) -> serde_json::Value {
        match (self.registry.replica(), &self.generations) {
            (Some(replica), _) => {
                let status = replica.status();
                serde_json::json!({
                    "status": if self.degraded() { "degraded" } else { "ok" },
                    "role": "edge",
                    "primary": replica.primary(),
                    "generation": replica.generation(),
                    "last_sync_age_ms": status.staleness().map(|d| d.as_millis() as u64),
                    "last_sync_unix_ms": status.last_ok_unix_ms(),
                    "max_staleness_ms": self.max_staleness.as_millis() as u64,
                    "last_error": status.last_error(),
                })
            }
            (None, Some(log)) => {
                let (current, oldest) = log.generations();
                serde_json::json!({
                    "status": "ok",
                    "role": "primary",
                    "generation": current,
                    "oldest_generation": oldest,
                })
            }
            (None, None) => serde_json::json!({"status": "ok"}),
        }
    }
}

/// Replication state read at scrape time: an edge's staleness and generation, a primary's
/// generation and WAL size. Registered with the node's metrics by the composition root.
pub struct ReplicationGauges(pub Health);

impl std::fmt::Debug for ReplicationGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplicationGauges")
    }
}

impl Collector for ReplicationGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut gauge = |name: &str, help: &str, value: f64| {
            let metric = ConstGauge::new(value);
            let family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(family)
        };
        let health = &self.0;
        if let Some(replica) = health.registry.replica() {
            let age = health.staleness().map_or(f64::INFINITY, |d| {
                if d == Duration::MAX {
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
                f64::from(u8::from(health.degraded())),
            )?;
            gauge(
                "replica_generation",
                "Replication generation of the edge's replica",
                f64::from(replica.generation().unwrap_or(0)),
            )?;
        }
        if let Some(log) = &health.generations {
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
