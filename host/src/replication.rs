//! Replication between nodes (DESIGN §4, §8), the host side:
//! - on the primary, `/replication/v1/…` serves the libsql sync protocol for the registry and
//!   the KV database (`{db}/info`, `{db}/export/{generation}`,
//!   `{db}/sync/{generation}/{start}/{end}` with `db` = `registry` or `kv`), bundles by content
//!   hash (`bundles/{hash}`), forwarded KV writes (`POST kv/write`, answered with the KV
//!   database's position after the write in `x-alga-kv-position`) and forwarded schedule
//!   writes (`POST schedules/write`), behind the sync token;
//!   a background task starts a new generation when a WAL passes its bound;
//! - on an edge, a background task syncs the replica on an interval. The edge's side of the
//!   protocol (URLs, forwarding, bundle fetching) is the registry's `PrimaryClient`.

use std::sync::Arc;
use std::time::Duration;

use alga_edge_capabilities::kv_service::{KvService, KvWrite};
use alga_edge_capabilities::schedule_service::{ScheduleService, ScheduleWrite};
use alga_edge_http::{
    ApiError, BearerSecret, BoxError, HostBody, bytes_response, json_response, read_json,
};
use alga_edge_registry::Registry;
use alga_edge_registry::bundle::ContentHash;
use alga_edge_registry::kv::KvStore;
use alga_edge_registry::replication::{GenerationLog, POSITION_HEADER, Pull};
use alga_edge_registry::store::BundleStore;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};

pub use alga_edge_registry::replication::REPLICATION_PREFIX;

use crate::routes::{Params, RouteTable};

/// Largest forwarded KV write body.
const MAX_KV_WRITE_BYTES: u64 = 2 << 20;

/// Which replicated database a route serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Database {
    /// The registry.
    Registry,
    /// Extension KV data.
    Kv,
}

/// The routes of the replication API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationRoute {
    /// `{db}/info`: current and oldest generation.
    Info(Database),
    /// `{db}/export/{generation}`: the database image of a generation.
    Export(Database),
    /// `{db}/sync/{generation}/{start}/{end}`: WAL frames.
    Sync(Database),
    /// `bundles/{hash}`.
    Bundle,
    /// `POST kv/write`: a write an edge forwards.
    KvWrite,
    /// `POST schedules/write`: a schedule change an edge forwards.
    ScheduleWrite,
}

impl ReplicationRoute {
    fn table() -> RouteTable<Self> {
        use Database::{Kv, Registry};
        RouteTable::new(&[
            ("registry/info", Self::Info(Registry)),
            ("kv/info", Self::Info(Kv)),
            ("registry/export/{generation}", Self::Export(Registry)),
            ("kv/export/{generation}", Self::Export(Kv)),
            (
                "registry/sync/{generation}/{start}/{end}",
                Self::Sync(Registry),
            ),
            ("kv/sync/{generation}/{start}/{end}", Self::Sync(Kv)),
            ("bundles/{hash}", Self::Bundle),
            ("kv/write", Self::KvWrite),
            ("schedules/write", Self::ScheduleWrite),
        ])
    }
}

/// The primary's replication API.
pub struct ReplicationApi {
    registry_log: Arc<GenerationLog>,
    kv_log: Arc<GenerationLog>,
    kv: Arc<KvService>,
    schedules: Arc<ScheduleService>,
    store: BundleStore,
    token: BearerSecret,
    routes: RouteTable<ReplicationRoute>,
}

impl ReplicationApi {
    /// Serves the registry's and the KV database's generations, `store`'s bundles, KV writes
    /// (applied through `kv`) and schedule writes (through `schedules`) to callers presenting
    /// `token`.
    pub fn new(
        registry_log: Arc<GenerationLog>,
        kv_log: Arc<GenerationLog>,
        kv: Arc<KvService>,
        schedules: Arc<ScheduleService>,
        store: BundleStore,
        token: &str,
    ) -> Self {
        Self {
            registry_log,
            kv_log,
            kv,
            schedules,
            store,
            token: BearerSecret::new(token),
            routes: ReplicationRoute::table(),
        }
    }

