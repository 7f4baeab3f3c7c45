//! `POST /v1/execute`: the Alga runner API (DESIGN §5), a drop-in for Alga PSA's own callers.
//! The platform, which already resolved the tenant's install, sends an envelope
//! `{context, http{method, path, query, headers, body_b64}, limits, config, providers,
//! secret_envelope, user}` with its service token (`authorization: Bearer …` or Alga's
//! `x-runner-service-token`) and gets `{status, headers, body_b64, error}` back. The request
//! runs through the same engine and policies as the gateway route.
//!
//! The platform is authoritative for what it sends: a non-empty `providers` list replaces the
//! capabilities granted (each must be a known capability; the install's grants apply
//! otherwise), a non-empty `config` (top level, or Alga's `context.config`) replaces the
//! install's config (string values as they are, others as JSON text), `user` is the end user
//! of the runner world's `user` interface, and a `secret_envelope` in Alga's plain form
//! (base64 of a JSON object of strings) carries this call's secrets, replacing the install's
//! sealed ones. Stricter than Alga: the service token is required, and `x-alga-tenant` /
//! `x-alga-extension`, when sent, must match the envelope (403).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use alga_edge_registry::manifest::{DEFAULT_GRANTS, canonical_capability};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use serde::{Deserialize, Serialize};

use crate::catalog::{Resolved, is_valid_extension_id};
use alga_edge_http::json_response;

use alga_edge_engine::InvokeError;

use crate::error::GatewayError;
use crate::ext_api::{CallerContext, Gateway};
use alga_edge_capabilities::runner::EndUser;
use alga_edge_http::BearerSecret;
use alga_edge_http::trace_context::{self, TraceId};
use alga_edge_http::{BoxError, CallerIdentified, HostBody};
use alga_edge_registry::secrets::Secrets;

/// Path of the runner API.
pub const EXECUTE_PATH: &str = "/v1/execute";

/// The runner envelope.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// Who and what runs.
    pub context: ExecuteContext,
    /// Handler hint from the manifest (informational: a component has one entry point).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The request the component receives.
    pub http: HttpEnvelope,
    /// Per-call limits.
    #[serde(default)]
    pub limits: ExecuteLimits,
    /// The install's config map.
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
    /// Granted capability providers.
    #[serde(default)]
    pub providers: Vec<String>,
    /// This call's secrets, in Alga's envelope form.
    #[serde(default)]
    pub secret_envelope: Option<SecretEnvelope>,
    /// The end user the call runs for.
    #[serde(default)]
    pub user: Option<EndUser>,
}

/// `secret_envelope` of the runner envelope (Alga's shape).
#[derive(Debug, Deserialize)]
pub struct SecretEnvelope {
    /// Base64 of a JSON object of name → value (plain form), or a Vault transit ciphertext.
    #[serde(default)]
    pub ciphertext_b64: String,
    /// `vault-transit…` for Vault transit; absent for the plain form.
    #[serde(default)]
    pub algorithm: Option<String>,
}

impl SecretEnvelope {
    /// The secrets it carries; `None` for an empty envelope (the install's secrets apply).
    pub fn open(&self) -> Result<Option<Secrets>, GatewayError> {
        if let Some(algorithm) = &self.algorithm
            && algorithm
                .trim()
                .to_ascii_lowercase()
                .starts_with("vault-transit")
        {
            return Err(GatewayError::NotImplemented(format!(
                "secret_envelope algorithm '{algorithm}' (Vault transit) is not supported by this node: send the plain form (base64 of a JSON object of strings) or seal the secrets into the install"
            )));
        }
        if self.ciphertext_b64.trim().is_empty() {
            return Ok(None);
        }
        let bytes = BASE64.decode(self.ciphertext_b64.trim()).map_err(|e| {
            GatewayError::BadRequest(format!("secret_envelope.ciphertext_b64 is not base64: {e}"))
        })?;
        let values: BTreeMap<String, String> = serde_json::from_slice(&bytes).map_err(|e| {
            GatewayError::BadRequest(format!(
                "secret_envelope.ciphertext_b64 must decode to a JSON object of strings: {e}"
            ))
        })?;
        Ok(Some(Secrets::new(values)))
    }
}

