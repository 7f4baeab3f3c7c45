//! The admin API (primary role): publish bundles, list extensions and versions, deprecate, and
//! manage per-tenant installs. Every route needs `authorization: Bearer <admin token>`.
//!
//! Routes, under [`ADMIN_PREFIX`]:
//! - `POST bundles` (body: the bundle archive; header `x-alga-signature`: the detached JWS)
//! - `GET extensions`, `GET extensions/{name}`,
//!   `POST extensions/{name}/versions/{version}/deprecate`
//! - `GET|POST tenants/{tenant}/installs`,
//!   `GET|PATCH|DELETE tenants/{tenant}/installs/{name}` (PATCH: `version` and/or `policy`),
//!   `POST tenants/{tenant}/installs/{name}/enable|disable`
//! - `GET tenants/{tenant}/executions?limit=&extension=` (execution log, newest first),
//!   `GET tenants/{tenant}/usage?since=` (per-window quota usage)
//!
//! Errors are `{error, message, request_id}` with 400 (bad input), 401 (token), 403 (signature
//! or publisher refused), 404, 405, 409 (conflicts), 413 (body too large).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body;
use serde::Deserialize;
use serde_json::{Value, json};

use alga_edge_registry::secrets::Secrets;
use alga_edge_registry::signing::TrustBundle;
use alga_edge_registry::store::BundleStore;
use alga_edge_registry::{
    InstallPolicy, InstallRequest, Registry, RegistryError, USAGE_WINDOW_SECS, VersionInfo,
};

use crate::capabilities::egress::Allowlist;
use crate::error::{error_response, json_response};
use crate::keys::BearerSecret;
use crate::kv::{KvOp, KvOutcome, KvService, KvServiceError};
use crate::policy::declared_length;
use crate::server::HostBody;
use alga_edge_registry::kv::{self, KvScope};

/// Path prefix of admin routes.
pub const ADMIN_PREFIX: &str = "/admin/v1/";

/// Header carrying a published bundle's detached signature.
pub const SIGNATURE_HEADER: &str = "x-alga-signature";

/// Largest JSON body an admin call accepts.
const MAX_JSON_BYTES: usize = 1 << 20;

/// The admin API of a primary node.
pub struct Admin {
    kv: Option<Arc<KvService>>,
    registry: Arc<Registry>,
    log_registry: Arc<Registry>,
    read_only: Option<String>,
    store: BundleStore,
    trust: Option<Arc<TrustBundle>>,
    token: BearerSecret,
    max_bundle_bytes: usize,
}

