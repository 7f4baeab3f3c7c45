//! The platform broker: calls from an extension to the platform's own data (clients, services,
//! manual invoices) and host-application routes (`ui-proxy`), sent the way Alga PSA's runner
//! sends them, so an Alga server can be the platform unchanged.
//!
//! - `clients`, `services`, `invoicing`: `POST {base}/api/internal/ext-{kind}/install/{installId}`
//!   with `x-runner-auth: <token>` and a JSON body `{operation, …}`; the base URL and token are
//!   Alga's settings (`STORAGE_API_BASE_URL`, `RUNNER_STORAGE_API_TOKEN`).
//! - `ui-proxy`: `GET` (no payload) or `POST` (JSON payload) `{UI_PROXY_BASE_URL}/{extensionId}/{route}`
//!   (routes under `/api/` go to the platform's API without the extension prefix), with the
//!   request's tenant, extension, install, version, request id and user as `x-*` headers.
//!
//! Every call also names tenant, extension, install, version and request (`x-alga-tenant`,
//! `x-alga-extension`, `x-ext-install-id`, `x-ext-version-id`, `x-request-id`; extra headers an
//! Alga server ignores), runs under a deadline for the whole exchange, reads at most a capped
//! number of answer bytes (a longer answer is refused, never buffered), is counted in
//! `alga_platform_requests_total` / `alga_platform_bytes_total` and leaves one line in the
//! request's execution log. The broker never interprets answers; the interfaces
//! ([`crate::runner`]) validate them against their WIT types.

use alga_edge_http::trace_context;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::{Map, Value};

use crate::{CapabilityMetrics, Journal, PlatformLabels};

/// Setting naming the platform's base URL (Alga's name; `REGISTRY_BASE_URL` is its fallback).
pub const BASE_URL_SETTING: &str = "STORAGE_API_BASE_URL";
/// Setting naming the credential sent as `x-runner-auth` (Alga's name; `RUNNER_SERVICE_TOKEN`
/// is its fallback).
pub const TOKEN_SETTING: &str = "RUNNER_STORAGE_API_TOKEN";
/// Setting naming the base URL of `ui-proxy` calls (Alga's name).
pub const UI_PROXY_SETTING: &str = "UI_PROXY_BASE_URL";

/// Where the platform is and how calls to it are bounded.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    /// Origin of the platform's internal API (`STORAGE_API_BASE_URL`); a trailing `/api` is
    /// dropped, as Alga's runner does.
    pub base_url: Option<String>,
    /// Credential of the internal API (`RUNNER_STORAGE_API_TOKEN`), sent as `x-runner-auth`.
    pub token: Option<String>,
    /// Deadline of one internal API call, request to last answer byte.
    pub timeout: Duration,
    /// Largest answer read from the platform, bytes (internal API and ui-proxy).
    pub max_response_bytes: u64,
    /// Platform calls one request may make (all four interfaces together).
    pub max_calls: u32,
    /// Base URL of `ui-proxy` calls (`UI_PROXY_BASE_URL`).
    pub ui_proxy_base: Option<String>,
    /// Sent as `x-runner-auth` on `ui-proxy` calls when set (`UI_PROXY_AUTH_KEY`).
    pub ui_proxy_auth_key: Option<String>,
    /// Deadline of one `ui-proxy` call (`UI_PROXY_TIMEOUT_MS`).
    pub ui_proxy_timeout: Duration,
}

impl Default for PlatformSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            token: None,
            timeout: Duration::from_secs(10),
            max_response_bytes: 4 << 20,
            max_calls: 16,
            ui_proxy_base: None,
            ui_proxy_auth_key: None,
            // Alga's runner default.
            ui_proxy_timeout: Duration::from_secs(5),
        }
    }
}

impl PlatformSettings {
    /// Checks the URLs, so a node refuses to start with one it could never call.
    pub fn check(&self) -> Result<(), PlatformError> {
        if let Some(base) = &self.base_url {
            parse_base(base, BASE_URL_SETTING)?;
        }
        if let Some(base) = &self.ui_proxy_base {
            proxy_url(base, "extension", "/route")?;
        }
        Ok(())
    }
}