/// `context` of the envelope.
#[derive(Debug, Deserialize)]
pub struct ExecuteContext {
    /// The platform's request id (the node's own is used when absent or unusable).
    #[serde(default)]
    pub request_id: Option<String>,
    /// Tenant.
    pub tenant_id: String,
    /// Extension name.
    pub extension_id: String,
    /// The platform's install id.
    #[serde(default)]
    pub install_id: Option<String>,
    /// The platform's version id (informational: the content hash decides).
    #[serde(default)]
    pub version_id: Option<String>,
    /// `sha256:<hex>` of the bundle to run.
    pub content_hash: String,
    /// End user id, when no `user` is sent.
    #[serde(default)]
    pub user_id: Option<String>,
    /// The install's config (Alga's place for it; the top-level `config` wins per key).
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
}

/// `http` of the envelope.
#[derive(Debug, Deserialize)]
pub struct HttpEnvelope {
    /// Method.
    pub method: String,
    /// Path the component sees, starting with `/`.
    pub path: String,
    /// Query parameters; a value may be a string or a list of strings.
    #[serde(default)]
    pub query: BTreeMap<String, QueryValue>,
    /// Request headers (the gateway's allowlist still applies).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body, base64.
    #[serde(default)]
    pub body_b64: Option<String>,
}

/// One query parameter's value(s).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum QueryValue {
    /// `?k=v`
    One(String),
    /// `?k=a&k=b`
    Many(Vec<String>),
}

/// `limits` of the envelope.
#[derive(Debug, Default, Deserialize)]
pub struct ExecuteLimits {
    /// Deadline; the node's (or install's) deadline still caps it.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// The runner's answer.
#[derive(Debug, Serialize)]
pub struct ExecuteResponse {
    /// Status the component answered.
    pub status: u16,
    /// Its (allowlisted) headers; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// Its body, base64.
    pub body_b64: String,
    /// Always `null` here: failures are answered with their own HTTP status and error body.
    pub error: Option<String>,
}

/// Alga's header for the service token.
const SERVICE_TOKEN_HEADER: &str = "x-runner-service-token";

/// The runner API.
pub struct Runner {
    gateway: Arc<Gateway>,
    token: BearerSecret,
    max_response_bytes: usize,
}

impl Runner {
    /// Runs envelopes on `gateway` for callers presenting `service_token`.
    pub fn new(gateway: Arc<Gateway>, service_token: &str, max_response_bytes: u64) -> Self {
        Self {
            gateway,
            token: BearerSecret::new(service_token),
            max_response_bytes: usize::try_from(max_response_bytes).unwrap_or(usize::MAX),
        }
    }

    /// Serves one `POST /v1/execute`.
    pub async fn handle<B>(&self, request: Request<B>, request_id: &str) -> Response<HostBody>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut trace = self
            .gateway
            .telemetry()
            .begin("execute", request_id, request.headers());
        let context = trace.context();
        let result =
            trace_context::within(self.execute(request, request_id, &mut trace), context).await;
        let identified = trace.is_identified();
        let trace_id = trace.trace_id();
        let mut response = self.answer(result, trace, request_id).await;
        if identified {
            response.extensions_mut().insert(CallerIdentified);
        }
        if let Some(trace_id) = trace_id {
            response.extensions_mut().insert(TraceId(trace_id));
        }
        response
    }

