//! `/api/ext/{extensionId}/{path…}`: authenticate the tenant, resolve its install, prepare the
//! component, and forward the request to a fresh instance with the route prefix removed
//! (DESIGN §2, §5).
//!
//! Dev-mapped components (`--component`) are served without a token as the dev tenant; every
//! other extension id needs a valid tenant token and an enabled install of that tenant.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Body;

use crate::catalog::{
    ComponentSource, DevCatalog, InstalledCatalog, Resolved, is_valid_extension_id,
};
use crate::error::GatewayError;
use alga_edge_capabilities::capped_body::CappedBody;
use alga_edge_capabilities::context::RequestContext;
use alga_edge_capabilities::runner::EndUser;
use alga_edge_capabilities::{Capabilities, Grant, GrantLimits, Journal, RequestCapabilities};
use alga_edge_engine::{Engine, InvokeError, Reuse, RunLimits};
use alga_edge_http::trace_context::{self, TraceId};
use alga_edge_registry::secrets::Secrets;

use crate::policy::{Admission, Effective, Policies, endpoint_declared, memory_refused};
use crate::telemetry::{Metrics, RequestTrace, Target, Telemetry};
use crate::tenant_auth::TenantAuth;
use alga_edge_http::{CallerIdentified, HostBody};

/// Path prefix of gateway routes.
pub const ROUTE_PREFIX: &str = "/api/ext/";

/// Request headers a component may see (DESIGN §5); everything else, notably the end user's
/// `authorization` and `cookie`, is dropped. `content-length` describes the forwarded body.
const FORWARDED_HEADERS: [HeaderName; 7] = [
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::USER_AGENT,
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-idempotency-key"),
];

/// Response headers a component may set (DESIGN §5, plus the entity headers that describe the
/// body it sent); `cache-control` only when it does not allow shared caching, and `x-ext-*`.
/// Everything else, notably `set-cookie` and hop-by-hop headers, is dropped.
const RETURNED_HEADERS: [HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::ETAG,
    header::LAST_MODIFIED,
];

/// The header a scheduled run carries.
pub const TRIGGER_HEADER: &str = "x-alga-trigger";
/// The header naming the schedule of a scheduled run.
pub const SCHEDULE_ID_HEADER: &str = "x-alga-schedule-id";

/// Marks a request as a scheduled run (a request extension): the gateway adds
/// [`TRIGGER_HEADER`] and [`SCHEDULE_ID_HEADER`] to what the component sees.
#[derive(Debug, Clone)]
pub struct ScheduledTrigger {
    /// The schedule's id.
    pub schedule_id: String,
}

/// Runs extension routes.
pub struct Gateway {
    engine: Arc<Engine>,
    dev: DevCatalog,
    installed: InstalledCatalog,
    auth: Arc<TenantAuth>,
    policies: Policies,
    capabilities: Arc<Capabilities>,
    telemetry: Arc<Telemetry>,
    /// The registry change count [`Gateway::retire_stale_instances`] last checked.
    warm_seen_changes: AtomicU64,
}

impl Gateway {
    /// A gateway running on `engine` that serves `dev` mappings as-is and everything else
    /// through `installed` for callers `auth` accepts, giving each request the `capabilities`
    /// its install was granted, reporting to `telemetry`.
    pub fn new(
        engine: Arc<Engine>,
        dev: DevCatalog,
        installed: InstalledCatalog,
        auth: Arc<TenantAuth>,
        policies: Policies,
        capabilities: Arc<Capabilities>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self {
            engine,
            dev,
            installed,
            auth,
            policies,
            capabilities,
            telemetry,
            warm_seen_changes: AtomicU64::new(u64::MAX),
        }
    }

    /// The registry-backed catalog (the runner resolves bundles through it too).
    pub fn installed(&self) -> &InstalledCatalog {
        &self.installed
    }

    /// The node's default request deadline, in milliseconds.
    pub fn default_timeout_ms(&self) -> u64 {
        self.engine.config().timeout.as_millis() as u64
    }

    /// The node's default request body cap, in bytes.
    pub fn max_body_bytes(&self) -> u64 {
        self.policies.config().max_body_bytes
    }

    /// Largest response body the engine lets a component send.
    pub fn max_response_bytes(&self) -> u64 {
        self.engine.config().max_response_bytes
    }

