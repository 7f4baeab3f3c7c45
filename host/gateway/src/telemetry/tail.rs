//! The live tail: each request of an extension, as it happens, to whoever watches it
//! (`GET /admin/v1/tenants/{t}/extensions/{e}/tail`, `alga-edge tail`).
//!
//! A subscriber gets the guest's log lines and its stdout/stderr lines while the guest runs,
//! then one summary per request (status, duration, error class, request id, version). Lines of
//! one request arrive in the order the guest wrote them.
//!
//! Requests never wait for a subscriber: every subscriber has a bounded queue, an event that
//! does not fit is dropped and counted, and the subscriber is told how many it lost before its
//! next event. With no subscriber for an extension, a request pays one atomic load.
//!
//! Secrets the request opened are masked by its journal before a line gets here; headers,
//! tokens and bodies are never part of an event.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use alga_edge_capabilities::journal::{LineSource, LiveTap};
use alga_edge_http::BoxError;
use bytes::Bytes;
use hyper::body::{Body, Frame};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How often an idle stream sends an SSE comment, so proxies keep it open and a gone client is
/// noticed (a write to its closed connection fails).
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Tail settings.
#[derive(Debug, Clone)]
pub struct TailConfig {
    /// Events queued per subscriber before new ones are dropped (and counted).
    pub buffer: usize,
    /// Subscribers the node serves at once.
    pub max_subscribers: usize,
}

impl Default for TailConfig {
    fn default() -> Self {
        Self {
            buffer: 1024,
            max_subscribers: 64,
        }
    }
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// A filter parameter is malformed.
    #[error("{0}")]
    BadFilter(String),
    /// The node already serves [`TailConfig::max_subscribers`] tails.
    #[error("this node already serves {0} tails (--tail-max-subscribers); close one and try again")]
    TooMany(usize),
}

/// Level ranks, lowest first; stdout lines count as `info`, stderr lines as `error`.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "critical"];

fn level_rank(name: &str) -> Option<u8> {
    LEVELS
        .iter()
        .position(|level| level.eq_ignore_ascii_case(name))
        .map(|rank| rank as u8)
}

/// One status condition of a `status=` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusMatch {
    /// Exactly this status.
    Exact(u16),
    /// This hundred (`5xx` → 5).
    Class(u16),
    /// Below 400 and no error class.
    Ok,
    /// 400 or above, or an error class.
    Error,
}

impl StatusMatch {
    fn matches(self, status: u16, errored: bool) -> bool {
        match self {
            Self::Exact(code) => status == code,
            Self::Class(hundred) => status / 100 == hundred,
            Self::Ok => status < 400 && !errored,
            Self::Error => status >= 400 || errored,
        }
    }
}

/// What one subscriber wants to see.
#[derive(Debug, Clone, PartialEq)]
pub struct TailFilter {
    statuses: Vec<StatusMatch>,
    min_level: u8,
    sample: f64,
}

impl Default for TailFilter {
    fn default() -> Self {
        Self {
            statuses: Vec::new(),
            min_level: 0,
            sample: 1.0,
        }
    }
}

