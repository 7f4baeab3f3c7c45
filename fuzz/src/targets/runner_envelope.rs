//! The runner envelope (`POST /v1/execute` body, host/gateway/src/runner.rs): an envelope that
//! parses yields the component request it describes, exactly: its method (upper-cased), its
//! path, its query (the form-encoded query decodes back to the envelope's pairs), its
//! headers, and the decoded body with a `content-length` that is the body's real length
//! whatever the envelope claimed; the end user has an id; a plain secret envelope opens to
//! the JSON object it encodes. Input: the envelope JSON.

use std::collections::BTreeMap;

use alga_edge_gateway::runner::{Envelope, QueryValue, build_request, end_user};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_body_util::BodyExt;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(data) else {
        return;
    };
    if let Some(Ok(Some(secrets))) = envelope.secret_envelope.as_ref().map(|s| s.open()) {
        let encoded = envelope
            .secret_envelope
            .as_ref()
            .map(|s| s.ciphertext_b64.trim().to_owned())
            .unwrap_or_default();
        let bytes = BASE64.decode(encoded).expect("opened, so base64");
        let values: BTreeMap<String, String> =
            serde_json::from_slice(&bytes).expect("opened, so a JSON object of strings");
        assert!(secrets.names().eq(values.keys().map(String::as_str)));
        for (name, value) in &values {
            assert_eq!(secrets.get(name), Some(value.as_str()));
        }
    }
    if let Ok(Some(user)) = end_user(&envelope) {
        assert!(!user.user_id.is_empty(), "an end user without an id");
    }

    let http = &envelope.http;
    let Ok((request, path)) = build_request(http) else {
        return;
    };
    assert_eq!(path, http.path);
    assert_eq!(
        request.uri().path(),
        http.path,
        "the component sees another path"
    );
    assert_eq!(request.method().as_str(), http.method.to_ascii_uppercase());
    let sent: Vec<(String, String)> = http
        .query
        .iter()
        .flat_map(|(key, value)| match value {
            QueryValue::One(v) => vec![(key.clone(), v.clone())],
            QueryValue::Many(vs) => vs.iter().map(|v| (key.clone(), v.clone())).collect(),
        })
        .collect();
    let seen: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    assert_eq!(seen, sent, "the query changed on its way");

    let body = crate::runtime()
        .block_on(request.into_body().collect())
        .expect("a full body")
        .to_bytes();
    let expected = http
        .body_b64
        .as_deref()
        .map(|b| BASE64.decode(b).expect("built, so base64"))
        .unwrap_or_default();
    assert_eq!(body.as_ref(), expected.as_slice());
    // The request was consumed for its body: rebuild it to look at its headers.
    let (request, _) = build_request(http).expect("built once, builds again");
    let lengths: Vec<_> = request.headers().get_all("content-length").iter().collect();
    assert_eq!(
        lengths,
        [expected.len().to_string().as_str()],
        "content-length"
    );
    for (name, value) in &http.headers {
        if name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        assert!(
            request
                .headers()
                .get_all(name.as_str())
                .iter()
                .any(|v| v == value.as_str()),
            "header {name} lost"
        );
    }
}
