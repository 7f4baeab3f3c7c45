//! Replication between nodes (DESIGN §4, §8), the host side:
//! - on the primary, `/replication/v1/…` serves the libsql sync protocol for the registry and
//!   the KV database (`{db}/info`, `{db}/export/{generation}`,
//!   `{db}/sync/{generation}/{start}/{end}` with `db` = `registry` or `kv`), bundles by content
//!   hash (`bundles/{hash}`) and forwarded KV writes (`POST kv/write`), behind the sync token;
//!   a background task starts a new generation when a WAL passes its bound;
//! - on an edge, a background task syncs the replica on an interval.

use std::sync::Arc;
use std::time::Duration;

use alga_edge_registry::Registry;
use alga_edge_registry::bundle::ContentHash;
use alga_edge_registry::kv::KvStore;
use alga_edge_registry::replication::{GenerationLog, Pull};
use alga_edge_registry::store::BundleStore;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::error::{error_response, json_response};
use crate::keys::BearerSecret;
use crate::kv::{KvService, KvWrite};
use crate::server::HostBody;

/// Path prefix of the replication API.
pub const REPLICATION_PREFIX: &str = "/replication/v1/";

/// The registry's sync endpoint under a primary's base URL.
pub fn registry_sync_url(primary: &str) -> String {
    format!(
        "{}{REPLICATION_PREFIX}registry",
        primary.trim_end_matches('/')
    )
}

/// The KV database's sync endpoint under a primary's base URL.
pub fn kv_sync_url(primary: &str) -> String {
    format!("{}{REPLICATION_PREFIX}kv", primary.trim_end_matches('/'))
}

/// Largest forwarded KV write body.
const MAX_KV_WRITE_BYTES: usize = 2 << 20;

/// The primary's replication API.
pub struct ReplicationApi {
    registry_log: Arc<GenerationLog>,
    kv_log: Arc<GenerationLog>,
    kv: Arc<KvService>,
    store: BundleStore,
    token: BearerSecret,
}

impl ReplicationApi {
    /// Serves the registry's and the KV database's generations, `store`'s bundles and KV writes
    /// (applied through `kv`) to callers presenting `token`.
    pub fn new(
        registry_log: Arc<GenerationLog>,
        kv_log: Arc<GenerationLog>,
        kv: Arc<KvService>,
        store: BundleStore,
        token: &str,
    ) -> Self {
        Self {
            registry_log,
            kv_log,
            kv,
            store,
            token: BearerSecret::new(token),
        }
    }

    /// Serves one replication request.
    pub async fn handle<B>(&self, request: Request<B>, request_id: &str) -> Response<HostBody>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<crate::server::BoxError>,
    {
        let authorization = crate::tenant_auth::authorization(request.headers());
        if self.token.check(authorization) != Some(true) {
            return error_response(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "replication needs 'authorization: Bearer <sync token>'",
                request_id,
            );
        }
        let path = request.uri().path().to_owned();
        let rest = path.strip_prefix(REPLICATION_PREFIX).unwrap_or_default();
        let segments: Vec<&str> = rest.split('/').collect();
        let bad = |message: String| {
            error_response(StatusCode::BAD_REQUEST, "bad_request", &message, request_id)
        };
        if segments.as_slice() == ["kv", "write"] && request.method() == Method::POST {
            return self.kv_write(request, request_id).await;
        }
        if request.method() != Method::GET {
            return error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "replication is pull-only: replicas never write back",
                request_id,
            );
        }
        let log = match segments.first() {
            Some(&"registry") => Some(&self.registry_log),
            Some(&"kv") => Some(&self.kv_log),
            _ => None,
        };
        match (log, &segments[1.min(segments.len())..]) {
            (Some(log), ["info"]) => {
                let (current, oldest) = log.generations();
                json_response(
                    StatusCode::OK,
                    &serde_json::json!({"current_generation": current, "oldest_generation": oldest}),
                )
            }
            (Some(log), ["export", generation]) => {
                let Ok(generation) = generation.parse::<u32>() else {
                    return bad(format!("invalid generation '{generation}'"));
                };
                let current = log.generations().0;
                let log = log.clone();
                match tokio::task::spawn_blocking(move || log.export(generation)).await {
                    Ok(Ok(Some(image))) => bytes_response(image),
                    Ok(Ok(None)) => error_response(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        &format!(
                            "generation {generation} is not the current one ({current}); ask /info again"
                        ),
                        request_id,
                    ),
                    Ok(Err(e)) => internal(&e.to_string(), request_id),
                    Err(e) => internal(&e.to_string(), request_id),
                }
            }
            (Some(log), ["sync", generation, start, end]) => {
                let (Ok(generation), Ok(start), Ok(end)) = (
                    generation.parse::<u32>(),
                    start.parse::<u32>(),
                    end.parse::<u32>(),
                ) else {
                    return bad("use sync/{generation}/{start}/{end} with integers".into());
                };
                let log = log.clone();
                let pulled =
                    tokio::task::spawn_blocking(move || log.pull(generation, start, end)).await;
                match pulled {
                    Ok(Ok(Pull::Frames(frames))) => bytes_response(frames),
                    // The client reads "no more frames here" from a 400 carrying the current
                    // generation (the protocol's end-of-generation answer).
                    Ok(Ok(Pull::End { generation })) => json_response(
                        StatusCode::BAD_REQUEST,
                        &serde_json::json!({"generation": generation}),
                    ),
                    Ok(Ok(Pull::Gone { oldest })) => error_response(
                        StatusCode::GONE,
                        "generation_gone",
                        &format!(
                            "generation {generation} is no longer kept (oldest: {oldest}); the replica must bootstrap again"
                        ),
                        request_id,
                    ),
                    Ok(Ok(Pull::Ahead {
                        generation: current,
                    })) => error_response(
                        StatusCode::CONFLICT,
                        "generation_ahead",
                        &format!(
                            "the replica is at generation {generation} but this primary is at {current}: it was replicated from other data; remove the replica"
                        ),
                        request_id,
                    ),
                    Ok(Err(e)) => internal(&e.to_string(), request_id),
                    Err(e) => internal(&e.to_string(), request_id),
                }
            }
            (None, [hash]) if segments[0] == "bundles" => {
                let Ok(hash) = ContentHash::parse(hash) else {
                    return bad(format!("invalid content hash '{hash}'"));
                };
                match self.store.get(&hash).await {
                    Ok(Some(bytes)) => bytes_response(bytes),
                    Ok(None) => error_response(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        &format!("no bundle {hash}"),
                        request_id,
                    ),
                    Err(e) => internal(&e.to_string(), request_id),
                }
            }
            _ => error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no replication route {path}"),
                request_id,
            ),
        }
    }
}