impl TailFilter {
    /// Parses a query string: `status=` (comma-separated: `200`, `5xx`, `ok`, `error`),
    /// `level=` (least level of lines shown: `trace` … `critical`) and `sample=` (the share of
    /// requests shown, `0 < sample ≤ 1`). Unknown parameters are refused, naming them.
    pub fn parse(query: &str) -> Result<Self, TailError> {
        let mut filter = Self::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "status" => {
                    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        filter.statuses.push(parse_status(item)?);
                    }
                }
                "level" => {
                    filter.min_level = level_rank(&value).ok_or_else(|| {
                        TailError::BadFilter(format!(
                            "level `{value}` is not one of {}",
                            LEVELS.join(", ")
                        ))
                    })?;
                }
                "sample" => {
                    filter.sample = value
                        .parse::<f64>()
                        .ok()
                        .filter(|s| *s > 0.0 && *s <= 1.0)
                        .ok_or_else(|| {
                            TailError::BadFilter(format!(
                                "sample `{value}` must be a number above 0 and at most 1"
                            ))
                        })?;
                }
                other => {
                    return Err(TailError::BadFilter(format!(
                        "unknown tail parameter `{other}` (status, level and sample are known)"
                    )));
                }
            }
        }
        Ok(filter)
    }

    /// The filter as the `ready` event reports it.
    fn describe(&self) -> Value {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|s| match s {
                StatusMatch::Exact(code) => code.to_string(),
                StatusMatch::Class(hundred) => format!("{hundred}xx"),
                StatusMatch::Ok => "ok".into(),
                StatusMatch::Error => "error".into(),
            })
            .collect();
        json!({
            "status": statuses,
            "level": LEVELS[self.min_level as usize],
            "sample": self.sample,
        })
    }

    fn status_matches(&self, status: u16, errored: bool) -> bool {
        self.statuses.is_empty() || self.statuses.iter().any(|s| s.matches(status, errored))
    }
}

fn parse_status(item: &str) -> Result<StatusMatch, TailError> {
    let bad = || {
        TailError::BadFilter(format!(
            "status `{item}` is not a status (200), a class (5xx), `ok` or `error`"
        ))
    };
    match item.to_ascii_lowercase().as_str() {
        "ok" => Ok(StatusMatch::Ok),
        "error" => Ok(StatusMatch::Error),
        class if class.len() == 3 && class.ends_with("xx") => match class.as_bytes()[0] {
            digit @ b'1'..=b'5' => Ok(StatusMatch::Class(u16::from(digit - b'0'))),
            _ => Err(bad()),
        },
        code => code
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .map(StatusMatch::Exact)
            .ok_or_else(bad),
    }
}

/// One event of a tail, rendered once and shared by every subscriber it goes to.
#[derive(Debug)]
struct TailEvent {
    /// The SSE event name (`line`, `request`).
    kind: &'static str,
    /// Level rank of a line; requests are never filtered by level.
    level: u8,
    data: String,
}

/// One subscriber's side of the hub.
struct Subscriber {
    id: u64,
    filter: TailFilter,
    sender: mpsc::Sender<Arc<TailEvent>>,
    /// Shared with the subscriber's stream, which reports and resets it.
    lost: Arc<AtomicU64>,
}

impl Subscriber {
    /// Whether this subscriber sees request `request_id` at all (its `sample=`); the same
    /// answer for every event of the request.
    fn samples(&self, request_id: &str) -> bool {
        if self.filter.sample >= 1.0 {
            return true;
        }
        // A fixed hasher: the answer depends on the subscriber and the request only.
        let hash =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .hash_one((self.id, request_id));
        (hash as f64 / u64::MAX as f64) < self.filter.sample
    }

    /// Queues `event` without waiting; a full queue loses it (counted, and told later).
    fn offer(&self, event: &Arc<TailEvent>, lost: &Counter) {
        if event.kind == "line" && event.level < self.filter.min_level {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.sender.try_send(event.clone()) {
            self.lost.fetch_add(1, Ordering::Relaxed);
            lost.inc();
        }
    }
}

/// Subscribers by (tenant, extension).
type Watchers = HashMap<(String, String), Vec<Arc<Subscriber>>>;

/// The subscribers of one node, by tenant and extension.
pub struct TailHub {
    config: TailConfig,
    subscribers: RwLock<Watchers>,
    count: AtomicUsize,
    next_id: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
    /// Events dropped because a subscriber's queue was full.
    pub lost: Counter,
    /// Subscribers connected now.
    pub active: Gauge,
}

impl TailHub {
    /// A hub with `config`'s bounds.
    pub fn new(config: TailConfig) -> Self {
        Self {
            config,
            subscribers: RwLock::new(HashMap::new()),
            count: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            closed: std::sync::atomic::AtomicBool::new(false),
            lost: Counter::default(),
            active: Gauge::default(),
        }
    }