/// A refused admin call.
#[derive(Debug)]
struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<RegistryError> for AdminError {
    fn from(error: RegistryError) -> Self {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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
        Self::new(status, code, error.to_string())
    }
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

/// Most execution-log rows one call returns.
const MAX_EXECUTIONS: u32 = 1000;

impl Admin {
    /// The admin API over `registry`, storing bundles in `store`, verifying publishes with
    /// `trust`, and accepting `token`.
    pub fn new(
        registry: Arc<Registry>,
        store: BundleStore,
        trust: Option<Arc<TrustBundle>>,
        token: &str,
        max_bundle_bytes: usize,
    ) -> Self {
        Self {
            kv: None,
            log_registry: registry.clone(),
            read_only: None,
            registry,
            store,
            trust,
            token: BearerSecret::new(token),
            max_bundle_bytes,
        }
    }

    /// Serves `tenants/{t}/kv/…` through `kv`.
    pub fn with_kv(mut self, kv: Arc<KvService>) -> Self {
        self.kv = Some(kv);
        self
    }

    /// An edge's admin API: reads from the replica (`registry`) and the node's own execution
    /// log (`log_registry`); every write is refused, naming the `primary`.
    pub fn read_only(mut self, log_registry: Arc<Registry>, primary: String) -> Self {
        self.log_registry = log_registry;
        self.read_only = Some(primary);
        self
    }

    /// Serves one admin request.
    pub async fn handle<B>(&self, request: Request<B>, request_id: &str) -> Response<HostBody>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<crate::server::BoxError>,
    {
        let result = match (self.authorize(&request), &self.read_only) {
            (Err(e), _) => Err(e),
            // KV writes are the exception: the edge forwards them to the primary.
            (Ok(()), Some(primary))
                if request.method() != Method::GET && !is_kv_route(request.uri().path()) =>
            {
                Err(AdminError::new(
                    StatusCode::CONFLICT,
                    "read_only_replica",
                    format!(
                        "this node is an edge: its registry is a read-only replica; send {} {} to the primary at {primary}",
                        request.method(),
                        request.uri().path()
                    ),
                ))
            }
            (Ok(()), _) => self.dispatch(request).await,
        };
        match result {
            Ok((status, body)) => json_response(status, &body),
            Err(e) => error_response(e.status, e.code, &e.message, request_id),
        }
    }

    fn authorize<B>(&self, request: &Request<B>) -> Result<(), AdminError> {
        let unauthorized = |m: &str| AdminError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let authorization = crate::tenant_auth::authorization(request.headers());
        match self.token.check(authorization) {
            None => Err(unauthorized(
                "missing admin token: send 'authorization: Bearer <admin token>'",
            )),
            Some(false) => Err(unauthorized("the admin token is not valid")),
            Some(true) => Ok(()),
        }
    }

    async fn dispatch<B>(&self, request: Request<B>) -> Result<(StatusCode, Value), AdminError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<crate::server::BoxError>,
    {
        let path = request.uri().path().to_owned();
        let rest = path.strip_prefix(ADMIN_PREFIX).unwrap_or_default();
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let method = request.method().clone();
        let not_allowed = || {
            AdminError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not supported on {path}"),
            )
        };
        match segments.as_slice() {
            ["bundles"] => match method {
                Method::POST => self.publish(request).await,
                _ => Err(not_allowed()),
            },
            ["extensions"] => match method {
                Method::GET => self.list_extensions().await,
                _ => Err(not_allowed()),
            },
            ["extensions", name] => match method {
                Method::GET => self.get_extension(name).await,
                _ => Err(not_allowed()),
            },
            ["extensions", name, "versions", version, "deprecate"] => match method {
                Method::POST => {
                    self.registry.deprecate(name, version).await?;
                    let info = self.registry.version(name, version).await?;
                    Ok((
                        StatusCode::OK,
                        info.map(version_json).unwrap_or(Value::Null),
                    ))
                }
                _ => Err(not_allowed()),
            },
            ["tenants", tenant, "installs"] => match method {
                Method::GET => {
                    let installs = self.registry.installs(tenant).await?;
                    Ok((StatusCode::OK, json!({ "installs": installs })))
                }
                Method::POST => {
                    let body: InstallBody = read_json(request).await?;
                    check_egress_allowlist(&body.policy)?;
                    let install = self
                        .registry
                        .install(&InstallRequest {
                            tenant: (*tenant).to_owned(),
                            extension: body.extension,
                            version: body.version,
                            grants: body.grants,
                            config: body.config,
                            secrets: Secrets::new(body.secrets),
                            policy: body.policy,
                        })
                        .await?;
                    Ok((StatusCode::CREATED, json!(install)))
                }
                _ => Err(not_allowed()),
            },
            ["tenants", tenant, "installs", name] => match method {
                Method::GET => {
                    let install =
                        self.registry
                            .install_of(tenant, name)
                            .await?
                            .ok_or_else(|| {
                                AdminError::not_found(format!(
                                    "tenant '{tenant}' has no install of '{name}'"
                                ))
                            })?;
                    Ok((StatusCode::OK, json!(install)))
                }
                Method::PATCH => {
                    let body: UpdateBody = read_json(request).await?;
                    if body.version.is_none() && body.policy.is_none() {
                        return Err(AdminError::bad_request(
                            "nothing to change: send 'version', 'policy' or both",
                        ));
                    }
                    if let Some(policy) = &body.policy {
                        // Validate before changing anything, so a bad policy leaves the
                        // version unchanged too.
                        policy
                            .validate()
                            .map_err(|e| AdminError::bad_request(e.to_string()))?;
                        check_egress_allowlist(policy)?;
                    }
                    let mut install = None;
                    if let Some(version) = &body.version {
                        install = Some(self.registry.update(tenant, name, version).await?);
                    }
                    if let Some(policy) = &body.policy {
                        install = Some(self.registry.set_policy(tenant, name, policy).await?);
                    }
                    Ok((StatusCode::OK, json!(install)))
                }
                Method::DELETE => {
                    self.registry.uninstall(tenant, name).await?;
                    Ok((
                        StatusCode::OK,
                        json!({"tenant": tenant, "extension": name, "uninstalled": true}),
                    ))
                }
                _ => Err(not_allowed()),
            },
            [
                "tenants",
                tenant,
                "installs",
                name,
                action @ ("enable" | "disable"),
            ] => match method {
                Method::POST => {
                    self.registry
                        .set_enabled(tenant, name, *action == "enable")
                        .await?;
                    let install = self.registry.install_of(tenant, name).await?;
                    Ok((StatusCode::OK, json!(install)))
                }
                _ => Err(not_allowed()),
            },
            ["tenants", tenant, "kv", extension, bucket] => match method {
                Method::GET => {
                    let scope = kv_scope(tenant, extension, bucket);
                    let keys = self.kv()?.keys(&scope, 1000).await.map_err(kv_error)?;
                    Ok((StatusCode::OK, json!({ "keys": keys })))
                }
                _ => Err(not_allowed()),
            },
            ["tenants", tenant, "kv", extension, bucket, key] => {
                let scope = kv_scope(tenant, extension, bucket);
                let key = percent_decode(key);
                match method {
                    Method::GET => match self.kv()?.get(&scope, &key).await.map_err(kv_error)? {
                        Some(value) => Ok((
                            StatusCode::OK,
                            json!({"key": key, "value": String::from_utf8_lossy(&value)}),
                        )),
                        None => Err(AdminError::not_found(format!("no key '{key}'"))),
                    },
                    Method::PUT => {
                        let value = read_body(request, kv::MAX_VALUE_BYTES, "value").await?;
                        self.kv()?
                            .write(&scope, &key, KvOp::Set(value.to_vec()), None)
                            .await
                            .map_err(kv_error)?;
                        Ok((StatusCode::OK, json!({"key": key, "stored": true})))
                    }
                    Method::DELETE => {
                        let existed = matches!(
                            self.kv()?
                                .write(&scope, &key, KvOp::Delete, None)
                                .await
                                .map_err(kv_error)?,
                            KvOutcome::Deleted(true)
                        );
                        Ok((StatusCode::OK, json!({"key": key, "deleted": existed})))
                    }
                    _ => Err(not_allowed()),
                }
            }
            ["tenants", tenant, "executions"] => match method {
                Method::GET => {
                    let query = query_map(request.uri().query());
                    let limit = match query.get("limit") {
                        Some(v) => v
                            .parse::<u32>()
                            .ok()
                            .filter(|n| (1..=MAX_EXECUTIONS).contains(n))
                            .ok_or_else(|| {
                                AdminError::bad_request(format!(
                                    "limit must be 1..={MAX_EXECUTIONS}"
                                ))
                            })?,
                        None => 100,
                    };
                    let rows = self
                        .log_registry
                        .executions(tenant, query.get("extension").map(String::as_str), limit)
                        .await?;
                    Ok((StatusCode::OK, json!({ "executions": rows })))
                }
                _ => Err(not_allowed()),
            },
            ["tenants", tenant, "usage"] => match method {
                Method::GET => {
                    let query = query_map(request.uri().query());
                    let since = match query.get("since") {
                        Some(v) => v
                            .parse::<i64>()
                            .map_err(|_| AdminError::bad_request("since must be Unix seconds"))?,
                        None => 0,
                    };
                    let usage = self.log_registry.usage(tenant, since).await?;
                    Ok((
                        StatusCode::OK,
                        json!({ "window_secs": USAGE_WINDOW_SECS, "usage": usage }),
                    ))
                }
                _ => Err(not_allowed()),
            },
            _ => Err(AdminError::not_found(format!("no admin route {path}"))),
        }
    }

    async fn publish<B>(&self, request: Request<B>) -> Result<(StatusCode, Value), AdminError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<crate::server::BoxError>,
    {
        let signature = request
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                AdminError::bad_request(format!(
                    "missing {SIGNATURE_HEADER} header: send the bundle's detached signature (alga-edge sign)"
                ))
            })?
            .to_owned();
        let trust = self.trust.clone().ok_or_else(|| {
            AdminError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this node has no trust bundle (SIGNING_TRUST_BUNDLE), so it accepts no publish",
            )
        })?;
        let bundle = read_body(request, self.max_bundle_bytes, "bundle").await?;
        if bundle.is_empty() {
            return Err(AdminError::bad_request(
                "the request body (the bundle) is empty",
            ));
        }
        let published = self
            .registry
            .publish(&bundle, &signature, &trust, &self.store)
            .await?;
        tracing::info!(name = %published.name, version = %published.version,
            content_hash = %published.content_hash, created = published.created, "bundle published");
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

    fn kv(&self) -> Result<&KvService, AdminError> {
        self.kv
            .as_deref()
            .ok_or_else(|| AdminError::not_found("this node has no KV store"))
    }

    async fn list_extensions(&self) -> Result<(StatusCode, Value), AdminError> {
        let mut extensions = Vec::new();
        for name in self.registry.extensions().await? {
            extensions.push(self.extension_json(&name).await?);
        }
        Ok((StatusCode::OK, json!({ "extensions": extensions })))
    }

    async fn get_extension(&self, name: &str) -> Result<(StatusCode, Value), AdminError> {
        Ok((StatusCode::OK, self.extension_json(name).await?))
    }

    /// `name` with its publisher and versions; unknown names are 404.
    async fn extension_json(&self, name: &str) -> Result<Value, AdminError> {
        let publisher = self
            .registry
            .publisher_of(name)
            .await?
            .ok_or_else(|| RegistryError::UnknownExtension(name.to_owned()))?;
        let versions = self.registry.versions(name).await?;
        Ok(json!({
            "name": name,
            "publisher": publisher,
            "versions": versions.into_iter().map(version_json).collect::<Vec<_>>(),
        }))
    }
}

