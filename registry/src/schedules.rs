//! Cron schedules of installs (Alga's `scheduler` interface): what they are, the rules a new or
//! changed schedule must pass, and the state the primary keeps to fire each one exactly once.
//!
//! A schedule belongs to one install (`ON DELETE CASCADE`: uninstalling removes it) and names a
//! manifest endpoint marked `schedulable` (GET or POST, no path parameters). Its cron has five
//! fields, read in its IANA time zone ([`CronSpec`], DST rules there). Firing state lives in the
//! row: `next_run_at` is claimed in the same transaction that records the run
//! ([`Registry::claim_due_runs`]), under a lease only one process holds at a time, so a restart
//! or a second process on the same data never fires a due time twice; fire times missed while
//! no node ran are coalesced into one run.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use chrono::TimeZone as _;
use libsql::params;
use serde::{Deserialize, Serialize};

use crate::manifest::Endpoint;
use crate::{Registry, RegistryError};

/// Longest schedule name, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest cron expression, in characters.
pub const MAX_CRON_CHARS: usize = 128;
/// Largest payload (JSON text), in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 100_000;
/// Longest time zone name.
pub const MAX_TIMEZONE_CHARS: usize = 64;
/// Status of a run in flight.
pub const RUNNING: &str = "running";
/// Status of a run its node never finished (killed or stopped mid-run).
pub const INTERRUPTED: &str = "interrupted";
/// Status of a run answered 2xx.
pub const SUCCESS: &str = "success";
/// Status of a run that failed.
pub const FAILURE: &str = "error";

/// Per-install schedule limits: the node's settings, overridden per install by its policy
/// (`schedule_max`, `schedule_min_interval_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleLimits {
    /// Schedules one install may hold.
    pub max_per_install: u32,
    /// Shortest time between two fires of one schedule, in seconds.
    pub min_interval_secs: u64,
}

impl Default for ScheduleLimits {
    /// Alga's own limits: 50 schedules per install, 5 minutes apart at least.
    fn default() -> Self {
        Self {
            max_per_install: 50,
            min_interval_secs: 300,
        }
    }
}

/// A new schedule or a change to one (Alga's `create-schedule-input` and
/// `update-schedule-input`): unset fields keep their value (or default, on create).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleChange {
    /// `"METHOD /path"` or `"/path"` (then GET or POST, whichever the manifest declares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Five-field cron: minute hour day-of-month month day-of-week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone the cron is read in (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Whether it fires (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A name unique within the install; empty clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// JSON text (object or array) sent as the request body; empty clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Schedule id (a UUID).
    pub id: String,
    /// The install it belongs to.
    pub install_id: String,
    /// Tenant.
    pub tenant: String,
    /// Extension name.
    pub extension: String,
    /// Method of the endpoint it calls.
    pub endpoint_method: String,
    /// Path of the endpoint it calls.
    pub endpoint_path: String,
    /// Its name.
    pub name: Option<String>,
    /// Five-field cron.
    pub cron: String,
    /// IANA time zone.
    pub timezone: String,
    /// JSON payload.
    pub payload: Option<String>,
    /// Whether it fires.
    pub enabled: bool,
    /// When it fires next (Unix seconds); `None` while disabled.
    pub next_run_at: Option<i64>,
    /// When it last started a run.
    pub last_run_at: Option<i64>,
    /// How the last run went: `running`, `success`, `error`, `interrupted`.
    pub last_run_status: Option<String>,
    /// The last run's error.
    pub last_error: Option<String>,
    /// Runs started so far.
    pub runs: i64,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Last changed (Unix seconds).
    pub updated_at: i64,
}

/// A manifest endpoint as the scheduler sees it (Alga's `endpoint-info`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleEndpoint {
    /// `"METHOD /path"`, what `endpoint` of a schedule names.
    pub id: String,
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Handler.
    pub handler: String,
    /// Whether a schedule may call it: marked `schedulable`, GET or POST, no path parameters.
    pub schedulable: bool,
}

/// A schedule change refused, with the message per field (Alga's `field-errors`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleRefused {
    /// The first problem, as one sentence.
    pub message: String,
    /// Field → problem.
    pub fields: BTreeMap<String, String>,
}

impl ScheduleRefused {
    fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            fields: BTreeMap::from([(field.to_owned(), message.clone())]),
            message,
        }
    }
}