    /// Serves one replication request.
    pub async fn handle<B>(&self, request: Request<B>, request_id: &str) -> Response<HostBody>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        match self.answer(request).await {
            Ok(response) => response,
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::error!(%request_id, "replication: {e}");
                }
                e.into_response(request_id)
            }
        }
    }

    async fn answer<B>(&self, request: Request<B>) -> Result<Response<HostBody>, ApiError>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        self.token.require(request.headers(), "sync token")?;
        let path = request.uri().path().to_owned();
        let (route, params) = self
            .routes
            .resolve(REPLICATION_PREFIX, &path, "replication")?;
        let method = request.method().clone();
        match (route, method) {
            (ReplicationRoute::KvWrite, Method::POST) => self.kv_write(request).await,
            (ReplicationRoute::ScheduleWrite, Method::POST) => self.schedule_write(request).await,
            (ReplicationRoute::KvWrite | ReplicationRoute::ScheduleWrite, method) => {
                Err(ApiError::method_not_allowed(&method, &path))
            }
            (_, Method::GET) => self.read(route, &params).await,
            (_, _) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "replication is pull-only: replicas never write back",
            )),
        }
    }

    fn log(&self, database: Database) -> Arc<GenerationLog> {
        match database {
            Database::Registry => self.registry_log.clone(),
            Database::Kv => self.kv_log.clone(),
        }
    }

    async fn read(
        &self,
        route: ReplicationRoute,
        params: &Params,
    ) -> Result<Response<HostBody>, ApiError> {
        match route {
            ReplicationRoute::Info(database) => {
                let (current, oldest) = self.log(database).generations();
                Ok(json_response(
                    StatusCode::OK,
                    &serde_json::json!({"current_generation": current, "oldest_generation": oldest}),
                ))
            }
            ReplicationRoute::Export(database) => {
                export(self.log(database), params.get("generation")).await
            }
            ReplicationRoute::Sync(database) => sync(self.log(database), params).await,
            ReplicationRoute::Bundle => {
                let hash = params.get("hash");
                let hash = ContentHash::parse(hash)
                    .map_err(|_| ApiError::bad_request(format!("invalid content hash '{hash}'")))?;
                match self.store.get(&hash).await {
                    Ok(Some(bytes)) => Ok(bytes_response(bytes)),
                    Ok(None) => Err(ApiError::not_found(format!("no bundle {hash}"))),
                    Err(e) => Err(ApiError::internal(e.to_string())),
                }
            }
            ReplicationRoute::KvWrite => Err(ApiError::no_route("kv/write")),
            ReplicationRoute::ScheduleWrite => Err(ApiError::no_route("schedules/write")),
        }
    }

    /// Applies a KV write an edge forwarded.
    async fn kv_write<B>(&self, request: Request<B>) -> Result<Response<HostBody>, ApiError>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let write: KvWrite =
            read_json(&parts.headers, body, MAX_KV_WRITE_BYTES, "KV write").await?;
        let op = write.op().map_err(ApiError::bad_request)?;
        match self
            .kv
            .apply_at(&write.scope, &write.key, op, write.max_keys)
            .await
        {
            Ok(applied) => {
                let mut response =
                    json_response(StatusCode::OK, &serde_json::json!(applied.outcome));
                // Where the edge's replica must get to before it answers its writer.
                if let Some(position) = applied.position
                    && let Ok(value) = http::HeaderValue::from_str(&position.to_string())
                {
                    response.headers_mut().insert(POSITION_HEADER, value);
                }
                Ok(response)
            }
            Err(e) => Err(ApiError::new(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "kv_write_refused",
                e.to_string(),
            )),
        }
    }
}

impl ReplicationApi {
    /// Applies a schedule write an edge forwarded; the answer says how it went (200 whenever
    /// the write was read).
    async fn schedule_write<B>(&self, request: Request<B>) -> Result<Response<HostBody>, ApiError>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let write: ScheduleWrite =
            read_json(&parts.headers, body, MAX_KV_WRITE_BYTES, "schedule write").await?;
        let answer = self.schedules.answer_forwarded(&write).await;
        Ok(json_response(StatusCode::OK, &serde_json::json!(answer)))
    }
}

/// `{db}/export/{generation}`: the image of the current generation.
async fn export(log: Arc<GenerationLog>, generation: &str) -> Result<Response<HostBody>, ApiError> {
    let generation: u32 = generation
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid generation '{generation}'")))?;
    let current = log.generations().0;
    match tokio::task::spawn_blocking(move || log.export(generation)).await {
        Ok(Ok(Some(image))) => Ok(bytes_response(image)),
        Ok(Ok(None)) => Err(ApiError::not_found(format!(
            "generation {generation} is not the current one ({current}); ask /info again"
        ))),
        Ok(Err(e)) => Err(ApiError::internal(e.to_string())),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

/// `{db}/sync/{generation}/{start}/{end}`: frames of a generation.
async fn sync(log: Arc<GenerationLog>, params: &Params) -> Result<Response<HostBody>, ApiError> {
    let parse = |name| params.get(name).parse::<u32>();
    let (Ok(generation), Ok(start), Ok(end)) = (parse("generation"), parse("start"), parse("end"))
    else {
        return Err(ApiError::bad_request(
            "use sync/{generation}/{start}/{end} with integers",
        ));
    };
    match tokio::task::spawn_blocking(move || log.pull(generation, start, end)).await {
        Ok(Ok(Pull::Frames(frames))) => Ok(bytes_response(frames)),
        // The client reads "no more frames here" from a 400 carrying the current generation
        // (the protocol's end-of-generation answer).
        Ok(Ok(Pull::End { generation })) => Ok(json_response(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"generation": generation}),
        )),
        Ok(Ok(Pull::Gone { oldest })) => Err(ApiError::new(
            StatusCode::GONE,
            "generation_gone",
            format!(
                "generation {generation} is no longer kept (oldest: {oldest}); the replica must bootstrap again"
            ),
        )),
        Ok(Ok(Pull::Ahead {
            generation: current,
        })) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "generation_ahead",
            format!(
                "the replica is at generation {generation} but this primary is at {current}: it was replicated from other data; remove the replica"
            ),
        )),
        Ok(Err(e)) => Err(ApiError::internal(e.to_string())),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
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