fn version_json(info: VersionInfo) -> Value {
    json!({
        "version": info.version,
        "content_hash": info.content_hash.to_string(),
        "deprecated": info.deprecated,
        "capabilities": info.manifest.capability_set(),
        "manifest": info.manifest,
    })
}

/// Bytes of an oversized body still read (and dropped) before answering 413, so a client that
/// sends its whole body before reading the answer sees the 413 instead of a reset connection.
const OVERSIZE_DRAIN_BYTES: usize = 16 << 20;

/// The whole body, refused with 413 past `limit` bytes.
async fn read_body<B>(request: Request<B>, limit: usize, what: &str) -> Result<Bytes, AdminError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<crate::server::BoxError>,
{
    let mut too_large = declared_length(request.headers()).is_some_and(|n| n > limit as u64);
    let mut body = std::pin::pin!(request.into_body());
    let mut collected = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            AdminError::bad_request(format!("could not read the request body: {}", e.into()))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        too_large |= seen > limit;
        if too_large {
            if seen > limit.saturating_add(OVERSIZE_DRAIN_BYTES) {
                break;
            }
        } else {
            collected.extend_from_slice(&data);
        }
    }
    if too_large {
        return Err(AdminError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the {what} is larger than this node accepts ({limit} bytes)"),
        ));
    }
    Ok(collected.freeze())
}

