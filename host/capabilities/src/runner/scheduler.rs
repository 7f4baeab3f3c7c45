//! `scheduler` (`cap:scheduler.manage`): the install's own cron schedules, stored in the
//! registry through [`ScheduleService`] (forwarded to the primary on edges). Every call is
//! scoped to the request's tenant and extension, so an install never sees another's schedules.
//! Result shapes are Alga's: `create`/`update` answer `success: false` with `field-errors` (a
//! JSON object of field → message) when a rule refuses the change, and store nothing.

use std::sync::Arc;

use alga_edge_registry::schedules::{Schedule, ScheduleChange, ScheduleEndpoint, format_time};

use super::RunnerState;
use super::bindings::alga::extension::scheduler;
use super::types::{
    CreateScheduleInput, CreateScheduleResult, DeleteScheduleResult, EndpointInfo, ScheduleInfo,
    SchedulerError, UpdateScheduleInput, UpdateScheduleResult,
};
use crate::RequestCapabilities;
use crate::schedule_service::{
    ScheduleOp, ScheduleOutcome, ScheduleService, ScheduleServiceError, ScheduleWrite,
};

/// Why a scheduler call cannot go ahead.
enum Blocked {
    /// The install was not granted `cap:scheduler.manage`.
    Denied,
    /// This node has no schedule store (a test harness without a registry).
    Unavailable,
}

impl Blocked {
    fn error(&self) -> SchedulerError {
        match self {
            Self::Denied => SchedulerError::Denied,
            Self::Unavailable => SchedulerError::Internal,
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Denied => format!("Permission denied: {} not granted", crate::names::SCHEDULER),
            Self::Unavailable => "the scheduler is not available on this node".to_owned(),
        }
    }
}

impl RunnerState {
    /// The schedule store, when the install may use it.
    fn schedules(&self) -> Result<Arc<ScheduleService>, Blocked> {
        if !self.check(self.granted.scheduler, "scheduler") {
            return Err(Blocked::Denied);
        }
        self.schedules.clone().ok_or(Blocked::Unavailable)
    }

    /// Applies `op` to this install's schedules.
    async fn write_schedule(&self, op: ScheduleOp) -> Result<ScheduleOutcome, WriteFailed> {
        let service = self.schedules().map_err(WriteFailed::Blocked)?;
        let write = ScheduleWrite {
            tenant: self.context.tenant_id.clone(),
            extension: self.context.extension_id.clone(),
            op,
        };
        service.write(&write).await.map_err(|e| {
            self.log_failure("write", &e);
            WriteFailed::Service(e)
        })
    }

    fn log_failure(&self, call: &str, error: &ScheduleServiceError) {
        if error.status() >= 500 {
            tracing::warn!(
                tenant = %self.context.tenant_id,
                extension = %self.context.extension_id,
                "scheduler {call}: {error}"
            );
        }
    }
}

/// Why a write did not happen.
enum WriteFailed {
    Blocked(Blocked),
    Service(ScheduleServiceError),
}

impl WriteFailed {
    /// The `error` and `field-errors` of a result record.
    fn describe(&self) -> (String, Option<String>) {
        match self {
            Self::Blocked(blocked) => (blocked.message(), None),
            Self::Service(error) => (
                error.to_string(),
                error
                    .refused()
                    .and_then(|refused| serde_json::to_string(&refused.fields).ok()),
            ),
        }
    }
}

/// The interface's error for a failed read.
fn read_error(error: &ScheduleServiceError) -> SchedulerError {
    match error.status() {
        404 => SchedulerError::NotFound,
        400 => SchedulerError::ValidationFailed,
        _ => SchedulerError::Internal,
    }
}

fn info(schedule: Schedule) -> ScheduleInfo {
    ScheduleInfo {
        id: schedule.id,
        endpoint_path: schedule.endpoint_path,
        endpoint_method: schedule.endpoint_method,
        name: schedule.name,
        cron: schedule.cron,
        timezone: schedule.timezone,
        enabled: schedule.enabled,
        payload: schedule.payload,
        last_run_at: schedule.last_run_at.map(format_time),
        last_run_status: schedule.last_run_status,
        last_error: schedule.last_error,
        created_at: Some(format_time(schedule.created_at)),
    }
}

