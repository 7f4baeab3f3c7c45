//! Request and response header filtering (host/http, host/gateway): what the gateway forwards
//! to a component and returns from it holds only allowlisted names (never hop-by-hop headers,
//! credentials or cookies), keeps every allowed value in order, and carries the gateway's own
//! `x-alga-*` and `x-request-id` whatever the caller sent; the header caps refuse exactly what
//! is over them; request ids and bearer tokens are read sanely. Input: a request target, then
//! `name: value` lines.

use alga_edge_gateway::ext_api::{filter_response_headers, forward};
use alga_edge_gateway::policy::{Policies, PolicyConfig};
use alga_edge_http::{authorization, bearer_token, is_usable_request_id, request_id_for};
use http::{HeaderMap, HeaderName, HeaderValue, Request};

/// Names that must never cross the gateway in either direction: hop-by-hop headers (RFC
/// 9110 §7.6.1), credentials and cookies.
const NEVER: [&str; 14] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "authorization",
    "cookie",
    "set-cookie",
    "www-authenticate",
    "host",
];

/// Response headers a component may set (DESIGN §5), `x-ext-*` aside.
const RETURNED: [&str; 6] = [
    "content-type",
    "content-length",
    "content-encoding",
    "content-language",
    "etag",
    "last-modified",
];

/// Request headers a component may see (DESIGN §5); the gateway sets the `x-alga-*` ones.
const FORWARDED: [&str; 7] = [
    "accept",
    "accept-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "x-request-id",
    "x-idempotency-key",
];

const TENANT: &str = "tenant-1";
const EXTENSION: &str = "com.acme.ext";
const REQUEST_ID: &str = "rid-1";

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let target = lines.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    check_response(&headers);
    check_request(target, &headers);
    check_caps(&headers);
}

/// Every value of `name` in `headers`, in order.
fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a HeaderValue> {
    headers.get_all(name).iter().collect()
}

fn check_response(input: &HeaderMap) {
    let allowed = |name: &HeaderName, value: &HeaderValue| {
        RETURNED.contains(&name.as_str())
            || name.as_str().starts_with("x-ext-")
            || (name == "cache-control"
                && value
                    .to_str()
                    .is_ok_and(|v| !v.to_ascii_lowercase().contains("public")))
    };
    let mut filtered = input.clone();
    filter_response_headers(&mut filtered);
    for (name, value) in &filtered {
        assert!(!NEVER.contains(&name.as_str()), "returned {name}");
        assert!(allowed(name, value), "returned {name}: {value:?}");
    }
    // Nothing allowed is lost, and values keep their order.
    for name in input.keys() {
        let kept: Vec<_> = values(input, name.as_str())
            .into_iter()
            .filter(|v| allowed(name, v))
            .collect();
        assert_eq!(values(&filtered, name.as_str()), kept, "values of {name}");
    }
}

fn check_request(target: &[u8], input: &HeaderMap) {
    let Ok(mut request) = Request::builder().uri(target).body(()) else {
        return;
    };
    *request.headers_mut() = input.clone();
    let id = request_id_for(&request);
    assert!(is_usable_request_id(&id), "request id {id:?}");
    if let Some(sent) = input.get("x-request-id").and_then(|v| v.to_str().ok())
        && is_usable_request_id(sent)
    {
        assert_eq!(id, sent, "a usable caller request id was replaced");
    }
    if let Some(token) = bearer_token(authorization(input)) {
        assert!(
            !token.is_empty() && token.trim() == token,
            "token {token:?}"
        );
        assert!(authorization(input).is_some_and(|h| h.contains(token)));
    }

    // The gateway forwards the path `split_route` left, which starts with `/`.
    let path = request.uri().path().to_owned();
    if !path.starts_with('/') {
        return;
    }
    let query = request.uri().query().map(str::to_owned);
    let host = input
        .get("host")
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.parse::<http::uri::Authority>().is_ok())
        .map(str::to_owned);
    let Ok(forwarded) = forward(request, path.clone(), TENANT, EXTENSION, REQUEST_ID) else {
        return;
    };
    let out = forwarded.headers();
    for name in out.keys() {
        assert!(!NEVER.contains(&name.as_str()), "forwarded {name}");
        assert!(
            FORWARDED.contains(&name.as_str()) || name.as_str().starts_with("x-alga-"),
            "forwarded {name}"
        );
    }
    for (name, value) in [
        ("x-alga-tenant", TENANT),
        ("x-alga-extension", EXTENSION),
        ("x-request-id", REQUEST_ID),
    ] {
        assert_eq!(values(out, name), [value], "{name} is the gateway's own");
    }
    assert_eq!(
        out.keys()
            .filter(|n| n.as_str().starts_with("x-alga-"))
            .count(),
        2
    );
    for name in FORWARDED.iter().filter(|n| **n != "x-request-id") {
        assert_eq!(values(out, name), values(input, name), "values of {name}");
    }
    let uri = forwarded.uri();
    assert_eq!(uri.path(), path);
    assert_eq!(uri.query().map(str::to_owned), query);
    assert_eq!(
        uri.authority().map(|a| a.as_str().to_owned()),
        Some(host.unwrap_or_else(|| "localhost".into()))
    );
}

fn check_caps(input: &HeaderMap) {
    let (max_headers, max_header_bytes) = (8, 256);
    let policies = Policies::new(PolicyConfig {
        max_headers,
        max_header_bytes,
        ..PolicyConfig::default()
    });
    let bytes: usize = input
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    let within = input.len() <= max_headers && bytes <= max_header_bytes;
    assert_eq!(
        policies.check_headers(input).is_ok(),
        within,
        "{} headers, {bytes} bytes",
        input.len()
    );
}
