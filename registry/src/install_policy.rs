//! Per-install overrides of the node's gateway policies. Operators set them per install (admin
//! API / `install --policy`); unset fields fall back to the node's defaults.

use serde::{Deserialize, Serialize};

/// Largest body cap an override may set (the node streams bodies, but a cap is a promise).
const MAX_BODY_BYTES: u64 = 1 << 30;
/// Longest deadline an override may set.
const MAX_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// Policy overrides of one install; `None` means "the node's default".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallPolicy {
    /// Request body cap in bytes (413 past it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Deadline of one request in milliseconds (504 past it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Most request headers (431 past it); can only tighten the node's cap, which is checked
    /// before the install is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<usize>,
    /// Largest total header size in bytes (431 past it); tightens like `max_headers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<usize>,
    /// Concurrent requests for this install (429 past it), on top of the tenant and extension caps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Sustained requests per second for this install (429 past it), on top of the tenant rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<f64>,
    /// Burst of this install's token bucket (defaults to twice the rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_burst: Option<f64>,
    /// Only the manifest's `api.endpoints` are routable (404 otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_endpoints: Option<bool>,
    /// Outbound HTTP allowlist of the install (`[scheme://]host[:port]` entries); intersected
    /// with the node's `EXT_EGRESS_ALLOWLIST`. Unset or empty: no outbound HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_allow: Option<Vec<String>>,
    /// Outbound requests per inbound request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_max_requests: Option<u32>,
    /// Largest outbound response body, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_max_response_bytes: Option<u64>,
    /// Deadline of one outbound request, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_timeout_ms: Option<u64>,
    /// Keys the install may hold in KV storage (across its buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_keys: Option<u64>,
    /// Requests one warm instance of this install serves before it is dropped; 0 or 1 turns
    /// reuse off for the install (the node's `--instance-reuse` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_reuse: Option<u32>,
    /// CPU time one request's guest may use, in milliseconds (502 `extension_cpu_budget` past
    /// it); 0 turns the node's `--cpu-budget-ms` off for the install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_budget_ms: Option<u64>,
    /// Schedules the install may hold (the node's `--schedule-max-per-install` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_max: Option<u32>,
    /// Shortest interval between two fires of one of its schedules, in seconds (the node's
    /// `--schedule-min-interval-secs` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_min_interval_secs: Option<u64>,
}

/// Most requests one instance may serve under an override.
const MAX_INSTANCE_REUSE: u32 = 1_000_000;

/// Most schedules an override may allow one install.
const MAX_SCHEDULES: u32 = 10_000;

/// Most entries in an install's egress allowlist.
const MAX_EGRESS_ENTRIES: usize = 64;

/// A policy value out of range.
#[derive(Debug, thiserror::Error)]
#[error("invalid install policy: {0}")]
pub struct PolicyError(String);