    /// Metrics and execution log.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Whether `extension` is a dev mapping (`--component`) served to `tenant`.
    pub fn is_dev_mapped(&self, tenant: &str, extension: &str) -> bool {
        self.dev
            .get(extension)
            .is_some_and(|r| *r.tenant == *tenant)
    }

    /// Compiles every dev-mapped component now, so broken components fail at startup.
    pub async fn warm_up(&self) -> Result<usize, GatewayError> {
        let mut count = 0;
        for extension in self.dev.extensions() {
            let ComponentSource::File(wasm) = &extension.source else {
                continue;
            };
            self.engine
                .prepare(&extension.content_hash, || async { Ok(wasm.clone()) })
                .await
                .map_err(|e| {
                    GatewayError::Internal(format!("extension '{}': {e}", extension.extension_id))
                })?;
            count += 1;
        }
        Ok(count)
    }

    /// Serves one gateway request; `request_id` is already chosen by the server. Every
    /// outcome is reported to metrics, and to the execution log once the install is known.
    pub async fn handle<B>(&self, request: Request<B>, request_id: &str) -> Response<HostBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let mut trace = self
            .telemetry
            .begin("gateway", request_id, request.headers());
        let context = trace.context();
        let result =
            trace_context::within(self.serve(request, request_id, &mut trace), context).await;
        let identified = trace.is_identified();
        let trace_id = trace.trace_id();
        let mut response = match result {
            Ok(response) => trace.succeed(response),
            Err(error) => {
                trace.fail(&error);
                error.into_response(request_id)
            }
        };
        if identified {
            response.extensions_mut().insert(CallerIdentified);
        }
        if let Some(trace_id) = trace_id {
            response.extensions_mut().insert(TraceId(trace_id));
        }
        response
    }

    async fn serve<B>(
        &self,
        request: Request<B>,
        request_id: &str,
        trace: &mut RequestTrace,
    ) -> Result<Response<HostBody>, GatewayError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        self.policies.check_headers(request.headers())?;
        let (extension_id, path) = split_route(request.uri().path())?;
        let (extension_id, path) = (extension_id.to_owned(), path.to_owned());
        let (extension, user) = match self.dev.get(&extension_id) {
            Some(dev) => {
                // Dev routes serve without a token; their callers are the author's own.
                trace.identified();
                (dev.clone(), CallerContext::default())
            }
            None => {
                let authorization = alga_edge_http::authorization(request.headers());
                let mut auth = trace.span("auth");
                let caller = self.auth.authenticate(authorization).map_err(|e| {
                    auth.fail(e.to_string());
                    GatewayError::Unauthorized(e.to_string())
                })?;
                auth.end();
                trace.identified();
                let mut resolve = trace.span("resolve");
                let resolved = self
                    .installed
                    .resolve(&caller.tenant, &extension_id)
                    .await?
                    .ok_or_else(|| {
                        resolve.fail("no such install");
                        GatewayError::UnknownExtension(extension_id.clone())
                    })?;
                resolve.end();
                (
                    resolved,
                    CallerContext {
                        user: caller.profile,
                        secrets: None,
                    },
                )
            }
        };
        self.run(extension, request, path, user, request_id, trace)
            .await
    }

    /// Runs `request` on the resolved `extension` under every policy: header and body caps,
    /// endpoint enforcement, rate and concurrency admission, deadline. `path` is what the
    /// component sees. Shared by the gateway route and the runner API.
    pub async fn run<B>(
        &self,
        extension: Arc<Resolved>,
        request: Request<B>,
        path: String,
        caller: CallerContext,
        request_id: &str,
        trace: &mut RequestTrace,
    ) -> Result<Response<HostBody>, GatewayError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        trace.resolved(Target {
            tenant: extension.tenant.to_string(),
            extension: extension.extension_id.to_string(),
            version: extension.version.clone(),
            content_hash: extension.content_hash.clone(),
        });
        let (effective, admission) = self.admit(&extension, &request, &path)?;
        let compile = trace.span("compile");
        let component = self
            .engine
            .prepare(&extension.content_hash, || async {
                match &extension.source {
                    ComponentSource::File(wasm) => Ok(wasm.clone()),
                    ComponentSource::Bundle => {
                        self.installed.component(&extension.content_hash).await
                    }
                }
            })
            .await
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        compile.end();

        let bytes_in = self
            .telemetry
            .metrics
            .bytes_in
            .get_or_create(&Metrics::extension(&extension.extension_id))
            .clone();
        let request =
            request.map(|body| CappedBody::new(body, effective.max_body_bytes).counting(bytes_in));
        let forwarded = forward(
            request,
            path,
            &extension.tenant,
            &extension.extension_id,
            request_id,
        )?;
        let reuse = (effective.instance_reuse >= 2).then(|| Self::reuse(&extension, &effective));
        let tenant = extension.tenant.clone();
        let journal = trace.journal(self.capabilities.limits().log_max_lines);
        let (capabilities, context) = self.grant(&extension, request_id, caller, journal);
        let mut response = self
            .engine
            .run(
                &component,
                forwarded,
                context,
                capabilities,
                RunLimits {
                    timeout: effective.timeout,
                    cpu_budget: effective.cpu_budget,
                },
                reuse,
            )
            .await
            .map_err(|error| match error {
                InvokeError::MemoryBudget(refusal) => memory_refused(refusal, &tenant),
                error => error.into(),
            })?;
        filter_response_headers(response.headers_mut());
        // The concurrency slots are held until the response body has streamed: the instance
        // runs until then.
        Ok(response.map(move |body| {
            body.map_err(move |e| {
                let _held = &admission;
                e
            })
            .boxed_unsync()
        }))
    }

    /// Which warm instances `extension`'s request may run on.
    fn reuse(extension: &Resolved, effective: &Effective) -> Reuse {
        Reuse {
            install_id: extension.install_id.clone(),
            tenant: extension.tenant.clone(),
            extension: extension.extension_id.clone(),
            generation: extension.generation,
            max_requests: effective.instance_reuse,
        }
    }

    /// Drops warm instances idle past their timeout, and those of installs that changed or
    /// went away (update, disable, uninstall, grants, config, secrets, policy) since they
    /// served; the node calls it every second.
    pub async fn retire_stale_instances(&self) {
        let pool = self.engine.warm_pool();
        pool.expire();
        let changes = self.installed.change_count();
        if self.warm_seen_changes.swap(changes, Ordering::AcqRel) == changes {
            return;
        }
        for warm in pool.installs() {
            let current = match self.dev.get(&warm.extension) {
                Some(dev) => Some(dev.clone()),
                None => self
                    .installed
                    .resolve(&warm.tenant, &warm.extension)
                    .await
                    .ok()
                    .flatten(),
            };
            let live = current.is_some_and(|resolved| {
                *resolved.install_id == *warm.install_id && resolved.generation == warm.generation
            });
            if !live {
                pool.forget(&warm.install_id);
                tracing::debug!(install_id = %warm.install_id, "warm instances retired: the install changed");
            }
        }
    }

    /// Every policy that applies before the component runs: header and body caps, endpoint
    /// enforcement, rate and concurrency admission (held until the response has streamed).
    fn admit<B>(
        &self,
        extension: &Resolved,
        request: &Request<B>,
        path: &str,
    ) -> Result<(Effective, Admission), GatewayError> {
        let effective = self.policies.effective(&extension.policy);
        self.policies
            .check_install_headers(request.headers(), &extension.policy)?;
        self.policies
            .check_declared_body(request.headers(), effective.max_body_bytes)?;
        if effective.enforce_endpoints
            && !endpoint_declared(&extension.endpoints, request.method().as_str(), path)
        {
            return Err(GatewayError::EndpointNotDeclared {
                method: request.method().to_string(),
                path: path.to_owned(),
            });
        }
        let admission = self.policies.admit(
            &extension.tenant,
            &extension.extension_id,
            &extension.install_id,
            &extension.policy,
            self.engine.memory_budget(),
        )?;
        Ok((effective, admission))
    }

    /// What the install was granted for this one request, and the context the component sees.
    fn grant(
        &self,
        extension: &Resolved,
        request_id: &str,
        caller: CallerContext,
        journal: Arc<Journal>,
    ) -> (RequestCapabilities, RequestContext) {
        let user_id = caller.user.as_ref().map(|user| user.user_id.clone());
        let capabilities = self.capabilities.for_request(Grant {
            tenant: &extension.tenant,
            extension: &extension.extension_id,
            install_id: &extension.install_id,
            request_id,
            version_id: Some(&extension.version_id),
            user: caller.user,
            granted: &extension.grants,
            config: &extension.config,
            sealed_secrets: extension.sealed_secrets.as_ref(),
            call_secrets: caller.secrets,
            egress_allow: &extension.egress_allow,
            limits: GrantLimits {
                kv_max_keys: extension.policy.kv_max_keys,
                egress_max_requests: extension.policy.egress_max_requests,
                egress_max_response_bytes: extension.policy.egress_max_response_bytes,
                egress_timeout_ms: extension.policy.egress_timeout_ms,
            },
            journal,
        });
        let context = RequestContext {
            tenant_id: extension.tenant.to_string(),
            extension_id: extension.extension_id.to_string(),
            install_id: extension.install_id.to_string(),
            version_id: extension.version_id.clone(),
            content_hash: extension.content_hash.clone(),
            request_id: request_id.to_owned(),
            user_id,
        };
        (capabilities, context)
    }
}

