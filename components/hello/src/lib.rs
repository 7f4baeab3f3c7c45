//! `hello`: answers every request with JSON describing what the component saw — method, path
//! (gateway prefix already removed), query, forwarded headers, body — and the Alga request
//! context, and how many requests this instance has served (`instance_requests`: 1 on a fresh
//! instance, counting up when the node reuses instances).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};
use wstd::http::{Body, Error, Request, Response};

/// Requests this instance has served: guest memory, so it persists only while the instance does.
static SERVED: AtomicU64 = AtomicU64::new(0);

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>, Error> {
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    // The request context through the guest SDK (alga:extension/context).
    let ctx = alga_extension::context();
    // A body over the gateway's cap fails this read; the error ends the request.
    let body_text = String::from_utf8_lossy(request.body_mut().contents().await?).into_owned();
    let uri = request.uri();
    let raw_query = uri.query().unwrap_or("");
    let query: Map<String, Value> = form_urlencoded::parse(raw_query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let headers: Map<String, Value> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), Value::String(value))
        })
        .collect();

    let body = json!({
        "greeting": format!("Hello, {}! This is {}.", ctx.tenant_id, ctx.extension_id),
        "method": request.method().as_str(),
        "path": uri.path(),
        "raw_query": raw_query,
        "query": query,
        "headers": headers,
        "body": body_text,
        "instance_requests": served,
        "context": {
            "tenant_id": ctx.tenant_id,
            "extension_id": ctx.extension_id,
            "install_id": ctx.install_id,
            "version_id": ctx.version_id,
            "content_hash": ctx.content_hash,
            "request_id": ctx.request_id,
            "user_id": ctx.user_id,
        },
    });

    // `?response_header=name:value` (repeatable) adds response headers, so tests can check
    // which ones the gateway lets through.
    let mut response = Response::builder().header("content-type", "application/json");
    for (key, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        if key == "response_header"
            && let Some((name, value)) = value.split_once(':')
        {
            response = response.header(name.trim(), value.trim());
        }
    }
    Ok(response.body(Body::from_json(&body)?)?)
}
