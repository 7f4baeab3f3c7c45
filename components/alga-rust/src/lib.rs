//! `alga-rust`: an Alga PSA extension (world `runner` of the unversioned `alga:extension`
//! package, export `handler`) with one route per host interface, so tests — and authors coming
//! from Alga — can see each import work or be denied. It routes on the request's `http.url`
//! (path and `?query`) and always answers JSON.
//!
//! | route | what it does |
//! |---|---|
//! | any other path | echo: method, url, headers, body, the request's context and `context.get-context()` |
//! | `/trap`, `/loop`, `/oom` | panic; spin forever; allocate 1 MiB chunks forever |
//! | `/user` | `user.get-user()` and `user-v2.get-user()` |
//! | `/secrets`, `/secrets/{key}` | `secrets.list-keys()`, `secrets.get(key)` |
//! | `/storage/{ns}/{key}` GET, PUT/POST `{"value", "revision"}`, DELETE | `storage.get/put/delete` |
//! | `/storage/{ns}?cursor=` GET | `storage.list-entries` |
//! | `/fetch?url=` | `http.fetch` (GET) |
//! | `/log` | `logging.log-info/warn/error` ("alga-info", "alga-warn", "alga-error") |
//! | `/platform` | ui-proxy, scheduler, invoicing, clients, services: one entry per call |
//! | `/clients?search=&page=&page_size=&include_inactive=`, `/clients/{id}` | `clients.list-clients`, `get-client` |
//! | `/services?search=&page=&page_size=`, `/services/{id}` | `services.list-services`, `get-service` |
//! | `/invoice` POST `{client_id, items: [{service_id, quantity, description, rate}], invoice_date?, due_date?, po_number?}` | `invoicing.create-manual-invoice` (the whole result) |
//! | `/proxy?route=` GET (no payload) or POST (the body is the payload) | `ui-proxy.call-route`: `{"body": <text>}` |
//! | `/schedules` GET, POST `{endpoint, cron, timezone?, name?, payload?, enabled?}` | `scheduler.list-schedules`, `create-schedule` |
//! | `/schedules/{id}` GET, PATCH (the same fields), DELETE | `scheduler.get/update/delete-schedule` |
//! | `/endpoints` | `scheduler.get-endpoints` |
//! | `/records` GET, POST `{name, quantity}`; `/records/{id}` DELETE | the UI's records, kept in `storage` namespace `records` (seven samples on first read) |
//! | `/sync` POST (schedulable) | a scheduled run: stores `{payload, trigger, schedule_id}` under `storage` namespace `sync`, key = request id; `{"sleep_ms": n}` in the payload waits first |
//!
//! An interface's error is answered as `{"error": "<case>"}` (the WIT case name, kebab-case),
//! never as a trap: a denied capability is an ordinary error value for the guest.

use std::collections::BTreeMap;
use std::hint::black_box;

use serde_json::{Value, json};

wit_bindgen::generate!({
    path: "../../wit/runner",
    world: "runner",
});

use alga::extension::types::{
    ClientReadError, ClientSummary, ClientsListInput, CreateManualInvoiceInput, CreateScheduleInput, HttpError,
    HttpHeader, HttpRequest, ManualInvoiceItemInput, ProxyError, ScheduleInfo, SchedulerError,
    SecretError, ServiceBillingMethod, ServiceItemKind, ServiceReadError, ServiceSummary, ServicesListInput, StorageEntry, StorageError,
    UpdateScheduleInput, UserError,
};
use alga::extension::{
    clients, context, http, invoicing, logging, scheduler, secrets, services, storage, ui_proxy,
    user, user_v2,
};

struct Component;

/// `count` requests this instance served: lost with the instance.
static COUNTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

export!(Component);