/// What the caller adds to a request beyond its install: the end user (tenant token or runner
/// envelope) and, from the runner envelope only, this call's own secrets.
#[derive(Debug, Clone, Default)]
pub struct CallerContext {
    /// The end user, when the caller named one.
    pub user: Option<Arc<EndUser>>,
    /// Secrets for this call, replacing the install's.
    pub secrets: Option<Arc<Secrets>>,
}

/// Drops every response header outside [`RETURNED_HEADERS`], `x-ext-*` and private
/// `cache-control`.
pub fn filter_response_headers(headers: &mut HeaderMap) {
    // Most responses carry only returned headers: keep their map as it is.
    if headers.iter().all(|(name, value)| returned(name, value)) {
        return;
    }
    let kept = std::mem::take(headers);
    let mut name = None;
    for (next, value) in kept {
        // `HeaderMap`'s owned iterator yields a name only for the first value of each name.
        if let Some(next) = next {
            name = Some(next);
        }
        let Some(name) = name.as_ref() else { continue };
        if returned(name, &value) {
            headers.append(name.clone(), value);
        }
    }
}

/// Whether a response header reaches the caller (see [`filter_response_headers`]).
fn returned(name: &HeaderName, value: &HeaderValue) -> bool {
    RETURNED_HEADERS.contains(name)
        || name.as_str().starts_with("x-ext-")
        || (name == header::CACHE_CONTROL
            && !value.to_str().map_or(true, |v| {
                v.as_bytes()
                    .windows(6)
                    .any(|w| w.eq_ignore_ascii_case(b"public"))
            }))
}

