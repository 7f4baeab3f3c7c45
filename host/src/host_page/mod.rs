//! The demo host page (`alga-edge demo` only): `/` lists the demo tenant's installed
//! extensions that have a UI and opens one in a sandboxed iframe, implementing the host side
//! of the iframe bridge with the SDK (`sdk/iframe/alga-host.js`, served at `/sdk/iframe/`).
//! `/demo/config` hands the page the tenant's token: fine for a loopback demo, never for a
//! real deployment (the platform owns the credential there). So it answers only requests whose
//! `Host` names a loopback address: a web page on another site that rebinds its DNS name to
//! 127.0.0.1 still sends its own name, and gets a 403.

use std::sync::Arc;

use alga_edge_registry::Registry;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::ui::UI_PREFIX;
use alga_edge_http::HostBody;
use alga_edge_http::{ApiError, full, json_response};

const INDEX: &str = include_str!("index.html");
const PAGE_JS: &str = include_str!("host-page.js");
const SDK_HOST: &str = include_str!("../../../sdk/iframe/alga-host.js");
const SDK_IFRAME: &str = include_str!("../../../sdk/iframe/alga-iframe.js");

/// The files this page serves: path, content type, body.
const FILES: [(&str, &str, &str); 4] = [
    ("/", "text/html; charset=utf-8", INDEX),
    (
        "/demo/host-page.js",
        "application/javascript; charset=utf-8",
        PAGE_JS,
    ),
    (
        "/sdk/iframe/alga-host.js",
        "application/javascript; charset=utf-8",
        SDK_HOST,
    ),
    (
        "/sdk/iframe/alga-iframe.js",
        "application/javascript; charset=utf-8",
        SDK_IFRAME,
    ),
];

/// The demo host page of one tenant.
pub struct HostPage {
    registry: Arc<Registry>,
    tenant: String,
    token: String,
}

impl HostPage {
    /// The page for `tenant`, whose calls carry `token`.
    pub fn new(registry: Arc<Registry>, tenant: String, token: String) -> Self {
        Self {
            registry,
            tenant,
            token,
        }
    }

    /// The paths it serves, relative (no leading `/`), for the node's route table.
    pub fn paths(&self) -> impl Iterator<Item = &'static str> {
        FILES
            .iter()
            .map(|(path, _, _)| *path)
            .chain(["/demo/config"])
            .map(|path| path.trim_start_matches('/'))
    }

    /// Answers one of [`HostPage::paths`].
    pub async fn handle<B>(&self, request: &Request<B>, request_id: &str) -> Response<HostBody> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "GET only",
            )
            .into_response(request_id);
        }
        if !loopback_host(request.headers()) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the demo host page answers only to a loopback Host (localhost, 127.0.0.1, [::1])",
            )
            .into_response(request_id);
        }
        let path = request.uri().path();
        if path == "/demo/config" {
            return match self.config().await {
                Ok(config) => no_store(json_response(StatusCode::OK, &config)),
                Err(e) => ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("cannot list the tenant's extensions: {e}"),
                )
                .into_response(request_id),
            };
        }
        let Some((_, content_type, body)) = FILES.iter().find(|(p, _, _)| *p == path) else {
            return ApiError::no_route(path).into_response(request_id);
        };
        let mut response = Response::new(full(Bytes::from_static(body.as_bytes())));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                 frame-src 'self'; object-src 'none'; base-uri 'none'",
            ),
        );
        no_store(response)
    }

    /// The tenant, its token, and its enabled installs that have a UI, with their UI URLs.
    async fn config(&self) -> Result<serde_json::Value, alga_edge_registry::RegistryError> {
        let mut extensions = Vec::new();
        for install in self.registry.installs(&self.tenant).await? {
            let Some(found) = self
                .registry
                .resolve(&self.tenant, &install.extension)
                .await?
            else {
                continue;
            };
            let hash = found.content_hash.to_string();
            let Some(version) = self
                .registry
                .version_by_hash(&install.extension, &hash)
                .await?
            else {
                continue;
            };
            let Some(ui) = version.manifest.ui else {
                continue;
            };
            let entry = ui.entry.strip_prefix("ui/").unwrap_or(&ui.entry);
            extensions.push(json!({
                "id": install.extension,
                "version": install.version,
                "content_hash": hash,
                "ui": format!("{UI_PREFIX}{}/{hash}/{entry}", install.extension),
            }));
        }
        Ok(json!({"tenant": self.tenant, "token": self.token, "extensions": extensions}))
    }
}

fn no_store(mut response: Response<HostBody>) -> Response<HostBody> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether the request's `Host` is a loopback name or address, with any port.
fn loopback_host(headers: &http::HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Ok(authority) = host.parse::<http::uri::Authority>() else {
        return false;
    };
    let name = authority.host();
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_served() {
        let with = |host: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            loopback_host(&headers)
        };
        for ok in [
            "127.0.0.1:8080",
            "localhost:3000",
            "LOCALHOST",
            "[::1]:80",
            "127.9.9.9",
        ] {
            assert!(with(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "10.0.0.1",
            "localhost.evil.example",
            "[::2]",
            "",
        ] {
            assert!(!with(bad), "{bad}");
        }
        assert!(!loopback_host(&http::HeaderMap::new()));
    }
}
