//! {{name}}: an Alga Edge extension (scaffolded by `alga-edge ext new`).

use alga_extension::http::{Body, Error, Request, Response};
use alga_extension::{Params, Router, config, json, kv, log};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    Router::new()
        .get("/", hello)
        .post("/visits", visit)
        .handle(request)
        .await
}

/// Greets the tenant with the install's `greeting` config (default "Hello").
async fn hello(_request: Request<Body>, _params: Params) -> Result<Response<Body>, Error> {
    let ctx = alga_extension::context();
    let greeting = config::get("greeting")
        .ok()
        .flatten()
        .unwrap_or_else(|| "Hello".to_owned());
    json(
        200,
        &serde_json::json!({
            "message": format!("{greeting}, {}!", ctx.tenant_id),
            "extension": ctx.extension_id,
            "lang": "rust",
        }),
    )
}

/// Counts visits in KV storage.
async fn visit(_request: Request<Body>, _params: Params) -> Result<Response<Body>, Error> {
    let visits = kv::Bucket::open("default").and_then(|b| b.increment("visits", 1));
    match visits {
        Ok(visits) => {
            log::info(&format!("visit number {visits}"));
            json(200, &serde_json::json!({"visits": visits}))
        }
        Err(e) => json(500, &serde_json::json!({"error": e.to_string()})),
    }
}