/// `unix` seconds as RFC 3339 UTC (`2026-12-01T09:00:00Z`), how the interfaces show times.
pub fn format_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map_or_else(
        || unix.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// A run the caller must now start: the schedule as it was claimed, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedRun {
    /// The schedule (its `last_run_at` is `run_at`).
    pub schedule: Schedule,
    /// When the run was claimed (Unix seconds); [`Registry::finish_run`] names it.
    pub run_at: i64,
}

/// A cron expression read in a time zone.
///
/// DST follows Vixie cron (as the `croner` crate implements the Open Cron Pattern
/// Specification): a fixed-time schedule (single minute and hour) whose wall-clock time does
/// not exist that day fires right after the gap, and one whose time happens twice fires once;
/// interval schedules (`*/15 * * * *`) follow real time through both transitions.
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

impl CronSpec {
    /// Parses `cron` (five fields) in `timezone` (IANA name), naming the field at fault.
    pub fn parse(cron: &str, timezone: &str) -> Result<Self, ScheduleRefused> {
        let tz = parse_timezone(timezone)?;
        let cron = parse_cron(cron)?;
        Ok(Self { cron, tz })
    }

    /// The first fire time strictly after `after` (Unix seconds); `None` if it never fires.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = self.tz.timestamp_opt(after, 0).single()?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|next| next.timestamp())
    }

    /// The shortest gap between consecutive fires among the next `samples` after `from`.
    pub fn shortest_gap(&self, from: i64, samples: usize) -> Option<i64> {
        let mut previous = self.next_after(from)?;
        let mut shortest: Option<i64> = None;
        for _ in 0..samples {
            let Some(next) = self.next_after(previous) else {
                break;
            };
            let gap = next - previous;
            shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
            previous = next;
        }
        shortest
    }
}

fn parse_timezone(timezone: &str) -> Result<chrono_tz::Tz, ScheduleRefused> {
    let timezone = timezone.trim();
    if timezone.chars().count() > MAX_TIMEZONE_CHARS {
        return Err(ScheduleRefused::field("timezone", "Timezone too long"));
    }
    chrono_tz::Tz::from_str(timezone).map_err(|_| {
        ScheduleRefused::field(
            "timezone",
            format!("Invalid timezone '{timezone}' (use an IANA name such as Europe/Berlin)"),
        )
    })
}

fn parse_cron(cron: &str) -> Result<croner::Cron, ScheduleRefused> {
    let bad = |message: String| ScheduleRefused::field("cron", message);
    if cron.chars().count() > MAX_CRON_CHARS {
        return Err(bad("Cron expression too long".into()));
    }
    let fields: Vec<&str> = cron.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(bad(format!(
            "Invalid cron expression '{cron}' (expected 5 fields: minute hour day-of-month month day-of-week)"
        )));
    }
    if fields[2] != "*" && fields[4] != "*" {
        return Err(bad(
            "Cron cannot set both day-of-month and day-of-week".into()
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(&fields.join(" "))
        .map_err(|e| bad(format!("Invalid cron expression '{cron}': {e}")))
}

/// Checks a payload is a JSON object or array within [`MAX_PAYLOAD_BYTES`].
fn check_payload(payload: &str) -> Result<(), ScheduleRefused> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(ScheduleRefused::field(
            "payload",
            format!("Payload too large (at most {MAX_PAYLOAD_BYTES} bytes)"),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(_) | serde_json::Value::Array(_)) => Ok(()),
        Ok(_) => Err(ScheduleRefused::field(
            "payload",
            "Payload must be a JSON object or array",
        )),
        Err(e) => Err(ScheduleRefused::field(
            "payload",
            format!("Payload is not JSON: {e}"),
        )),
    }
}

fn check_name(name: &str) -> Result<Option<String>, ScheduleRefused> {
    let name = name.trim();
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ScheduleRefused::field("name", "Name too long"));
    }
    if name.chars().any(char::is_control) {
        return Err(ScheduleRefused::field(
            "name",
            "Name must not contain control characters",
        ));
    }
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

/// Whether a manifest endpoint can be scheduled.
pub fn schedulable(endpoint: &Endpoint) -> bool {
    endpoint.schedulable
        && matches!(endpoint.method.as_str(), "GET" | "POST")
        && !endpoint.path.contains([':', '{', '}', '*'])
}

