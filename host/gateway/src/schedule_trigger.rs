//! Scheduled triggers: the primary fires due schedules through the gateway's own path (the
//! same policies, limits, metrics and execution log as a request of that tenant), each run
//! a request with the schedule's method, path and payload and `x-alga-trigger: schedule`.
//!
//! Exactly once: a process fires only while it holds the registry's lease row, and claims a
//! due schedule by moving its next fire time in the same transaction that records the run
//! ([`Registry::claim_due_runs`]). A restart, or a second process on the same data, finds the
//! fire time already moved. A run in flight when its process died is marked `interrupted` by
//! the next lease holder and not run again; fire times missed while no node ran are coalesced
//! into one run.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alga_edge_registry::schedules::{ClaimedRun, FAILURE, SUCCESS, Schedule};
use alga_edge_registry::{Registry, RegistryError};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::error::GatewayError;
use crate::ext_api::{CallerContext, Gateway, ScheduledTrigger};
pub use crate::ext_api::{SCHEDULE_ID_HEADER, TRIGGER_HEADER};

/// Longest error text kept for a run.
const MAX_ERROR_CHARS: usize = 1024;

/// How the trigger runs.
#[derive(Debug, Clone)]
pub struct TriggerConfig {
    /// How often due schedules are looked for.
    pub tick: Duration,
    /// How long the lease lasts unless renewed (renewed every tick).
    pub lease_ttl: Duration,
    /// Runs in flight at once, node-wide.
    pub max_parallel: usize,
    /// Added to the wall clock when deciding what is due (tests move time with it).
    pub clock_offset_secs: i64,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(10),
            max_parallel: 16,
            clock_offset_secs: 0,
        }
    }
}

/// How one run went.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The schedule.
    pub schedule_id: String,
    /// The run's request id (its execution-log row).
    pub request_id: String,
    /// HTTP status the run answered.
    pub status: u16,
    /// `success` or `error`.
    pub outcome: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Fires due schedules on the primary.
pub struct ScheduleTrigger {
    gateway: Arc<Gateway>,
    registry: Arc<Registry>,
    holder: String,
    config: TriggerConfig,
    slots: Arc<Semaphore>,
}

impl ScheduleTrigger {
    /// A trigger running schedules of `registry` on `gateway`, under a fresh lease-holder id.
    pub fn new(gateway: Arc<Gateway>, registry: Arc<Registry>, config: TriggerConfig) -> Self {
        Self {
            gateway,
            registry,
            holder: uuid::Uuid::new_v4().to_string(),
            slots: Arc::new(Semaphore::new(config.max_parallel.max(1))),
            config,
        }
    }

    /// Now: the clock deciding what is due (Unix seconds, with the test offset) and the real
    /// clock the lease is timed on (Unix milliseconds; processes with different offsets on
    /// the same data must agree on it).
    fn now(&self) -> (i64, i64) {
        let real_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        (
            real_ms.div_euclid(1000) + self.config.clock_offset_secs,
            real_ms,
        )
    }

    /// Fires due schedules every tick, forever (the node drops the task at shutdown).
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut holding = false;
        loop {
            tick.tick().await;
            match self.fire_due(&mut holding).await {
                Ok(()) => {}
                Err(e) => tracing::warn!("scheduled triggers: {e}"),
            }
        }
    }

    /// One tick: renew the lease, and start every due run there is a slot for.
    async fn fire_due(self: &Arc<Self>, holding: &mut bool) -> Result<(), RegistryError> {
        let (now, now_ms) = self.now();
        let ttl = self.config.lease_ttl.as_millis() as i64;
        let held = self
            .registry
            .take_scheduler_lease(&self.holder, now_ms, ttl)
            .await?;
        if held && !*holding {
            let interrupted = self.registry.interrupt_orphaned_runs(&self.holder).await?;
            tracing::info!(
                interrupted,
                "this node fires scheduled triggers (lease taken)"
            );
        }
        *holding = held;
        if !held {
            return Ok(());
        }
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(());
        }
        let claimed = self
            .registry
            .claim_due_runs(&self.holder, now, now_ms, free as u32)
            .await?;
        for run in claimed {
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                // Cannot happen (only this task takes slots), but a claimed run is never
                // dropped silently: it is recorded as not started.
                self.finish(&run, None, Some("no run slot was free".into()))
                    .await;
                continue;
            };
            let trigger = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                trigger.execute(run).await;
            });
        }
        Ok(())
    }

    /// Runs schedule `id` of `tenant`'s `extension` now (an admin's `run-now`), whatever its
    /// cron says; `None` if there is no such schedule.
    pub async fn run_now(
        &self,
        tenant: &str,
        extension: &str,
        id: &str,
    ) -> Result<Option<RunReport>, RegistryError> {
        let Some(run) = self
            .registry
            .claim_run_now(tenant, extension, id, &self.holder)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(self.execute(run).await))
    }

    /// Runs a claimed run and records how it went.
    async fn execute(&self, run: ClaimedRun) -> RunReport {
        let report = self.gateway.run_scheduled(&run.schedule).await;
        self.finish(&run, Some(&report), report.error.clone()).await;
        report
    }

    async fn finish(&self, run: &ClaimedRun, report: Option<&RunReport>, error: Option<String>) {
        let status = report.map_or(FAILURE, |r| r.outcome);
        if let Err(e) = self
            .registry
            .finish_run(&run.schedule.id, run.run_at, status, error.as_deref())
            .await
        {
            tracing::warn!(schedule = %run.schedule.id, "cannot record a scheduled run: {e}");
        }
    }

    /// Gives the lease up, so a restarted node fires at once instead of after its expiry.
    pub async fn release(&self) {
        if let Err(e) = self.registry.release_scheduler_lease(&self.holder).await {
            tracing::warn!("cannot release the scheduler lease: {e}");
        }
    }
}

