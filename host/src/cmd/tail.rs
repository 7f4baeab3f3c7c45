//! `alga-edge tail EXT --tenant T`: prints a node's live tail of one install (its admin API's
//! `tenants/{t}/extensions/{e}/tail` Server-Sent Events) until interrupted.

use std::io::{BufRead, BufReader};

use anyhow::bail;
use serde_json::Value;

use super::remote::{AdminClient, TenantArgs};

/// What `tail` takes.
#[derive(clap::Args)]
pub struct TailArgs {
    /// Extension id.
    pub extension: String,
    #[command(flatten)]
    pub target: TenantArgs,
    /// Only requests with these statuses, with their lines: `200`, `5xx`, `ok`, `error`.
    /// Repeatable or comma-separated.
    #[arg(long, value_name = "STATUS")]
    pub status: Vec<String>,
    /// Least level of lines shown: trace, debug, info, warn, error, critical (stdout lines
    /// count as info, stderr lines as error).
    #[arg(long)]
    pub level: Option<String>,
    /// Share of requests shown, above 0 and at most 1.
    #[arg(long)]
    pub sample: Option<f64>,
}

/// Streams the tail to stdout: one line per event (`--json`: the event's JSON, one per line).
/// Ends with an error when the node closes the stream.
pub fn run(args: TailArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.target.registry)?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    if !args.status.is_empty() {
        query.append_pair("status", &args.status.join(","));
    }
    if let Some(level) = &args.level {
        query.append_pair("level", level);
    }
    if let Some(sample) = args.sample {
        query.append_pair("sample", &sample.to_string());
    }
    let query = query.finish();
    let path = format!(
        "tenants/{}/extensions/{}/tail{}{query}",
        args.target.tenant,
        args.extension,
        if query.is_empty() { "" } else { "?" }
    );
    let reader = BufReader::new(client.stream(&path)?);
    let json = args.target.registry.json;
    let (mut kind, mut data) = (String::new(), String::new());
    for line in reader.lines() {
        let line = line.map_err(|e| anyhow::anyhow!("the tail stream broke: {e}"))?;
        if line.is_empty() {
            if !data.is_empty() {
                show(&kind, &data, json);
            }
            kind.clear();
            data.clear();
        } else if let Some(value) = line.strip_prefix("event: ") {
            value.clone_into(&mut kind);
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push_str(value);
        }
        // Comments (`: keepalive`) and anything else carry nothing to show.
    }
    bail!("the node closed the tail (it is shutting down, or the connection dropped)")
}

/// Prints one event.
fn show(kind: &str, data: &str, json: bool) {
    let event: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    if kind == "lost" {
        eprintln!(
            "({} events lost: this tail fell behind and the node dropped them)",
            event["lost"]
        );
        return;
    }
    if kind == "ready" {
        eprintln!(
            "tailing {} of tenant {} (filter {}); Ctrl-C to stop",
            text(&event["extension"]),
            text(&event["tenant"]),
            event["filter"]
        );
        return;
    }
    if json {
        println!("{data}");
        return;
    }
    let at = clock(event["at_ms"].as_u64().unwrap_or(0));
    let request = text(&event["request_id"]);
    match kind {
        "line" => {
            let level = text(&event["level"]).to_ascii_uppercase();
            let origin = match text(&event["source"]) {
                "log" => text(&event["context"]).to_owned(),
                stream => stream.to_owned(),
            };
            println!(
                "{at} {request} {level:<5} [{origin}] {}",
                text(&event["text"])
            );
        }
        "request" => {
            let mut summary = format!(
                "{at} {request} → {} in {} ms, version {}",
                event["status"],
                event["duration_ms"],
                text(&event["version"])
            );
            if let Some(error) = event["error_class"].as_str() {
                summary.push_str(&format!(", error {error}"));
            }
            if let Some(trigger) = event["trigger"].as_str() {
                summary.push_str(&format!(", {trigger}"));
            }
            println!("{summary}");
        }
        other => println!("{at} {other} {data}"),
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time in milliseconds.
fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(super::clock(1_764_576_005_123), "08:00:05.123");
    }
}