    /// The envelope answer for the extension's `result`, reported through `trace`.
    async fn answer(
        &self,
        result: Result<Response<HostBody>, GatewayError>,
        trace: crate::telemetry::RequestTrace,
        request_id: &str,
    ) -> Response<HostBody> {
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                trace.fail(&error);
                return error.into_response(request_id);
            }
        };
        let status = response.status().as_u16();
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        // The trace reports (status, bytes, duration) once the body has been read to its end.
        let body = match trace.succeed(response).into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                return GatewayError::Invoke(InvokeError::BadGuestResponse(format!(
                    "its response body failed: {e}"
                )))
                .into_response(request_id);
            }
        };
        if body.len() > self.max_response_bytes {
            return GatewayError::Invoke(InvokeError::BadGuestResponse(format!(
                "its response body is larger than {} bytes",
                self.max_response_bytes
            )))
            .into_response(request_id);
        }
        let answer = ExecuteResponse {
            status,
            headers,
            body_b64: BASE64.encode(&body),
            error: None,
        };
        match serde_json::to_value(answer) {
            Ok(value) => json_response(StatusCode::OK, &value),
            Err(e) => GatewayError::Internal(format!("encoding the answer: {e}"))
                .into_response(request_id),
        }
    }

    async fn execute<B>(
        &self,
        request: Request<B>,
        request_id: &str,
        trace: &mut crate::telemetry::RequestTrace,
    ) -> Result<Response<HostBody>, GatewayError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if request.method() != Method::POST {
            return Err(GatewayError::BadRequest(format!(
                "{} is not supported on {EXECUTE_PATH}: use POST",
                request.method()
            )));
        }
        let mut auth = trace.span("auth");
        self.authenticate(request.headers())
            .inspect_err(|e| auth.fail(e.to_string()))?;
        auth.end();
        trace.identified();
        let claimed = Claimed::of(request.headers())?;
        let envelope = read_envelope(request, self.envelope_limit()).await?;
        claimed.check(&envelope.context)?;
        let secrets = envelope
            .secret_envelope
            .as_ref()
            .map(SecretEnvelope::open)
            .transpose()?
            .flatten();
        let mut resolve = trace.span("resolve");
        let (resolved, requested) = self
            .resolve(&envelope)
            .await
            .inspect_err(|e| resolve.fail(e.to_string()))?;
        resolve.end();
        let resolved = overridden(
            resolved,
            &requested,
            &envelope,
            self.gateway.default_timeout_ms(),
        )?;
        let (inner, path) = build_request(&envelope.http)?;
        let caller = CallerContext {
            user: end_user(&envelope)?,
            secrets: secrets.map(Arc::new),
        };
        // The platform's request id, when usable, is the call's id (Alga's components see it
        // in their context); the node's own otherwise.
        let request_id = match envelope.context.request_id.as_deref() {
            Some(id) if alga_edge_http::is_usable_request_id(id) => {
                trace.rename(id);
                id
            }
            _ => request_id,
        };
        self.gateway
            .run(Arc::new(resolved), inner, path, caller, request_id, trace)
            .await
    }

    /// The service token, from Alga's `x-runner-service-token` or `authorization: Bearer`.
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<(), GatewayError> {
        let Some(token) = headers.get(SERVICE_TOKEN_HEADER) else {
            return self
                .token
                .require(headers, "runner service token")
                .map_err(|e| {
                    GatewayError::Unauthorized(format!(
                        "{} (or '{SERVICE_TOKEN_HEADER}: <token>')",
                        e.message()
                    ))
                });
        };
        match token.to_str() {
            Ok(token) if self.token.matches(token.trim()) => Ok(()),
            _ => Err(GatewayError::Unauthorized(
                "the runner service token is not valid".into(),
            )),
        }
    }

    /// The install the envelope's context names, checked to run the bundle it names, and the
    /// capabilities that version requests.
    async fn resolve(
        &self,
        envelope: &Envelope,
    ) -> Result<(Resolved, BTreeSet<String>), GatewayError> {
        let context = &envelope.context;
        if !is_valid_extension_id(&context.extension_id) {
            return Err(GatewayError::BadRequest(format!(
                "invalid context.extension_id '{}'",
                context.extension_id
            )));
        }
        if !alga_edge_registry::is_valid_tenant_id(&context.tenant_id) {
            return Err(GatewayError::BadRequest(format!(
                "invalid context.tenant_id '{}': use 1-128 characters of A-Z a-z 0-9 . _ -",
                context.tenant_id
            )));
        }
        self.gateway
            .installed()
            .resolve_bundle(
                &context.tenant_id,
                &context.extension_id,
                &context.content_hash,
                context.install_id.as_deref(),
            )
            .await?
            .ok_or_else(|| {
                GatewayError::UnknownExtension(format!(
                    "{} with bundle {}",
                    context.extension_id, context.content_hash
                ))
            })
    }

    /// Largest envelope: a base64 body of the largest allowed size plus room for the rest.
    fn envelope_limit(&self) -> usize {
        let body = usize::try_from(self.gateway.max_body_bytes()).unwrap_or(usize::MAX);
        body.saturating_mul(4).div_euclid(3).saturating_add(1 << 20)
    }
}

