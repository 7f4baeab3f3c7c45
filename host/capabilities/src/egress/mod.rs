//! `wasi:http/outgoing-handler` (`cap:http.fetch`): outbound HTTP, enforced in the wasi-http
//! send hook itself, so no guest binding can get around it.
//!
//! A request is sent only when the install was granted `cap:http.fetch`, its destination is
//! allowed by the install's allowlist AND the node's (`EXT_EGRESS_ALLOWLIST`, when set), and the
//! request is within the per-request limits (number of outbound calls, deadline, response
//! size). Names never reach non-public addresses ([`client`]). Refusals are wasi:http's own
//! `HTTP-request-denied` / `destination-IP-prohibited` errors, counted in
//! `alga_capability_denials_total{capability="http"}`; bytes both ways are metered in
//! `alga_egress_bytes_total` and the request's execution-log row.

pub mod allowlist;
pub mod client;

use alga_edge_http::trace_context;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Body as _;
use prometheus_client::metrics::counter::Counter;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

pub use allowlist::{Allowlist, Destination};
pub use client::EgressClient;

use super::{CapabilityMetrics, EgressLabels, GrantLimits, Journal, tighter};
use crate::capped_body::CappedBody;

/// Per-request outbound HTTP limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressLimits {
    /// Outbound requests one inbound request may make.
    pub max_requests: u32,
    /// Largest response body per outbound request, bytes.
    pub max_response_bytes: u64,
    /// Deadline of one outbound request, to its response head.
    pub timeout: Duration,
}

impl Default for EgressLimits {
    fn default() -> Self {
        Self {
            max_requests: 16,
            max_response_bytes: 8 << 20,
            timeout: Duration::from_secs(10),
        }
    }
}

impl EgressLimits {
    /// These limits tightened by an install's overrides.
    pub fn tightened(&self, install: &GrantLimits) -> Self {
        Self {
            max_requests: tighter(self.max_requests, install.egress_max_requests),
            max_response_bytes: tighter(self.max_response_bytes, install.egress_max_response_bytes),
            timeout: tighter(
                self.timeout,
                install.egress_timeout_ms.map(Duration::from_millis),
            ),
        }
    }
}

/// An install's own allowlist, parsed once when the install is resolved (not per request);
/// `Err` holds why its entries did not parse (then nothing is allowed).
pub type InstallAllowlist = Arc<Result<Allowlist, String>>;

/// Parses an install's allowlist `entries` (none: nothing is allowed).
pub fn install_allowlist(entries: Option<&[String]>) -> InstallAllowlist {
    Arc::new(Allowlist::from_entries(
        entries.unwrap_or_default().iter().map(String::as_str),
    ))
}

/// What one request may reach.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    install: InstallAllowlist,
    node: Option<Arc<Allowlist>>,
    limits: EgressLimits,
}

impl EgressPolicy {
    /// The install's allowlist (an unparsable list allows nothing), within `node` when set.
    pub fn new(
        install: InstallAllowlist,
        node: Option<Arc<Allowlist>>,
        limits: EgressLimits,
    ) -> Self {
        Self {
            install,
            node,
            limits,
        }
    }

