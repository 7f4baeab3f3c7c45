//! `faulty-p3`: a WASIp3 component (spin-sdk 7, `wasi:http/handler@0.3.0`) for the engine tests.
//!
//! - `GET /stream?kib=N`: N KiB in 1 KiB chunks, written by a task the handler spawns after it
//!   has returned the response head (WASIp3 bodies outlive the handler call).
//! - `POST /echo`: the request body back, with its length in `x-ext-received-bytes`.
//! - `GET /loop`: spins forever (the node's deadline must stop it).
//! - `GET /trap`: panics (a trap; the message goes to stderr).
//! - `GET /fetch?url=U`: GET `U` through the host's egress checks (WASIp3 `wasi:http/client`):
//!   `{"ok":true,"status":…,"body":…}` or `{"ok":false,"error":"<error code>"}`.
//! - `GET /count`: how many `/count` requests this instance has served (1 on a fresh instance).
//! - anything else: `ok`, like `faulty`'s default route (the bench compares the two ABIs on it).

use futures::SinkExt;
use spin_sdk::http::body::{IncomingBodyExt, stream};
use spin_sdk::http::{EmptyBody, IntoResponse, Request, Response, send};
use spin_sdk::http_service;

/// `/count` requests this instance served: guest memory, lost with the instance.
static COUNTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[http_service]
async fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    Ok(match path.as_str() {
        "/stream" => {
            let kib: usize = query
                .strip_prefix("kib=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let (mut sender, body) = stream::<Vec<u8>>();
            spin_sdk::wasip3::spawn(async move {
                for i in 0..kib {
                    let chunk = vec![b'a' + (i % 26) as u8; 1024];
                    if sender.send(chunk).await.is_err() {
                        break;
                    }
                }
            });
            Response::builder()
                .header("content-type", "application/octet-stream")
                .body(spin_sdk::http::box_body(body))?
        }
        "/echo" => {
            let bytes = request.into_body().bytes().await?;
            Response::builder()
                .header("x-ext-received-bytes", bytes.len().to_string())
                .body(spin_sdk::http::box_body(http_body_util::Full::new(bytes)))?
        }
        "/fetch" => {
            let url = form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "url")
                .map(|(_, url)| url.into_owned())
                .unwrap_or_default();
            let outbound = Request::get(url).body(EmptyBody::new())?;
            let answer = match send(outbound).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.into_body().bytes().await {
                        Ok(body) => serde_json::json!({
                            "ok": true,
                            "status": status,
                            "body": String::from_utf8_lossy(&body),
                        }),
                        Err(code) => serde_json::json!({"ok": false, "error": format!("{code:?}")}),
                    }
                }
                Err(code) => serde_json::json!({"ok": false, "error": format!("{code:?}")}),
            };
            Response::builder()
                .header("content-type", "application/json")
                .body(spin_sdk::http::box_body(http_body_util::Full::new(
                    bytes::Bytes::from(answer.to_string()),
                )))?
        }
        "/loop" => {
            let mut spins = 0u64;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        "/count" => {
            let n = COUNTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            Response::builder().body(spin_sdk::http::box_body(http_body_util::Full::new(
                bytes::Bytes::from(format!("{n}\n")),
            )))?
        }
        "/trap" => panic!("faulty-p3: deliberate trap"),
        _ => Response::builder().body(spin_sdk::http::box_body(http_body_util::Full::new(
            bytes::Bytes::from_static(b"ok\n"),
        )))?,
    })
}