/// Why a platform call gave no usable answer. The message is for the execution log and the
/// node log; the guest sees its interface's own error.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// This node has no platform (or no credential) configured.
    #[error("no platform is configured on this node: set {0}")]
    NotConfigured(&'static str),
    /// The configured URL is not usable.
    #[error("the platform URL is invalid ({setting}): {reason}")]
    BadSetting {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The guest's route cannot be sent (empty, or `.`/`..` segments).
    #[error("invalid route: {0}")]
    BadRoute(String),
    /// The platform answered a non-success status.
    #[error("the platform answered HTTP {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The answer's `error` field, or the start of its text.
        message: String,
    },
    /// No complete answer within the deadline.
    #[error("the platform did not answer within {0} ms")]
    Timeout(u128),
    /// Connection or protocol failure.
    #[error("the platform could not be reached: {0}")]
    Unreachable(String),
    /// The answer is longer than the cap; it was not read further.
    #[error("the platform's answer is over the {0}-byte cap")]
    TooLarge(u64),
    /// The answer is not what the interface expects.
    #[error("the platform's answer is malformed: {0}")]
    Malformed(String),
    /// The request already made as many platform calls as it may.
    #[error("more than {0} platform calls in one request")]
    TooManyCalls(u32),
}

impl PlatformError {
    /// The metric label of this outcome.
    fn outcome(&self) -> &'static str {
        match self {
            Self::NotConfigured(_) | Self::BadSetting { .. } => "not_configured",
            Self::BadRoute(_) => "bad_route",
            Self::Status { .. } => "status",
            Self::Timeout(_) => "timeout",
            Self::Unreachable(_) => "unreachable",
            Self::TooLarge(_) => "too_large",
            Self::Malformed(_) => "malformed",
            Self::TooManyCalls(_) => "limit",
        }
    }
}

/// Who a platform call is made for: the request's ids and user, and where it is accounted.
pub struct PlatformCall<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Extension id.
    pub extension: &'a str,
    /// Install id (part of the internal API's path).
    pub install_id: &'a str,
    /// Version id, when known.
    pub version_id: Option<&'a str>,
    /// Request id.
    pub request_id: &'a str,
    /// The end user's id and e-mail address, when the caller named a user (`x-user-id`,
    /// `x-user-email` of `ui-proxy` calls).
    pub user: Option<(&'a str, &'a str)>,
    /// The install's `api_key` secret, sent as `x-api-key` on `ui-proxy` calls as Alga does.
    pub api_key: Option<String>,
    /// The request's execution-log journal.
    pub journal: &'a Journal,
    /// Platform calls the request has made so far (bounded by [`PlatformSettings::max_calls`]).
    pub calls: &'a AtomicU32,
}

/// The platform broker of a node (one reqwest client, pooled).
pub struct PlatformBroker {
    settings: PlatformSettings,
    client: reqwest::Client,
    metrics: CapabilityMetrics,
}

impl PlatformBroker {
    /// A broker with `settings`, reporting into `metrics`.
    pub fn new(settings: PlatformSettings, metrics: CapabilityMetrics) -> Self {
        Self {
            settings,
            client: alga_edge_registry::http_client(),
            metrics,
        }
    }

    /// The broker's settings.
    pub fn settings(&self) -> &PlatformSettings {
        &self.settings
    }