    /// Starts a tail of `extension` for `tenant`, filtered by `filter`: the SSE body that
    /// streams it. Dropping the body ends the subscription.
    pub fn subscribe(
        self: &Arc<Self>,
        tenant: &str,
        extension: &str,
        filter: TailFilter,
    ) -> Result<TailStream, TailError> {
        let max = self.config.max_subscribers;
        // Reserve a place first so two racing subscribers cannot both pass the bound.
        if self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(TailError::TooMany(max));
        }
        let (sender, receiver) = mpsc::channel(self.config.buffer.max(1));
        let key = (tenant.to_owned(), extension.to_owned());
        let ready = json!({
            "tenant": tenant,
            "extension": extension,
            "filter": filter.describe(),
            "buffer": self.config.buffer,
        })
        .to_string();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let lost = Arc::new(AtomicU64::new(0));
        // The hub (and requests in flight) hold the only senders: once the hub forgets the
        // subscriber (shutdown) and those requests end, the stream ends.
        self.write()
            .entry(key.clone())
            .or_default()
            .push(Arc::new(Subscriber {
                id,
                filter,
                sender,
                lost: lost.clone(),
            }));
        self.active.inc();
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(TailStream {
            ready: Some(ready),
            receiver,
            id,
            key,
            lost,
            hub: self.clone(),
            keepalive,
            ended: self.closed.load(Ordering::Acquire),
        })
    }

    /// Ends every tail (node shutdown): their streams finish, so connections can close.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.write().clear();
    }

    /// True while nobody tails anything on this node: requests then build no summary.
    pub fn is_idle(&self) -> bool {
        self.count.load(Ordering::Relaxed) == 0
    }

    /// The tap for a request of `tenant`'s `extension`, when someone tails it.
    pub fn tap(
        self: &Arc<Self>,
        tenant: &str,
        extension: &str,
        request_id: &str,
    ) -> Option<Arc<RequestTap>> {
        if self.is_idle() {
            return None;
        }
        let subscribers = self.watching(tenant, extension, request_id)?;
        let deferring = subscribers.iter().any(|s| !s.filter.statuses.is_empty());
        Some(Arc::new(RequestTap {
            request_id: request_id.to_owned(),
            subscribers,
            seq: AtomicU64::new(0),
            deferred: deferring.then(|| Mutex::new(Vec::new())),
            hub: self.clone(),
        }))
    }

    /// Reports the end of a request: its summary goes to every subscriber that sees it (after
    /// its held lines, for subscribers filtering by status). `tap` is the request's, when it
    /// got one; a request refused before it ran has none and gets a summary only.
    pub fn finish(
        self: &Arc<Self>,
        tenant: &str,
        extension: &str,
        tap: Option<Arc<RequestTap>>,
        summary: RequestSummary,
    ) {
        if self.is_idle() {
            return;
        }
        let (subscribers, seq, deferred) = match &tap {
            Some(tap) => (
                tap.subscribers.clone(),
                tap.seq.fetch_add(1, Ordering::Relaxed),
                tap.deferred
                    .as_ref()
                    .map(|held| {
                        std::mem::take(&mut *held.lock().unwrap_or_else(|e| e.into_inner()))
                    })
                    .unwrap_or_default(),
            ),
            None => match self.watching(tenant, extension, &summary.request_id) {
                Some(subscribers) => (subscribers, 0, Vec::new()),
                None => return,
            },
        };
        let errored = summary.error_class.is_some();
        let status = summary.status;
        let event = Arc::new(TailEvent {
            kind: "request",
            level: 0,
            data: json!({
                "request_id": summary.request_id,
                "seq": seq,
                "at_ms": now_ms(),
                "route": summary.route,
                "trigger": summary.trigger,
                "status": status,
                "duration_ms": summary.duration_ms,
                "error_class": summary.error_class,
                "version": summary.version,
                "content_hash": summary.content_hash,
            })
            .to_string(),
        });
        for subscriber in &subscribers {
            if subscriber.filter.statuses.is_empty() {
                subscriber.offer(&event, &self.lost);
            } else if subscriber.filter.status_matches(status, errored) {
                for line in &deferred {
                    subscriber.offer(line, &self.lost);
                }
                subscriber.offer(&event, &self.lost);
            }
        }
    }

    /// Subscribers of `tenant`'s `extension` that sample `request_id`; `None` when there are
    /// none.
    fn watching(
        &self,
        tenant: &str,
        extension: &str,
        request_id: &str,
    ) -> Option<Vec<Arc<Subscriber>>> {
        let subscribers = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
        let all = subscribers.get(&(tenant.to_owned(), extension.to_owned()))?;
        let sampled: Vec<_> = all
            .iter()
            .filter(|s| s.samples(request_id))
            .cloned()
            .collect();
        (!sampled.is_empty()).then_some(sampled)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Watchers> {
        self.subscribers.write().unwrap_or_else(|e| e.into_inner())
    }

    fn remove(&self, key: &(String, String), id: u64) {
        let mut subscribers = self.write();
        if let Some(list) = subscribers.get_mut(key) {
            list.retain(|s| s.id != id);
            if list.is_empty() {
                subscribers.remove(key);
            }
        }
        drop(subscribers);
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.active.dec();
    }
}