impl Guest for Component {
    fn handler(request: ExecuteRequest) -> ExecuteResponse {
        let url = request.http.url.clone();
        let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = request.http.method.to_ascii_uppercase();
        let body = match segments.as_slice() {
            // The minimal route of the benchmark: no import, no JSON.
            ["ok"] => {
                return ExecuteResponse {
                    status: 200,
                    headers: vec![HttpHeader {
                        name: "content-type".into(),
                        value: "text/plain".into(),
                    }],
                    body: Some(b"ok".to_vec()),
                }
            }
            // Requests this instance served (guest memory: 1 on a fresh instance).
            ["count"] => json!({"count": COUNTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1}),
            ["trap"] => panic!("alga-rust: /trap requested a panic"),
            ["loop"] => spin(),
            ["oom"] => exhaust_memory(),
            ["user"] => user_route(),
            ["secrets"] => json!({"keys": secrets::list_keys()}),
            ["secrets", key] => secret_route(key),
            ["storage", namespace] => list_route(namespace, query_arg(query, "cursor")),
            ["storage", namespace, key] => {
                storage_route(&method, namespace, key, request.http.body.as_deref())
            }
            ["fetch"] => fetch_route(&query_arg(query, "url").unwrap_or_default()),
            ["log"] => log_route(),
            ["platform"] => platform_route(),
            ["clients"] => clients_route(query),
            ["clients", id] => match clients::get_client(id) {
                Ok(client) => json!({"item": client.as_ref().map(client_json)}),
                Err(e) => error(&e),
            },
            ["services"] => services_route(query),
            ["services", id] => match services::get_service(id) {
                Ok(service) => json!({"item": service.as_ref().map(service_json)}),
                Err(e) => error(&e),
            },
            ["invoice"] if method == "POST" => invoice_route(request.http.body.as_deref()),
            ["proxy"] => {
                let payload = (method == "POST").then(|| request.http.body.clone().unwrap_or_default());
                match ui_proxy::call_route(&query_arg(query, "route").unwrap_or_default(), payload.as_deref()) {
                    Ok(body) => json!({"body": utf8(&body)}),
                    Err(e) => error(&e),
                }
            }
            ["schedules"] => schedules_route(&method, request.http.body.as_deref()),
            ["schedules", id] => schedule_route(&method, id, request.http.body.as_deref()),
            ["endpoints"] => endpoints_route(),
            ["records"] => records_route(
                &method,
                request.http.body.as_deref(),
                request.context.request_id.as_deref(),
            ),
            ["records", id] if method == "DELETE" => delete_record(id),
            ["sync"] if method == "POST" => sync_route(&request),
            _ => return echo(&request),
        };
        json_response(200, &body, Vec::new())
    }
}

/// The WIT case name of an interface's error enum (wit-bindgen's `name()`), for JSON answers.
trait CaseName {
    /// The case's WIT name, kebab-case.
    fn case(&self) -> &'static str;
}

macro_rules! case_names {
    ($($error:ty),*) => {$(
        impl CaseName for $error {
            fn case(&self) -> &'static str { self.name() }
        }
    )*};
}

case_names!(
    SecretError,
    HttpError,
    StorageError,
    ProxyError,
    UserError,
    SchedulerError,
    ClientReadError,
    ServiceReadError
);

/// `{"error": "<case>"}`.
fn error(e: &impl CaseName) -> Value {
    json!({"error": e.case()})
}

fn json_response(status: u16, body: &Value, extra: Vec<HttpHeader>) -> ExecuteResponse {
    let mut headers = vec![header("content-type", "application/json")];
    headers.extend(extra);
    ExecuteResponse {
        status,
        headers,
        body: Some(body.to_string().into_bytes()),
    }
}

fn header(name: &str, value: &str) -> HttpHeader {
    HttpHeader {
        name: name.into(),
        value: value.into(),
    }
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The first value of `name` in a query string, percent-decoded.
fn query_arg(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A path segment with `%XX` escapes decoded (invalid escapes are kept as they are).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    utf8(&out)
}

fn context_json(
    request_id: &Option<String>,
    tenant_id: &str,
    extension_id: &str,
    install_id: &Option<String>,
    version_id: &Option<String>,
) -> Value {
    json!({
        "request_id": request_id,
        "tenant_id": tenant_id,
        "extension_id": extension_id,
        "install_id": install_id,
        "version_id": version_id,
    })
}

/// The default route: the request as the handler received it, plus `context.get-context()`.
fn echo(request: &ExecuteRequest) -> ExecuteResponse {
    let c = &request.context;
    let imported = context::get_context();
    let headers: Vec<[&str; 2]> = request
        .http
        .headers
        .iter()
        .map(|h| [h.name.as_str(), h.value.as_str()])
        .collect();
    let body = json!({
        "method": request.http.method,
        "url": request.http.url,
        "headers": headers,
        "body": request.http.body.as_deref().map(utf8),
        "context": context_json(&c.request_id, &c.tenant_id, &c.extension_id, &c.install_id, &c.version_id),
        "context_import": context_json(
            &imported.request_id,
            &imported.tenant_id,
            &imported.extension_id,
            &imported.install_id,
            &imported.version_id,
        ),
    });
    // `set-cookie` is here on purpose: the host must drop it.
    let extra = vec![header("x-ext-echo", "1"), header("set-cookie", "leak=1")];
    json_response(200, &body, extra)
}

/// Never returns; the counter goes through `black_box` so the loop cannot be removed.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates and touches 1 MiB chunks until the host's memory limit stops it.
fn exhaust_memory() -> ! {
    const CHUNK: usize = 1 << 20;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        for page in chunk.iter_mut().step_by(4096) {
            *page = 1;
        }
        chunks.push(black_box(chunk));
    }
}

