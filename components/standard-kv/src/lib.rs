//! `standard-kv`: a component that imports only standard WASI interfaces, at the versions Spin
//! hosts (`wasi:keyvalue@0.2.0-draft2`, `wasi:config@0.2.0-draft-2024-09-27`), so it runs under
//! Spin and on alga-edge unchanged. Every answer is JSON; store errors are reported, not trapped.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | greets with config `greeting`, counts visits (atomic increment), lists the keys |
//! | `POST /incr?key=&delta=` | adds a signed delta to a counter |
//! | `POST /race?key=` | compare-and-swap losing a race: takes a `cas`, writes the key behind its back, sees `swap` fail with a fresh `cas`, then swaps with that one |
//! | `POST /many` (body: JSON object) then `GET /many?keys=a,b` | batch set, then batch get |
//! | `GET /keys?cursor=` | one page of keys |

use std::collections::BTreeMap;

use serde_json::{Value, json};
use wstd::http::{Body, Error, Method, Request, Response};

wit_bindgen::generate!({
    path: "../../wit/spin-standard",
    world: "alga:spin-standard/imports",
    generate_all,
});

use wasi::config::store as config;
use wasi::keyvalue::{atomics, batch, store as kv};

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>, Error> {
    let query: BTreeMap<String, String> =
        form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let arg = |name: &str| query.get(name).cloned().unwrap_or_default();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let body = request.body_mut().contents().await?.to_vec();

    let answer = match (method, path.as_str()) {
        (Method::GET, "/") => visit(),
        (Method::POST, "/incr") => open().and_then(|bucket| {
            let delta = arg("delta").parse::<i64>().map_err(|e| e.to_string())?;
            atomics::increment(&bucket, &arg("key"), delta)
                .map(|value| json!({"value": value}))
                .map_err(store_error)
        }),
        (Method::POST, "/race") => open().and_then(|bucket| race(&bucket, &arg("key"))),
        (Method::POST, "/many") => open().and_then(|bucket| {
            let pairs: BTreeMap<String, String> =
                serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            let pairs: Vec<(String, Vec<u8>)> = pairs
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            batch::set_many(&bucket, &pairs)
                .map(|()| json!({"set": pairs.len()}))
                .map_err(store_error)
        }),
        (Method::GET, "/many") => open().and_then(|bucket| {
            let keys: Vec<String> = arg("keys").split(',').map(str::to_owned).collect();
            batch::get_many(&bucket, &keys)
                .map(|found| {
                    let found: Vec<Value> = found
                        .into_iter()
                        .map(|(key, value)| {
                            json!([key, value.map(|v| String::from_utf8_lossy(&v).into_owned())])
                        })
                        .collect();
                    json!({"found": found})
                })
                .map_err(store_error)
        }),
        (Method::GET, "/keys") => open().and_then(|bucket| {
            let cursor = query.get("cursor").cloned();
            bucket
                .list_keys(cursor.as_deref())
                .map(|page| json!({"keys": page.keys, "cursor": page.cursor}))
                .map_err(store_error)
        }),
        _ => Err(format!("no route {path}")),
    };
    let value = match answer {
        Ok(mut value) => {
            value["ok"] = json!(true);
            value
        }
        Err(error) => json!({"ok": false, "error": error}),
    };
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))
        .map_err(Error::from)
}

fn open() -> Result<kv::Bucket, String> {
    kv::open("default").map_err(store_error)
}

fn store_error(error: kv::Error) -> String {
    match error {
        kv::Error::NoSuchStore => "no-such-store".into(),
        kv::Error::AccessDenied => "access-denied".into(),
        kv::Error::Other(message) => format!("other: {message}"),
    }
}

fn visit() -> Result<Value, String> {
    let greeting = match config::get("greeting") {
        Ok(Some(value)) => value,
        Ok(None) => "Hello".to_owned(),
        Err(config::Error::Upstream(message) | config::Error::Io(message)) => {
            return Err(format!("config: {message}"));
        }
    };
    let bucket = open()?;
    let visits = atomics::increment(&bucket, "visits", 1).map_err(store_error)?;
    let keys = bucket.list_keys(None).map_err(store_error)?.keys;
    Ok(json!({"greeting": greeting, "visits": visits, "keys": keys}))
}

fn race(bucket: &kv::Bucket, key: &str) -> Result<Value, String> {
    let text = |value: Option<Vec<u8>>| value.map(|v| String::from_utf8_lossy(&v).into_owned());
    let cas = atomics::Cas::new(bucket, key).map_err(store_error)?;
    let before = text(cas.current().map_err(store_error)?);
    // Someone else writes the key after the cas was taken.
    bucket.set(key, b"intervening").map_err(store_error)?;
    let fresh = match atomics::swap(cas, b"late") {
        Ok(()) => return Err("the swap over a stale value succeeded".into()),
        Err(atomics::CasError::StoreError(e)) => return Err(store_error(e)),
        Err(atomics::CasError::CasFailed(fresh)) => fresh,
    };
    let seen = text(fresh.current().map_err(store_error)?);
    match atomics::swap(fresh, b"late") {
        Ok(()) => {}
        Err(atomics::CasError::StoreError(e)) => return Err(store_error(e)),
        Err(atomics::CasError::CasFailed(_)) => return Err("the second swap failed".into()),
    }
    let after = text(bucket.get(key).map_err(store_error)?);
    Ok(json!({"before": before, "first": "cas-failed", "seen": seen, "after": after}))
}