/// What a request's summary event says.
#[derive(Debug, Clone)]
pub struct RequestSummary {
    /// The request id.
    pub request_id: String,
    /// `gateway`, `execute` or `schedule`.
    pub route: &'static str,
    /// `schedule` for scheduled runs.
    pub trigger: Option<&'static str>,
    /// HTTP status answered.
    pub status: u16,
    /// Arrival to last byte.
    pub duration_ms: u64,
    /// The error code, when it failed.
    pub error_class: Option<String>,
    /// The install's version.
    pub version: String,
    /// The bundle's content hash.
    pub content_hash: String,
}

/// One request's lines on their way to its subscribers.
pub struct RequestTap {
    request_id: String,
    subscribers: Vec<Arc<Subscriber>>,
    seq: AtomicU64,
    /// Lines held until the status is known, for subscribers filtering by status (bounded by
    /// the subscriber buffer: more could not be delivered at once anyway).
    deferred: Option<Mutex<Vec<Arc<TailEvent>>>>,
    hub: Arc<TailHub>,
}

impl LiveTap for RequestTap {
    fn line(&self, source: LineSource, context: &str, text: &str) {
        let (source_name, level) = match source {
            LineSource::Log(level) => ("log", level),
            LineSource::Stdout => ("stdout", "info"),
            LineSource::Stderr => ("stderr", "error"),
        };
        let level = level.to_ascii_lowercase();
        let event = Arc::new(TailEvent {
            kind: "line",
            level: level_rank(&level).unwrap_or(2),
            data: json!({
                "request_id": self.request_id,
                "seq": self.seq.fetch_add(1, Ordering::Relaxed),
                "at_ms": now_ms(),
                "source": source_name,
                "level": level,
                "context": context,
                "text": text,
            })
            .to_string(),
        });
        for subscriber in &self.subscribers {
            if subscriber.filter.statuses.is_empty() {
                subscriber.offer(&event, &self.hub.lost);
            }
        }
        if let Some(held) = &self.deferred {
            let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
            if held.len() < self.hub.config.buffer {
                held.push(event);
            } else {
                for subscriber in self
                    .subscribers
                    .iter()
                    .filter(|s| !s.filter.statuses.is_empty())
                {
                    subscriber.lost.fetch_add(1, Ordering::Relaxed);
                    self.hub.lost.inc();
                }
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The `text/event-stream` body of one subscription: `ready` first, then `line` and `request`
/// events, `lost` (with the count) before the next event after a loss, and a comment every
/// 15 s while idle.
pub struct TailStream {
    ready: Option<String>,
    receiver: mpsc::Receiver<Arc<TailEvent>>,
    id: u64,
    key: (String, String),
    lost: Arc<AtomicU64>,
    hub: Arc<TailHub>,
    keepalive: tokio::time::Interval,
    ended: bool,
}

impl TailStream {
    /// An SSE `lost` event when events were lost since the last one sent.
    fn lost(&self, frame: &mut String) {
        let lost = self.lost.swap(0, Ordering::Relaxed);
        if lost > 0 {
            frame.push_str(&format!("event: lost\ndata: {{\"lost\":{lost}}}\n\n"));
        }
    }
}

fn sse(frame: &mut String, kind: &str, data: &str) {
    frame.push_str("event: ");
    frame.push_str(kind);
    frame.push_str("\ndata: ");
    frame.push_str(data);
    frame.push_str("\n\n");
}

impl Body for TailStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        let mut frame = String::new();
        if let Some(ready) = this.ready.take() {
            sse(&mut frame, "ready", &ready);
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(frame)))));
        }
        // Everything queued now goes out in one frame (one write for a burst of lines).
        loop {
            match this.receiver.poll_recv(cx) {
                Poll::Ready(Some(event)) => {
                    this.lost(&mut frame);
                    sse(&mut frame, event.kind, &event.data);
                    if frame.len() >= 64 * 1024 {
                        break;
                    }
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if frame.is_empty() && !this.ended {
            if this.hub.closed.load(Ordering::Acquire) {
                this.ended = true;
                return Poll::Ready(None);
            }
            if this.keepalive.poll_tick(cx).is_ready() {
                this.lost(&mut frame);
                if frame.is_empty() {
                    frame.push_str(": keepalive\n\n");
                }
            }
        }
        if frame.is_empty() {
            return if this.ended {
                Poll::Ready(None)
            } else {
                Poll::Pending
            };
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(frame)))))
    }
}