fn user_route() -> Value {
    let user = match user::get_user() {
        Ok(u) => json!({
            "tenant_id": u.tenant_id,
            "client_name": u.client_name,
            "user_id": u.user_id,
            "user_email": u.user_email,
            "user_name": u.user_name,
            "user_type": u.user_type,
        }),
        Err(e) => error(&e),
    };
    let user_v2 = match user_v2::get_user() {
        Ok(u) => json!({
            "tenant_id": u.tenant_id,
            "client_name": u.client_name,
            "user_id": u.user_id,
            "user_email": u.user_email,
            "user_name": u.user_name,
            "user_type": u.user_type,
            "client_id": u.client_id,
            "additional_fields": u.additional_fields,
        }),
        Err(e) => error(&e),
    };
    json!({"user": user, "user_v2": user_v2})
}

fn secret_route(key: &str) -> Value {
    match secrets::get(key) {
        Ok(value) => json!({"value": value}),
        Err(e) => error(&e),
    }
}

fn storage_route(method: &str, namespace: &str, key: &str, body: Option<&[u8]>) -> Value {
    match method {
        "GET" => match storage::get(namespace, key) {
            Ok(entry) => json!({"value": utf8(&entry.value), "revision": entry.revision}),
            Err(e) => error(&e),
        },
        "PUT" | "POST" => {
            let input: Value = serde_json::from_slice(body.unwrap_or_default()).unwrap_or_default();
            let Some(value) = input.get("value").and_then(Value::as_str) else {
                return json!({"error": "bad-request", "message": "body must be {\"value\": \"<text>\", \"revision\": n|null}"});
            };
            let entry = StorageEntry {
                namespace: namespace.into(),
                key: key.into(),
                value: value.as_bytes().to_vec(),
                revision: input.get("revision").and_then(Value::as_u64),
            };
            match storage::put(&entry) {
                Ok(stored) => json!({"revision": stored.revision}),
                Err(e) => error(&e),
            }
        }
        "DELETE" => match storage::delete(namespace, key) {
            Ok(()) => json!({"ok": true}),
            Err(e) => error(&e),
        },
        _ => json!({"error": "method-not-allowed"}),
    }
}

fn list_route(namespace: &str, cursor: Option<String>) -> Value {
    match storage::list_entries(namespace, cursor.as_deref()) {
        Ok(entries) => {
            let entries: Vec<Value> = entries
                .iter()
                .map(|e| json!({"key": e.key, "value": utf8(&e.value), "revision": e.revision}))
                .collect();
            json!({"entries": entries})
        }
        Err(e) => error(&e),
    }
}

fn fetch_route(url: &str) -> Value {
    let request = HttpRequest {
        method: "GET".into(),
        url: url.into(),
        headers: Vec::new(),
        body: None,
    };
    match http::fetch(&request) {
        Ok(response) => json!({
            "status": response.status,
            "body": response.body.as_deref().map(utf8).unwrap_or_default(),
        }),
        Err(e) => error(&e),
    }
}

fn log_route() -> Value {
    logging::log_info("alga-info");
    logging::log_warn("alga-warn");
    logging::log_error("alga-error");
    json!({"ok": true})
}

/// `"ok"` or the error's case name, for calls returning `result<_, enum>`.
fn outcome<T, E: CaseName>(result: Result<T, E>) -> Value {
    match result {
        Ok(_) => json!("ok"),
        Err(e) => json!(e.case()),
    }
}