/// The endpoint `selector` (`"METHOD /path"` or `"/path"`) names among `endpoints`.
fn resolve_endpoint<'a>(
    endpoints: &'a [Endpoint],
    selector: &str,
) -> Result<&'a Endpoint, ScheduleRefused> {
    let selector = selector.trim();
    let (method, path) = match selector.split_once(char::is_whitespace) {
        Some((method, path)) if !method.starts_with('/') => {
            (Some(method.to_ascii_uppercase()), path.trim())
        }
        _ => (None, selector),
    };
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    endpoints
        .iter()
        .filter(|e| e.path == path)
        .filter(|e| match &method {
            Some(m) => e.method == *m,
            None => matches!(e.method.as_str(), "GET" | "POST"),
        })
        .find(|e| schedulable(e))
        .ok_or_else(|| {
            ScheduleRefused::field(
                "endpoint",
                format!(
                    "Endpoint '{selector}' not found or not schedulable (the manifest must declare it with \"schedulable\": true, GET or POST, no path parameters)"
                ),
            )
        })
}

/// The schedule limits of an install: the node's, overridden by its policy.
fn limits_of(node: ScheduleLimits, policy: &crate::InstallPolicy) -> ScheduleLimits {
    ScheduleLimits {
        max_per_install: policy.schedule_max.unwrap_or(node.max_per_install),
        min_interval_secs: policy
            .schedule_min_interval_secs
            .unwrap_or(node.min_interval_secs),
    }
}

/// A schedule's fields after a change, checked.
#[derive(Debug)]
struct Checked {
    method: String,
    path: String,
    cron: String,
    timezone: String,
    name: Option<String>,
    payload: Option<String>,
    enabled: bool,
    next_run_at: Option<i64>,
}

/// Applies `change` over `current` (or the defaults) and checks the result against the
/// install's `endpoints` and `limits` at time `now`. Every field is checked; the refusal lists
/// each field at fault.
fn check_change(
    current: Option<&Schedule>,
    change: &ScheduleChange,
    endpoints: &[Endpoint],
    limits: ScheduleLimits,
    now: i64,
) -> Result<Checked, ScheduleRefused> {
    let mut refused: Vec<ScheduleRefused> = Vec::new();
    let mut keep = |result: Result<(), ScheduleRefused>| {
        if let Err(e) = result {
            refused.push(e);
        }
    };
    let (mut method, mut path) = current.map_or((String::new(), String::new()), |s| {
        (s.endpoint_method.clone(), s.endpoint_path.clone())
    });
    match (&change.endpoint, current) {
        (Some(selector), _) => keep(resolve_endpoint(endpoints, selector).map(|e| {
            method.clone_from(&e.method);
            path.clone_from(&e.path);
        })),
        (None, None) => keep(Err(ScheduleRefused::field("endpoint", "Missing endpoint"))),
        (None, Some(_)) => {}
    }
    let cron = change
        .cron
        .as_deref()
        .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
        .or_else(|| current.map(|s| s.cron.clone()));
    let timezone = match change.timezone.as_deref().map(str::trim) {
        Some("") | None => current.map_or_else(|| "UTC".to_owned(), |s| s.timezone.clone()),
        Some(tz) => tz.to_owned(),
    };
    let mut spec = None;
    match &cron {
        None => keep(Err(ScheduleRefused::field("cron", "Missing cron"))),
        Some(cron) => {
            let tz = parse_timezone(&timezone);
            let parsed = parse_cron(cron);
            match (tz, parsed) {
                (Ok(tz), Ok(cron)) => spec = Some(CronSpec { cron, tz }),
                (tz, parsed) => {
                    keep(tz.map(|_| ()));
                    keep(parsed.map(|_| ()));
                }
            }
        }
    }
    let name = match &change.name {
        Some(name) => match check_name(name) {
            Ok(name) => name,
            Err(e) => {
                keep(Err(e));
                None
            }
        },
        None => current.and_then(|s| s.name.clone()),
    };
    let payload = match change.payload.as_deref() {
        Some("") => None,
        Some(payload) => {
            keep(check_payload(payload));
            Some(payload.to_owned())
        }
        None => current.and_then(|s| s.payload.clone()),
    };
    let enabled = change
        .enabled
        .unwrap_or_else(|| current.is_none_or(|s| s.enabled));
    let mut next_run_at = None;
    if let Some(spec) = &spec {
        match spec.next_after(now) {
            None => keep(Err(ScheduleRefused::field(
                "cron",
                "Cron never fires (no matching date)",
            ))),
            Some(next) => {
                next_run_at = enabled.then_some(next);
                if let Some(gap) = spec.shortest_gap(now, 64)
                    && gap < i64::try_from(limits.min_interval_secs).unwrap_or(i64::MAX)
                {
                    keep(Err(ScheduleRefused::field(
                        "cron",
                        format!(
                            "Cron too frequent: fires {gap} s apart, the minimum interval is {} s",
                            limits.min_interval_secs
                        ),
                    )));
                }
            }
        }
    }
    if let Some(first) = refused.first() {
        let mut all = ScheduleRefused {
            message: first.message.clone(),
            fields: BTreeMap::new(),
        };
        for r in refused {
            for (field, message) in r.fields {
                all.fields.entry(field).or_insert(message);
            }
        }
        return Err(all);
    }
    Ok(Checked {
        method,
        path,
        cron: cron.unwrap_or_default(),
        timezone,
        name,
        payload,
        enabled,
        next_run_at,
    })
}

