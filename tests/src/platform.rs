//! A loopback stand-in for Alga PSA's server as the platform broker sees it: the internal
//! endpoints `POST /api/internal/ext-{clients,services,invoicing}/install/{installId}` (checking
//! `x-runner-auth`, answering with Alga's shapes) and a ui-proxy echo under `/ui-proxy/`. It
//! records every call (method, path, headers, body) and can be made slow, down, oversized,
//! malformed or failing with [`PlatformServer::set_mode`].

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The capabilities the `alga-rust` sample's platform imports need (its manifest declares them).
pub const PLATFORM_CAPS: [&str; 5] = [
    "cap:secrets.get",
    "cap:ui.proxy",
    "cap:invoice.manual.create",
    "cap:client.read",
    "cap:service.read",
];

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    /// Method.
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl RecordedCall {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// How the server answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Like Alga's server.
    Normal,
    /// Like Alga's server, after this long.
    Slow(Duration),
    /// Closes every connection without answering.
    Down,
    /// 200 with a JSON body of this many bytes.
    Oversized(usize),
    /// 200 with JSON of the wrong shape for the operation.
    Malformed,
    /// 200 with a body that is not JSON.
    NotJson,
    /// This status with `{"error": "refused by the test"}`.
    Status(u16),
}

/// The test platform: a loopback HTTP server until dropped (its accept loop also stops by
/// itself after five minutes).
pub struct PlatformServer {
    /// Its loopback port.
    pub port: u16,
    /// The `x-runner-auth` it requires of internal calls.
    pub token: String,
    calls: Arc<Mutex<Vec<RecordedCall>>>,
    mode: Arc<Mutex<Mode>>,
    invoices: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl PlatformServer {
    /// Starts the server on a random loopback port, requiring `token`.
    pub fn start(token: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let server = Self {
            port: listener.local_addr().unwrap().port(),
            token: token.to_owned(),
            calls: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Normal)),
            invoices: Arc::default(),
            stop: Arc::default(),
        };
        let shared = Shared {
            token: server.token.clone(),
            calls: server.calls.clone(),
            mode: server.mode.clone(),
            invoices: server.invoices.clone(),
        };
        let stop = server.stop.clone();
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(300);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let shared = shared.clone();
                // One thread per connection, so a slow answer does not hold the others.
                std::thread::spawn(move || shared.serve(stream));
            }
        });
        server
    }

    /// Origin of the internal API (`STORAGE_API_BASE_URL`).
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The ui-proxy base (`UI_PROXY_BASE_URL`).
    pub fn ui_proxy_base(&self) -> String {
        format!("{}/ui-proxy", self.base())
    }

    /// Changes how the server answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls.lock().unwrap().clone()
    }

    /// Every call so far, forgetting them.
    pub fn take_calls(&self) -> Vec<RecordedCall> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl Drop for PlatformServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct Shared {
    token: String,
    calls: Arc<Mutex<Vec<RecordedCall>>>,
    mode: Arc<Mutex<Mode>>,
    invoices: Arc<AtomicUsize>,
}

impl Shared {
    fn serve(&self, mut stream: TcpStream) {
        let mode = self.mode.lock().unwrap().clone();
        if mode == Mode::Down {
            return; // dropped: the connection closes unanswered
        }
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let Some(call) = read_request(&mut stream) else {
            return;
        };
        self.calls.lock().unwrap().push(call.clone());
        let (status, body) = match mode {
            Mode::Slow(delay) => {
                std::thread::sleep(delay);
                self.answer(&call)
            }
            Mode::Oversized(size) => {
                let pad = size.saturating_sub(10);
                (200, format!("{{\"pad\":\"{}\"}}", "x".repeat(pad)))
            }
            Mode::Malformed => (200, malformed(&call).to_string()),
            Mode::NotJson => (200, "<html>upstream error</html>".to_owned()),
            Mode::Status(status) => (status, json!({"error": "refused by the test"}).to_string()),
            Mode::Normal | Mode::Down => self.answer(&call),
        };
        let reason = if status < 400 { "OK" } else { "Error" };
        let _ = write!(
            stream,
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }

    /// What Alga's server would answer.
    fn answer(&self, call: &RecordedCall) -> (u16, String) {
        let path = call.target.split('?').next().unwrap_or_default();
        if let Some(rest) = path.strip_prefix("/ui-proxy/") {
            if rest.ends_with("/missing") {
                return (404, json!({"error": "no such route"}).to_string());
            }
            let answer = json!({
                "method": call.method,
                "target": call.target,
                "body": String::from_utf8_lossy(&call.body),
            });
            return (200, answer.to_string());
        }
        let Some(kind) = path
            .strip_prefix("/api/internal/ext-")
            .and_then(|rest| rest.split('/').next())
        else {
            return (404, json!({"error": "not found"}).to_string());
        };
        if call.header("x-runner-auth") != Some(self.token.as_str()) {
            return (401, json!({"error": "Unauthorized"}).to_string());
        }
        let body = call.json();
        let input = &body["input"];
        let answer = match (kind, body["operation"].as_str().unwrap_or_default()) {
            ("clients", "list") => page(clients(), input, "clientName"),
            ("clients", "get") => get(clients(), "clientId", &input["clientId"]),
            ("services", "list") => page(services(), input, "serviceName"),
            ("services", "get") => get(services(), "serviceId", &input["serviceId"]),
            ("invoicing", "createManualInvoice") => self.invoice(&body),
            _ => return (400, json!({"error": "unknown operation"}).to_string()),
        };
        (200, answer.to_string())
    }

    fn invoice(&self, body: &Value) -> Value {
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return json!({"success": false, "error": "Validation failed",
                "fieldErrors": {"items": "at least one item is required"}});
        }
        let subtotal: f64 = items
            .iter()
            .map(|i| i["quantity"].as_f64().unwrap_or(0.0) * i["rate"].as_f64().unwrap_or(0.0))
            .sum();
        let n = self.invoices.fetch_add(1, Ordering::Relaxed) + 1;
        json!({"success": true, "invoice": {"invoiceId": format!("inv-{n}"),
            "invoiceNumber": format!("INV-{n:04}"), "status": "draft",
            "subtotal": subtotal, "tax": 0, "total": subtotal}})
    }
}

