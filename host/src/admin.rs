//! The admin API (primary role): publish bundles, list extensions and versions, deprecate, and
//! manage per-tenant installs. Every route needs `authorization: Bearer <admin token>`.
//!
//! Routes, under [`ADMIN_PREFIX`] (one handler per resource, see [`AdminRoute`]):
//! - `POST bundles` (body: the bundle archive; header `x-alga-signature`: the detached JWS)
//! - `GET extensions`, `GET extensions/{name}`,
//!   `POST extensions/{name}/versions/{version}/deprecate`
//! - `GET|POST tenants/{tenant}/installs`,
//!   `GET|PATCH|DELETE tenants/{tenant}/installs/{name}` (PATCH: `version` and/or `policy`),
//!   `POST tenants/{tenant}/installs/{name}/enable|disable`
//! - `GET tenants/{tenant}/kv/{extension}/{bucket}`,
//!   `GET|PUT|DELETE tenants/{tenant}/kv/{extension}/{bucket}/{key}`
//! - `GET|POST tenants/{tenant}/schedules/{extension}`,
//!   `GET|PATCH|DELETE tenants/{tenant}/schedules/{extension}/{id}`,
//!   `POST tenants/{tenant}/schedules/{extension}/{id}/run` (run now; primary only)
//! - `GET tenants/{tenant}/executions?limit=&extension=` (execution log, newest first),
//!   `GET tenants/{tenant}/usage?since=` (per-window quota usage)
//! - `GET tenants/{tenant}/extensions/{extension}/tail?status=&level=&sample=`: the live tail
//!   of this node's requests, as Server-Sent Events (primary and edges alike)
//!
//! Errors are the node's one contract ([`ApiError`]) with 400 (bad input), 401 (token), 403
//! (signature or publisher refused), 404, 405, 409 (conflicts), 413 (body too large).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Body;
use serde::Deserialize;
use serde_json::{Value, json};

use alga_edge_capabilities::egress::Allowlist;
use alga_edge_capabilities::kv_service::{KvOp, KvOutcome, KvService, KvServiceError};
use alga_edge_capabilities::schedule_service::{
    ScheduleOp, ScheduleOutcome, ScheduleService, ScheduleServiceError, ScheduleWrite,
};
use alga_edge_gateway::catalog::is_valid_extension_id;
use alga_edge_gateway::telemetry::tail::{TailError, TailFilter};
use alga_edge_gateway::{Gateway, ScheduleTrigger};
use alga_edge_http::{
    ApiError, BearerSecret, BoxError, CallerIdentified, HostBody, json_response, read_body,
    read_json,
};
use alga_edge_registry::bundle::ContentHash;
use alga_edge_registry::kv::{self, KvScope};
use alga_edge_registry::schedules::ScheduleChange;
use alga_edge_registry::secrets::Secrets;
use alga_edge_registry::signing::TrustBundle;
use alga_edge_registry::store::BundleStore;
use alga_edge_registry::{
    ExecutionStore, InstallPolicy, InstallRequest, Registry, RegistryError, USAGE_WINDOW_SECS,
    VersionInfo, is_valid_tenant_id,
};
use http_body_util::BodyExt;

use crate::routes::{Params, RouteTable};
use crate::ui::UiRoute;

/// Path prefix of admin routes.
pub const ADMIN_PREFIX: &str = "/admin/v1/";

/// Header carrying a published bundle's detached signature.
pub const SIGNATURE_HEADER: &str = "x-alga-signature";

/// Largest JSON body an admin call accepts.
const MAX_JSON_BYTES: u64 = 1 << 20;

/// Most execution-log rows one call returns.
const MAX_EXECUTIONS: u32 = 1000;

