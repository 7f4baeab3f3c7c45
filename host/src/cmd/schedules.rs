//! `alga-edge schedules list|create|update|delete|run-now`: a tenant's install schedules
//! through a node's admin API (writes at an edge are forwarded to the primary; `run-now` runs
//! on the primary).

use anyhow::bail;
use serde_json::{Value, json};

use super::remote::{AdminClient, TenantArgs};

/// The fields of a schedule a command sets.
#[derive(clap::Args)]
pub struct ScheduleFields {
    /// Endpoint to call: `"METHOD /path"` or `/path` (marked `schedulable` in the manifest).
    #[arg(long)]
    endpoint: Option<String>,
    /// Five-field cron (minute hour day-of-month month day-of-week).
    #[arg(long)]
    cron: Option<String>,
    /// IANA time zone the cron is read in [default on create: UTC].
    #[arg(long)]
    timezone: Option<String>,
    /// Name, unique within the install (empty clears it).
    #[arg(long)]
    name: Option<String>,
    /// JSON payload sent as the request body (empty clears it).
    #[arg(long)]
    payload: Option<String>,
    /// Stop firing it (kept).
    #[arg(long, conflicts_with = "enable")]
    disable: bool,
    /// Fire it again.
    #[arg(long)]
    enable: bool,
}

impl ScheduleFields {
    fn json(&self) -> Value {
        let mut body = serde_json::Map::new();
        for (key, value) in [
            ("endpoint", &self.endpoint),
            ("cron", &self.cron),
            ("timezone", &self.timezone),
            ("name", &self.name),
            ("payload", &self.payload),
        ] {
            if let Some(value) = value {
                body.insert(key.into(), json!(value));
            }
        }
        if self.disable || self.enable {
            body.insert("enabled".into(), json!(self.enable));
        }
        Value::Object(body)
    }
}

/// `schedules …`.
#[derive(clap::Subcommand)]
pub enum ScheduleCommand {
    /// List the schedules of a tenant's install.
    List {
        /// Extension id.
        extension: String,
        #[command(flatten)]
        target: TenantArgs,
    },
    /// Create a schedule (needs --endpoint and --cron).
    Create {
        /// Extension id.
        extension: String,
        #[command(flatten)]
        fields: ScheduleFields,
        #[command(flatten)]
        target: TenantArgs,
    },
    /// Change a schedule.
    Update {
        /// Extension id.
        extension: String,
        /// Schedule id.
        id: String,
        #[command(flatten)]
        fields: ScheduleFields,
        #[command(flatten)]
        target: TenantArgs,
    },
    /// Delete a schedule.
    Delete {
        /// Extension id.
        extension: String,
        /// Schedule id.
        id: String,
        #[command(flatten)]
        target: TenantArgs,
    },
    /// Run a schedule now (on the primary), whatever its cron says, and print how it went.
    RunNow {
        /// Extension id.
        extension: String,
        /// Schedule id.
        id: String,
        #[command(flatten)]
        target: TenantArgs,
    },
}

/// Runs one `schedules` command.
pub fn run(command: ScheduleCommand) -> anyhow::Result<()> {
    let path = |target: &TenantArgs, extension: &str| {
        format!("tenants/{}/schedules/{extension}", target.tenant)
    };
    match command {
        ScheduleCommand::List { extension, target } => {
            let client = AdminClient::new(&target.registry)?;
            let answer = client.call("GET", &path(&target, &extension), None)?;
            client.show(&answer, || {
                let schedules = answer["schedules"].as_array().cloned().unwrap_or_default();
                if schedules.is_empty() {
                    println!("(no schedules)");
                }
                for schedule in &schedules {
                    println!("{}", schedule_line(schedule));
                }
            });
        }
        ScheduleCommand::Create {
            extension,
            fields,
            target,
        } => {
            if fields.endpoint.is_none() || fields.cron.is_none() {
                bail!("create needs --endpoint and --cron");
            }
            let client = AdminClient::new(&target.registry)?;
            let answer = client.call("POST", &path(&target, &extension), Some(fields.json()))?;
            show_schedule(&client, &answer, "created");
        }
        ScheduleCommand::Update {
            extension,
            id,
            fields,
            target,
        } => {
            let body = fields.json();
            if body.as_object().is_some_and(serde_json::Map::is_empty) {
                bail!(
                    "nothing to change: give --endpoint, --cron, --timezone, --name, --payload, --enable or --disable"
                );
            }
            let client = AdminClient::new(&target.registry)?;
            let url = format!("{}/{id}", path(&target, &extension));
            let answer = client.call("PATCH", &url, Some(body))?;
            show_schedule(&client, &answer, "updated");
        }
        ScheduleCommand::Delete {
            extension,
            id,
            target,
        } => {
            let client = AdminClient::new(&target.registry)?;
            let url = format!("{}/{id}", path(&target, &extension));
            let answer = client.call("DELETE", &url, None)?;
            client.show(&answer, || println!("deleted schedule {id}"));
        }
        ScheduleCommand::RunNow {
            extension,
            id,
            target,
        } => {
            let client = AdminClient::new(&target.registry)?;
            let url = format!("{}/{id}/run", path(&target, &extension));
            let answer = client.call("POST", &url, None)?;
            let run = &answer["run"];
            client.show(&answer, || {
                println!(
                    "ran schedule {id}: {} (HTTP {}) request {}{}",
                    run["outcome"].as_str().unwrap_or("?"),
                    run["status"],
                    run["request_id"].as_str().unwrap_or("?"),
                    run["error"]
                        .as_str()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )
            });
            if run["outcome"].as_str() != Some("success") {
                bail!("the scheduled run failed");
            }
        }
    }
    Ok(())
}

/// Prints a created or updated schedule (a refusal already failed the call, naming each field).
fn show_schedule(client: &AdminClient, answer: &Value, what: &str) {
    client.show(answer, || {
        println!("{what}: {}", schedule_line(&answer["schedule"]));
    });
}

/// One line per schedule.
fn schedule_line(schedule: &Value) -> String {
    let time = |key: &str| {
        schedule[key].as_i64().map_or_else(
            || "-".to_owned(),
            alga_edge_registry::schedules::format_time,
        )
    };
    format!(
        "{} {} {} '{}' {} {} next={} last={} ({}){}",
        schedule["id"].as_str().unwrap_or("?"),
        schedule["endpoint_method"].as_str().unwrap_or("?"),
        schedule["endpoint_path"].as_str().unwrap_or("?"),
        schedule["cron"].as_str().unwrap_or("?"),
        schedule["timezone"].as_str().unwrap_or("?"),
        if schedule["enabled"].as_bool() == Some(true) {
            "enabled"
        } else {
            "disabled"
        },
        time("next_run_at"),
        time("last_run_at"),
        schedule["last_run_status"].as_str().unwrap_or("never run"),
        schedule["name"]
            .as_str()
            .map(|n| format!(" name={n}"))
            .unwrap_or_default(),
    )
}