    /// `POST {base}/api/internal/ext-{kind}/install/{installId}` with `{operation, …payload}`:
    /// the answer's JSON (`null` for an empty body) as `parse` reads it; what `parse` refuses
    /// is [`PlatformError::Malformed`].
    pub async fn internal<T>(
        &self,
        kind: &'static str,
        operation: &str,
        mut payload: Map<String, Value>,
        call: &PlatformCall<'_>,
        parse: impl FnOnce(Value) -> Result<T, String>,
    ) -> Result<T, PlatformError> {
        let label = format!("{kind}.{operation}");
        let started = Instant::now();
        let result = async {
            let (base, token) = match (&self.settings.base_url, &self.settings.token) {
                (Some(base), Some(token)) => (base, token),
                (None, _) => return Err(PlatformError::NotConfigured(BASE_URL_SETTING)),
                (_, None) => return Err(PlatformError::NotConfigured(TOKEN_SETTING)),
            };
            let mut url = parse_base(base, BASE_URL_SETTING)?;
            url.path_segments_mut()
                .map_err(|()| PlatformError::BadSetting {
                    setting: BASE_URL_SETTING,
                    reason: "not a base URL".into(),
                })?
                .pop_if_empty()
                .extend(["api", "internal", &format!("ext-{kind}"), "install"])
                .push(call.install_id);
            payload.insert("operation".into(), Value::String(operation.to_owned()));
            let body = Value::Object(payload).to_string().into_bytes();
            let request = self
                .client
                .post(url)
                .header("content-type", "application/json")
                .header("x-runner-auth", token);
            let bytes = self
                .exchange(request, call, Some(body), self.settings.timeout, kind)
                .await?;
            let answer = if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .map_err(|e| PlatformError::Malformed(format!("not JSON: {e}")))?
            };
            parse(answer).map_err(PlatformError::Malformed)
        }
        .await;
        self.account(kind, &label, started, &result, call);
        result
    }

    /// `ui-proxy.call-route`: the answer's bytes.
    pub async fn ui_proxy(
        &self,
        route: &str,
        payload: Option<Vec<u8>>,
        call: &PlatformCall<'_>,
    ) -> Result<Vec<u8>, PlatformError> {
        let started = Instant::now();
        let result = async {
            let base = self
                .settings
                .ui_proxy_base
                .as_deref()
                .ok_or(PlatformError::NotConfigured(UI_PROXY_SETTING))?;
            let url = proxy_url(base, call.extension, route)?;
            let mut request = match payload {
                Some(_) => self.client.post(url),
                None => self.client.get(url),
            };
            if payload.is_some() {
                request = request.header("content-type", "application/json");
            }
            if let Some(key) = &self.settings.ui_proxy_auth_key {
                request = request.header("x-runner-auth", key);
            }
            if let Some(key) = &call.api_key {
                request = request.header("x-api-key", key);
            }
            if let Some((id, email)) = call.user {
                request = request
                    .header("x-user-id", id)
                    .header("x-user-email", email);
            }
            self.exchange(
                request,
                call,
                payload,
                self.settings.ui_proxy_timeout,
                "ui_proxy",
            )
            .await
        }
        .await;
        let label = format!("ui-proxy {}", route.split('?').next().unwrap_or_default());
        self.account("ui_proxy", &label, started, &result, call);
        result
    }

    /// Sends `request` with the call's identity headers and reads the answer, capped, all
    /// within `deadline`.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        call: &PlatformCall<'_>,
        body: Option<Vec<u8>>,
        deadline: Duration,
        interface: &'static str,
    ) -> Result<Vec<u8>, PlatformError> {
        let max_calls = self.settings.max_calls;
        if call.calls.fetch_add(1, Ordering::Relaxed) >= max_calls {
            return Err(PlatformError::TooManyCalls(max_calls));
        }
        // The call's span (a child of the guest's); the platform continues the trace under it.
        let span = trace_context::child_context("platform");
        trace_context::set_attribute(span.as_ref(), "alga.platform.interface", || interface);
        let mut propagated = http::HeaderMap::new();
        trace_context::inject_context(span.as_ref(), &mut propagated);
        let mut request = request
            .headers(propagated)
            .header("x-request-id", call.request_id)
            .header("x-alga-tenant", call.tenant)
            .header("x-alga-extension", call.extension)
            .header("x-ext-install-id", call.install_id);
        if let Some(version) = call.version_id {
            request = request.header("x-ext-version-id", version);
        }
        if let Some(body) = body {
            self.bytes(call.extension, interface, "sent", body.len());
            request = request.body(body);
        }
        let cap = self.settings.max_response_bytes;
        let exchange = async {
            let mut response = request
                .send()
                .await
                .map_err(|e| PlatformError::Unreachable(error_chain(&e)))?;
            if response.content_length().is_some_and(|len| len > cap) {
                return Err(PlatformError::TooLarge(cap));
            }
            let status = response.status();
            let mut bytes = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| PlatformError::Unreachable(error_chain(&e)))?
            {
                self.bytes(call.extension, interface, "received", chunk.len());
                if bytes.len() as u64 + chunk.len() as u64 > cap {
                    return Err(PlatformError::TooLarge(cap));
                }
                bytes.extend_from_slice(&chunk);
            }
            if !status.is_success() {
                return Err(PlatformError::Status {
                    status: status.as_u16(),
                    message: error_message(&bytes),
                });
            }
            Ok(bytes)
        };
        let result = tokio::time::timeout(deadline, exchange)
            .await
            .unwrap_or(Err(PlatformError::Timeout(deadline.as_millis())));
        if let Err(error) = &result {
            trace_context::set_failed(span.as_ref(), || error.to_string());
        }
        trace_context::end(span.as_ref());
        result
    }

    fn bytes(&self, extension: &str, interface: &'static str, direction: &'static str, n: usize) {
        self.metrics
            .platform_bytes
            .get_or_create(&PlatformLabels {
                extension: extension.to_owned(),
                interface,
                outcome: direction,
            })
            .inc_by(n as u64);
    }

    /// Counts the call and leaves its line in the execution log (and the node log on failure).
    fn account<T>(
        &self,
        interface: &'static str,
        label: &str,
        started: Instant,
        result: &Result<T, PlatformError>,
        call: &PlatformCall<'_>,
    ) {
        let outcome = result
            .as_ref()
            .map_or_else(PlatformError::outcome, |_| "ok");
        self.metrics
            .platform_requests
            .get_or_create(&PlatformLabels {
                extension: call.extension.to_owned(),
                interface,
                outcome,
            })
            .inc();
        let ms = started.elapsed().as_millis();
        match result {
            Ok(_) => call
                .journal
                .log("INFO", "platform", &format!("{label} ok in {ms} ms")),
            Err(error) => {
                tracing::warn!(
                    tenant = %call.tenant,
                    extension = %call.extension,
                    request_id = %call.request_id,
                    "platform {label} failed after {ms} ms: {error}"
                );
                call.journal.log(
                    "WARN",
                    "platform",
                    &format!("{label} failed in {ms} ms: {error}"),
                );
            }
        }
    }
}

