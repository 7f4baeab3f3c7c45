//! Response and request helpers, and outbound HTTP.

use serde::Serialize;
use serde::de::DeserializeOwned;
use wstd::http::{Body, Client, Error, Request, Response};

/// A JSON response with `status`.
pub fn json<T: Serialize>(status: u16, value: &T) -> Result<Response<Body>, Error> {
    let body = serde_json::to_vec(value).map_err(|e| Error::msg(e.to_string()))?;
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .map_err(Error::from)
}

/// A plain-text response with `status`.
pub fn text(status: u16, body: impl Into<String>) -> Result<Response<Body>, Error> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from(body.into()))
        .map_err(Error::from)
}

/// The request body as JSON.
pub async fn read_json<T: DeserializeOwned>(request: &mut Request<Body>) -> Result<T, Error> {
    let bytes = request.body_mut().contents().await?;
    serde_json::from_slice(bytes).map_err(|e| Error::msg(format!("invalid JSON body: {e}")))
}

/// GET `url` through the host (`cap:http.fetch`; the install's egress allowlist decides):
/// status and body text.
pub async fn fetch(url: &str) -> Result<(u16, String), Error> {
    let request = Request::get(url).body(Body::empty()).map_err(Error::from)?;
    let mut response = Client::new().send(request).await?;
    let status = response.status().as_u16();
    let body = String::from_utf8_lossy(response.body_mut().contents().await?).into_owned();
    Ok((status, body))
}
