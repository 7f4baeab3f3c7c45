//! Install schedules as the host manages them: reads from the node's registry (the primary's
//! database, or an edge's replica), writes applied on the primary. An edge forwards each write
//! to the primary and syncs its replica before answering, so the writer reads its own write.
//! Alga's `scheduler` interface ([`crate::runner`]) and the admin API sit on this; the
//! gateway's trigger fires what it stores.

use std::sync::Arc;

use alga_edge_registry::replication::PrimaryClient;
use alga_edge_registry::schedules::{
    Schedule, ScheduleChange, ScheduleEndpoint, ScheduleLimits, ScheduleRefused,
};
use alga_edge_registry::{Registry, RegistryError};
use serde::{Deserialize, Serialize};

/// One schedule write, as an edge forwards it to the primary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleWrite {
    /// Whose install.
    pub tenant: String,
    /// Which extension's install.
    pub extension: String,
    /// What to do.
    #[serde(flatten)]
    pub op: ScheduleOp,
}

/// A schedule write's operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ScheduleOp {
    /// Create a schedule.
    Create {
        /// Its fields.
        change: ScheduleChange,
    },
    /// Change schedule `id`.
    Update {
        /// The schedule.
        id: String,
        /// What changes.
        change: ScheduleChange,
    },
    /// Delete schedule `id`.
    Delete {
        /// The schedule.
        id: String,
    },
}

/// What a write did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleOutcome {
    /// The new schedule.
    Created(Box<Schedule>),
    /// The changed schedule; `None`: no such schedule.
    Updated(Option<Box<Schedule>>),
    /// Whether the schedule existed.
    Deleted(bool),
}

/// The primary's answer to a forwarded write (always 200 once the primary handled it).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardedAnswer {
    /// Applied.
    Done(ScheduleOutcome),
    /// A rule refused it, field by field.
    Refused(ScheduleRefused),
    /// It failed: the status the primary would answer and why.
    Failed {
        /// HTTP status.
        status: u16,
        /// Message.
        message: String,
    },
}

/// A schedule operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleServiceError {
    /// The registry refused or failed (no such install, a rule, the database).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The primary refused a forwarded write.
    #[error("{message}")]
    Primary {
        /// Its status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// The primary could not be reached or answered nonsense.
    #[error("the primary could not apply the schedule change: {0}")]
    Forward(String),
}

impl ScheduleServiceError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Registry(e) => e.status(),
            Self::Primary { status, .. } => *status,
            Self::Forward(_) => 502,
        }
    }

    /// The field-by-field refusal, when a rule refused the change.
    pub fn refused(&self) -> Option<&ScheduleRefused> {
        match self {
            Self::Registry(RegistryError::ScheduleRefused(refused)) => Some(refused),
            _ => None,
        }
    }
}

/// Install schedules for this node.
pub struct ScheduleService {
    registry: Arc<Registry>,
    forward: Option<PrimaryClient>,
    limits: ScheduleLimits,
}

impl ScheduleService {
    /// Schedules in `registry` under the node's `limits`; `forward` sends writes to the
    /// primary (edges).
    pub fn new(
        registry: Arc<Registry>,
        forward: Option<PrimaryClient>,
        limits: ScheduleLimits,
    ) -> Self {
        Self {
            registry,
            forward,
            limits,
        }
    }

    /// The node's schedule limits (installs' policies override them).
    pub fn limits(&self) -> ScheduleLimits {
        self.limits
    }

    /// Every schedule of `tenant`'s install of `extension`.
    pub async fn list(
        &self,
        tenant: &str,
        extension: &str,
    ) -> Result<Vec<Schedule>, ScheduleServiceError> {
        Ok(self.registry.schedules(tenant, extension).await?)
    }

    /// Schedule `id` of `tenant`'s install of `extension`.
    pub async fn get(
        &self,
        tenant: &str,
        extension: &str,
        id: &str,
    ) -> Result<Option<Schedule>, ScheduleServiceError> {
        Ok(self.registry.schedule(tenant, extension, id).await?)
    }

    /// The installed version's endpoints, as the scheduler sees them.
    pub async fn endpoints(
        &self,
        tenant: &str,
        extension: &str,
    ) -> Result<Vec<ScheduleEndpoint>, ScheduleServiceError> {
        Ok(self.registry.schedule_endpoints(tenant, extension).await?)
    }

    /// Applies `write`: here on the primary; on an edge through the primary, answered once the
    /// replica has it.
    pub async fn write(
        &self,
        write: &ScheduleWrite,
    ) -> Result<ScheduleOutcome, ScheduleServiceError> {
        let Some(primary) = &self.forward else {
            return self.apply(write).await;
        };
        let body = serde_json::to_vec(write)
            .map_err(|e| ScheduleServiceError::Forward(format!("encoding the write: {e}")))?;
        let answer = primary
            .forward_schedule_write(body)
            .await
            .map_err(|e| ScheduleServiceError::Forward(e.to_string()))?;
        if !answer.status.is_success() {
            return Err(ScheduleServiceError::Forward(format!(
                "the primary answered {}: {}",
                answer.status,
                answer.text.chars().take(512).collect::<String>()
            )));
        }
        let answer: ForwardedAnswer = serde_json::from_str(&answer.text).map_err(|e| {
            ScheduleServiceError::Forward(format!("unreadable answer from the primary: {e}"))
        })?;
        match answer {
            ForwardedAnswer::Done(outcome) => {
                // The writer reads its own write: the replica catches up before the answer.
                match self.registry.sync().await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        "schedule written on the primary, but the replica could not sync it yet"
                    ),
                    Err(e) => tracing::warn!("schedule written on the primary; replica sync: {e}"),
                }
                Ok(outcome)
            }
            ForwardedAnswer::Refused(refused) => {
                Err(RegistryError::ScheduleRefused(refused).into())
            }
            ForwardedAnswer::Failed { status, message } => {
                Err(ScheduleServiceError::Primary { status, message })
            }
        }
    }

    /// Applies `write` to this node's registry (the primary's; an edge's replica refuses).
    pub async fn apply(
        &self,
        write: &ScheduleWrite,
    ) -> Result<ScheduleOutcome, ScheduleServiceError> {
        let (tenant, extension) = (write.tenant.as_str(), write.extension.as_str());
        let registry = &self.registry;
        Ok(match &write.op {
            ScheduleOp::Create { change } => ScheduleOutcome::Created(Box::new(
                registry
                    .create_schedule(tenant, extension, change, self.limits)
                    .await?,
            )),
            ScheduleOp::Update { id, change } => ScheduleOutcome::Updated(
                registry
                    .update_schedule(tenant, extension, id, change, self.limits)
                    .await?
                    .map(Box::new),
            ),
            ScheduleOp::Delete { id } => {
                ScheduleOutcome::Deleted(registry.delete_schedule(tenant, extension, id).await?)
            }
        })
    }

    /// [`ScheduleService::apply`] as the primary answers a forwarded write.
    pub async fn answer_forwarded(&self, write: &ScheduleWrite) -> ForwardedAnswer {
        match self.apply(write).await {
            Ok(outcome) => ForwardedAnswer::Done(outcome),
            Err(ScheduleServiceError::Registry(RegistryError::ScheduleRefused(refused))) => {
                ForwardedAnswer::Refused(refused)
            }
            Err(e) => ForwardedAnswer::Failed {
                status: e.status(),
                message: e.to_string(),
            },
        }
    }
}