impl Gateway {
    /// Runs `schedule` once through the gateway's path as a request of its tenant, with
    /// [`TRIGGER_HEADER`]; the execution-log row is marked `schedule`.
    pub async fn run_scheduled(&self, schedule: &Schedule) -> RunReport {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut trace = self
            .telemetry()
            .begin("schedule", &request_id, &http::HeaderMap::new());
        trace.identified();
        trace.triggered_by("schedule");
        let report = |status: u16, error: Option<String>| RunReport {
            schedule_id: schedule.id.clone(),
            request_id: request_id.clone(),
            status,
            outcome: if (200..300).contains(&status) && error.is_none() {
                SUCCESS
            } else {
                FAILURE
            },
            error: error.map(|e| e.chars().take(MAX_ERROR_CHARS).collect()),
        };
        let context = trace.context();
        let started = alga_edge_http::trace_context::within(
            self.start_scheduled(schedule, &request_id, &mut trace),
            context,
        );
        let response = match started.await {
            Ok(response) => response,
            Err(error) => {
                let status = error.status().as_u16();
                let message = format!("{}: {error}", error.code());
                trace.fail(&error);
                return report(status, Some(message));
            }
        };
        let status = response.status().as_u16();
        // Read to the end: the trace reports the run when its body ends.
        match trace.succeed(response).into_body().collect().await {
            Ok(_) if (200..300).contains(&status) => report(status, None),
            Ok(body) => {
                let body = body.to_bytes();
                let text = String::from_utf8_lossy(&body);
                report(
                    status,
                    Some(format!("the endpoint answered {status}: {}", text.trim())),
                )
            }
            Err(e) => report(status, Some(format!("its response body failed: {e}"))),
        }
    }

    async fn start_scheduled(
        &self,
        schedule: &Schedule,
        request_id: &str,
        trace: &mut crate::telemetry::RequestTrace,
    ) -> Result<http::Response<alga_edge_http::HostBody>, GatewayError> {
        let resolved = self
            .installed()
            .resolve(&schedule.tenant, &schedule.extension)
            .await?
            .filter(|resolved| *resolved.install_id == schedule.install_id)
            .ok_or_else(|| GatewayError::UnknownExtension(schedule.extension.clone()))?;
        // The install may have moved to a version that no longer offers the endpoint.
        let offered = resolved.endpoints.iter().any(|e| {
            e.method == schedule.endpoint_method
                && e.path == schedule.endpoint_path
                && alga_edge_registry::schedules::schedulable(e)
        });
        if !offered {
            return Err(GatewayError::EndpointNotDeclared {
                method: schedule.endpoint_method.clone(),
                path: format!(
                    "{} (version {} does not declare it schedulable)",
                    schedule.endpoint_path, resolved.version
                ),
            });
        }
        let method = Method::from_bytes(schedule.endpoint_method.as_bytes())
            .map_err(|_| GatewayError::BadRequest("the schedule's method is invalid".into()))?;
        let payload = schedule.payload.clone().unwrap_or_default();
        let mut builder = Request::builder()
            .method(method)
            .uri(schedule.endpoint_path.as_str())
            .header(http::header::CONTENT_LENGTH, payload.len());
        if schedule.payload.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let mut request = builder
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| GatewayError::BadRequest(format!("the schedule's request: {e}")))?;
        request.extensions_mut().insert(ScheduledTrigger {
            schedule_id: schedule.id.clone(),
        });
        self.run(
            resolved,
            request,
            schedule.endpoint_path.clone(),
            CallerContext::default(),
            request_id,
            trace,
        )
        .await
    }
}