/// The resources of the admin API, each served by one handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminRoute {
    /// `bundles`: publish.
    Bundles,
    /// `extensions`: the catalog.
    Extensions,
    /// `extensions/{name}`.
    Extension,
    /// `extensions/{name}/versions/{version}/deprecate`.
    Deprecate,
    /// `extensions/{name}/versions/{version}/preview`: POST lets `/ext-ui` serve the
    /// version's UI before any install, DELETE stops that.
    Preview,
    /// `extensions/{name}/keys`: the keys that may publish it; POST delegates to another key.
    PublisherKeys,
    /// `extensions/{name}/keys/{fingerprint}`: DELETE revokes a delegation.
    PublisherKey,
    /// `tenants/{tenant}/installs`.
    Installs,
    /// `tenants/{tenant}/installs/{name}`.
    Install,
    /// `tenants/{tenant}/installs/{name}/{action}` (enable, disable).
    InstallAction,
    /// `tenants/{tenant}/kv/{extension}/{bucket}`.
    KvBucket,
    /// `tenants/{tenant}/kv/{extension}/{bucket}/{key}`.
    KvKey,
    /// `tenants/{tenant}/schedules/{extension}`.
    Schedules,
    /// `tenants/{tenant}/schedules/{extension}/{id}`.
    Schedule,
    /// `tenants/{tenant}/schedules/{extension}/{id}/run`.
    ScheduleRun,
    /// `tenants/{tenant}/executions`.
    Executions,
    /// `tenants/{tenant}/usage`.
    Usage,
    /// `tenants/{tenant}/extensions/{extension}/tail`: the live tail (SSE).
    Tail,
}

impl AdminRoute {
    /// The route table, relative to [`ADMIN_PREFIX`].
    fn table() -> RouteTable<Self> {
        RouteTable::new(&[
            ("bundles", Self::Bundles),
            ("extensions", Self::Extensions),
            ("extensions/{name}", Self::Extension),
            (
                "extensions/{name}/versions/{version}/deprecate",
                Self::Deprecate,
            ),
            (
                "extensions/{name}/versions/{version}/preview",
                Self::Preview,
            ),
            ("extensions/{name}/keys", Self::PublisherKeys),
            ("extensions/{name}/keys/{fingerprint}", Self::PublisherKey),
            ("tenants/{tenant}/installs", Self::Installs),
            ("tenants/{tenant}/installs/{name}", Self::Install),
            (
                "tenants/{tenant}/installs/{name}/{action}",
                Self::InstallAction,
            ),
            ("tenants/{tenant}/kv/{extension}/{bucket}", Self::KvBucket),
            (
                "tenants/{tenant}/kv/{extension}/{bucket}/{key}",
                Self::KvKey,
            ),
            ("tenants/{tenant}/schedules/{extension}", Self::Schedules),
            (
                "tenants/{tenant}/schedules/{extension}/{id}",
                Self::Schedule,
            ),
            (
                "tenants/{tenant}/schedules/{extension}/{id}/run",
                Self::ScheduleRun,
            ),
            ("tenants/{tenant}/executions", Self::Executions),
            ("tenants/{tenant}/usage", Self::Usage),
            ("tenants/{tenant}/extensions/{extension}/tail", Self::Tail),
        ])
    }

    /// KV and schedule writes are the writes an edge takes: it forwards them to the primary.
    fn edge_forwards_writes(self) -> bool {
        matches!(
            self,
            Self::KvBucket | Self::KvKey | Self::Schedules | Self::Schedule
        )
    }
}

/// The admin API of a primary node.
pub struct Admin {
    kv: Option<Arc<KvService>>,
    schedules: Option<Arc<ScheduleService>>,
    trigger: Option<Arc<ScheduleTrigger>>,
    registry: Arc<Registry>,
    executions: Arc<ExecutionStore>,
    read_only: Option<String>,
    store: BundleStore,
    trust: Option<Arc<TrustBundle>>,
    token: BearerSecret,
    max_bundle_bytes: u64,
    ui: Option<Arc<UiRoute>>,
    gateway: Option<Arc<Gateway>>,
    routes: RouteTable<AdminRoute>,
}

/// What a handler answers: a status and a JSON document.
type Answer = Result<(StatusCode, Value), ApiError>;

/// A registry failure as the admin API answers it.
fn registry_error(error: RegistryError) -> ApiError {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = match status {
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        _ => "internal_error",
    };
    if status.is_server_error() {
        tracing::error!("admin call failed: {error}");
    }
    ApiError::new(status, code, error.to_string())
}

/// Body of `POST tenants/{tenant}/installs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallBody {
    extension: String,
    version: String,
    #[serde(default)]
    grants: Vec<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    #[serde(default)]
    policy: InstallPolicy,
}

/// Body of `POST extensions/{name}/keys`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegateBody {
    /// The owner-signed delegation (`alga-edge keys delegate` makes one).
    delegation: String,
}

/// Body of `PATCH tenants/{tenant}/installs/{name}`: a new version, new policy overrides
/// (replacing the old ones), or both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    policy: Option<InstallPolicy>,
}