fn endpoint_info(endpoint: ScheduleEndpoint) -> EndpointInfo {
    EndpointInfo {
        id: endpoint.id,
        method: endpoint.method,
        path: endpoint.path,
        handler: endpoint.handler,
        schedulable: endpoint.schedulable,
    }
}

impl scheduler::Host for RequestCapabilities {
    async fn list_schedules(&mut self) -> Result<Vec<ScheduleInfo>, SchedulerError> {
        let runner = &self.runner;
        let service = runner.schedules().map_err(|b| b.error())?;
        let context = &runner.context;
        match service
            .list(&context.tenant_id, &context.extension_id)
            .await
        {
            Ok(schedules) => Ok(schedules.into_iter().map(info).collect()),
            Err(e) => {
                runner.log_failure("list", &e);
                Err(read_error(&e))
            }
        }
    }

    async fn get_schedule(
        &mut self,
        schedule_id: String,
    ) -> Result<Option<ScheduleInfo>, SchedulerError> {
        let runner = &self.runner;
        let service = runner.schedules().map_err(|b| b.error())?;
        let context = &runner.context;
        match service
            .get(&context.tenant_id, &context.extension_id, &schedule_id)
            .await
        {
            Ok(schedule) => Ok(schedule.map(info)),
            Err(e) => {
                runner.log_failure("get", &e);
                Err(read_error(&e))
            }
        }
    }

    async fn create_schedule(&mut self, input: CreateScheduleInput) -> CreateScheduleResult {
        let change = ScheduleChange {
            endpoint: Some(input.endpoint),
            cron: Some(input.cron),
            timezone: input.timezone,
            enabled: input.enabled,
            name: input.name,
            payload: input.payload,
        };
        match self
            .runner
            .write_schedule(ScheduleOp::Create { change })
            .await
        {
            Ok(ScheduleOutcome::Created(schedule)) => CreateScheduleResult {
                success: true,
                schedule_id: Some(schedule.id),
                error: None,
                field_errors: None,
            },
            Ok(_) => CreateScheduleResult {
                success: false,
                schedule_id: None,
                error: Some("the primary answered another operation".into()),
                field_errors: None,
            },
            Err(failed) => {
                let (error, field_errors) = failed.describe();
                CreateScheduleResult {
                    success: false,
                    schedule_id: None,
                    error: Some(error),
                    field_errors,
                }
            }
        }
    }

    async fn update_schedule(
        &mut self,
        schedule_id: String,
        input: UpdateScheduleInput,
    ) -> UpdateScheduleResult {
        let change = ScheduleChange {
            endpoint: input.endpoint,
            cron: input.cron,
            timezone: input.timezone,
            enabled: input.enabled,
            name: input.name,
            payload: input.payload,
        };
        let op = ScheduleOp::Update {
            id: schedule_id,
            change,
        };
        match self.runner.write_schedule(op).await {
            Ok(ScheduleOutcome::Updated(Some(_))) => UpdateScheduleResult {
                success: true,
                error: None,
                field_errors: None,
            },
            Ok(_) => UpdateScheduleResult {
                success: false,
                error: Some("Schedule not found".into()),
                field_errors: None,
            },
            Err(failed) => {
                let (error, field_errors) = failed.describe();
                UpdateScheduleResult {
                    success: false,
                    error: Some(error),
                    field_errors,
                }
            }
        }
    }

    async fn delete_schedule(&mut self, schedule_id: String) -> DeleteScheduleResult {
        let op = ScheduleOp::Delete { id: schedule_id };
        match self.runner.write_schedule(op).await {
            Ok(ScheduleOutcome::Deleted(true)) => DeleteScheduleResult {
                success: true,
                error: None,
            },
            Ok(_) => DeleteScheduleResult {
                success: false,
                error: Some("Schedule not found".into()),
            },
            Err(failed) => DeleteScheduleResult {
                success: false,
                error: Some(failed.describe().0),
            },
        }
    }

    async fn get_endpoints(&mut self) -> Result<Vec<EndpointInfo>, SchedulerError> {
        let runner = &self.runner;
        let service = runner.schedules().map_err(|b| b.error())?;
        let context = &runner.context;
        match service
            .endpoints(&context.tenant_id, &context.extension_id)
            .await
        {
            Ok(endpoints) => Ok(endpoints.into_iter().map(endpoint_info).collect()),
            Err(e) => {
                runner.log_failure("get-endpoints", &e);
                Err(read_error(&e))
            }
        }
    }
}