impl Drop for TailStream {
    fn drop(&mut self) {
        self.hub.remove(&self.key, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn summary(request_id: &str, status: u16) -> RequestSummary {
        RequestSummary {
            request_id: request_id.into(),
            route: "gateway",
            trigger: None,
            status,
            duration_ms: 3,
            error_class: (status >= 500).then(|| "guest_trap".into()),
            version: "1.0.0".into(),
            content_hash: "sha256:00".into(),
        }
    }

    async fn next_frame(stream: &mut TailStream) -> String {
        let frame = tokio::time::timeout(Duration::from_secs(5), stream.frame())
            .await
            .expect("a frame within 5 s")
            .expect("stream open")
            .expect("no error");
        String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
    }

    #[test]
    fn parses_filters_and_names_what_is_wrong() {
        let filter = TailFilter::parse("status=5xx,404,ok&level=WARN&sample=0.5").unwrap();
        assert_eq!(
            filter.statuses,
            [
                StatusMatch::Class(5),
                StatusMatch::Exact(404),
                StatusMatch::Ok
            ]
        );
        assert_eq!((filter.min_level, filter.sample), (3, 0.5));
        for (query, named) in [
            ("status=6xx", "6xx"),
            ("status=abc", "abc"),
            ("level=loud", "loud"),
            ("sample=0", "0"),
            ("sample=1.5", "1.5"),
            ("colour=red", "colour"),
        ] {
            let error = TailFilter::parse(query).unwrap_err().to_string();
            assert!(error.contains(named), "{query}: {error}");
        }
    }

    #[tokio::test]
    async fn lines_then_summary_in_order_and_nothing_for_others() {
        let hub = Arc::new(TailHub::new(TailConfig::default()));
        assert!(hub.tap("t", "e", "r0").is_none());
        let mut stream = hub.subscribe("t", "e", TailFilter::default()).unwrap();
        assert!(next_frame(&mut stream).await.starts_with("event: ready\n"));
        assert!(hub.tap("t", "other", "r1").is_none());
        let tap = hub.tap("t", "e", "r1").unwrap();
        tap.line(LineSource::Log("INFO"), "c", "one");
        tap.line(LineSource::Stdout, "", "two");
        hub.finish("t", "e", Some(tap), summary("r1", 200));
        let frame = next_frame(&mut stream).await;
        let kinds: Vec<&str> = frame.lines().filter(|l| l.starts_with("event: ")).collect();
        assert_eq!(kinds, ["event: line", "event: line", "event: request"]);
        let one = frame.find("\"one\"").unwrap();
        let two = frame.find("\"two\"").unwrap();
        assert!(one < two, "{frame}");
        assert!(frame.contains("\"status\":200"), "{frame}");
        drop(stream);
        assert!(hub.tap("t", "e", "r2").is_none(), "the subscriber left");
    }

    #[tokio::test]
    async fn a_full_queue_loses_events_and_says_how_many() {
        let hub = Arc::new(TailHub::new(TailConfig {
            buffer: 2,
            max_subscribers: 1,
        }));
        let mut stream = hub.subscribe("t", "e", TailFilter::default()).unwrap();
        assert!(matches!(
            hub.subscribe("t", "e", TailFilter::default()),
            Err(TailError::TooMany(1))
        ));
        next_frame(&mut stream).await;
        let tap = hub.tap("t", "e", "r").unwrap();
        for i in 0..5 {
            tap.line(LineSource::Log("INFO"), "c", &format!("line {i}"));
        }
        assert_eq!(hub.lost.get(), 3);
        let frame = next_frame(&mut stream).await;
        assert!(
            frame.starts_with("event: lost\ndata: {\"lost\":3}\n\n"),
            "{frame}"
        );
        assert!(
            frame.contains("line 0") && frame.contains("line 1"),
            "{frame}"
        );
        assert!(!frame.contains("line 2"), "{frame}");
    }

    #[tokio::test]
    async fn status_and_level_filters_hold_lines_until_the_status_is_known() {
        let hub = Arc::new(TailHub::new(TailConfig::default()));
        let mut errors = hub
            .subscribe(
                "t",
                "e",
                TailFilter::parse("status=error&level=warn").unwrap(),
            )
            .unwrap();
        next_frame(&mut errors).await;
        for (id, status) in [("fine", 200), ("broken", 500)] {
            let tap = hub.tap("t", "e", id).unwrap();
            tap.line(LineSource::Log("DEBUG"), "c", &format!("{id} debug"));
            tap.line(LineSource::Stderr, "", &format!("{id} stderr"));
            hub.finish("t", "e", Some(tap), summary(id, status));
        }
        let frame = next_frame(&mut errors).await;
        assert!(!frame.contains("fine"), "{frame}");
        assert!(!frame.contains("broken debug"), "{frame}");
        assert!(frame.contains("broken stderr"), "{frame}");
        assert!(frame.contains("\"status\":500"), "{frame}");
    }

    #[tokio::test]
    async fn sampling_keeps_a_request_whole_or_not_at_all() {
        let hub = Arc::new(TailHub::new(TailConfig {
            buffer: 100_000,
            max_subscribers: 4,
        }));
        let mut sampled = hub
            .subscribe("t", "e", TailFilter::parse("sample=0.25").unwrap())
            .unwrap();
        next_frame(&mut sampled).await;
        for i in 0..400 {
            let id = format!("req-{i}");
            if let Some(tap) = hub.tap("t", "e", &id) {
                tap.line(LineSource::Log("INFO"), "c", "x");
                hub.finish("t", "e", Some(tap), summary(&id, 200));
            } else {
                hub.finish("t", "e", None, summary(&id, 200));
            }
        }
        let frame = next_frame(&mut sampled).await;
        let lines = frame.matches("event: line").count();
        let requests = frame.matches("event: request").count();
        assert_eq!(lines, requests, "whole requests only");
        assert!(
            (40..=160).contains(&requests),
            "about a quarter of 400: {requests}"
        );
    }
}