/// `{"success", "error"}` of a result record.
fn record(success: bool, error: Option<String>) -> Value {
    json!({"success": success, "error": error})
}

/// One call of each platform-brokered interface.
fn platform_route() -> Value {
    let schedule = scheduler::create_schedule(&CreateScheduleInput {
        endpoint: "/sync".into(),
        cron: "* * * * *".into(),
        timezone: None,
        enabled: None,
        name: Some("alga-rust sync".into()),
        payload: None,
    });
    let invoice = invoicing::create_manual_invoice(&CreateManualInvoiceInput {
        client_id: "client-1".into(),
        items: vec![ManualInvoiceItemInput {
            service_id: "service-1".into(),
            quantity: 1.0,
            description: "alga-rust sample item".into(),
            rate: 100.0,
            is_discount: None,
            discount_type: None,
            applies_to_item_id: None,
            applies_to_service_id: None,
        }],
        invoice_date: None,
        due_date: None,
        po_number: None,
    });
    let answers: BTreeMap<&str, Value> = BTreeMap::from([
        ("ui_proxy", outcome(ui_proxy::call_route("/api/x", None))),
        ("list_schedules", outcome(scheduler::list_schedules())),
        ("create_schedule", record(schedule.success, schedule.error)),
        ("create_manual_invoice", record(invoice.success, invoice.error)),
        (
            "list_clients",
            outcome(clients::list_clients(&ClientsListInput {
                search: None,
                include_inactive: None,
                page: None,
                page_size: None,
            })),
        ),
        (
            "list_services",
            outcome(services::list_services(&ServicesListInput {
                search: None,
                item_kind: None,
                is_active: None,
                billing_method: None,
                page: None,
                page_size: None,
            })),
        ),
    ]);
    json!(answers)
}

/// A numeric query argument (absent or unparsable: `None`).
fn number_arg(query: &str, name: &str) -> Option<u32> {
    query_arg(query, name).and_then(|v| v.parse().ok())
}

fn client_json(c: &ClientSummary) -> Value {
    json!({
        "client_id": c.client_id,
        "client_name": c.client_name,
        "client_type": c.client_type,
        "is_inactive": c.is_inactive,
        "default_currency_code": c.default_currency_code,
        "account_manager_id": c.account_manager_id,
        "account_manager_name": c.account_manager_name,
        "billing_email": c.billing_email,
    })
}

fn service_json(s: &ServiceSummary) -> Value {
    json!({
        "service_id": s.service_id,
        "service_name": s.service_name,
        "item_kind": match s.item_kind {
            ServiceItemKind::Service => "service",
            ServiceItemKind::Product => "product",
        },
        "billing_method": match s.billing_method {
            ServiceBillingMethod::Fixed => "fixed",
            ServiceBillingMethod::Hourly => "hourly",
            ServiceBillingMethod::Usage => "usage",
        },
        "service_type_id": s.service_type_id,
        "service_type_name": s.service_type_name,
        "default_rate": s.default_rate,
        "unit_of_measure": s.unit_of_measure,
        "is_active": s.is_active,
        "sku": s.sku,
    })
}

fn clients_route(query: &str) -> Value {
    let input = ClientsListInput {
        search: query_arg(query, "search"),
        include_inactive: query_arg(query, "include_inactive").map(|v| v == "true"),
        page: number_arg(query, "page"),
        page_size: number_arg(query, "page_size"),
    };
    match clients::list_clients(&input) {
        Ok(list) => json!({
            "items": list.items.iter().map(client_json).collect::<Vec<_>>(),
            "total_count": list.total_count,
            "page": list.page,
            "page_size": list.page_size,
        }),
        Err(e) => error(&e),
    }
}

fn services_route(query: &str) -> Value {
    let input = ServicesListInput {
        search: query_arg(query, "search"),
        item_kind: None,
        is_active: None,
        billing_method: None,
        page: number_arg(query, "page"),
        page_size: number_arg(query, "page_size"),
    };
    match services::list_services(&input) {
        Ok(list) => json!({
            "items": list.items.iter().map(service_json).collect::<Vec<_>>(),
            "total_count": list.total_count,
            "page": list.page,
            "page_size": list.page_size,
        }),
        Err(e) => error(&e),
    }
}