async fn read_json<B, T>(request: Request<B>) -> Result<T, AdminError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<crate::server::BoxError>,
    T: serde::de::DeserializeOwned,
{
    let body = read_body(request, MAX_JSON_BYTES, "JSON body").await?;
    serde_json::from_slice(&body)
        .map_err(|e| AdminError::bad_request(format!("invalid JSON body: {e}")))
}

/// Admin KV routes: `tenants/{t}/kv/…`.
fn is_kv_route(path: &str) -> bool {
    let rest = path.strip_prefix(ADMIN_PREFIX).unwrap_or_default();
    let segments: Vec<&str> = rest.split('/').collect();
    segments.len() >= 3 && segments[0] == "tenants" && segments[2] == "kv"
}

fn kv_scope(tenant: &str, extension: &str, bucket: &str) -> KvScope {
    KvScope {
        tenant: tenant.to_owned(),
        extension: extension.to_owned(),
        bucket: bucket.to_owned(),
    }
}

fn kv_error(error: KvServiceError) -> AdminError {
    match error {
        KvServiceError::Store(e) => AdminError::from(e),
        KvServiceError::Refused(message) => AdminError::bad_request(message),
        KvServiceError::Forward(message) => {
            AdminError::new(StatusCode::BAD_GATEWAY, "primary_unavailable", message)
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
fn check_egress_allowlist(policy: &InstallPolicy) -> Result<(), AdminError> {
    if let Some(entries) = &policy.egress_allow {
        Allowlist::from_entries(entries.iter().map(String::as_str))
            .map_err(|e| AdminError::bad_request(format!("invalid install policy: {e}")))?;
    }
    Ok(())
}
