//! `capabilities`: one route per host capability, so tests (and authors reading this) can see
//! each one work or be denied. Every answer is `200` JSON: `{"ok": true, …}` or
//! `{"ok": false, "error": "…"}` with the interface's own error, because a denied capability is
//! an ordinary error value for the guest, never a trap.
//!
//! Keys, names and URLs travel in the query string (percent-encoded), so any bytes can be tried.
//!
//! | route | capability |
//! |---|---|
//! | `GET/PUT/DELETE /kv?bucket=&key=` (PUT body = value) | `wasi:keyvalue/store` |
//! | `GET /kv/keys?bucket=&cursor=` | `wasi:keyvalue/store` list-keys |
//! | `POST /kv/incr?bucket=&key=&delta=` | `wasi:keyvalue/atomics` |
//! | `POST /kv/batch?bucket=` (body: JSON object to set) then `GET /kv/batch?bucket=&keys=a,b` | `wasi:keyvalue/batch` |
//! | `GET /config?key=`, `GET /config/all` | `wasi:config/store` |
//! | `GET /secret?name=`, `GET /secret/keys` | `alga:extension/secrets` |
//! | `GET /secret?name=&echo=1` | the same, then logs and prints the value (a careless guest, to show it masked) |
//! | `POST /log?level=&count=&stdout=1&stderr=1` (body = message) | `wasi:logging/logging` (`count` lines, each also printed to stdout/stderr when asked) |
//! | `GET /fetch?url=` | `wasi:http/outgoing-handler` |
//! | `GET /context` | `alga:extension/context` |

use std::collections::BTreeMap;

use serde_json::{Value, json};
use wstd::http::{Body, Client, Error, Method, Request, Response};

wit_bindgen::generate!({
    path: "../../wit",
    world: "alga:extension/capability-imports",
    generate_all,
});