/// `resolved` with what the envelope may override: a shorter deadline (never past the
/// node's, `default_timeout_ms`), the providers granted (each one the version `requested`, or
/// a default grant), the config.
fn overridden(
    mut resolved: Resolved,
    requested: &BTreeSet<String>,
    envelope: &Envelope,
    default_timeout_ms: u64,
) -> Result<Resolved, GatewayError> {
    if let Some(ms) = envelope.limits.timeout_ms {
        let cap = resolved.policy.timeout_ms.unwrap_or(default_timeout_ms);
        resolved.policy.timeout_ms = Some(ms.clamp(1, cap));
    }
    if !envelope.providers.is_empty() {
        let mut grants = Vec::with_capacity(envelope.providers.len());
        for provider in &envelope.providers {
            let canonical = canonical_capability(provider).ok_or_else(|| {
                GatewayError::BadRequest(format!("unknown provider '{provider}'"))
            })?;
            if !requested.contains(&canonical) && !DEFAULT_GRANTS.contains(&canonical.as_str()) {
                return Err(GatewayError::Forbidden(format!(
                    "provider '{provider}' is not a capability {} {} requests",
                    resolved.extension_id, resolved.version
                )));
            }
            grants.push(canonical);
        }
        resolved.grants = grants;
    }
    if !envelope.config.is_empty() || !envelope.context.config.is_empty() {
        resolved.config = Arc::new(
            envelope
                .context
                .config
                .iter()
                .chain(&envelope.config)
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect(),
        );
    }
    // What the envelope changed is part of what a warm instance may have seen.
    Ok(resolved.finish())
}

/// The end user of the call: the envelope's `user`, or one known only by `context.user_id`.
pub fn end_user(envelope: &Envelope) -> Result<Option<Arc<EndUser>>, GatewayError> {
    match (&envelope.user, &envelope.context.user_id) {
        (Some(user), _) if user.user_id.is_empty() => Err(GatewayError::BadRequest(
            "user.user_id must be a non-empty string".into(),
        )),
        (Some(user), _) => Ok(Some(Arc::new(user.clone()))),
        (None, Some(id)) if !id.is_empty() => Ok(Some(Arc::new(EndUser::with_id(id.clone())))),
        (None, _) => Ok(None),
    }
}

/// The tenant and extension the caller's `x-alga-tenant` / `x-alga-extension` headers name.
struct Claimed {
    tenant: Option<String>,
    extension: Option<String>,
}

impl Claimed {
    fn of(headers: &http::HeaderMap) -> Result<Self, GatewayError> {
        let read = |name: &str| {
            headers
                .get(name)
                .map(|v| {
                    v.to_str().map(str::to_owned).map_err(|_| {
                        GatewayError::BadRequest(format!("the {name} header is not valid text"))
                    })
                })
                .transpose()
        };
        Ok(Self {
            tenant: read("x-alga-tenant")?,
            extension: read("x-alga-extension")?,
        })
    }

