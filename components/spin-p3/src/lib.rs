//! `spin-p3`: a WASIp3 component written against spin-sdk 7 only. It exports
//! `wasi:http/handler@0.3.0` and imports spin-sdk 7's `spin:key-value/key-value@3.0.0` and
//! `spin:variables/variables@3.0.0` (async functions, keys as a stream), which alga-edge maps
//! onto its KV (`cap:storage.kv`) and config (`cap:config.get`) capabilities.
//!
//! `GET /…` greets with the variable `greeting` and counts visits in the default store;
//! `DELETE /` forgets the count. Every answer lists the store's keys and echoes the path.

use spin_sdk::http::{IntoResponse, Method, Request, StatusCode};
use spin_sdk::http_service;
use spin_sdk::key_value::Store;
use spin_sdk::variables;

#[http_service]
async fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let store = Store::open_default().await?;
    let path = request.uri().path().to_owned();
    let visits = if request.method() == Method::DELETE {
        store.delete("visits").await?;
        0
    } else {
        let visits = store
            .get("visits")
            .await?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        store.set("visits", visits.to_string().as_bytes()).await?;
        visits
    };
    let greeting = match variables::get("greeting").await {
        Ok(value) => value,
        Err(variables::Error::Undefined(_)) => "Hello".to_owned(),
        Err(other) => return Ok((StatusCode::FORBIDDEN, format!("variables: {other:?}"))),
    };
    let exists = store.exists("visits").await?;
    let mut keys = store.get_keys().await.collect().await?;
    keys.sort();
    let body = serde_json::json!({
        "greeting": greeting,
        "visits": visits,
        "exists": exists,
        "keys": keys,
        "path": path,
        "wasi": "p3",
    });
    Ok((StatusCode::OK, body.to_string()))
}
