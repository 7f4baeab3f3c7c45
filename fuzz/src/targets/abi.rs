//! Alga ABI value conversion (host/engine/src/runner.rs, host/capabilities/src/runner/): an
//! HTTP request becomes the `execute-request` record with the same method, URL, headers and
//! body; an `execute-response` becomes an HTTP response with the same status, headers and
//! body, and is refused only when one of them is not valid HTTP or the body is over the cap;
//! the guest's `http.fetch` request becomes an absolute HTTP request or `invalid-url`.
//! Input: `method \n url \n status \n max-body \n header lines… \n \n body`.

use alga_edge_capabilities::context::RequestContext;
use alga_edge_capabilities::runner::bindings::alga::extension::types::{
    ExecuteResponse, HttpError, HttpHeader, HttpRequest,
};
use alga_edge_capabilities::runner::outbound::outgoing;
use alga_edge_engine::InvokeError;
use alga_edge_engine::runner::{execute_request, http_response};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, Full};

/// The parts of one input.
struct Parts {
    method: String,
    url: String,
    status: u16,
    max_body: usize,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn number<N: std::str::FromStr>(bytes: &[u8]) -> Option<N> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

fn parts(data: &[u8]) -> Parts {
    let [method, url, status, max_body, rest] = crate::fields(data);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut headers = Vec::new();
    let mut rest = rest;
    while let Some(at) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..at];
        rest = &rest[at + 1..];
        if line.is_empty() {
            break;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => (&line[..colon], line[colon + 1..].trim_ascii_start()),
            None => (line, &[][..]),
        };
        headers.push((text(name), text(value)));
    }
    Parts {
        method: text(method),
        url: text(url),
        status: number(status).unwrap_or(200),
        max_body: number(max_body).unwrap_or(1 << 16),
        headers,
        body: rest.to_vec(),
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let parts = parts(data);
    to_guest(&parts);
    from_guest(&parts);
    fetch(&parts);
}

/// HTTP request → `execute-request`.
fn to_guest(p: &Parts) {
    let Ok(method) = Method::from_bytes(p.method.as_bytes()) else {
        return;
    };
    let mut builder = http::Request::builder().method(method).uri(p.url.as_str());
    for (name, value) in &p.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            builder = builder.header(name, value);
        }
    }
    let Ok(request) = builder.body(Full::new(Bytes::from(p.body.clone()))) else {
        return;
    };
    let (head, body) = request.into_parts();
    let request = http::Request::from_parts(head.clone(), body);
    let context = RequestContext {
        tenant_id: "acme".into(),
        extension_id: "com.acme.ext".into(),
        install_id: String::new(),
        version_id: "1.0.0".into(),
        content_hash: format!("sha256:{}", "0".repeat(64)),
        request_id: "r-1".into(),
        user_id: None,
    };
    let built = crate::runtime()
        .block_on(execute_request(request, &context))
        .expect("a full body converts");
    assert_eq!(built.http.method, head.method.as_str());
    let url = head
        .uri
        .path_and_query()
        .map_or_else(|| head.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    assert_eq!(built.http.url, url);
    assert_eq!(built.http.headers.len(), head.headers.len());
    for (header, (name, value)) in built.http.headers.iter().zip(&head.headers) {
        assert_eq!(header.name, name.as_str());
        assert_eq!(header.value, String::from_utf8_lossy(value.as_bytes()));
    }
    let declared = head.headers.contains_key("content-length")
        || head.headers.contains_key("transfer-encoding");
    match &built.http.body {
        Some(body) => assert_eq!(body, &p.body),
        None => assert!(!declared && p.body.is_empty(), "the body was lost"),
    }
    assert_eq!(built.context.tenant_id, context.tenant_id);
    assert_eq!(
        built.context.install_id, None,
        "an empty install id is absent"
    );
    assert_eq!(built.context.request_id.as_deref(), Some("r-1"));
}

/// `execute-response` → HTTP response.
fn from_guest(p: &Parts) {
    let response = ExecuteResponse {
        status: p.status,
        headers: p
            .headers
            .iter()
            .map(|(name, value)| HttpHeader {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        body: Some(p.body.clone()).filter(|b| !b.is_empty()),
    };
    let valid = (100..=599).contains(&p.status)
        && p.body.len() <= p.max_body
        && p.headers.iter().all(|(name, value)| {
            HeaderName::from_bytes(name.as_bytes()).is_ok() && HeaderValue::from_str(value).is_ok()
        });
    match http_response(response, p.max_body) {
        Ok(answer) => {
            assert!(valid, "an invalid response was let through");
            assert_eq!(answer.status().as_u16(), p.status);
            assert_eq!(answer.headers().len(), p.headers.len());
            for (name, value) in &p.headers {
                assert!(
                    answer
                        .headers()
                        .get_all(name.to_ascii_lowercase().as_str())
                        .iter()
                        .any(|v| v == value.as_str()),
                    "header {name} lost"
                );
            }
            let body = crate::runtime()
                .block_on(answer.into_body().collect())
                .expect("a full body")
                .to_bytes();
            assert_eq!(body.as_ref(), p.body.as_slice());
        }
        Err(InvokeError::BadGuestResponse(_)) => {
            assert!(!valid, "a valid response was refused")
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

/// `http.fetch`'s request → HTTP request.
fn fetch(p: &Parts) {
    let request = HttpRequest {
        method: p.method.clone(),
        url: p.url.clone(),
        headers: p
            .headers
            .iter()
            .map(|(name, value)| HttpHeader {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        body: Some(p.body.clone()),
    };
    match outgoing(request) {
        Ok(built) => {
            assert!(built.uri().scheme().is_some() && built.uri().authority().is_some());
            assert_eq!(built.method().as_str(), p.method.to_ascii_uppercase());
            assert_eq!(built.headers().len(), p.headers.len());
            assert_eq!(built.body().as_ref(), p.body.as_slice());
        }
        Err(HttpError::InvalidUrl) => {}
        Err(other) => panic!("unexpected error {other:?}"),
    }
}
