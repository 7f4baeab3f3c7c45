//! The node's HTTP front: accepts connections, assigns request ids, routes `/healthz`, the
//! gateway and the admin API, and drains in-flight requests on shutdown.

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

use crate::admin::{ADMIN_PREFIX, Admin};
use crate::error::{GatewayError, json_response};
use crate::gateway::{Gateway, ROUTE_PREFIX};

/// Error type of response bodies (a guest's body stream can fail mid-way).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body of every response the host sends.
pub type HostBody = UnsyncBoxBody<Bytes, BoxError>;

/// Everything a request can reach.
pub struct App {
    gateway: Gateway,
    admin: Option<Admin>,
}

impl App {
    /// The app serving `gateway` routes, and `admin` routes when this node has them.
    pub fn new(gateway: Gateway, admin: Option<Admin>) -> Self {
        Self { gateway, admin }
    }

    /// Routes one request.
    pub async fn route(&self, request: Request<Incoming>) -> Response<HostBody> {
        let request_id = request_id_for(&request);
        let path = request.uri().path();
        let mut response = if path.starts_with(ROUTE_PREFIX) {
            let method = request.method().clone();
            let path = path.to_owned();
            let started = std::time::Instant::now();
            let result = self.gateway.handle(request, &request_id).await;
            let status = result.as_ref().map_or_else(|e| e.status(), |r| r.status());
            tracing::info!(%request_id, %method, %path, status = status.as_u16(),
                ms = started.elapsed().as_millis() as u64, "gateway request");
            result.unwrap_or_else(|error| error.into_response(&request_id))
        } else if let Some(admin) = self
            .admin
            .as_ref()
            .filter(|_| path.starts_with(ADMIN_PREFIX))
        {
            let method = request.method().clone();
            let path = path.to_owned();
            let response = admin.handle(request, &request_id).await;
            tracing::info!(%request_id, %method, %path, status = response.status().as_u16(), "admin request");
            response
        } else if path == "/healthz" && matches!(*request.method(), Method::GET | Method::HEAD) {
            json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
        } else {
            GatewayError::NoRoute(path.to_owned()).into_response(&request_id)
        };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", value);
        }
        response
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