fn invoice_route(body: Option<&[u8]>) -> Value {
    let input: Value = serde_json::from_slice(body.unwrap_or_default()).unwrap_or_default();
    let items = input["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|item| ManualInvoiceItemInput {
            service_id: text_field(item, "service_id").unwrap_or_default(),
            quantity: item["quantity"].as_f64().unwrap_or(1.0),
            description: text_field(item, "description").unwrap_or_default(),
            rate: item["rate"].as_f64().unwrap_or(0.0),
            is_discount: item["is_discount"].as_bool(),
            discount_type: None,
            applies_to_item_id: None,
            applies_to_service_id: None,
        })
        .collect();
    let result = invoicing::create_manual_invoice(&CreateManualInvoiceInput {
        client_id: text_field(&input, "client_id").unwrap_or_default(),
        items,
        invoice_date: text_field(&input, "invoice_date"),
        due_date: text_field(&input, "due_date"),
        po_number: text_field(&input, "po_number"),
    });
    json!({
        "success": result.success,
        "invoice_id": result.invoice_id,
        "invoice_number": result.invoice_number,
        "status": result.status,
        "subtotal": result.subtotal,
        "tax": result.tax,
        "total": result.total,
        "error": result.error,
        "field_errors": result.field_errors,
    })
}

/// A schedule as JSON.
fn schedule_json(s: &ScheduleInfo) -> Value {
    json!({
        "id": s.id,
        "endpoint_method": s.endpoint_method,
        "endpoint_path": s.endpoint_path,
        "name": s.name,
        "cron": s.cron,
        "timezone": s.timezone,
        "enabled": s.enabled,
        "payload": s.payload,
        "last_run_at": s.last_run_at,
        "last_run_status": s.last_run_status,
        "last_error": s.last_error,
        "created_at": s.created_at,
    })
}