    /// 403 when a header names another tenant or extension than the envelope (Alga's runner
    /// requires these headers but never compares them).
    fn check(&self, context: &ExecuteContext) -> Result<(), GatewayError> {
        for (header, claimed, actual) in [
            ("x-alga-tenant", &self.tenant, &context.tenant_id),
            ("x-alga-extension", &self.extension, &context.extension_id),
        ] {
            if let Some(claimed) = claimed
                && claimed != actual
            {
                return Err(GatewayError::Forbidden(format!(
                    "the {header} header ('{claimed}') does not match the envelope ('{actual}')"
                )));
            }
        }
        Ok(())
    }
}

/// Reads and parses the envelope with the node's one bounded reader, refusing bodies over
/// `limit`.
async fn read_envelope<B>(request: Request<B>, limit: usize) -> Result<Envelope, GatewayError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    alga_edge_http::read_json(&parts.headers, body, limit as u64, "runner envelope")
        .await
        .map_err(|e| {
            if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                GatewayError::BodyTooLarge {
                    limit_bytes: limit as u64,
                }
            } else {
                GatewayError::BadRequest(e.message().to_owned())
            }
        })
}

/// The component's request from the envelope's `http`, and the path it sees.
pub fn build_request(http: &HttpEnvelope) -> Result<(Request<Full<Bytes>>, String), GatewayError> {
    let method = Method::from_bytes(http.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| GatewayError::BadRequest(format!("invalid http.method '{}'", http.method)))?;
    if !http.path.starts_with('/') || http.path.contains('?') || http.path.contains('#') {
        return Err(GatewayError::BadRequest(format!(
            "http.path '{}' must start with '/' and carry no query or fragment (use http.query)",
            http.path
        )));
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in &http.query {
        match value {
            QueryValue::One(v) => {
                query.append_pair(key, v);
            }
            QueryValue::Many(values) => {
                for v in values {
                    query.append_pair(key, v);
                }
            }
        }
    }
    let query = query.finish();
    let uri = if query.is_empty() {
        http.path.clone()
    } else {
        format!("{}?{query}", http.path)
    };
    let body = match &http.body_b64 {
        Some(b64) => BASE64
            .decode(b64)
            .map_err(|e| GatewayError::BadRequest(format!("http.body_b64 is not base64: {e}")))?,
        None => Vec::new(),
    };
    let mut request = Request::builder()
        .method(method)
        .uri(&uri)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| GatewayError::BadRequest(format!("invalid http.path: {e}")))?;
    let headers = request.headers_mut();
    for (name, value) in &http.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| GatewayError::BadRequest(format!("invalid header name '{name}'")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| GatewayError::BadRequest(format!("invalid value for header '{name}'")))?;
        headers.append(name, value);
    }
    // The decoded body's real length replaces whatever the envelope claimed.
    let length = request.body().size_hint().exact().unwrap_or(0);
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    Ok((request, http.path.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(json: serde_json::Value) -> HttpEnvelope {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn builds_the_component_request_from_the_envelope() {
        let (request, path) = build_request(&http(serde_json::json!({
            "method": "post", "path": "/agreements/sync",
            "query": {"force": "true", "tag": ["a b", "c"]},
            "headers": {"content-type": "application/json", "content-length": "999"},
            "body_b64": BASE64.encode(b"{\"x\":1}"),
        })))
        .unwrap();
        assert_eq!(path, "/agreements/sync");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(
            request.uri().to_string(),
            "/agreements/sync?force=true&tag=a+b&tag=c"
        );
        assert_eq!(request.headers()["content-length"], "7");
        assert_eq!(request.headers()["content-type"], "application/json");
    }

    #[test]
    fn refuses_bad_envelopes() {
        for bad in [
            serde_json::json!({"method": "GET", "path": "relative"}),
            serde_json::json!({"method": "GET", "path": "/x?y=1"}),
            serde_json::json!({"method": "G ET", "path": "/"}),
            serde_json::json!({"method": "GET", "path": "/", "body_b64": "%%%"}),
            serde_json::json!({"method": "GET", "path": "/", "headers": {"bad name": "v"}}),
        ] {
            assert!(
                matches!(
                    build_request(&http(bad.clone())),
                    Err(GatewayError::BadRequest(_))
                ),
                "{bad}"
            );
        }
    }
}
