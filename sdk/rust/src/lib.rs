//! Guest SDK for Alga Edge extensions.
//!
//! An extension is a WASI Preview 2 component that exports `wasi:http/incoming-handler`
//! (through [`wstd`]) and imports the host capabilities its install was granted. This crate
//! binds our `alga:extension` interfaces and the standard ones we host (generated with
//! wit-bindgen from the repository's `wit/`) and adds a small ergonomic layer:
//!
//! - [`Router`]: method + path patterns (`/items/:id`, trailing `*`) to async handlers, with
//!   404/405 JSON answers; [`json`], [`text`], [`read_json`] helpers.
//! - [`context()`]: who the request runs for.
//! - [`kv`], [`config`], [`secrets`], [`log`]: typed wrappers whose errors say which grant is
//!   missing; [`fetch`]: outbound HTTP (allowlisted by the host).
//!
//! ```ignore
//! use alga_extension::{Router, Params, json, http::{Request, Response, Body, Error}};
//!
//! #[wstd::http_server]
//! async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
//!     Router::new()
//!         .get("/greet", greet)
//!         .handle(request)
//!         .await
//! }
//!
//! async fn greet(_request: Request<Body>, _params: Params) -> Result<Response<Body>, Error> {
//!     let ctx = alga_extension::context();
//!     json(200, &serde_json::json!({"hello": ctx.tenant_id}))
//! }
//! ```

mod bindings;
pub mod config;
pub mod kv;
pub mod log;
mod response;
mod router;
pub mod secrets;

pub use response::{fetch, json, read_json, text};
pub use router::{Params, Router};
pub use wstd;

/// HTTP types of the handler (re-exported from [`wstd::http`]).
pub mod http {
    pub use wstd::http::{Body, Client, Error, HeaderValue, Method, Request, Response, StatusCode};
}

/// Who and what the current request runs for (set by the host, never by the guest).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Context {
    /// The tenant the request was authenticated for.
    pub tenant_id: String,
    /// The extension being run.
    pub extension_id: String,
    /// The tenant's install of it.
    pub install_id: String,
    /// Installed version.
    pub version_id: String,
    /// `sha256:<hex>` of the running bundle.
    pub content_hash: String,
    /// The gateway's request id (also the `x-request-id` header).
    pub request_id: String,
    /// The end user, when the platform named one.
    pub user_id: Option<String>,
}

/// The context of the request being served (`alg:extension/context`, always granted).
pub fn context() -> Context {
    let c = bindings::alga::extension::context::get();
    Context {
        tenant_id: c.tenant_id,
        extension_id: c.extension_id,
        install_id: c.install_id,
        version_id: c.version_id,
        content_hash: c.content_hash,
        request_id: c.request_id,
        user_id: c.user_id,
    }
}

/// A capability call that failed: the host's answer, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityError {
    /// The install was not granted this capability (`cap:…` in the message).
    Denied(&'static str),
    /// The host refused or failed (bad key, limit reached, store unavailable…).
    Failed(String),
}

impl std::fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Denied(cap) => write!(
                f,
                "access denied: the install was not granted {cap} (add it to the manifest's \
                 capabilities and grant it on install)"
            ),
            Self::Failed(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CapabilityError {}