impl InstallPolicy {
    /// Checks every set value is in range.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |field: &str, rule: &str| Err(PolicyError(format!("{field} must be {rule}")));
        if let Some(v) = self.max_body_bytes
            && v > MAX_BODY_BYTES
        {
            return bad("max_body_bytes", &format!("at most {MAX_BODY_BYTES}"));
        }
        if let Some(v) = self.timeout_ms
            && !(1..=MAX_TIMEOUT_MS).contains(&v)
        {
            return bad("timeout_ms", &format!("1..={MAX_TIMEOUT_MS}"));
        }
        if self.max_headers == Some(0) {
            return bad("max_headers", "at least 1");
        }
        if self.max_header_bytes == Some(0) {
            return bad("max_header_bytes", "at least 1");
        }
        if self.concurrency == Some(0) {
            return bad("concurrency", "at least 1");
        }
        if let Some(entries) = &self.egress_allow {
            if entries.len() > MAX_EGRESS_ENTRIES {
                return bad(
                    "egress_allow",
                    &format!("at most {MAX_EGRESS_ENTRIES} entries"),
                );
            }
            if entries
                .iter()
                .any(|e| e.is_empty() || e.len() > 300 || e.contains(char::is_whitespace))
            {
                return bad("egress_allow", "entries of 1-300 characters without spaces");
            }
        }
        if self
            .egress_timeout_ms
            .is_some_and(|v| !(1..=MAX_TIMEOUT_MS).contains(&v))
        {
            return bad("egress_timeout_ms", &format!("1..={MAX_TIMEOUT_MS}"));
        }
        if self.kv_max_keys == Some(0) {
            return bad("kv_max_keys", "at least 1");
        }
        if self.cpu_budget_ms.is_some_and(|v| v > MAX_TIMEOUT_MS) {
            return bad("cpu_budget_ms", &format!("0..={MAX_TIMEOUT_MS}"));
        }
        if self.instance_reuse.is_some_and(|v| v > MAX_INSTANCE_REUSE) {
            return bad("instance_reuse", &format!("at most {MAX_INSTANCE_REUSE}"));
        }
        if self.schedule_max.is_some_and(|v| v > MAX_SCHEDULES) {
            return bad("schedule_max", &format!("at most {MAX_SCHEDULES}"));
        }
        if self.schedule_min_interval_secs.is_some_and(|v| v < 60) {
            return bad(
                "schedule_min_interval_secs",
                "at least 60 (cron fires at most once a minute)",
            );
        }
        for (field, value) in [
            ("rate_per_sec", self.rate_per_sec),
            ("rate_burst", self.rate_burst),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v >= 0.0)
            {
                return bad(field, "a finite number >= 0");
            }
        }
        Ok(())
    }

    /// Parses one `key=value` setting (the CLI's `--policy`) into this policy.
    pub fn set(&mut self, setting: &str) -> Result<(), PolicyError> {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| PolicyError(format!("'{setting}' is not KEY=VALUE")))?;
        let number = |what: &str| PolicyError(format!("{key}: '{value}' is not {what}"));
        match key.trim() {
            "max_body_bytes" => {
                self.max_body_bytes = Some(value.parse().map_err(|_| number("an integer"))?)
            }
            "timeout_ms" => {
                self.timeout_ms = Some(value.parse().map_err(|_| number("an integer"))?)
            }
            "max_headers" => {
                self.max_headers = Some(value.parse().map_err(|_| number("an integer"))?)
            }
            "max_header_bytes" => {
                self.max_header_bytes = Some(value.parse().map_err(|_| number("an integer"))?)
            }
            "concurrency" => {
                self.concurrency = Some(value.parse().map_err(|_| number("an integer"))?)
            }
            "rate_per_sec" => {
                self.rate_per_sec = Some(value.parse().map_err(|_| number("a number"))?)
            }
            "rate_burst" => self.rate_burst = Some(value.parse().map_err(|_| number("a number"))?),
            "enforce_endpoints" => {
                self.enforce_endpoints = Some(value.parse().map_err(|_| number("true or false"))?)
            }
            "egress_allow" => {
                self.egress_allow = Some(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .map(str::to_owned)
                        .collect(),
                )
            }
            "egress_max_requests" => {
                self.egress_max_requests = Some(value.parse().map_err(|_| number("an integer"))?)
            }
            "egress_max_response_bytes" => {
                self.egress_max_response_bytes =
                    Some(value.parse().map_err(|_| number("an integer"))?)
            }
            "egress_timeout_ms" => {
                self.egress_timeout_ms = Some(value.parse().map_err(|_| number("an integer"))?)
            }
            "kv_max_keys" => {
                self.kv_max_keys = Some(value.parse().map_err(|_| number("an integer"))?)
            }
            "cpu_budget_ms" => {
                self.cpu_budget_ms = Some(value.parse().map_err(|_| number("an integer"))?)
            }
            "instance_reuse" => {
                self.instance_reuse = Some(value.parse().map_err(|_| number("an integer"))?)
            }
            "schedule_max" => {
                self.schedule_max = Some(value.parse().map_err(|_| number("an integer"))?)
            }
            "schedule_min_interval_secs" => {
                self.schedule_min_interval_secs =
                    Some(value.parse().map_err(|_| number("an integer"))?)
            }
            other => {
                return Err(PolicyError(format!(
                    "unknown policy '{other}': use max_body_bytes, timeout_ms, max_headers, \
                     max_header_bytes, concurrency, rate_per_sec, rate_burst, enforce_endpoints, \
                     egress_allow, egress_max_requests, egress_max_response_bytes, \
                     egress_timeout_ms, kv_max_keys, instance_reuse, cpu_budget_ms, schedule_max or \
                     schedule_min_interval_secs"
                )));
            }
        }
        self.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings_and_refuses_bad_ones() {
        let mut policy = InstallPolicy::default();
        policy.set("timeout_ms=250").unwrap();
        policy.set("enforce_endpoints=true").unwrap();
        policy.set("rate_per_sec=2.5").unwrap();
        policy.set("cpu_budget_ms=0").unwrap();
        let mut egress = InstallPolicy::default();
        egress
            .set("egress_allow=api.example.com, 127.0.0.1:8080")
            .unwrap();
        assert_eq!(
            egress.egress_allow.as_deref(),
            Some(&["api.example.com".to_owned(), "127.0.0.1:8080".to_owned()][..])
        );
        assert_eq!(policy.timeout_ms, Some(250));
        assert_eq!(policy.enforce_endpoints, Some(true));
        assert_eq!(policy.rate_per_sec, Some(2.5));
        assert_eq!(policy.cpu_budget_ms, Some(0));
        for bad in [
            "timeout_ms=0",
            "timeout_ms=x",
            "colour=red",
            "concurrency=0",
            "rate_per_sec=-1",
            "kv_max_keys=0",
            "egress_timeout_ms=0",
            "cpu_budget_ms=-1",
            "cpu_budget_ms=99999999",
            "nonsense",
        ] {
            assert!(InstallPolicy::default().set(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_value(&policy).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"timeout_ms": 250, "rate_per_sec": 2.5, "enforce_endpoints": true, "cpu_budget_ms": 0})
        );
        assert!(serde_json::from_str::<InstallPolicy>(r#"{"timeout":1}"#).is_err());
    }
}
