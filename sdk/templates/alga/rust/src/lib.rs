//! {{name}}: an Alga PSA extension in Rust (world `runner`, scaffolded by `alga-edge ext new
//! --abi alga`). The handler echoes the request and the call's context as JSON.

use serde_json::json;

wit_bindgen::generate!({
    path: "wit",
    world: "runner",
});

use alga::extension::types::{ContextData, HttpHeader};
use alga::extension::{context, logging};

struct Extension;

export!(Extension);

impl Guest for Extension {
    fn handler(request: ExecuteRequest) -> ExecuteResponse {
        logging::log_info(&format!("{} {}", request.http.method, request.http.url));
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
            "body": request.http.body.as_deref().map(String::from_utf8_lossy),
            "context": context_json(&request.context),
            "context_import": context_json(&context::get_context()),
        });
        ExecuteResponse {
            status: 200,
            headers: vec![HttpHeader {
                name: "content-type".into(),
                value: "application/json".into(),
            }],
            body: Some(body.to_string().into_bytes()),
        }
    }
}

fn context_json(c: &ContextData) -> serde_json::Value {
    json!({
        "request_id": c.request_id,
        "tenant_id": c.tenant_id,
        "extension_id": c.extension_id,
        "install_id": c.install_id,
        "version_id": c.version_id,
    })
}