    /// Whether both lists allow `destination`.
    pub fn allows(&self, destination: &Destination) -> bool {
        self.install
            .as_ref()
            .as_ref()
            .is_ok_and(|list| list.allows(destination))
            && self
                .node
                .as_ref()
                .is_none_or(|node| node.allows(destination))
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

/// The wasi-http hooks of one request.
pub struct EgressHooks {
    granted: bool,
    policy: EgressPolicy,
    client: Arc<EgressClient>,
    extension: String,
    journal: Arc<Journal>,
    metrics: Arc<CapabilityMetrics>,
    sent: u32,
}

impl EgressHooks {
    /// Hooks for one request of `extension`.
    pub fn new(
        granted: bool,
        policy: EgressPolicy,
        client: Arc<EgressClient>,
        extension: String,
        journal: Arc<Journal>,
        metrics: Arc<CapabilityMetrics>,
    ) -> Self {
        Self {
            granted,
            policy,
            client,
            extension,
            journal,
            metrics,
            sent: 0,
        }
    }

    fn admit(&mut self, uri: &http::Uri) -> Result<(), (Error, &'static str)> {
        if !self.granted {
            return Err((Error::HttpRequestDenied, "not_granted"));
        }
        let destination =
            Destination::of(uri).ok_or((Error::HttpRequestUriInvalid, "invalid_uri"))?;
        if !self.policy.allows(&destination) {
            return Err((Error::HttpRequestDenied, "not_allowlisted"));
        }
        if self.sent >= self.policy.limits.max_requests {
            return Err((Error::HttpRequestDenied, "request_limit"));
        }
        self.sent += 1;
        Ok(())
    }

    fn counter(
        &self,
        family: &prometheus_client::metrics::family::Family<EgressLabels, Counter>,
        kind: &'static str,
    ) -> Counter {
        family
            .get_or_create(&EgressLabels {
                extension: self.extension.clone(),
                kind,
            })
            .clone()
    }
}

impl EgressHooks {
    /// Sends a whole request (Alga's `http.fetch`) through exactly the path of the wasi:http
    /// send hook (grant, allowlists, address checks, per-request limits, metering) and reads
    /// the whole response body within the response cap.
    pub async fn fetch(
        &mut self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, Error> {
        let request = request.map(|body| {
            http_body_util::Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync()
        });
        let pending = self.send_request(request, None, Box::new(async { Ok(()) }));
        let (response, _io) = Box::into_pin(pending).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(http::Response::from_parts(parts, body))
    }
}

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        // Whatever happens to the request, its body is read to the end: a guest writes the
        // body before it awaits the response, and a body dropped early would show it a stream
        // error instead of the refusal below.
        let mut request = request.map(|body| Drained(Some(body)).boxed_unsync());
        // The call's span (a child of the guest's) lasts to the response head; the upstream
        // continues the trace under it.
        let span = trace_context::child_context("egress");
        trace_context::set_attribute(span.as_ref(), "url.full", || request.uri().to_string());
        if let Err((error, reason)) = self.admit(request.uri()) {
            trace_context::set_failed(span.as_ref(), || format!("denied: {reason}"));
            trace_context::end(span.as_ref());
            tracing::info!(uri = %request.uri(), reason, extension = %self.extension, "outbound request denied");
            self.metrics.deny("http", reason);
            drop(request);
            return Box::new(async move { Err(error) });
        }
        let limits = self.policy.limits;
        let timeout = options
            .and_then(|o| o.first_byte_timeout)
            .map_or(limits.timeout, |t| t.min(limits.timeout));
        let journal_bytes = self.journal.egress_counter();
        let sent = self.counter(&self.metrics.egress_bytes, "sent");
        let received = self.counter(&self.metrics.egress_bytes, "received");
        let ok = self.counter(&self.metrics.egress_requests, "ok");
        let failed = self.counter(&self.metrics.egress_requests, "failed");
        let prohibited = self.metrics.clone();
        let client = self.client.clone();
        trace_context::inject_context(span.as_ref(), request.headers_mut());
        Box::new(async move {
            let request = request.map(|body| {
                CappedBody::new(body, u64::MAX)
                    .counting(sent)
                    .counting(journal_bytes.clone())
                    .boxed_unsync()
            });
            let response = match tokio::time::timeout(timeout, client.send(request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    failed.inc();
                    let error = client::classify(&e);
                    if matches!(error, Error::DestinationIpProhibited) {
                        prohibited.deny("http", "private_address");
                    }
                    tracing::info!(error = %e, "outbound request failed");
                    trace_context::set_failed(span.as_ref(), || e.to_string());
                    trace_context::end(span.as_ref());
                    return Err(error);
                }
                Err(_) => {
                    failed.inc();
                    trace_context::set_failed(span.as_ref(), || "timed out");
                    trace_context::end(span.as_ref());
                    return Err(Error::ConnectionReadTimeout);
                }
            };
            ok.inc();
            let status = i64::from(response.status().as_u16());
            trace_context::set_attribute(span.as_ref(), "http.response.status_code", || status);
            trace_context::end(span.as_ref());
            let response = response.map(|body| {
                CappedBody::new(body, limits.max_response_bytes)
                    .on_exceeded(Error::HttpResponseBodySize)
                    .counting(received)
                    .counting(journal_bytes)
                    .boxed_unsync()
            });
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}

/// A request body that, dropped before its end (refused or failed request), drains the rest in
/// the background so the guest's writes complete and it reads the real error from the
/// response. Bounded by [`DRAIN_LIMIT`]; the guest's own deadline ends it sooner.
struct Drained(Option<WasiBody>);

/// Longest a dropped request body is drained.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

impl hyper::body::Body for Drained {
    type Data = bytes::Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Error>>> {
        match self.0.as_mut() {
            Some(body) => std::pin::Pin::new(body).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.0
            .as_ref()
            .map_or_else(|| hyper::body::SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        let Some(mut body) = self.0.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let drain = async { while let Some(Ok(_)) = body.frame().await {} };
                let _ = tokio::time::timeout(DRAIN_LIMIT, drain).await;
            });
        }
    }
}
