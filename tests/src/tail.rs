//! A live-tail subscriber for tests: reads a node's Server-Sent Events on a thread of its own
//! and hands them over through a channel, so every wait is bounded.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Node;
use crate::publishing::ADMIN_TOKEN;

/// One event: its SSE name (`ready`, `line`, `request`, `lost`) and its data.
pub type Event = (String, Value);

/// A subscriber reading everything the node sends.
pub struct Tail {
    events: mpsc::Receiver<Event>,
    /// The `ready` event's data.
    pub ready: Value,
}

/// The admin route of `tenant`'s `extension` tail with `query` (may be empty).
pub fn route(tenant: &str, extension: &str, query: &str) -> String {
    let sep = if query.is_empty() { "" } else { "?" };
    format!("/admin/v1/tenants/{tenant}/extensions/{extension}/tail{sep}{query}")
}

impl Tail {
    /// Subscribes to `node`'s tail of `tenant`'s `extension` filtered by `query`; returns once
    /// the node confirmed the subscription (its `ready` event), so nothing after this is
    /// missed. The stream is read for at most `limit`.
    pub fn open(node: &Node, tenant: &str, extension: &str, query: &str, limit: Duration) -> Tail {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(limit))
            .build()
            .into();
        let url = node.url(&route(tenant, extension, query));
        let response = agent
            .get(&url)
            .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status(), 200, "GET {url}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(content_type, "text/event-stream");
        let (sender, events) = mpsc::channel();
        let reader = BufReader::new(response.into_body().into_reader());
        std::thread::spawn(move || read_events(reader, sender));
        let (kind, ready) = events
            .recv_timeout(Duration::from_secs(30))
            .expect("the tail's ready event within 30 s");
        assert_eq!(kind, "ready", "{ready}");
        Tail { events, ready }
    }

    /// Every event up to and including the `request` summary of `request_id` (events of other
    /// requests are skipped; `lost` events are kept); fails the test after `limit`.
    pub fn request(&self, request_id: &str, limit: Duration) -> Vec<Event> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (kind, data) = self.events.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no summary of request {request_id} within {limit:?}; saw {seen:?}")
            });
            let mine = data["request_id"] == request_id;
            if mine || kind == "lost" {
                seen.push((kind.clone(), data));
            }
            if mine && kind == "request" {
                return seen;
            }
        }
    }

    /// Whatever arrives within `wait` (to show that something does not).
    pub fn drain(&self, wait: Duration) -> Vec<Event> {
        let deadline = Instant::now() + wait;
        let mut seen = Vec::new();
        while let Ok(event) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            seen.push(event);
        }
        seen
    }
}

fn read_events(reader: impl BufRead, sender: mpsc::Sender<Event>) {
    let (mut kind, mut data) = (String::new(), String::new());
    for line in reader.lines() {
        let Ok(line) = line else { return };
        if line.is_empty() {
            if !data.is_empty() {
                let value = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("tail data is not JSON ({e}): {data}"));
                if sender.send((std::mem::take(&mut kind), value)).is_err() {
                    return;
                }
            }
            kind.clear();
            data.clear();
        } else if let Some(value) = line.strip_prefix("event: ") {
            value.clone_into(&mut kind);
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push_str(value);
        }
    }
}

/// A subscriber that sends its request and then never reads a byte: the node's writes to it
/// fill the socket buffers, then its queue.
pub fn stalled(node: &Node, tenant: &str, extension: &str) -> TcpStream {
    let mut stream = TcpStream::connect(node.addr()).expect("connect to the node");
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\r\n",
        route(tenant, extension, "")
    );
    stream
        .write_all(request.as_bytes())
        .expect("send the tail request");
    stream
}
