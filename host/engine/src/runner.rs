//! The HTTP side of Alga's `runner` world: an HTTP request becomes an `execute-request`
//! (`url` = path and query, headers as a list, the whole body) and an `execute-response`
//! becomes an HTTP response. The gateway's policies have already applied to the request
//! (header allowlist, body cap); it applies its response-header allowlist to the result.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;

use super::invoke::InvokeError;
use alga_edge_capabilities::context::RequestContext;
use alga_edge_capabilities::runner::bindings::alga::extension::types::{
    ContextData, ExecuteRequest, ExecuteResponse, HttpHeader, HttpRequest,
};
use alga_edge_http::HostBody;

/// The `execute-request` for `request`, run for `context`. Reading the body fails with
/// [`InvokeError::RequestBodyTooLarge`] past the cap the gateway put on it.
pub async fn execute_request<B>(
    request: http::Request<B>,
    context: &RequestContext,
) -> Result<ExecuteRequest, InvokeError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let (parts, body) = request.into_parts();
    let declared = parts.headers.contains_key(http::header::CONTENT_LENGTH)
        || parts.headers.contains_key(http::header::TRANSFER_ENCODING);
    let body = body
        .collect()
        .await
        .map_err(|error| match error.into() {
            wasmtime_wasi_http::Error::HttpRequestBodySize(_) => InvokeError::RequestBodyTooLarge,
            other => InvokeError::RequestBody(format!("{other:?}")),
        })?
        .to_bytes();
    let url = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| HttpHeader {
            name: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect();
    let non_empty = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
    Ok(ExecuteRequest {
        context: ContextData {
            request_id: non_empty(&context.request_id),
            tenant_id: context.tenant_id.clone(),
            extension_id: context.extension_id.clone(),
            install_id: non_empty(&context.install_id),
            version_id: non_empty(&context.version_id),
        },
        http: HttpRequest {
            method: parts.method.as_str().to_owned(),
            url,
            headers,
            // A request that declared a body (even an empty one) has one; others have none.
            body: (declared || !body.is_empty()).then(|| body.to_vec()),
        },
    })
}

/// The HTTP response for the guest's `execute-response`, refused as a bad response when its
/// status or a header is not valid HTTP or its body is over `max_body_bytes`.
pub fn http_response(
    response: ExecuteResponse,
    max_body_bytes: usize,
) -> Result<http::Response<HostBody>, InvokeError> {
    let bad = InvokeError::BadGuestResponse;
    let status = http::StatusCode::from_u16(response.status)
        .ok()
        .filter(|s| (100..=599).contains(&s.as_u16()))
        .ok_or_else(|| bad(format!("status {} is not an HTTP status", response.status)))?;
    let body = response.body.unwrap_or_default();
    if body.len() > max_body_bytes {
        return Err(bad(format!(
            "its response body of {} bytes is over the {max_body_bytes}-byte limit",
            body.len()
        )));
    }
    let mut builder = http::Response::builder().status(status);
    for header in &response.headers {
        let name = http::HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| bad(format!("invalid response header name '{}'", header.name)))?;
        let value = http::HeaderValue::from_str(&header.value)
            .map_err(|_| bad(format!("invalid value for response header '{name}'")))?;
        builder = builder.header(name, value);
    }
    builder
        .body(alga_edge_http::full(body))
        .map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn context() -> RequestContext {
        RequestContext {
            tenant_id: "acme".into(),
            extension_id: "com.example.x".into(),
            install_id: "i-1".into(),
            version_id: "1.0.0".into(),
            content_hash: "sha256:00".into(),
            request_id: "r-1".into(),
            user_id: None,
        }
    }

    #[tokio::test]
    async fn builds_the_execute_request() {
        let request = http::Request::builder()
            .method("POST")
            .uri("http://localhost/items/7?q=a%20b")
            .header("content-type", "text/plain")
            .header("content-length", "2")
            .body(Full::new(Bytes::from_static(b"hi")))
            .unwrap();
        let built = execute_request(request, &context()).await.unwrap();
        assert_eq!(built.http.method, "POST");
        assert_eq!(built.http.url, "/items/7?q=a%20b");
        assert_eq!(built.http.body.as_deref(), Some(&b"hi"[..]));
        assert_eq!(built.http.headers[0].name, "content-type");
        assert_eq!(built.context.install_id.as_deref(), Some("i-1"));

        let get = http::Request::builder()
            .uri("/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(
            execute_request(get, &context()).await.unwrap().http.body,
            None
        );
    }

    #[test]
    fn refuses_invalid_responses() {
        let response = |status, name: &str, body: usize| ExecuteResponse {
            status,
            headers: vec![HttpHeader {
                name: name.into(),
                value: "v".into(),
            }],
            body: Some(vec![b'x'; body]),
        };
        assert!(http_response(response(200, "x-ext-a", 10), 10).is_ok());
        for (status, name, body) in [(42, "x", 1), (200, "bad name", 1), (200, "x", 11)] {
            assert!(matches!(
                http_response(response(status, name, body), 10),
                Err(InvokeError::BadGuestResponse(_))
            ));
        }
    }
}