/// A string field of a JSON body; `payload` may also be given as JSON (sent as its text).
fn text_field(input: &Value, name: &str) -> Option<String> {
    match input.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// `{"success", "error", "field_errors"}` of a result record, with `field_errors` parsed.
fn write_record(success: bool, error: Option<String>, field_errors: Option<String>) -> Value {
    let fields = field_errors
        .as_deref()
        .and_then(|f| serde_json::from_str::<Value>(f).ok());
    json!({"success": success, "error": error, "field_errors": fields})
}

fn schedules_route(method: &str, body: Option<&[u8]>) -> Value {
    match method {
        "GET" => match scheduler::list_schedules() {
            Ok(list) => json!({"schedules": list.iter().map(schedule_json).collect::<Vec<_>>()}),
            Err(e) => error(&e),
        },
        "POST" => {
            let input: Value = serde_json::from_slice(body.unwrap_or_default()).unwrap_or_default();
            let result = scheduler::create_schedule(&CreateScheduleInput {
                endpoint: text_field(&input, "endpoint").unwrap_or_default(),
                cron: text_field(&input, "cron").unwrap_or_default(),
                timezone: text_field(&input, "timezone"),
                enabled: input.get("enabled").and_then(Value::as_bool),
                name: text_field(&input, "name"),
                payload: text_field(&input, "payload"),
            });
            let mut answer = write_record(result.success, result.error, result.field_errors);
            answer["schedule_id"] = json!(result.schedule_id);
            answer
        }
        _ => json!({"error": "method-not-allowed"}),
    }
}

fn schedule_route(method: &str, id: &str, body: Option<&[u8]>) -> Value {
    match method {
        "GET" => match scheduler::get_schedule(id) {
            Ok(found) => json!({"schedule": found.as_ref().map(schedule_json)}),
            Err(e) => error(&e),
        },
        "PATCH" | "PUT" => {
            let input: Value = serde_json::from_slice(body.unwrap_or_default()).unwrap_or_default();
            let result = scheduler::update_schedule(
                id,
                &UpdateScheduleInput {
                    endpoint: text_field(&input, "endpoint"),
                    cron: text_field(&input, "cron"),
                    timezone: text_field(&input, "timezone"),
                    enabled: input.get("enabled").and_then(Value::as_bool),
                    name: text_field(&input, "name"),
                    payload: text_field(&input, "payload"),
                },
            );
            write_record(result.success, result.error, result.field_errors)
        }
        "DELETE" => {
            let result = scheduler::delete_schedule(id);
            record(result.success, result.error)
        }
        _ => json!({"error": "method-not-allowed"}),
    }
}

fn endpoints_route() -> Value {
    match scheduler::get_endpoints() {
        Ok(endpoints) => {
            let endpoints: Vec<Value> = endpoints
                .iter()
                .map(|e| {
                    json!({"id": e.id, "method": e.method, "path": e.path,
                           "handler": e.handler, "schedulable": e.schedulable})
                })
                .collect();
            json!({"endpoints": endpoints})
        }
        Err(e) => error(&e),
    }
}

/// The schedulable endpoint: what a scheduled run brought, kept in storage for the caller.
fn sync_route(request: &ExecuteRequest) -> Value {
    let header = |name: &str| {
        request
            .http
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.clone())
    };
    let body = request.http.body.as_deref().map(utf8);
    let payload: Value = body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    if let Some(ms) = payload.get("sleep_ms").and_then(Value::as_u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let run = json!({
        "payload": payload,
        "trigger": header("x-alga-trigger"),
        "schedule_id": header("x-alga-schedule-id"),
    });
    let key = request
        .context
        .request_id
        .clone()
        .unwrap_or_else(|| "unknown".into());
    let stored = storage::put(&StorageEntry {
        namespace: "sync".into(),
        key,
        value: run.to_string().into_bytes(),
        revision: None,
    });
    match stored {
        Ok(_) => json!({"ok": true, "run": run}),
        Err(e) => error(&e),
    }
}

/// The namespace the UI's records live in.
const RECORDS: &str = "records";

/// Every record, seeding seven samples into an empty namespace (so the UI shows a table).
fn all_records() -> Result<Vec<Value>, StorageError> {
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = storage::list_entries(RECORDS, cursor.as_deref())?;
        let last = page.last().map(|e| e.key.clone());
        for entry in &page {
            if let Ok(mut record) = serde_json::from_slice::<Value>(&entry.value) {
                record["id"] = json!(entry.key);
                records.push(record);
            }
        }
        match last {
            Some(key) if page.len() >= 100 => cursor = Some(key),
            _ => break,
        }
    }
    if records.is_empty() {
        let samples = [
            ("Laptop", 12), ("Monitor", 30), ("Keyboard", 55), ("Mouse", 80),
            ("Docking station", 9), ("Headset", 41), ("Webcam", 23),
        ];
        for (i, (name, quantity)) in samples.iter().enumerate() {
            let id = format!("r{:04}", i + 1);
            put_record(&id, name, *quantity)?;
            records.push(json!({"id": id, "name": name, "quantity": quantity}));
        }
    }
    Ok(records)
}

fn put_record(id: &str, name: &str, quantity: i64) -> Result<(), StorageError> {
    storage::put(&StorageEntry {
        namespace: RECORDS.into(),
        key: id.into(),
        value: json!({"name": name, "quantity": quantity}).to_string().into_bytes(),
        revision: None,
    })
    .map(|_| ())
}

/// `request_id` (unique per request) names a new record.
fn records_route(method: &str, body: Option<&[u8]>, request_id: Option<&str>) -> Value {
    match method {
        "GET" => match all_records() {
            Ok(records) => json!({"records": records}),
            Err(e) => error(&e),
        },
        "POST" => {
            let input: Value = serde_json::from_slice(body.unwrap_or_default()).unwrap_or_default();
            let name = input.get("name").and_then(Value::as_str).map(str::trim).unwrap_or("");
            if name.is_empty() || name.len() > 200 {
                return json!({"error": "bad-request", "message": "name must be 1-200 characters"});
            }
            let quantity = input.get("quantity").and_then(Value::as_i64).unwrap_or(0);
            let Some(request_id) = request_id else {
                return json!({"error": "bad-request", "message": "the request has no id"});
            };
            let id = format!("r-{request_id}");
            match put_record(&id, name, quantity) {
                Ok(()) => json!({"record": {"id": id, "name": name, "quantity": quantity}}),
                Err(e) => error(&e),
            }
        }
        _ => json!({"error": "method-not-allowed"}),
    }
}

fn delete_record(id: &str) -> Value {
    match storage::delete(RECORDS, id) {
        Ok(()) => json!({"deleted": id}),
        Err(e) => error(&e),
    }
}