/// Columns of a schedule row, in [`schedule_from_row`]'s order.
const COLUMNS: &str = "s.id, s.install_id, s.tenant_id, s.extension_name, s.endpoint_method, s.endpoint_path,
    s.name, s.cron, s.timezone, s.payload, s.enabled, s.next_run_at, s.last_run_at, s.last_run_status,
    s.last_error, s.runs, s.created_at, s.updated_at";

fn schedule_from_row(row: &libsql::Row) -> Result<Schedule, RegistryError> {
    Ok(Schedule {
        id: row.get(0)?,
        install_id: row.get(1)?,
        tenant: row.get(2)?,
        extension: row.get(3)?,
        endpoint_method: row.get(4)?,
        endpoint_path: row.get(5)?,
        name: row.get(6)?,
        cron: row.get(7)?,
        timezone: row.get(8)?,
        payload: row.get(9)?,
        enabled: row.get::<i64>(10)? != 0,
        next_run_at: row.get(11)?,
        last_run_at: row.get(12)?,
        last_run_status: row.get(13)?,
        last_error: row.get(14)?,
        runs: row.get(15)?,
        created_at: row.get(16)?,
        updated_at: row.get(17)?,
    })
}

fn opt_text(value: Option<&str>) -> libsql::Value {
    value.map_or(libsql::Value::Null, |v| libsql::Value::Text(v.to_owned()))
}

fn opt_int(value: Option<i64>) -> libsql::Value {
    value.map_or(libsql::Value::Null, libsql::Value::Integer)
}

/// Whether `error` is the unique (install, name) constraint.
fn is_name_taken(error: &libsql::Error) -> bool {
    error.to_string().contains("UNIQUE constraint failed")
}

fn name_taken() -> RegistryError {
    RegistryError::ScheduleRefused(ScheduleRefused::field(
        "name",
        "Schedule name already in use for this extension",
    ))
}

impl Registry {
    /// The install of `tenant`'s `extension` and its version's endpoints (enabled or not).
    async fn schedule_owner(
        &self,
        tenant: &str,
        extension: &str,
    ) -> Result<(crate::Install, Vec<Endpoint>), RegistryError> {
        self.install_with_endpoints(tenant, extension)
            .await?
            .ok_or_else(|| RegistryError::NotInstalled {
                tenant: tenant.to_owned(),
                name: extension.to_owned(),
            })
    }

