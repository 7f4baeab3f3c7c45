//! Replication between nodes (DESIGN §4, §8), the host side:
//! - on the primary, `/replication/v1/…` serves the libsql sync protocol for the registry
//!   (`registry/info`, `registry/export/{generation}`, `registry/sync/{generation}/{start}/{end}`)
//!   and bundles by content hash (`bundles/{hash}`), behind the sync token; a background task
//!   starts a new generation when the WAL passes its bound;
//! - on an edge, a background task syncs the replica on an interval.

use std::sync::Arc;
use std::time::Duration;

use alga_edge_registry::Registry;
use alga_edge_registry::bundle::ContentHash;
use alga_edge_registry::replication::{GenerationLog, Pull};
use alga_edge_registry::store::BundleStore;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::error::{error_response, json_response};
use crate::keys::BearerSecret;
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

/// The primary's replication API.
pub struct ReplicationApi {
    log: Arc<GenerationLog>,
    store: BundleStore,
    token: BearerSecret,
}

impl ReplicationApi {
    /// Serves `log`'s generations and `store`'s bundles to callers presenting `token`.
    pub fn new(log: Arc<GenerationLog>, store: BundleStore, token: &str) -> Self {
        Self {
            log,
            store,
            token: BearerSecret::new(token),
        }
    }

    /// Serves one replication request.
    pub async fn handle<B>(&self, request: &Request<B>, request_id: &str) -> Response<HostBody> {
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if self.token.check(authorization) != Some(true) {
            return error_response(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "replication needs 'authorization: Bearer <sync token>'",
                request_id,
            );
        }
        let path = request.uri().path();
        let rest = path.strip_prefix(REPLICATION_PREFIX).unwrap_or_default();
        let segments: Vec<&str> = rest.split('/').collect();
        let bad = |message: String| {
            error_response(StatusCode::BAD_REQUEST, "bad_request", &message, request_id)
        };
        if request.method() != Method::GET {
            return error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "replication is pull-only: replicas never write back",
                request_id,
            );
        }
        match segments.as_slice() {
            ["registry", "info"] => {
                let (current, oldest) = self.log.generations();
                json_response(
                    StatusCode::OK,
                    &serde_json::json!({"current_generation": current, "oldest_generation": oldest}),
                )
            }
            ["registry", "export", generation] => {
                let Ok(generation) = generation.parse::<u32>() else {
                    return bad(format!("invalid generation '{generation}'"));
                };
                let log = self.log.clone();
                match tokio::task::spawn_blocking(move || log.export(generation)).await {
                    Ok(Ok(Some(image))) => bytes_response(image),
                    Ok(Ok(None)) => error_response(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        &format!(
                            "generation {generation} is not the current one ({}); ask /info again",
                            self.log.generations().0
                        ),
                        request_id,
                    ),
                    Ok(Err(e)) => internal(&e.to_string(), request_id),
                    Err(e) => internal(&e.to_string(), request_id),
                }
            }
            ["registry", "sync", generation, start, end] => {
                let (Ok(generation), Ok(start), Ok(end)) = (
                    generation.parse::<u32>(),
                    start.parse::<u32>(),
                    end.parse::<u32>(),
                ) else {
                    return bad("use sync/{generation}/{start}/{end} with integers".into());
                };
                let log = self.log.clone();
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
            ["bundles", hash] => {
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

/// Primary: checks the WAL every `every` and starts a new generation when it is over its bound.
pub async fn rollover_loop(registry: Arc<Registry>, log: Arc<GenerationLog>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let check = log.clone();
        let due = tokio::task::spawn_blocking(move || check.rollover_due()).await;
        match due {
            Ok(Ok(true)) => {
                if let Err(e) = registry.rollover(&log).await {
                    tracing::error!("replication: rollover failed: {e}");
                }
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!("replication: cannot read the WAL size: {e}"),
            Err(e) => tracing::warn!("replication: WAL check failed: {e}"),
        }
    }
}

/// Edge: syncs the replica every `every` (logging only changes of reachability).
pub async fn sync_loop(registry: Arc<Registry>, every: Duration) {
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