impl ReplicationApi {
    /// Applies a KV write an edge forwarded.
    async fn kv_write<B>(&self, request: Request<B>, request_id: &str) -> Response<HostBody>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<crate::server::BoxError>,
    {
        let body = match http_body_util::Limited::new(request.into_body(), MAX_KV_WRITE_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                return error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    &format!("cannot read the write: {e}"),
                    request_id,
                );
            }
        };
        let write: KvWrite = match serde_json::from_slice(&body) {
            Ok(write) => write,
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!("invalid KV write: {e}"),
                    request_id,
                );
            }
        };
        let op = match write.op() {
            Ok(op) => op,
            Err(message) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &message,
                    request_id,
                );
            }
        };
        match self
            .kv
            .apply(&write.scope, &write.key, op, write.max_keys)
            .await
        {
            Ok(outcome) => json_response(StatusCode::OK, &serde_json::json!(outcome)),
            Err(e) => error_response(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "kv_write_refused",
                &e.to_string(),
                request_id,
            ),
        }
    }
}

fn bytes_response(bytes: Vec<u8>) -> Response<HostBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

fn internal(message: &str, request_id: &str) -> Response<HostBody> {
    tracing::error!(%request_id, "replication: {message}");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        message,
        request_id,
    )
}

/// Primary: checks the WALs every `every` and starts a new generation of a database when its
/// WAL is over its bound.
pub async fn rollover_loop(
    registry: Arc<Registry>,
    log: Arc<GenerationLog>,
    kv: Arc<KvStore>,
    kv_log: Arc<GenerationLog>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if due(&log).await
            && let Err(e) = registry.rollover(&log).await
        {
            tracing::error!("replication: registry rollover failed: {e}");
        }
        if due(&kv_log).await
            && let Err(e) = kv.rollover(&kv_log).await
        {
            tracing::error!("replication: KV rollover failed: {e}");
        }
    }
}

async fn due(log: &Arc<GenerationLog>) -> bool {
    let check = log.clone();
    match tokio::task::spawn_blocking(move || check.rollover_due()).await {
        Ok(Ok(due)) => due,
        Ok(Err(e)) => {
            tracing::warn!("replication: cannot read the WAL size: {e}");
            false
        }
        Err(e) => {
            tracing::warn!("replication: WAL check failed: {e}");
            false
        }
    }
}

/// Edge: syncs the registry and KV replicas every `every` (logging only changes of
/// reachability).
pub async fn sync_loop(registry: Arc<Registry>, kv: Arc<KvStore>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reachable = true;
    loop {
        tick.tick().await;
        let now = match registry.sync().await {
            Ok(reached) => reached,
            Err(e) => {
                tracing::warn!("replication: sync failed: {e}");
                false
            }
        };
        if now && let Err(e) = kv.sync().await {
            tracing::warn!("replication: KV sync failed: {e}");
        }
        if now != reachable {
            if now {
                tracing::info!("replication: primary reachable again, replica caught up");
            } else {
                let reason = registry
                    .replica()
                    .and_then(|r| r.status().last_error())
                    .unwrap_or_default();
                tracing::warn!(
                    "replication: primary unreachable, serving the local replica: {reason}"
                );
            }
            reachable = now;
        }
    }
}