    /// Every schedule of `tenant`'s install of `extension`, oldest first.
    pub async fn schedules(
        &self,
        tenant: &str,
        extension: &str,
    ) -> Result<Vec<Schedule>, RegistryError> {
        let (install, _) = self.schedule_owner(tenant, extension).await?;
        let mut rows = self
            .read
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM extension_schedule s WHERE s.install_id = ?1
                     ORDER BY s.created_at, s.id"
                ),
                [install.id.as_str()],
            )
            .await?;
        let mut found = Vec::new();
        while let Some(row) = rows.next().await? {
            found.push(schedule_from_row(&row)?);
        }
        Ok(found)
    }

    /// One schedule of `tenant`'s install of `extension`; `None` if that install has no
    /// schedule `id` (another install's schedule is never found).
    pub async fn schedule(
        &self,
        tenant: &str,
        extension: &str,
        id: &str,
    ) -> Result<Option<Schedule>, RegistryError> {
        let mut rows = self
            .read
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM extension_schedule s
                     WHERE s.id = ?1 AND s.tenant_id = ?2 AND s.extension_name = ?3"
                ),
                [id, tenant, extension],
            )
            .await?;
        match rows.next().await? {
            Some(row) => Ok(Some(schedule_from_row(&row)?)),
            None => Ok(None),
        }
    }

    /// The installed version's endpoints as the scheduler sees them.
    pub async fn schedule_endpoints(
        &self,
        tenant: &str,
        extension: &str,
    ) -> Result<Vec<ScheduleEndpoint>, RegistryError> {
        let (_, endpoints) = self.schedule_owner(tenant, extension).await?;
        Ok(endpoints
            .iter()
            .map(|e| ScheduleEndpoint {
                id: format!("{} {}", e.method, e.path),
                method: e.method.clone(),
                path: e.path.clone(),
                handler: e.handler.clone(),
                schedulable: schedulable(e),
            })
            .collect())
    }

    /// Creates a schedule for `tenant`'s install of `extension` under the node's `limits`
    /// (overridden by the install's policy). Nothing is stored when a rule refuses it.
    pub async fn create_schedule(
        &self,
        tenant: &str,
        extension: &str,
        change: &ScheduleChange,
        limits: ScheduleLimits,
    ) -> Result<Schedule, RegistryError> {
        let writer = self.writer().await?;
        let (install, endpoints) = self.schedule_owner(tenant, extension).await?;
        let limits = limits_of(limits, &install.policy);
        let now = crate::db::now();
        let checked = check_change(None, change, &endpoints, limits, now)?;
        let id = uuid::Uuid::new_v4().to_string();
        let tx = writer.transaction().await?;
        let count: i64 = {
            let mut rows = tx
                .query(
                    "SELECT count(*) FROM extension_schedule WHERE install_id = ?1",
                    [install.id.as_str()],
                )
                .await?;
            match rows.next().await? {
                Some(row) => row.get(0)?,
                None => 0,
            }
        };
        if count >= i64::from(limits.max_per_install) {
            return Err(RegistryError::ScheduleRefused(ScheduleRefused::field(
                "schedules",
                format!(
                    "Too many schedules (at most {} per extension install)",
                    limits.max_per_install
                ),
            )));
        }
        let inserted = tx
            .execute(
                "INSERT INTO extension_schedule
                   (id, install_id, tenant_id, extension_name, endpoint_method, endpoint_path, name,
                    cron, timezone, payload, enabled, next_run_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
                params![
                    id.clone(),
                    install.id.clone(),
                    tenant.to_owned(),
                    extension.to_owned(),
                    checked.method,
                    checked.path,
                    opt_text(checked.name.as_deref()),
                    checked.cron,
                    checked.timezone,
                    opt_text(checked.payload.as_deref()),
                    i64::from(checked.enabled),
                    opt_int(checked.next_run_at),
                    now
                ],
            )
            .await;
        match inserted {
            Err(e) if is_name_taken(&e) => return Err(name_taken()),
            other => other?,
        };
        tx.commit().await?;
        drop(writer);
        self.schedule(tenant, extension, &id)
            .await?
            .ok_or_else(|| RegistryError::Corrupt(format!("schedule {id} vanished")))
    }

    /// Changes schedule `id` of `tenant`'s install of `extension`; `None` if there is none.
    pub async fn update_schedule(
        &self,
        tenant: &str,
        extension: &str,
        id: &str,
        change: &ScheduleChange,
        limits: ScheduleLimits,
    ) -> Result<Option<Schedule>, RegistryError> {
        let writer = self.writer().await?;
        let Some(current) = self.schedule(tenant, extension, id).await? else {
            return Ok(None);
        };
        let (install, endpoints) = self.schedule_owner(tenant, extension).await?;
        let limits = limits_of(limits, &install.policy);
        let now = crate::db::now();
        let checked = check_change(Some(&current), change, &endpoints, limits, now)?;
        // The next fire is recomputed only when what decides it changed: an unrelated edit
        // must not skip a fire that is due.
        let timing_changed = checked.cron != current.cron
            || checked.timezone != current.timezone
            || checked.enabled != current.enabled;
        let next_run_at = if timing_changed {
            checked.next_run_at
        } else {
            current.next_run_at
        };
        let updated = writer
            .execute(
                "UPDATE extension_schedule SET endpoint_method = ?2, endpoint_path = ?3, name = ?4,
                   cron = ?5, timezone = ?6, payload = ?7, enabled = ?8, next_run_at = ?9, updated_at = ?10
                 WHERE id = ?1",
                params![
                    id.to_owned(),
                    checked.method,
                    checked.path,
                    opt_text(checked.name.as_deref()),
                    checked.cron,
                    checked.timezone,
                    opt_text(checked.payload.as_deref()),
                    i64::from(checked.enabled),
                    opt_int(next_run_at),
                    now
                ],
            )
            .await;
        match updated {
            Err(e) if is_name_taken(&e) => return Err(name_taken()),
            other => other?,
        };
        drop(writer);
        self.schedule(tenant, extension, id).await
    }

    /// Deletes schedule `id` of `tenant`'s install of `extension`; whether it existed.
    pub async fn delete_schedule(
        &self,
        tenant: &str,
        extension: &str,
        id: &str,
    ) -> Result<bool, RegistryError> {
        let removed = self
            .writer()
            .await?
            .execute(
                "DELETE FROM extension_schedule WHERE id = ?1 AND tenant_id = ?2 AND extension_name = ?3",
                [id, tenant, extension],
            )
            .await?;
        Ok(removed > 0)
    }

    /// Takes or renews the firing lease for `holder` until `now_ms + ttl_ms`; whether `holder`
    /// holds it (another holder's unexpired lease is left alone).
    pub async fn take_scheduler_lease(
        &self,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, RegistryError> {
        let writer = self.log_writer().await?;
        let changed = writer
            .execute(
                "INSERT INTO scheduler_lease (id, holder, expires_at_ms) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms
                 WHERE scheduler_lease.holder = excluded.holder OR scheduler_lease.expires_at_ms < ?3",
                params![holder.to_owned(), now_ms + ttl_ms, now_ms],
            )
            .await?;
        Ok(changed > 0)
    }

    /// Gives the lease up (at shutdown), so the next process need not wait for it to expire.
    pub async fn release_scheduler_lease(&self, holder: &str) -> Result<(), RegistryError> {
        self.log_writer()
            .await?
            .execute(
                "DELETE FROM scheduler_lease WHERE id = 1 AND holder = ?1",
                [holder],
            )
            .await?;
        Ok(())
    }

    /// Marks runs that processes other than `holder` left `running` as `interrupted` (their
    /// process is gone: `holder` took the lease over); how many.
    pub async fn interrupt_orphaned_runs(&self, holder: &str) -> Result<u64, RegistryError> {
        let changed = self
            .log_writer()
            .await?
            .execute(
                "UPDATE extension_schedule SET last_run_status = ?2,
                   last_error = 'the node stopped before the run finished; it is not run again'
                 WHERE last_run_status = ?1 AND (run_holder IS NULL OR run_holder <> ?3)",
                params![RUNNING, INTERRUPTED, holder.to_owned()],
            )
            .await?;
        Ok(changed)
    }

    /// Claims up to `max` schedules due at `now` (Unix seconds) of enabled installs, if
    /// `holder` holds the lease: each gets its next fire time after `now` (fires missed while
    /// no node ran are coalesced into this one run), its run recorded as `running`, in one
    /// transaction. `now_ms` is the real clock the lease is timed on. The caller runs them and
    /// reports each with [`Registry::finish_run`].
    pub async fn claim_due_runs(
        &self,
        holder: &str,
        now: i64,
        now_ms: i64,
        max: u32,
    ) -> Result<Vec<ClaimedRun>, RegistryError> {
        let writer = self.log_writer().await?;
        let tx = crate::db::begin_write(&writer).await?;
        let holds: bool = {
            let mut rows = tx
                .query(
                    "SELECT 1 FROM scheduler_lease WHERE id = 1 AND holder = ?1 AND expires_at_ms >= ?2",
                    params![holder.to_owned(), now_ms],
                )
                .await?;
            rows.next().await?.is_some()
        };
        if !holds {
            return Ok(Vec::new());
        }
        let mut due = Vec::new();
        {
            let mut rows = tx
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM extension_schedule s
                         JOIN tenant_extension_install i ON i.id = s.install_id
                         WHERE s.enabled = 1 AND i.enabled = 1 AND s.next_run_at IS NOT NULL
                           AND s.next_run_at <= ?1
                         ORDER BY s.next_run_at, s.id LIMIT ?2"
                    ),
                    params![now, i64::from(max)],
                )
                .await?;
            while let Some(row) = rows.next().await? {
                due.push(schedule_from_row(&row)?);
            }
        }
        let mut claimed = Vec::with_capacity(due.len());
        for mut schedule in due {
            // A schedule whose cron no longer parses (it could not be stored so) is parked.
            let next = CronSpec::parse(&schedule.cron, &schedule.timezone)
                .ok()
                .and_then(|spec| spec.next_after(now));
            tx.execute(
                "UPDATE extension_schedule SET next_run_at = ?2, last_run_at = ?3, last_run_status = ?4,
                   last_error = NULL, runs = runs + 1, run_holder = ?5
                 WHERE id = ?1",
                params![
                    schedule.id.clone(),
                    opt_int(next),
                    now,
                    RUNNING,
                    holder.to_owned()
                ],
            )
            .await?;
            schedule.next_run_at = next;
            schedule.last_run_at = Some(now);
            schedule.last_run_status = Some(RUNNING.to_owned());
            schedule.last_error = None;
            schedule.runs += 1;
            claimed.push(ClaimedRun {
                schedule,
                run_at: now,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Records a run of schedule `id` of `tenant`'s `extension` started now on request (an
    /// admin's `run-now`), whatever its cron says; its next fire time is unchanged.
    pub async fn claim_run_now(
        &self,
        tenant: &str,
        extension: &str,
        id: &str,
        holder: &str,
    ) -> Result<Option<ClaimedRun>, RegistryError> {
        let writer = self.log_writer().await?;
        let now = crate::db::now();
        let changed = writer
            .execute(
                "UPDATE extension_schedule SET last_run_at = ?4, last_run_status = ?5, last_error = NULL,
                   runs = runs + 1, run_holder = ?6
                 WHERE id = ?1 AND tenant_id = ?2 AND extension_name = ?3",
                params![
                    id.to_owned(),
                    tenant.to_owned(),
                    extension.to_owned(),
                    now,
                    RUNNING,
                    holder.to_owned()
                ],
            )
            .await?;
        drop(writer);
        if changed == 0 {
            return Ok(None);
        }
        Ok(self
            .schedule(tenant, extension, id)
            .await?
            .map(|schedule| ClaimedRun {
                schedule,
                run_at: now,
            }))
    }

    /// Writes how the run of schedule `id` claimed at `run_at` went, unless a later run was
    /// claimed since (or the schedule is gone).
    pub async fn finish_run(
        &self,
        id: &str,
        run_at: i64,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), RegistryError> {
        self.log_writer()
            .await?
            .execute(
                "UPDATE extension_schedule SET last_run_status = ?3, last_error = ?4
                 WHERE id = ?1 AND last_run_at = ?2 AND last_run_status = ?5",
                params![
                    id.to_owned(),
                    run_at,
                    status.to_owned(),
                    opt_text(error),
                    RUNNING
                ],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tz: chrono_tz::Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .unwrap()
            .timestamp()
    }

    fn utc(ts: i64) -> String {
        chrono::DateTime::from_timestamp(ts, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%MZ")
            .to_string()
    }

    /// 02:30 does not exist in New York on 2026-03-08 (02:00 EST → 03:00 EDT): the schedule
    /// fires once, right after the gap (03:00 EDT = 07:00Z), then at 02:30 EST/EDT as usual.
    #[test]
    fn a_time_the_clock_skips_fires_once_right_after_the_gap() {
        let ny = chrono_tz::America::New_York;
        let spec = CronSpec::parse("30 2 * * *", "America/New_York").unwrap();
        let before = at(ny, 2026, 3, 7, 12, 0);
        let first = spec.next_after(before).unwrap();
        assert_eq!(utc(first), "2026-03-08T07:00Z", "right after the gap");
        let second = spec.next_after(first).unwrap();
        assert_eq!(utc(second), "2026-03-09T06:30Z", "02:30 EDT the next day");
        let previous = spec.next_after(at(ny, 2026, 3, 6, 12, 0)).unwrap();
        assert_eq!(
            utc(previous),
            "2026-03-07T07:30Z",
            "02:30 EST the day before"
        );
    }

    /// 01:30 happens twice in New York on 2026-11-01 (02:00 EDT → 01:00 EST): a fixed-time
    /// schedule fires once (the first), an interval schedule fires through both hours.
    #[test]
    fn a_time_the_clock_repeats_fires_once_and_intervals_keep_real_time() {
        let ny = chrono_tz::America::New_York;
        let spec = CronSpec::parse("30 1 * * *", "America/New_York").unwrap();
        let before = at(ny, 2026, 10, 31, 12, 0);
        let first = spec.next_after(before).unwrap();
        assert_eq!(utc(first), "2026-11-01T05:30Z", "01:30 EDT");
        let second = spec.next_after(first).unwrap();
        assert_eq!(
            utc(second),
            "2026-11-02T06:30Z",
            "not 01:30 EST the same day"
        );

        let every_half_hour = CronSpec::parse("*/30 * * * *", "America/New_York").unwrap();
        let mut fires = Vec::new();
        let mut t = at(ny, 2026, 11, 1, 0, 10);
        for _ in 0..6 {
            t = every_half_hour.next_after(t).unwrap();
            fires.push(utc(t));
        }
        assert_eq!(
            fires,
            [
                "2026-11-01T04:30Z",
                "2026-11-01T05:00Z",
                "2026-11-01T05:30Z",
                "2026-11-01T06:00Z",
                "2026-11-01T06:30Z",
                "2026-11-01T07:00Z"
            ],
            "every 30 minutes of real time through the repeated hour"
        );
    }

    #[test]
    fn refuses_bad_crons_and_zones_naming_the_field() {
        for cron in [
            "* * * *",
            "* * * * * *",
            "61 * * * *",
            "0 0 1 * 1",
            "x * * * *",
        ] {
            let refused = CronSpec::parse(cron, "UTC").unwrap_err();
            assert!(refused.fields.contains_key("cron"), "{cron}: {refused:?}");
        }
        let refused = CronSpec::parse("0 * * * *", "Mars/Olympus").unwrap_err();
        assert!(refused.fields.contains_key("timezone"), "{refused:?}");
        assert!(CronSpec::parse("0 9 * * MON", "Europe/Berlin").is_ok());
    }

    #[test]
    fn checks_endpoints_intervals_and_payloads_together() {
        let endpoint = |method: &str, path: &str, schedulable: bool| Endpoint {
            method: method.into(),
            path: path.into(),
            handler: "dist/main".into(),
            schedulable,
        };
        let endpoints = [
            endpoint("POST", "/sync", true),
            endpoint("GET", "/status", false),
            endpoint("POST", "/items/:id", true),
        ];
        let limits = ScheduleLimits {
            max_per_install: 5,
            min_interval_secs: 300,
        };
        let change = |endpoint: &str, cron: &str| ScheduleChange {
            endpoint: Some(endpoint.into()),
            cron: Some(cron.into()),
            ..ScheduleChange::default()
        };
        let ok = check_change(
            None,
            &change("POST /sync", "*/5 * * * *"),
            &endpoints,
            limits,
            0,
        )
        .unwrap();
        assert_eq!((ok.method.as_str(), ok.path.as_str()), ("POST", "/sync"));
        assert_eq!(ok.next_run_at, Some(300));
        assert!(check_change(None, &change("/sync", "0 * * * *"), &endpoints, limits, 0).is_ok());
        for selector in ["GET /status", "POST /items/:id", "DELETE /sync", "/nope"] {
            let refused = check_change(None, &change(selector, "0 * * * *"), &endpoints, limits, 0)
                .unwrap_err();
            assert!(refused.fields.contains_key("endpoint"), "{selector}");
        }
        let refused =
            check_change(None, &change("/sync", "* * * * *"), &endpoints, limits, 0).unwrap_err();
        assert!(
            refused.fields["cron"].contains("too frequent"),
            "{refused:?}"
        );
        let mut bad = change("/nope", "bad");
        bad.payload = Some("42".into());
        bad.timezone = Some("Nowhere/Else".into());
        let refused = check_change(None, &bad, &endpoints, limits, 0).unwrap_err();
        let fields: Vec<&str> = refused.fields.keys().map(String::as_str).collect();
        assert_eq!(fields, ["cron", "endpoint", "payload", "timezone"]);
    }
}
