//! `http.fetch` (`cap:http.fetch`): a whole request and response, sent through the same egress
//! path as `wasi:http` ([`crate::egress`]), so its refusals are the same.

use bytes::Bytes;
use wasmtime_wasi_http::Error;

use super::bindings::alga::extension::http;
use super::types::{HttpError, HttpHeader, HttpRequest, HttpResponse};
use crate::RequestCapabilities;

impl http::Host for RequestCapabilities {
    async fn fetch(&mut self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request = outgoing(request)?;
        let response = self
            .egress
            .fetch(request)
            .await
            .map_err(|error| match error {
                Error::HttpRequestDenied | Error::DestinationIpProhibited => HttpError::NotAllowed,
                Error::HttpRequestUriInvalid => HttpError::InvalidUrl,
                _ => HttpError::Transport,
            })?;
        let (parts, body) = response.into_parts();
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| HttpHeader {
                    name: name.as_str().to_owned(),
                    value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                })
                .collect(),
            body: Some(body.to_vec()),
        })
    }
}

/// The guest's request as an `http::Request`; `invalid-url` for an unusable method, URL or
/// header (Alga's runner answers the same for a bad method).
pub fn outgoing(request: HttpRequest) -> Result<::http::Request<Bytes>, HttpError> {
    let method = ::http::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| HttpError::InvalidUrl)?;
    let uri: ::http::Uri = request.url.parse().map_err(|_| HttpError::InvalidUrl)?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(HttpError::InvalidUrl);
    }
    let mut builder = ::http::Request::builder().method(method).uri(uri);
    for header in &request.headers {
        builder = builder.header(header.name.as_str(), header.value.as_str());
    }
    builder
        .body(Bytes::from(request.body.unwrap_or_default()))
        .map_err(|_| HttpError::InvalidUrl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, url: &str) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            url: url.into(),
            headers: vec![HttpHeader {
                name: "accept".into(),
                value: "text/plain".into(),
            }],
            body: None,
        }
    }

    #[test]
    fn builds_absolute_requests_and_refuses_the_rest() {
        let built = outgoing(request("post", "https://api.example.com/x?y=1")).unwrap();
        assert_eq!(built.method(), ::http::Method::POST);
        assert_eq!(built.headers()["accept"], "text/plain");
        for (method, url) in [
            ("GET", "/relative"),
            ("GET", "not a url"),
            ("G ET", "https://api.example.com/"),
        ] {
            assert!(
                matches!(outgoing(request(method, url)), Err(HttpError::InvalidUrl)),
                "{method} {url}"
            );
        }
    }
}