/// Splits `/api/ext/{id}/{rest…}` into the extension id and the path the component sees
/// (`/{rest…}`, or `/` when there is none).
pub fn split_route(path: &str) -> Result<(&str, &str), GatewayError> {
    let rest = path
        .strip_prefix(ROUTE_PREFIX)
        .ok_or_else(|| GatewayError::NoRoute(path.to_owned()))?;
    let (id, inner) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    if id.is_empty() {
        return Err(GatewayError::BadRequest(
            "missing extension id: use /api/ext/{extensionId}/{path}".into(),
        ));
    }
    if !is_valid_extension_id(id) {
        return Err(GatewayError::BadRequest(format!(
            "invalid extension id '{id}': use 1-128 characters of A-Z a-z 0-9 . _ -"
        )));
    }
    Ok((id, inner))
}

/// The request the component receives: prefix-free path, original query, allowlisted headers,
/// and the gateway's `x-request-id`, `x-alga-tenant`, `x-alga-extension` (and, on a scheduled
/// run, `x-alga-trigger: schedule` and `x-alga-schedule-id`; a caller cannot send these).
pub fn forward<B>(
    request: Request<B>,
    path: String,
    tenant: &str,
    extension_id: &str,
    request_id: &str,
) -> Result<Request<B>, GatewayError> {
    let (mut parts, body) = request.into_parts();
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let authority = parts
        .headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .filter(|host| host.parse::<http::uri::Authority>().is_ok())
        .unwrap_or("localhost")
        .to_owned();
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| GatewayError::BadRequest(format!("invalid request path: {e}")))?;

    let mut headers = HeaderMap::with_capacity(FORWARDED_HEADERS.len() + 3);
    for name in &FORWARDED_HEADERS {
        for value in parts.headers.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let value = |s: &str| {
        HeaderValue::from_str(s)
            .map_err(|_| GatewayError::BadRequest(format!("invalid header value '{s}'")))
    };
    // Names from `from_static` are not copied into each request's map, as `&str` names are.
    headers.insert(HeaderName::from_static("x-request-id"), value(request_id)?);
    headers.insert(HeaderName::from_static("x-alga-tenant"), value(tenant)?);
    headers.insert(
        HeaderName::from_static("x-alga-extension"),
        value(extension_id)?,
    );
    if let Some(trigger) = parts.extensions.get::<ScheduledTrigger>() {
        headers.insert(
            HeaderName::from_static(TRIGGER_HEADER),
            HeaderValue::from_static("schedule"),
        );
        headers.insert(
            HeaderName::from_static(SCHEDULE_ID_HEADER),
            value(&trigger.schedule_id)?,
        );
    }
    parts.headers = headers;
    Ok(Request::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_routes() {
        assert_eq!(
            split_route("/api/ext/hello/greet").unwrap(),
            ("hello", "/greet")
        );
        assert_eq!(
            split_route("/api/ext/hello/a/b/").unwrap(),
            ("hello", "/a/b/")
        );
        assert_eq!(split_route("/api/ext/hello").unwrap(), ("hello", "/"));
        assert_eq!(split_route("/api/ext/hello/").unwrap(), ("hello", "/"));
        assert!(matches!(
            split_route("/api/ext/"),
            Err(GatewayError::BadRequest(_))
        ));
        assert!(matches!(
            split_route("/api/ext/%2e%2e/x"),
            Err(GatewayError::BadRequest(_))
        ));
        assert!(matches!(
            split_route("/other"),
            Err(GatewayError::NoRoute(_))
        ));
    }

    #[test]
    fn returns_only_allowlisted_response_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.insert("connection", HeaderValue::from_static("close"));
        headers.append("x-ext-trace", HeaderValue::from_static("1"));
        headers.append("x-ext-trace", HeaderValue::from_static("2"));
        headers.insert(
            "cache-control",
            HeaderValue::from_static("public, max-age=60"),
        );
        filter_response_headers(&mut headers);
        assert_eq!(headers.len(), 3, "{headers:?}");
        assert_eq!(headers["content-type"], "text/plain");
        assert_eq!(headers.get_all("x-ext-trace").iter().count(), 2);
        let mut private = HeaderMap::new();
        private.insert(
            "cache-control",
            HeaderValue::from_static("private, max-age=5"),
        );
        filter_response_headers(&mut private);
        assert_eq!(private["cache-control"], "private, max-age=5");
        let mut shouted = HeaderMap::new();
        shouted.insert(
            "cache-control",
            HeaderValue::from_static("max-age=5, PUBLIC"),
        );
        filter_response_headers(&mut shouted);
        assert!(shouted.is_empty(), "public in any case is dropped");
        let mut returned = HeaderMap::new();
        returned.insert("content-type", HeaderValue::from_static("text/plain"));
        returned.append("x-ext-a", HeaderValue::from_static("1"));
        returned.append("x-ext-a", HeaderValue::from_static("2"));
        let before = returned.clone();
        filter_response_headers(&mut returned);
        assert_eq!(returned, before, "only returned headers: kept as they are");
    }

    #[test]
    fn forwards_only_allowlisted_headers_and_sets_alga_ones() {
        let request = Request::builder()
            .uri("/api/ext/hello/greet?x=1")
            .header("host", "edge.example:8080")
            .header("authorization", "Bearer secret")
            .header("cookie", "session=1")
            .header("x-alga-tenant", "spoofed")
            .header("accept", "application/json")
            .body(())
            .unwrap();
        let forwarded = forward(request, "/greet".into(), "t1", "hello", "rid-1").unwrap();
        assert_eq!(
            forwarded.uri().to_string(),
            "http://edge.example:8080/greet?x=1"
        );
        let headers = forwarded.headers();
        assert!(headers.get("authorization").is_none());
        assert!(headers.get("cookie").is_none());
        assert_eq!(headers["x-alga-tenant"], "t1");
        assert_eq!(headers["x-alga-extension"], "hello");
        assert_eq!(headers["x-request-id"], "rid-1");
        assert_eq!(headers["accept"], "application/json");
    }
}