use alga::extension::{context, secrets};
use wasi::config::store as config;
use wasi::keyvalue::{atomics, batch, store as kv};
use wasi::logging::logging;

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
        (Method::GET, "/kv") => open(&arg("bucket")).and_then(|b| {
            b.get(&arg("key"))
                .map_err(kv_error)
                .map(|value| match value {
                    Some(v) => json!({"found": true, "value": String::from_utf8_lossy(&v)}),
                    None => json!({"found": false}),
                })
        }),
        (Method::PUT, "/kv") => open(&arg("bucket")).and_then(|b| {
            b.set(&arg("key"), &body)
                .map_err(kv_error)
                .map(|()| json!({}))
        }),
        (Method::DELETE, "/kv") => open(&arg("bucket"))
            .and_then(|b| b.delete(&arg("key")).map_err(kv_error).map(|()| json!({}))),
        (Method::GET, "/kv/exists") => open(&arg("bucket")).and_then(|b| {
            b.exists(&arg("key"))
                .map_err(kv_error)
                .map(|e| json!({"exists": e}))
        }),
        (Method::GET, "/kv/keys") => open(&arg("bucket")).and_then(|b| {
            let cursor = query.get("cursor").and_then(|c| c.parse().ok());
            b.list_keys(cursor)
                .map_err(kv_error)
                .map(|page| json!({"keys": page.keys, "cursor": page.cursor}))
        }),
        (Method::POST, "/kv/incr") => open(&arg("bucket")).and_then(|b| {
            let delta = arg("delta").parse().unwrap_or(1);
            atomics::increment(&b, &arg("key"), delta)
                .map_err(kv_error)
                .map(|value| json!({"value": value}))
        }),
        (Method::POST, "/kv/batch") => open(&arg("bucket")).and_then(|b| {
            let pairs: BTreeMap<String, String> =
                serde_json::from_slice(&body).map_err(|e| format!("bad JSON body: {e}"))?;
            let pairs: Vec<(String, Vec<u8>)> = pairs
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            batch::set_many(&b, &pairs)
                .map_err(kv_error)
                .map(|()| json!({}))
        }),
        (Method::GET, "/kv/batch") => open(&arg("bucket")).and_then(|b| {
            let keys: Vec<String> = arg("keys").split(',').map(str::to_owned).collect();
            batch::get_many(&b, &keys).map_err(kv_error).map(|found| {
                let values: Vec<Value> = found
                    .into_iter()
                    .map(|entry| match entry {
                        Some((k, v)) => json!([k, String::from_utf8_lossy(&v)]),
                        None => Value::Null,
                    })
                    .collect();
                json!({"values": values})
            })
        }),
        (Method::GET, "/config") => config::get(&arg("key"))
            .map(|value| json!({"value": value}))
            .map_err(|e| format!("{e:?}")),
        (Method::GET, "/config/all") => config::get_all()
            .map(|pairs| json!({"values": pairs.into_iter().collect::<BTreeMap<_, _>>()}))
            .map_err(|e| format!("{e:?}")),
        (Method::GET, "/secret") => secrets::get(&arg("name"))
            .inspect(|value| {
                if arg("echo") == "1" {
                    let value = value.as_deref().unwrap_or_default();
                    logging::log(logging::Level::Info, "sample", &format!("secret is {value}"));
                    println!("stdout secret {value}");
                    eprintln!("stderr secret {value}");
                }
            })
            .map(|value| json!({"value": value}))
            .map_err(|e| format!("{e:?}")),
        (Method::GET, "/secret/keys") => secrets::list_keys()
            .map(|names| json!({"names": names}))
            .map_err(|e| format!("{e:?}")),
        (Method::POST, "/log") => {
            let level = match arg("level").as_str() {
                "trace" => logging::Level::Trace,
                "debug" => logging::Level::Debug,
                "warn" => logging::Level::Warn,
                "error" => logging::Level::Error,
                "critical" => logging::Level::Critical,
                _ => logging::Level::Info,
            };
            let message = String::from_utf8_lossy(&body);
            let count: u32 = arg("count").parse().unwrap_or(1);
            for i in 0..count {
                let line = if count > 1 {
                    format!("{message} #{i}")
                } else {
                    message.to_string()
                };
                logging::log(level, "sample", &line);
                if arg("stdout") == "1" {
                    println!("stdout {line}");
                }
                if arg("stderr") == "1" {
                    eprintln!("stderr {line}");
                }
            }
            Ok(json!({"lines": count}))
        }
        (Method::GET, "/fetch") => fetch(&arg("url")).await,
        (Method::GET, "/context") => {
            let ctx = context::get();
            Ok(
                json!({"tenant_id": ctx.tenant_id, "extension_id": ctx.extension_id,
                      "install_id": ctx.install_id, "request_id": ctx.request_id}),
            )
        }
        _ => Err(format!("no route {path}")),
    };

    let mut value = match answer {
        Ok(value) => value,
        Err(error) => json!({"ok": false, "error": error}),
    };
    if value.get("ok").is_none() {
        value["ok"] = json!(true);
    }
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))
        .map_err(Error::from)
}

fn open(bucket: &str) -> Result<kv::Bucket, String> {
    kv::open(bucket).map_err(kv_error)
}

fn kv_error(error: kv::Error) -> String {
    match error {
        kv::Error::NoSuchStore => "no-such-store".into(),
        kv::Error::AccessDenied => "access-denied".into(),
        kv::Error::Other(message) => format!("other: {message}"),
    }
}

async fn fetch(url: &str) -> Result<Value, String> {
    let request = Request::get(url)
        .body(Body::empty())
        .map_err(|e| format!("bad url: {e}"))?;
    let mut response = Client::new()
        .send(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .contents()
        .await
        .map_err(|e| format!("reading the body: {e:?}"))?;
    Ok(json!({"status": status, "body": String::from_utf8_lossy(body)}))
}