impl Admin {
    /// The admin API over `registry` and this node's `executions`, storing bundles in `store`,
    /// verifying publishes with `trust`, and accepting `token`.
    pub fn new(
        registry: Arc<Registry>,
        executions: Arc<ExecutionStore>,
        store: BundleStore,
        trust: Option<Arc<TrustBundle>>,
        token: &str,
        max_bundle_bytes: usize,
    ) -> Self {
        Self {
            kv: None,
            schedules: None,
            trigger: None,
            executions,
            read_only: None,
            registry,
            store,
            trust,
            token: BearerSecret::new(token),
            max_bundle_bytes: max_bundle_bytes as u64,
            ui: None,
            gateway: None,
            routes: AdminRoute::table(),
        }
    }

    /// Extracts the UI of every bundle published here through `ui`, off the request path.
    pub fn with_ui(mut self, ui: Arc<UiRoute>) -> Self {
        self.ui = Some(ui);
        self
    }

    /// Serves the live tail of `gateway`'s requests.
    pub fn with_tail(mut self, gateway: Arc<Gateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Serves `tenants/{t}/kv/…` through `kv`.
    pub fn with_kv(mut self, kv: Arc<KvService>) -> Self {
        self.kv = Some(kv);
        self
    }

    /// Serves `tenants/{t}/schedules/…` through `schedules`; `trigger` runs them on request
    /// (primary only).
    pub fn with_schedules(
        mut self,
        schedules: Arc<ScheduleService>,
        trigger: Option<Arc<ScheduleTrigger>>,
    ) -> Self {
        self.schedules = Some(schedules);
        self.trigger = trigger;
        self
    }

    /// An edge's admin API: reads from the replica (`registry`) and the node's own execution
    /// log; every write is refused, naming the `primary`.
    pub fn read_only(mut self, primary: String) -> Self {
        self.read_only = Some(primary);
        self
    }

    /// Serves one admin request.
    pub async fn handle<B>(&self, request: Request<B>, request_id: &str) -> Response<HostBody>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if let Err(e) = self.token.require(request.headers(), "admin token") {
            return e.into_response(request_id);
        }
        let resolved = self
            .routes
            .resolve(ADMIN_PREFIX, request.uri().path(), "admin");
        let mut response = match resolved {
            // Streamed: its body is the event stream, not one JSON answer.
            Ok((AdminRoute::Tail, params)) => match self.tail(&request, &params).await {
                Ok(response) => response,
                Err(e) => e.into_response(request_id),
            },
            resolved => match self.authorized(request, resolved).await {
                Ok((status, body)) => json_response(status, &body),
                Err(e) => e.into_response(request_id),
            },
        };
        response.extensions_mut().insert(CallerIdentified);
        response
    }