/// `raw` as a base URL, without a trailing `/` or `/api` (Alga's runner is as forgiving).
fn parse_base(raw: &str, setting: &'static str) -> Result<Url, PlatformError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let trimmed = trimmed
        .strip_suffix("/api")
        .filter(|rest| !rest.ends_with(':') && !rest.ends_with('/'))
        .unwrap_or(trimmed);
    http_url(trimmed, setting)
}

/// `raw` parsed, refused unless it is an http(s) URL.
fn http_url(raw: &str, setting: &'static str) -> Result<Url, PlatformError> {
    let url = Url::parse(raw).map_err(|e| PlatformError::BadSetting {
        setting,
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(PlatformError::BadSetting {
            setting,
            reason: format!("{raw:?} is not an http or https URL"),
        });
    }
    Ok(url)
}

/// The URL of a `ui-proxy` route: `{base}/{extension}/{route}`, or `{base}/{route}` for a route
/// under `/api/`, with the route's query kept. Each segment is percent-encoded; `.` and `..`
/// are refused so a route cannot climb out of the base.
fn proxy_url(base: &str, extension: &str, route: &str) -> Result<Url, PlatformError> {
    let route = route.trim();
    if route.is_empty() {
        return Err(PlatformError::BadRoute("empty route".into()));
    }
    let (path, query) = match route.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (route, None),
    };
    let mut url = http_url(base, UI_PROXY_SETTING)?;
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| PlatformError::BadSetting {
                setting: UI_PROXY_SETTING,
                reason: "not a base URL".into(),
            })?;
        segments.pop_if_empty();
        let platform_api = path.starts_with("/api/") || path.starts_with("api/");
        if !platform_api {
            segments.push(extension);
        }
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            if segment == "." || segment == ".." {
                return Err(PlatformError::BadRoute(format!("segment {segment:?}")));
            }
            segments.push(segment);
        }
    }
    url.set_query(query.filter(|q| !q.is_empty()));
    Ok(url)
}

/// The `error` field of a JSON answer, or the start of its text.
fn error_message(body: &[u8]) -> String {
    if let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(body)
        && let Some(Value::String(error)) = answer.get("error")
    {
        return cut(error);
    }
    cut(&String::from_utf8_lossy(body))
}

/// At most 200 characters of `text`, so an answer cannot flood the execution log.
fn cut(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// An error with its sources (reqwest's own message omits the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_lose_a_trailing_api_like_algas() {
        for raw in [
            "http://psa:3000",
            "http://psa:3000/",
            "http://psa:3000/api",
            "http://psa:3000/api/",
        ] {
            assert_eq!(
                parse_base(raw, BASE_URL_SETTING).unwrap().as_str(),
                "http://psa:3000/"
            );
        }
        for bad in ["not a url", "mailto:ops@psa", "file:///etc"] {
            assert!(parse_base(bad, BASE_URL_SETTING).is_err(), "{bad}");
        }
        let settings = PlatformSettings {
            ui_proxy_base: Some("ftp://psa".into()),
            ..PlatformSettings::default()
        };
        assert!(settings.check().is_err());
        assert!(PlatformSettings::default().check().is_ok());
    }

    #[test]
    fn proxy_routes_are_prefixed_by_the_extension_unless_under_api() {
        let base = "http://psa:3000/ui-proxy";
        assert_eq!(
            proxy_url(base, "ext-1", "/items/7?x=1").unwrap().as_str(),
            "http://psa:3000/ui-proxy/ext-1/items/7?x=1"
        );
        assert_eq!(
            proxy_url(base, "ext-1", "/api/v1/tickets")
                .unwrap()
                .as_str(),
            "http://psa:3000/ui-proxy/api/v1/tickets"
        );
        assert_eq!(
            proxy_url(base, "ext-1", "/a b").unwrap().as_str(),
            "http://psa:3000/ui-proxy/ext-1/a%20b"
        );
        for bad in ["", "  ", "/../x", "/a/./b"] {
            assert!(
                matches!(
                    proxy_url(base, "ext-1", bad),
                    Err(PlatformError::BadRoute(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_messages_come_from_the_answer_and_are_cut() {
        assert_eq!(error_message(br#"{"error":"nope","code":"X"}"#), "nope");
        assert_eq!(error_message(b"plain"), "plain");
        assert_eq!(error_message(&[b'a'; 500]).chars().count(), 201);
    }
}
