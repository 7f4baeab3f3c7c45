//! The node's HTTP front: accepts connections, assigns request ids, routes the gateway, the
//! runner API, the admin API and the probes (`/healthz`, `/readyz`, `/metrics`), and drains
//! in-flight requests on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use alga_edge_registry::Registry;
use http_body_util::{BodyExt, Full};

use crate::admin::{ADMIN_PREFIX, Admin};
use crate::error::{GatewayError, json_response};
use crate::gateway::{Gateway, ROUTE_PREFIX};
use crate::host_page::HostPage;
use crate::keys::BearerSecret;
use crate::replication::{REPLICATION_PREFIX, ReplicationApi};
use crate::runner::{EXECUTE_PATH, Runner};
use crate::ui::{UI_PREFIX, UiRoute};
use alga_edge_registry::replication::GenerationLog;

/// Error type of response bodies (a guest's body stream can fail mid-way).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body of every response the host sends.
pub type HostBody = UnsyncBoxBody<Bytes, BoxError>;

/// Everything a request can reach.
pub struct App {
    gateway: Arc<Gateway>,
    runner: Runner,
    admin: Option<Admin>,
    replication: Option<ReplicationApi>,
    health: Health,
    metrics_token: Option<BearerSecret>,
    ui: Option<Arc<UiRoute>>,
    host_page: Option<HostPage>,
}

/// What the probes report: the registry, and replication state by role.
#[derive(Clone)]
pub struct Health {
    /// The registry (a replica on edges).
    pub registry: Arc<Registry>,
    /// The primary's generations.
    pub generations: Option<Arc<GenerationLog>>,
    /// Edge: staleness past which the node reports degraded.
    pub max_staleness: Duration,
}

impl Health {
    /// Edge: time since the last sync that reached the primary (`None` on a primary; `MAX`
    /// when it never synced in this process).
    pub fn staleness(&self) -> Option<Duration> {
        let replica = self.registry.replica()?;
        Some(replica.status().staleness().unwrap_or(Duration::MAX))
    }

    /// Whether an edge is staler than allowed.
    pub fn degraded(&self) -> bool {
        self.staleness().is_some_and(|age| age > self.max_staleness)
    }

    /// The `/healthz` document.
    pub fn report(&self) -> serde_json::Value {
        match (self.registry.replica(), &self.generations) {
            (Some(replica), _) => {
                let status = replica.status();
                serde_json::json!({
                    "status": if self.degraded() { "degraded" } else { "ok" },
                    "role": "edge",
                    "primary": replica.primary(),
                    "generation": replica.generation(),
                    "last_sync_age_ms": status.staleness().map(|d| d.as_millis() as u64),
                    "last_sync_unix_ms": status.last_ok_unix_ms(),
                    "max_staleness_ms": self.max_staleness.as_millis() as u64,
                    "last_error": status.last_error(),
                })
            }
            (None, Some(log)) => {
                let (current, oldest) = log.generations();
                serde_json::json!({
                    "status": "ok",
                    "role": "primary",
                    "generation": current,
                    "oldest_generation": oldest,
                })
            }
            (None, None) => serde_json::json!({"status": "ok"}),
        }
    }
}

impl App {
    /// The app serving `gateway` and `runner` routes, `admin` routes when this node has them,
    /// and the probes (`/readyz` asks `registry`); `/metrics` needs `metrics_token` when set.
    pub fn new(
        gateway: Arc<Gateway>,
        runner: Runner,
        admin: Option<Admin>,
        replication: Option<ReplicationApi>,
        health: Health,
        metrics_token: Option<&str>,
    ) -> Self {
        Self {
            gateway,
            runner,
            admin,
            replication,
            health,
            metrics_token: metrics_token.map(BearerSecret::new),
            ui: None,
            host_page: None,
        }
    }

    /// Also serves extension UI files under `/ext-ui/`.
    pub fn with_ui(mut self, ui: Arc<UiRoute>) -> Self {
        self.ui = Some(ui);
        self
    }

    /// Also serves the demo host page at `/` (and the iframe SDK it loads).
    pub fn with_host_page(mut self, page: HostPage) -> Self {
        self.host_page = Some(page);
        self
    }