    /// Routes a request whose admin token was accepted, by its `resolved` route.
    async fn authorized<B>(
        &self,
        request: Request<B>,
        resolved: Result<(AdminRoute, Params), ApiError>,
    ) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let path = request.uri().path().to_owned();
        let (route, params) = resolved?;
        check_names(&params)?;
        if let Some(primary) = &self.read_only
            && request.method() != Method::GET
            && !route.edge_forwards_writes()
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "read_only_replica",
                format!(
                    "this node is an edge: its registry is a read-only replica; send {} {path} to the primary at {primary}",
                    request.method(),
                ),
            ));
        }
        let method = request.method().clone();
        let answer = match route {
            AdminRoute::Bundles => self.bundles(request).await,
            AdminRoute::Extensions => self.extensions(&method).await,
            AdminRoute::Extension => self.extension(&method, &params).await,
            AdminRoute::Deprecate => self.deprecate(&method, &params).await,
            AdminRoute::Preview => self.preview(&method, &params).await,
            AdminRoute::PublisherKeys => self.publisher_keys(request, &params).await,
            AdminRoute::PublisherKey => self.revoke_key(&method, &params).await,
            AdminRoute::Installs => self.installs(request, &params).await,
            AdminRoute::Install => self.install(request, &params).await,
            AdminRoute::InstallAction => self.install_action(&method, &params).await,
            AdminRoute::KvBucket => self.kv_bucket(&method, &params).await,
            AdminRoute::KvKey => self.kv_key(request, &params).await,
            AdminRoute::Schedules => self.schedules_route(request, &params).await,
            AdminRoute::Schedule => self.schedule_route(request, &params).await,
            AdminRoute::ScheduleRun => self.schedule_run(&method, &params).await,
            AdminRoute::Executions => self.executions(&request, &params).await,
            AdminRoute::Usage => self.usage(&request, &params).await,
            // Streamed: answered by `handle` before it gets here.
            AdminRoute::Tail => Err(not_allowed()),
        };
        answer.map_err(|e| {
            if e.status() == StatusCode::METHOD_NOT_ALLOWED {
                ApiError::method_not_allowed(&method, &path)
            } else {
                e
            }
        })
    }

    /// `GET tenants/{tenant}/extensions/{extension}/tail`: this node's requests of the
    /// install as Server-Sent Events, until the caller goes away.
    async fn tail<B>(
        &self,
        request: &Request<B>,
        params: &Params,
    ) -> Result<Response<HostBody>, ApiError> {
        if request.method() != Method::GET {
            return Err(ApiError::method_not_allowed(
                request.method(),
                request.uri().path(),
            ));
        }
        check_names(params)?;
        let Some(gateway) = &self.gateway else {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                "this node does not serve live tails",
            ));
        };
        let (tenant, extension) = (params.get("tenant"), params.get("extension"));
        let filter = TailFilter::parse(request.uri().query().unwrap_or_default())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let installed = self
            .registry
            .install_of(tenant, extension)
            .await
            .map_err(registry_error)?
            .is_some();
        if !installed && !gateway.is_dev_mapped(tenant, extension) {
            return Err(ApiError::not_found(format!(
                "tenant '{tenant}' has no install of '{extension}'"
            )));
        }
        let stream = gateway
            .telemetry()
            .tail
            .subscribe(tenant, extension, filter)
            .map_err(|e| match e {
                TailError::TooMany(_) => ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_tails",
                    e.to_string(),
                ),
                TailError::BadFilter(message) => ApiError::bad_request(message),
            })?;
        let mut response = Response::new(stream.boxed_unsync());
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        // Reverse proxies (nginx) would otherwise buffer the stream.
        headers.insert("x-accel-buffering", http::HeaderValue::from_static("no"));
        Ok(response)
    }

    async fn bundles<B>(&self, request: Request<B>) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        match *request.method() {
            Method::POST => self.publish(request).await,
            _ => Err(not_allowed()),
        }
    }

    async fn extensions(&self, method: &Method) -> Answer {
        if method != Method::GET {
            return Err(not_allowed());
        }
        let mut extensions = Vec::new();
        for name in self.registry.extensions().await.map_err(registry_error)? {
            extensions.push(self.extension_json(&name).await?);
        }
        Ok((StatusCode::OK, json!({ "extensions": extensions })))
    }

    async fn extension(&self, method: &Method, params: &Params) -> Answer {
        if method != Method::GET {
            return Err(not_allowed());
        }
        Ok((
            StatusCode::OK,
            self.extension_json(params.get("name")).await?,
        ))
    }

    async fn deprecate(&self, method: &Method, params: &Params) -> Answer {
        if method != Method::POST {
            return Err(not_allowed());
        }
        let (name, version) = (params.get("name"), params.get("version"));
        self.registry
            .deprecate(name, version)
            .await
            .map_err(registry_error)?;
        let info = self
            .registry
            .version(name, version)
            .await
            .map_err(registry_error)?;
        Ok((
            StatusCode::OK,
            info.map(version_json).unwrap_or(Value::Null),
        ))
    }

    async fn preview(&self, method: &Method, params: &Params) -> Answer {
        let previewable = match *method {
            Method::POST => true,
            Method::DELETE => false,
            _ => return Err(not_allowed()),
        };
        let (name, version) = (params.get("name"), params.get("version"));
        self.registry
            .set_previewable(name, version, previewable)
            .await
            .map_err(registry_error)?;
        let info = self
            .registry
            .version(name, version)
            .await
            .map_err(registry_error)?;
        if previewable && let (Some(ui), Some(info)) = (&self.ui, &info) {
            self.prepare_ui(ui.clone(), info.content_hash.clone());
        }
        Ok((
            StatusCode::OK,
            info.map(version_json).unwrap_or(Value::Null),
        ))
    }

    /// Extracts and precompresses a bundle's UI in the background, so the first viewer does
    /// not pay for it and the publisher does not wait for it.
    fn prepare_ui(&self, ui: Arc<UiRoute>, hash: ContentHash) {
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match ui.prepare(&hash).await {
                Ok(()) => tracing::info!(content_hash = %hash,
                    ms = started.elapsed().as_millis() as u64, "bundle UI extracted"),
                Err(e) => tracing::warn!(content_hash = %hash, "cannot extract the bundle UI: {e}"),
            }
        });
    }

    async fn publisher_keys<B>(&self, request: Request<B>, params: &Params) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let name = params.get("name");
        match *request.method() {
            Method::GET => {}
            Method::POST => {
                let (parts, body) = request.into_parts();
                let body: DelegateBody =
                    read_json(&parts.headers, body, MAX_JSON_BYTES, "JSON body").await?;
                let trust = self.trust()?;
                let added = self
                    .registry
                    .delegate_publishing(name, &body.delegation, &trust)
                    .await
                    .map_err(registry_error)?;
                if added {
                    tracing::info!(extension = %name, "publishing delegated to another key");
                }
                let keys = self
                    .registry
                    .publisher_keys(name)
                    .await
                    .map_err(registry_error)?;
                let status = if added {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                return Ok((status, json!(keys)));
            }
            _ => return Err(not_allowed()),
        }
        let keys = self
            .registry
            .publisher_keys(name)
            .await
            .map_err(registry_error)?;
        Ok((StatusCode::OK, json!(keys)))
    }

    async fn revoke_key(&self, method: &Method, params: &Params) -> Answer {
        if method != Method::DELETE {
            return Err(not_allowed());
        }
        let (name, fingerprint) = (
            params.get("name"),
            percent_decode(params.get("fingerprint")),
        );
        self.registry
            .revoke_publishing(name, &fingerprint)
            .await
            .map_err(registry_error)?;
        tracing::info!(extension = %name, key = %fingerprint, "publishing delegation revoked");
        let keys = self
            .registry
            .publisher_keys(name)
            .await
            .map_err(registry_error)?;
        Ok((StatusCode::OK, json!(keys)))
    }

    /// The trust bundle; without one this node verifies no signature at all.
    fn trust(&self) -> Result<Arc<TrustBundle>, ApiError> {
        self.trust.clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this node has no trust bundle (SIGNING_TRUST_BUNDLE), so it accepts no publish",
            )
        })
    }

    async fn installs<B>(&self, request: Request<B>, params: &Params) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let tenant = params.get("tenant");
        match *request.method() {
            Method::GET => {
                let installs = self
                    .registry
                    .installs(tenant)
                    .await
                    .map_err(registry_error)?;
                Ok((StatusCode::OK, json!({ "installs": installs })))
            }
            Method::POST => {
                let (parts, body) = request.into_parts();
                let body: InstallBody =
                    read_json(&parts.headers, body, MAX_JSON_BYTES, "JSON body").await?;
                check_egress_allowlist(&body.policy)?;
                let install = self
                    .registry
                    .install(&InstallRequest {
                        tenant: tenant.to_owned(),
                        extension: body.extension,
                        version: body.version,
                        grants: body.grants,
                        config: body.config,
                        secrets: Secrets::new(body.secrets),
                        policy: body.policy,
                    })
                    .await
                    .map_err(registry_error)?;
                Ok((StatusCode::CREATED, json!(install)))
            }
            _ => Err(not_allowed()),
        }
    }

    async fn install<B>(&self, request: Request<B>, params: &Params) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (tenant, name) = (params.get("tenant"), params.get("name"));
        match *request.method() {
            Method::GET => {
                let install = self
                    .registry
                    .install_of(tenant, name)
                    .await
                    .map_err(registry_error)?
                    .ok_or_else(|| {
                        ApiError::not_found(format!("tenant '{tenant}' has no install of '{name}'"))
                    })?;
                Ok((StatusCode::OK, json!(install)))
            }
            Method::PATCH => {
                let (parts, body) = request.into_parts();
                let body: UpdateBody =
                    read_json(&parts.headers, body, MAX_JSON_BYTES, "JSON body").await?;
                self.update_install(tenant, name, body).await
            }
            Method::DELETE => {
                self.registry
                    .uninstall(tenant, name)
                    .await
                    .map_err(registry_error)?;
                Ok((
                    StatusCode::OK,
                    json!({"tenant": tenant, "extension": name, "uninstalled": true}),
                ))
            }
            _ => Err(not_allowed()),
        }
    }

    async fn update_install(&self, tenant: &str, name: &str, body: UpdateBody) -> Answer {
        if body.version.is_none() && body.policy.is_none() {
            return Err(ApiError::bad_request(
                "nothing to change: send 'version', 'policy' or both",
            ));
        }
        if let Some(policy) = &body.policy {
            // Validate before changing anything, so a bad policy leaves the version unchanged too.
            policy
                .validate()
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            check_egress_allowlist(policy)?;
        }
        let mut install = None;
        if let Some(version) = &body.version {
            install = Some(
                self.registry
                    .update(tenant, name, version)
                    .await
                    .map_err(registry_error)?,
            );
        }
        if let Some(policy) = &body.policy {
            install = Some(
                self.registry
                    .set_policy(tenant, name, policy)
                    .await
                    .map_err(registry_error)?,
            );
        }
        Ok((StatusCode::OK, json!(install)))
    }

    async fn install_action(&self, method: &Method, params: &Params) -> Answer {
        let (tenant, name) = (params.get("tenant"), params.get("name"));
        let enable = match params.get("action") {
            "enable" => true,
            "disable" => false,
            _ => {
                return Err(ApiError::not_found(
                    "no such install action: use enable or disable",
                ));
            }
        };
        if method != Method::POST {
            return Err(not_allowed());
        }
        self.registry
            .set_enabled(tenant, name, enable)
            .await
            .map_err(registry_error)?;
        let install = self
            .registry
            .install_of(tenant, name)
            .await
            .map_err(registry_error)?;
        Ok((StatusCode::OK, json!(install)))
    }

    async fn kv_bucket(&self, method: &Method, params: &Params) -> Answer {
        if method != Method::GET {
            return Err(not_allowed());
        }
        let keys = self
            .kv()?
            .keys(&kv_scope(params), 1000)
            .await
            .map_err(kv_error)?;
        Ok((StatusCode::OK, json!({ "keys": keys })))
    }

    async fn kv_key<B>(&self, request: Request<B>, params: &Params) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let scope = kv_scope(params);
        let key = percent_decode(params.get("key"));
        let kv = self.kv()?;
        match *request.method() {
            Method::GET => match kv.get(&scope, &key).await.map_err(kv_error)? {
                Some(value) => Ok((
                    StatusCode::OK,
                    json!({"key": key, "value": String::from_utf8_lossy(&value)}),
                )),
                None => Err(ApiError::not_found(format!("no key '{key}'"))),
            },
            Method::PUT => {
                let (parts, body) = request.into_parts();
                let value =
                    read_body(&parts.headers, body, kv::MAX_VALUE_BYTES as u64, "value").await?;
                kv.write(&scope, &key, KvOp::Set(value.to_vec()), None)
                    .await
                    .map_err(kv_error)?;
                Ok((StatusCode::OK, json!({"key": key, "stored": true})))
            }
            Method::DELETE => {
                let outcome = kv
                    .write(&scope, &key, KvOp::Delete, None)
                    .await
                    .map_err(kv_error)?;
                let existed = matches!(outcome, KvOutcome::Deleted(true));
                Ok((StatusCode::OK, json!({"key": key, "deleted": existed})))
            }
            _ => Err(not_allowed()),
        }
    }

    fn schedule_service(&self) -> Result<&Arc<ScheduleService>, ApiError> {
        self.schedules
            .as_ref()
            .ok_or_else(|| ApiError::internal("this node has no schedule store"))
    }

    /// Applies a schedule write of the tenant's install named in `params`.
    async fn schedule_write(&self, params: &Params, op: ScheduleOp) -> Answer {
        let write = ScheduleWrite {
            tenant: params.get("tenant").to_owned(),
            extension: params.get("extension").to_owned(),
            op,
        };
        match self.schedule_service()?.write(&write).await {
            Ok(ScheduleOutcome::Created(schedule)) => {
                Ok((StatusCode::CREATED, json!({ "schedule": schedule })))
            }
            Ok(ScheduleOutcome::Updated(Some(schedule))) => {
                Ok((StatusCode::OK, json!({ "schedule": schedule })))
            }
            Ok(ScheduleOutcome::Updated(None) | ScheduleOutcome::Deleted(false)) => {
                Err(no_schedule(params))
            }
            Ok(ScheduleOutcome::Deleted(true)) => Ok((
                StatusCode::OK,
                json!({ "id": params.get("id"), "deleted": true }),
            )),
            Err(e) => schedule_error(e),
        }
    }

    async fn schedules_route<B>(&self, request: Request<B>, params: &Params) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (tenant, extension) = (params.get("tenant"), params.get("extension"));
        match *request.method() {
            Method::GET => {
                let schedules = self.schedule_service()?.list(tenant, extension).await;
                match schedules {
                    Ok(schedules) => Ok((StatusCode::OK, json!({ "schedules": schedules }))),
                    Err(e) => schedule_error(e),
                }
            }
            Method::POST => {
                let (parts, body) = request.into_parts();
                let change: ScheduleChange =
                    read_json(&parts.headers, body, MAX_JSON_BYTES, "schedule").await?;
                self.schedule_write(params, ScheduleOp::Create { change })
                    .await
            }
            _ => Err(not_allowed()),
        }
    }

    async fn schedule_route<B>(&self, request: Request<B>, params: &Params) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (tenant, extension, id) = (
            params.get("tenant"),
            params.get("extension"),
            params.get("id").to_owned(),
        );
        match *request.method() {
            Method::GET => match self.schedule_service()?.get(tenant, extension, &id).await {
                Ok(Some(schedule)) => Ok((StatusCode::OK, json!({ "schedule": schedule }))),
                Ok(None) => Err(no_schedule(params)),
                Err(e) => schedule_error(e),
            },
            Method::PATCH => {
                let (parts, body) = request.into_parts();
                let change: ScheduleChange =
                    read_json(&parts.headers, body, MAX_JSON_BYTES, "schedule change").await?;
                self.schedule_write(params, ScheduleOp::Update { id, change })
                    .await
            }
            Method::DELETE => self.schedule_write(params, ScheduleOp::Delete { id }).await,
            _ => Err(not_allowed()),
        }
    }

    /// Runs a schedule now, through the same path as its cron runs, and answers how it went.
    async fn schedule_run(&self, method: &Method, params: &Params) -> Answer {
        if method != Method::POST {
            return Err(not_allowed());
        }
        let trigger = self.trigger.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "read_only_replica",
                "schedules run on the primary; send run-now there",
            )
        })?;
        let run = trigger
            .run_now(
                params.get("tenant"),
                params.get("extension"),
                params.get("id"),
            )
            .await
            .map_err(registry_error)?;
        match run {
            Some(report) => Ok((StatusCode::OK, json!({ "run": report }))),
            None => Err(no_schedule(params)),
        }
    }

    async fn executions<B>(&self, request: &Request<B>, params: &Params) -> Answer {
        if request.method() != Method::GET {
            return Err(not_allowed());
        }
        let query = query_map(request.uri().query());
        let limit = match query.get("limit") {
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_EXECUTIONS).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("limit must be 1..={MAX_EXECUTIONS}"))
                })?,
            None => 100,
        };
        let rows = self
            .executions
            .executions(
                params.get("tenant"),
                query.get("extension").map(String::as_str),
                limit,
            )
            .await
            .map_err(registry_error)?;
        Ok((StatusCode::OK, json!({ "executions": rows })))
    }

    async fn usage<B>(&self, request: &Request<B>, params: &Params) -> Answer {
        if request.method() != Method::GET {
            return Err(not_allowed());
        }
        let query = query_map(request.uri().query());
        let since = match query.get("since") {
            Some(v) => v
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request("since must be Unix seconds"))?,
            None => 0,
        };
        let usage = self
            .executions
            .usage(params.get("tenant"), since)
            .await
            .map_err(registry_error)?;
        Ok((
            StatusCode::OK,
            json!({ "window_secs": USAGE_WINDOW_SECS, "usage": usage }),
        ))
    }

    async fn publish<B>(&self, request: Request<B>) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let signature = request
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "missing {SIGNATURE_HEADER} header: send the bundle's detached signature (alga-edge sign)"
                ))
            })?
            .to_owned();
        let trust = self.trust()?;
        let (parts, body) = request.into_parts();
        let bundle = read_body(&parts.headers, body, self.max_bundle_bytes, "bundle").await?;
        if bundle.is_empty() {
            return Err(ApiError::bad_request(
                "the request body (the bundle) is empty",
            ));
        }
        let published = self
            .registry
            .publish(&bundle, &signature, &trust, &self.store)
            .await
            .map_err(registry_error)?;
        tracing::info!(name = %published.name, version = %published.version,
            content_hash = %published.content_hash, created = published.created, "bundle published");
        if published.created
            && let Some(ui) = &self.ui
        {
            self.prepare_ui(ui.clone(), published.content_hash.clone());
        }
        let status = if published.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((
            status,
            json!({
                "name": published.name,
                "version": published.version,
                "content_hash": published.content_hash.to_string(),
                "created": published.created,
            }),
        ))
    }

    fn kv(&self) -> Result<&KvService, ApiError> {
        self.kv
            .as_deref()
            .ok_or_else(|| ApiError::not_found("this node has no KV store"))
    }

    /// `name` with its publisher and versions; unknown names are 404.
    async fn extension_json(&self, name: &str) -> Result<Value, ApiError> {
        let publisher = self
            .registry
            .publisher_of(name)
            .await
            .map_err(registry_error)?
            .ok_or_else(|| registry_error(RegistryError::UnknownExtension(name.to_owned())))?;
        let versions = self.registry.versions(name).await.map_err(registry_error)?;
        let owner_key = self
            .registry
            .owner_key_of(name)
            .await
            .map_err(registry_error)?;
        Ok(json!({
            "name": name,
            "publisher": publisher,
            "owner_key": owner_key,
            "versions": versions.into_iter().map(version_json).collect::<Vec<_>>(),
        }))
    }
}

