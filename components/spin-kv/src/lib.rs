//! `spin-kv`: a component written against spin-sdk 5.2 only. `GET /` greets with the Spin
//! variable `greeting` and counts visits in the default Spin key-value store; it imports
//! `fermyon:spin/key-value@2.0.0` and `fermyon:spin/variables@2.0.0`, which alga-edge maps
//! onto its KV (`cap:storage.kv`) and config (`cap:config.get`) capabilities.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;
use spin_sdk::variables;

#[http_component]
fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let store = Store::open_default()?;
    let visits = store
        .get("visits")?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    store.set("visits", visits.to_string().as_bytes())?;
    let greeting = variables::get("greeting").unwrap_or_else(|_| "Hello".to_owned());
    let keys = store.get_keys()?.len();
    let body = format!(
        r#"{{"greeting":"{greeting}","visits":{visits},"keys":{keys},"path":"{}"}}"#,
        request.path()
    );
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(body)
        .build())
}
