//! `wasi:http/outgoing-handler`: outbound HTTP from a component.
//!
//! Not granted to any extension yet: the per-install allowlist (DESIGN §2, `cap:http.fetch`)
//! comes with the capabilities work. Until then every outbound request is refused with the
//! interface's own `HTTP-request-denied` error, which the guest sees as a normal error value.

use std::future::Future;

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// wasi-http hooks that refuse every outbound request.
#[derive(Debug, Default)]
pub struct DenyAllEgress;

type ResponseFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for DenyAllEgress {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: ResponseFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, ResponseFuture), Error>> + Send>
    {
        tracing::debug!(uri = %request.uri(), "outbound request denied: egress not granted");
        Box::new(async { Err(Error::HttpRequestDenied) })
    }
}