fn version_json(info: VersionInfo) -> Value {
    json!({
        "version": info.version,
        "content_hash": info.content_hash.to_string(),
        "deprecated": info.deprecated,
        "signer": info.signer,
        "previewable": info.previewable,
        "capabilities": info.manifest.capability_set(),
        "manifest": info.manifest,
    })
}

/// The 405 placeholder a handler returns; [`Admin::authorized`] names the method and path.
fn not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "")
}

/// The one tenant id and extension id rules every route holds path parameters to (the same
/// the install call and the gateway apply), before anything is looked up or written.
/// 404 for a schedule the tenant's install does not have.
fn no_schedule(params: &Params) -> ApiError {
    ApiError::not_found(format!(
        "tenant '{}' has no schedule '{}' of '{}'",
        params.get("tenant"),
        crate::request_log::bounded(params.get("id"), 64),
        params.get("extension")
    ))
}

/// A schedule failure: a refused change answers 400 with each field's problem (`fields`).
fn schedule_error(error: ScheduleServiceError) -> Answer {
    if let Some(refused) = error.refused() {
        return Ok((
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid_schedule",
                "message": refused.message,
                "fields": refused.fields,
            }),
        ));
    }
    match error {
        ScheduleServiceError::Registry(e) => Err(registry_error(e)),
        e => Err(ApiError::new(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY),
            "schedule_write_failed",
            e.to_string(),
        )),
    }
}