    /// Routes one request.
    pub async fn route(&self, request: Request<Incoming>) -> Response<HostBody> {
        let request_id = request_id_for(&request);
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let started = std::time::Instant::now();
        let (kind, mut response) =
            if let Some(ui) = self.ui.as_ref().filter(|_| path.starts_with(UI_PREFIX)) {
                ("ui", ui.handle(&request, &request_id).await)
            } else if let Some(page) = self.host_page.as_ref().filter(|page| page.serves(&path)) {
                ("page", page.handle(&request, &request_id).await)
            } else if path.starts_with(ROUTE_PREFIX) {
                ("gateway", self.gateway.handle(request, &request_id).await)
            } else if path == EXECUTE_PATH {
                ("execute", self.runner.handle(request, &request_id).await)
            } else if let Some(admin) = self
                .admin
                .as_ref()
                .filter(|_| path.starts_with(ADMIN_PREFIX))
            {
                ("admin", admin.handle(request, &request_id).await)
            } else if let Some(replication) = self
                .replication
                .as_ref()
                .filter(|_| path.starts_with(REPLICATION_PREFIX))
            {
                (
                    "replication",
                    replication.handle(request, &request_id).await,
                )
            } else {
                ("probe", self.probe(&request, &path, &request_id).await)
            };
        // UI files and probes are high-volume and uninteresting one by one.
        if !matches!(kind, "probe" | "replication" | "ui" | "page") {
            tracing::info!(%request_id, %method, %path, status = response.status().as_u16(),
                ms = started.elapsed().as_millis() as u64, "{kind} request");
        }
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", value);
        }
        response
    }

    /// `/healthz` (the process answers), `/readyz` (the registry answers) and `/metrics`.
    async fn probe<B>(
        &self,
        request: &Request<B>,
        path: &str,
        request_id: &str,
    ) -> Response<HostBody> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return GatewayError::NoRoute(path.to_owned()).into_response(request_id);
        }
        match path {
            "/healthz" => json_response(StatusCode::OK, &self.health.report()),
            "/readyz" => match self.health.registry.ping().await {
                Ok(()) if self.health.degraded() => json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({
                        "status": "not_ready",
                        "registry": "stale",
                        "last_sync_age_ms": self.health.staleness().map(|d| d.as_millis() as u64),
                    }),
                ),
                Ok(()) => json_response(
                    StatusCode::OK,
                    &serde_json::json!({"status": "ready", "registry": "ok"}),
                ),
                Err(e) => {
                    tracing::warn!("readiness: registry unavailable: {e}");
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &serde_json::json!({"status": "not_ready", "registry": e.to_string()}),
                    )
                }
            },
            "/metrics" => {
                if let Some(token) = &self.metrics_token {
                    let authorization = crate::tenant_auth::authorization(request.headers());
                    if token.check(authorization) != Some(true) {
                        return GatewayError::Unauthorized(
                            "/metrics needs 'authorization: Bearer <metrics token>'".into(),
                        )
                        .into_response(request_id);
                    }
                }
                let text = self.gateway.telemetry().metrics.encode();
                let mut response = Response::new(
                    Full::new(Bytes::from(text))
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                );
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            _ => GatewayError::NoRoute(path.to_owned()).into_response(request_id),
        }
    }
}

/// The caller's `x-request-id` when it is a sane token, else a fresh UUID, so a platform can
/// trace one request across its systems and ours.
fn request_id_for<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// How long a client may take to send request headers (slow-loris protection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Most headers the HTTP parser accepts at all (it answers 431 past it, before any routing).
pub const MAX_PARSED_HEADERS: usize = 1000;

/// How long shutdown waits for in-flight requests before closing their connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Transient (e.g. out of file descriptors): back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.route(request).await) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            // The parser's own cap; the gateway's (configurable, lower) cap answers first.
            .max_headers(MAX_PARSED_HEADERS)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out after {DRAIN_TIMEOUT:?}; closing remaining connections");
    }
    Ok(())
}

/// Binds `addr`; port 0 picks a free port (see the returned listener's `local_addr`).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
