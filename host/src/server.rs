//! The node's HTTP front: accepts connections, assigns request ids, routes the gateway, the
//! runner API, the admin API, replication, UI files, the host page and the probes
//! (`/healthz`, `/readyz`, `/metrics`) through one route table, and drains in-flight requests
//! on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use alga_edge_gateway::{Gateway, Runner};
use alga_edge_http::{ApiError, BearerSecret, HostBody, full, json_response, request_id_for};

use crate::admin::Admin;
use crate::health::Health;
use crate::host_page::HostPage;
use crate::replication::ReplicationApi;
use crate::request_log::{RequestLine, RequestLog};
use crate::routes::RouteTable;
use crate::ui::UiRoute;

/// Which part of the node serves a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Front {
    /// `/api/ext/{extensionId}/{path…}`.
    Gateway,
    /// `POST /v1/execute`.
    Execute,
    /// `/admin/v1/…`.
    Admin,
    /// `/replication/v1/…`.
    Replication,
    /// `/ext-ui/…`.
    Ui,
    /// The demo host page and its scripts.
    Page,
    /// `/healthz`.
    Healthz,
    /// `/readyz`.
    Readyz,
    /// `/metrics`.
    Metrics,
}

impl Front {
    /// Label of the request log line, `None` for high-volume routes logged only on error.
    fn log_kind(self) -> Option<&'static str> {
        match self {
            Self::Gateway => Some("gateway"),
            Self::Execute => Some("execute"),
            Self::Admin => Some("admin"),
            _ => None,
        }
    }
}

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
    routes: RouteTable<Front>,
    request_log: RequestLog,
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
        let request_log =
            RequestLog::new(gateway.telemetry().metrics.request_log_suppressed.clone());
        Self {
            request_log,
            gateway,
            runner,
            admin,
            replication,
            health,
            metrics_token: metrics_token.map(BearerSecret::new),
            ui: None,
            host_page: None,
            routes: RouteTable::new(&[]),
        }
        .with_routes()
    }

    /// The route table of what this node serves.
    fn with_routes(mut self) -> Self {
        let mut routes = vec![
            ("healthz", Front::Healthz),
            ("readyz", Front::Readyz),
            ("metrics", Front::Metrics),
            ("api/ext/", Front::Gateway),
            ("api/ext/{*rest}", Front::Gateway),
            ("v1/execute", Front::Execute),
        ];
        if self.admin.is_some() {
            routes.extend([
                ("admin/v1/", Front::Admin),
                ("admin/v1/{*rest}", Front::Admin),
            ]);
        }
        if self.replication.is_some() {
            routes.extend([
                ("replication/v1/", Front::Replication),
                ("replication/v1/{*rest}", Front::Replication),
            ]);
        }
        if self.ui.is_some() {
            routes.extend([("ext-ui/", Front::Ui), ("ext-ui/{*rest}", Front::Ui)]);
        }
        if let Some(page) = &self.host_page {
            routes.extend(page.paths().map(|path| (path, Front::Page)));
        }
        self.routes = RouteTable::new(&routes);
        self
    }

    /// Also serves extension UI files under `/ext-ui/`.
    pub fn with_ui(mut self, ui: Arc<UiRoute>) -> Self {
        self.ui = Some(ui);
        self.with_routes()
    }

    /// Also serves the demo host page at `/` (and the iframe SDK it loads).
    pub fn with_host_page(mut self, page: HostPage) -> Self {
        self.host_page = Some(page);
        self.with_routes()
    }

    /// Routes one request.
    pub async fn route(&self, request: Request<Incoming>) -> Response<HostBody> {
        let request_id = request_id_for(&request);
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let started = std::time::Instant::now();
        let front = self.routes.route(&path);
        let mut response = match front {
            Some(front) => self.dispatch(front, request, &request_id).await,
            None => ApiError::no_route(&path).into_response(&request_id),
        };
        if let Some(kind) = front.and_then(Front::log_kind) {
            let line = RequestLine {
                kind,
                request_id: &request_id,
                method: &method,
                path: &path,
                ms: started.elapsed().as_millis() as u64,
            };
            self.request_log.record(line, &response);
        }
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", value);
        }
        response
    }

    async fn dispatch(
        &self,
        front: Front,
        request: Request<Incoming>,
        request_id: &str,
    ) -> Response<HostBody> {
        // The table only holds the optional parts this node has; `None` here cannot happen,
        // but answers 404 rather than panic.
        let missing = |path: &str| ApiError::no_route(path).into_response(request_id);
        match front {
            Front::Gateway => self.gateway.handle(request, request_id).await,
            Front::Execute => self.runner.handle(request, request_id).await,
            Front::Admin => match &self.admin {
                Some(admin) => admin.handle(request, request_id).await,
                None => missing(request.uri().path()),
            },
            Front::Replication => match &self.replication {
                Some(replication) => replication.handle(request, request_id).await,
                None => missing(request.uri().path()),
            },
            Front::Ui => match &self.ui {
                Some(ui) => ui.handle(&request, request_id).await,
                None => missing(request.uri().path()),
            },
            Front::Page => match &self.host_page {
                Some(page) => page.handle(&request, request_id).await,
                None => missing(request.uri().path()),
            },
            Front::Healthz | Front::Readyz | Front::Metrics => {
                if !matches!(*request.method(), Method::GET | Method::HEAD) {
                    return ApiError::method_not_allowed(request.method(), request.uri().path())
                        .into_response(request_id);
                }
                match front {
                    Front::Healthz => json_response(StatusCode::OK, &self.health.report()),
                    Front::Readyz => self.readiness().await,
                    _ => self.metrics(&request, request_id),
                }
            }
        }
    }

    /// `/readyz`: the registry answers and, on an edge, is fresh enough.
    async fn readiness(&self) -> Response<HostBody> {
        match self.health.registry.ping().await {
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
        }
    }

    /// `/metrics`, behind the metrics token when one is set.
    fn metrics<B>(&self, request: &Request<B>, request_id: &str) -> Response<HostBody> {
        if let Some(token) = &self.metrics_token
            && let Err(e) = token.require(request.headers(), "metrics token")
        {
            return e.into_response(request_id);
        }
        let mut response = Response::new(full(self.gateway.telemetry().metrics.encode()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }
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