fn check_names(params: &Params) -> Result<(), ApiError> {
    let tenant = params.get("tenant");
    if !tenant.is_empty() && !is_valid_tenant_id(tenant) {
        return Err(ApiError::bad_request(format!(
            "invalid tenant id '{}': use 1-128 characters of A-Z a-z 0-9 . _ - (not . or ..)",
            crate::request_log::bounded(tenant, 128)
        )));
    }
    for key in ["extension", "name"] {
        let extension = params.get(key);
        if !extension.is_empty() && !is_valid_extension_id(extension) {
            return Err(ApiError::bad_request(format!(
                "invalid extension id '{}': use 1-128 characters of A-Z a-z 0-9 . _ -",
                crate::request_log::bounded(extension, 128)
            )));
        }
    }
    Ok(())
}

fn kv_scope(params: &Params) -> KvScope {
    KvScope {
        tenant: params.get("tenant").to_owned(),
        extension: params.get("extension").to_owned(),
        bucket: params.get("bucket").to_owned(),
    }
}

fn kv_error(error: KvServiceError) -> ApiError {
    match error {
        KvServiceError::Store(e) => registry_error(e),
        KvServiceError::Refused(message) => ApiError::bad_request(message),
        KvServiceError::Forward(message) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "primary_unavailable", message)
        }
    }
}

/// A path segment with `%XX` escapes decoded (keys may hold any character).
fn percent_decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// The query string's parameters (last value wins).
fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// Refuses an install policy whose egress allowlist the capability could not parse (it would
/// allow nothing), before anything is stored.
fn check_egress_allowlist(policy: &InstallPolicy) -> Result<(), ApiError> {
    if let Some(entries) = &policy.egress_allow {
        Allowlist::from_entries(entries.iter().map(String::as_str))
            .map_err(|e| ApiError::bad_request(format!("invalid install policy: {e}")))?;
    }
    Ok(())
}