fn clients() -> Vec<Value> {
    vec![
        json!({"clientId": "c-1", "clientName": "Acme Corp", "clientType": "company",
            "isInactive": false, "defaultCurrencyCode": "USD", "billingEmail": "billing@acme.test"}),
        json!({"clientId": "c-2", "clientName": "Globex", "clientType": "company",
            "isInactive": false, "defaultCurrencyCode": "EUR", "accountManagerName": "Hank"}),
        json!({"clientId": "c-3", "clientName": "Initech (old)", "isInactive": true}),
    ]
}

fn services() -> Vec<Value> {
    vec![
        json!({"serviceId": "s-1", "serviceName": "Managed backup", "itemKind": "service",
            "billingMethod": "fixed", "defaultRate": 50, "unitOfMeasure": "month", "isActive": true,
            "sku": "BK-1"}),
        json!({"serviceId": "s-2", "serviceName": "Router", "itemKind": "product",
            "billingMethod": "usage", "defaultRate": 120.5, "unitOfMeasure": "unit", "isActive": true}),
    ]
}

/// A page of `all` filtered by `input.search` on `name` (and `includeInactive` for clients).
fn page(all: Vec<Value>, input: &Value, name: &str) -> Value {
    let search = input["search"].as_str().unwrap_or_default().to_lowercase();
    let inactive = input["includeInactive"].as_bool().unwrap_or(false);
    let matched: Vec<Value> = all
        .into_iter()
        .filter(|item| {
            item[name]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .contains(&search)
        })
        .filter(|item| inactive || !item["isInactive"].as_bool().unwrap_or(false))
        .collect();
    let page = input["page"].as_u64().unwrap_or(1).max(1) as usize;
    let size = input["pageSize"].as_u64().unwrap_or(25).max(1) as usize;
    let items: Vec<Value> = matched
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .cloned()
        .collect();
    json!({"items": items, "totalCount": matched.len(), "page": page, "pageSize": size})
}

fn get(all: Vec<Value>, key: &str, id: &Value) -> Value {
    json!({"item": all.into_iter().find(|item| &item[key] == id)})
}

/// JSON of the wrong shape for the call's operation.
fn malformed(call: &RecordedCall) -> Value {
    let body = call.json();
    match (call.target.as_str(), body["operation"].as_str()) {
        (t, Some("get")) if t.contains("ext-clients") => json!({"item": "c-1"}),
        (t, _) if t.contains("ext-clients") => {
            json!({"items": [{"clientId": 42, "clientName": "Acme"}], "totalCount": 1})
        }
        (t, _) if t.contains("ext-services") => {
            json!({"items": [{"serviceId": "s", "serviceName": "x", "itemKind": "gift", "billingMethod": "fixed"}]})
        }
        (t, _) if t.contains("ext-invoicing") => json!({"success": "yes", "invoiceId": 7}),
        _ => json!(["not", "an", "object"]),
    }
}

fn read_request(stream: &mut TcpStream) -> Option<RecordedCall> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 65536 || stream.read(&mut byte).ok()? != 1 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let (method, target) = (start.next()?.to_owned(), start.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some(RecordedCall {
        method,
        target,
        headers,
        body,
    })
}
