//! The gateway and runner API over the real binary: tenant tokens (expired, forged, wrong
//! algorithm, foreign tenant), `/v1/execute` envelopes, the execution log, `/metrics`,
//! per-install policy overrides, manifest endpoint enforcement, and graceful shutdown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alga_edge_e2e::metrics::{scrape, sum};
use alga_edge_e2e::publishing::{
    FAULTY, Fixture, HELLO, SERVICE_TOKEN, SHARED_JWT_SECRET, TenantClaims, admin, admin_json,
    admin_ok, bearer, content_hash, execution_rows, hs256_token, install, json, path,
};
use alga_edge_e2e::{Node, client, request, send, wait_until};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jwt_simple::prelude::*;
use serde_json::{Value, json};

/// A node verifying HS256 tenant tokens, with hello and faulty published.
fn start_node(fixture: &Fixture, extra: &[&str]) -> Node {
    let hello = fixture.bundle_with(
        HELLO,
        "1.0.0",
        "hello",
        json!({"api": {"endpoints": [
            {"method": "GET", "path": "/greet", "handler": "greet"},
            {"method": "GET", "path": "/items/:id", "handler": "item"},
        ]}}),
    );
    let faulty = fixture.bundle(FAULTY, "1.0.0", "faulty");
    let mut args = vec!["--service-token", SERVICE_TOKEN, "--tenant-rate", "0"];
    args.extend_from_slice(extra);
    let node = fixture.start_with_env(
        &args,
        &[("ALGA_TENANT_JWT_HS256_SECRET", SHARED_JWT_SECRET)],
    );
    admin_ok(&node, &["publish", path(&hello)]);
    admin_ok(&node, &["publish", path(&faulty)]);
    node
}

/// The tenant's execution-log rows (newest first), polled until `count` are there (bounded).
fn executions(node: &Node, tenant: &str, count: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    let what = format!("{count} execution-log rows of {tenant}");
    wait_until(Duration::from_secs(15), &what, || {
        rows = execution_rows(node, tenant, 1000);
        rows.len() >= count
    });
    rows
}

#[test]
fn tenant_tokens_are_checked_and_only_the_tenants_own_installs_are_reachable() {
    let fixture = Fixture::new();
    let node = start_node(&fixture, &[]);
    install(&node, HELLO, "1.0.0", "tenant-a", &[], &[]);
    install(&node, FAULTY, "1.0.0", "tenant-b", &[], &[]);
    let route = format!("/api/ext/{HELLO}/greet");

    let good = hs256_token(SHARED_JWT_SECRET, "tenant-a", 120);
    let (status, _, body) = request(
        &node,
        "GET",
        &route,
        &[("authorization", &bearer(&good))],
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["context"]["tenant_id"], "tenant-a");
    assert_eq!(json(&body)["context"]["user_id"], "user-1");

    // Past the 30 s clock skew, signed with another secret, another algorithm, tampered claims,
    // no token at all: 401 with the Bearer challenge, and the component never runs.
    let expired = hs256_token(SHARED_JWT_SECRET, "tenant-a", -120);
    // Valid for ten years: past the node's 24 h maximum token lifetime.
    let ten_years = hs256_token(SHARED_JWT_SECRET, "tenant-a", 10 * 365 * 24 * 3600);
    let forged = hs256_token("another-secret-that-is-long-enough-000", "tenant-a", 120);
    let eddsa = {
        let claims = Claims::with_custom_claims(
            TenantClaims {
                tenant: "tenant-a".into(),
            },
            jwt_simple::prelude::Duration::from_secs(60),
        );
        Ed25519KeyPair::generate().sign(claims).unwrap()
    };
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&parts[1])
            .unwrap();
        let payload = String::from_utf8(payload)
            .unwrap()
            .replace("tenant-a", "tenant-b");
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
        parts.join(".")
    };
    let refused = [
        ("expired", Some(bearer(&expired))),
        ("valid for ten years", Some(bearer(&ten_years))),
        ("forged", Some(bearer(&forged))),
        ("wrong algorithm", Some(bearer(&eddsa))),
        ("tampered", Some(bearer(&tampered))),
        ("garbage", Some("Bearer not.a.jwt".to_owned())),
        ("basic auth", Some("Basic dXNlcjpwYXNz".to_owned())),
        ("missing", None),
    ];
    for (what, authorization) in &refused {
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .collect();
        let (status, headers, body) = request(&node, "GET", &route, &headers, None);
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(headers["www-authenticate"], "Bearer", "{what}");
        assert_eq!(json(&body)["error"], "unauthorized", "{what}");
    }

    // Tenant A's valid token on an extension only tenant B installed: 404, same as unknown.
    let (status, _, body) = request(
        &node,
        "GET",
        &format!("/api/ext/{FAULTY}/"),
        &[("authorization", &bearer(&good))],
        None,
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(json(&body)["error"], "extension_not_found");
    let (unknown, _, _) = request(
        &node,
        "GET",
        "/api/ext/com.nobody.nothing/",
        &[("authorization", &bearer(&good))],
        None,
    );
    assert_eq!(unknown, 404);

    // The metrics count exactly what happened, and the token cache answered the repeats.
    let (_, samples) = scrape(&node);
    let denied = sum(
        &samples,
        "alga_denials_total",
        &[("reason", "unauthorized")],
    );
    assert_eq!(denied, refused.len() as f64);
    let ok = sum(
        &samples,
        "alga_requests_total",
        &[("extension", HELLO), ("status", "200")],
    );
    assert_eq!(ok, 1.0);
    let not_found = sum(
        &samples,
        "alga_denials_total",
        &[("reason", "extension_not_found")],
    );
    assert_eq!(not_found, 2.0);
    assert!(sum(&samples, "alga_token_cache_total", &[("result", "hit")]) >= 2.0);
}

#[test]
fn runner_execute_round_trips_an_envelope_under_the_same_policies() {
    let fixture = Fixture::new();
    let node = start_node(&fixture, &[]);
    install(&node, HELLO, "1.0.0", "tenant-a", &[], &[]);
    let hello_hash = content_hash(&node, HELLO);
    let faulty_hash = content_hash(&node, FAULTY);
    let envelope = |hash: &str, extension: &str, path: &str, extra: Value| {
        let mut envelope = json!({
            "context": {
                "request_id": "platform-req-1",
                "tenant_id": "tenant-a",
                "extension_id": extension,
                "install_id": "platform-install-9",
                "version_id": "ver_1",
                "content_hash": hash,
            },
            "http": {
                "method": "POST",
                "path": path,
                "query": {"force": "true", "response_header": ["set-cookie:a=1", "x-ext-trace:t1"]},
                "headers": {"content-type": "application/json", "authorization": "Bearer end-user", "x-idempotency-key": "k1"},
                "body_b64": BASE64.encode(br#"{"hello":"runner"}"#),
            },
            "limits": {"timeout_ms": 5000},
            "config": {"greeting": "hi"},
            "providers": [],
        });
        if let (Some(fields), Some(extra)) = (envelope.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                fields.insert(k.clone(), v.clone());
            }
        }
        envelope.to_string().into_bytes()
    };
    let service = bearer(SERVICE_TOKEN);
    let execute = |body: Vec<u8>, authorization: Option<&str>| {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = authorization {
            headers.push(("authorization", a));
        }
        request(&node, "POST", "/v1/execute", &headers, Some(body))
    };

    let (status, _, text) = execute(
        envelope(&hello_hash, HELLO, "/sync", json!({})),
        Some(&service),
    );
    assert_eq!(status, 200, "{text}");
    let answer = json(&text);
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["headers"]["content-type"], "application/json");
    assert_eq!(answer["headers"]["x-ext-trace"], "t1");
    assert!(
        answer["headers"].get("set-cookie").is_none(),
        "set-cookie must be stripped: {answer}"
    );
    let seen = json(
        &String::from_utf8(BASE64.decode(answer["body_b64"].as_str().unwrap()).unwrap()).unwrap(),
    );
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/sync");
    assert_eq!(seen["body"], r#"{"hello":"runner"}"#);
    assert_eq!(seen["query"]["force"], "true");
    assert_eq!(seen["context"]["tenant_id"], "tenant-a");
    assert_eq!(seen["context"]["content_hash"], hello_hash.as_str());
    assert_eq!(seen["headers"]["x-alga-tenant"], "tenant-a");
    assert_eq!(seen["headers"]["x-idempotency-key"], "k1");
    assert!(
        seen["headers"].get("authorization").is_none(),
        "the end user's authorization never reaches the component: {seen}"
    );

    // Refusals: no token, wrong token, unknown bundle, malformed envelope, bad base64.
    let (status, _, text) = execute(envelope(&hello_hash, HELLO, "/", json!({})), None);
    assert_eq!(status, 401, "{text}");
    let (status, _, _) = execute(
        envelope(&hello_hash, HELLO, "/", json!({})),
        Some("Bearer wrong-token-wrong-token"),
    );
    assert_eq!(status, 401);
    let (status, _, text) = execute(
        envelope(&faulty_hash, HELLO, "/", json!({})),
        Some(&service),
    );
    assert_eq!(status, 404, "a bundle of another extension: {text}");
    let (status, _, text) = execute(b"{not json".to_vec(), Some(&service));
    assert_eq!(status, 400, "{text}");
    assert!(
        json(&text)["message"]
            .as_str()
            .unwrap()
            .contains("invalid runner envelope")
    );
    let (status, _, text) = execute(
        envelope(
            &hello_hash,
            HELLO,
            "/",
            json!({"http": {"method": "GET", "path": "/", "body_b64": "%%"}}),
        ),
        Some(&service),
    );
    assert_eq!(status, 400, "{text}");

    // The caller's deadline applies (and shortens the node's 5 s default). Compile faulty
    // first, so the timing below is the deadline's alone.
    let (status, _, text) = execute(
        envelope(&faulty_hash, FAULTY, "/", json!({})),
        Some(&service),
    );
    assert_eq!(json(&text)["status"], 200, "{status} {text}");
    let started = Instant::now();
    let (status, _, text) = execute(
        envelope(
            &faulty_hash,
            FAULTY,
            "/sleep",
            json!({"limits": {"timeout_ms": 300}}),
        ),
        Some(&service),
    );
    assert_eq!(status, 504, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        json(&text)["message"].as_str().unwrap().contains("300 ms"),
        "{text}"
    );

    // Runs that reached a bundle are in the execution log under the runner's request ids.
    let rows = executions(&node, "tenant-a", 3);
    let statuses: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["extension"].as_str().unwrap(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [(FAULTY, 504), (FAULTY, 200), (HELLO, 200)],
        "{rows:?}"
    );
    let (_, samples) = scrape(&node);
    assert_eq!(
        sum(
            &samples,
            "alga_requests_total",
            &[("route", "execute"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        sum(
            &samples,
            "alga_denials_total",
            &[("route", "execute"), ("reason", "unauthorized")]
        ),
        2.0
    );
    assert_eq!(
        sum(&samples, "alga_timeouts_total", &[("extension", FAULTY)]),
        1.0
    );
}

#[test]
fn every_request_leaves_one_execution_log_row_and_metrics_count_them() {
    let fixture = Fixture::new();
    let node = start_node(&fixture, &[]);
    install(&node, HELLO, "1.0.0", "tenant-a", &[], &[]);
    install(&node, FAULTY, "1.0.0", "tenant-a", &[], &[]);
    let token = hs256_token(SHARED_JWT_SECRET, "tenant-a", 300);
    let auth = bearer(&token);
    let requests = 25;
    for i in 0..requests {
        let id = format!("req-{i}");
        let (status, _, body) = request(
            &node,
            "POST",
            &format!("/api/ext/{HELLO}/echo"),
            &[("authorization", &auth), ("x-request-id", &id)],
            Some(format!("payload-{i}").into_bytes()),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["body"], format!("payload-{i}"));
    }
    let (status, _, _) = request(
        &node,
        "GET",
        &format!("/api/ext/{FAULTY}/trap"),
        &[("authorization", &auth), ("x-request-id", "req-trap")],
        None,
    );
    assert_eq!(status, 502);

    let rows = executions(&node, "tenant-a", requests + 1);
    assert_eq!(rows.len(), requests + 1, "{rows:?}");
    let mut seen: HashMap<String, &Value> = HashMap::new();
    for row in &rows {
        let id = row["request_id"].as_str().unwrap().to_owned();
        assert!(seen.insert(id.clone(), row).is_none(), "two rows for {id}");
    }
    for i in 0..requests {
        let row = seen[&format!("req-{i}")];
        assert_eq!(row["status"], 200);
        assert_eq!(row["extension"], HELLO);
        assert_eq!(row["version"], "1.0.0");
        assert!(row["content_hash"].as_str().unwrap().starts_with("sha256:"));
        assert!(row["error_class"].is_null());
    }
    assert_eq!(seen["req-trap"]["status"], 502);
    assert_eq!(seen["req-trap"]["error_class"], "extension_trap");

    let (_, usage) = admin_json(&node, "GET", "tenants/tenant-a/usage", None);
    let total: i64 = usage["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["requests"].as_i64().unwrap())
        .sum();
    assert_eq!(total, requests as i64 + 1, "{usage}");

    // The rows are in the node's own database, never in the replicated registry (each of
    // whose generations would copy them).
    let holds = |prefix: &str| {
        std::fs::read_dir(fixture.data())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .filter(|e| e.path().is_file())
            .any(|e| {
                let bytes = std::fs::read(e.path()).unwrap();
                bytes.windows(8).any(|w| w == b"req-trap")
            })
    };
    assert!(holds("executions.db"), "the log is in executions.db");
    assert!(!holds("registry.db"), "the registry holds no log row");

    let (_, samples) = scrape(&node);
    let ok = sum(
        &samples,
        "alga_requests_total",
        &[("extension", HELLO), ("status", "200")],
    );
    assert_eq!(ok, requests as f64);
    let trapped = sum(
        &samples,
        "alga_requests_total",
        &[("extension", FAULTY), ("status", "502")],
    );
    assert_eq!(trapped, 1.0);
    let sent_in = sum(
        &samples,
        "alga_request_body_bytes_total",
        &[("extension", HELLO)],
    );
    let expected_in: usize = (0..requests).map(|i| format!("payload-{i}").len()).sum();
    assert_eq!(sent_in, expected_in as f64);
    assert!(
        sum(
            &samples,
            "alga_response_body_bytes_total",
            &[("extension", HELLO)]
        ) > 0.0
    );
    assert_eq!(
        sum(
            &samples,
            "alga_request_duration_seconds_count",
            &[("extension", HELLO)]
        ),
        requests as f64
    );
    assert!(sum(&samples, "alga_instantiation_duration_seconds_count", &[]) >= requests as f64);
    assert_eq!(
        sum(&samples, "alga_execution_log_written_total", &[]),
        requests as f64 + 1.0
    );
    assert_eq!(sum(&samples, "alga_execution_log_dropped_total", &[]), 0.0);
    assert_eq!(sum(&samples, "alga_in_flight_requests", &[]), 0.0);
    assert!(
        sum(
            &samples,
            "alga_component_cache_total",
            &[("result", "memory_hit")]
        ) >= requests as f64 - 1.0
    );
}

#[test]
fn install_policies_override_the_node_and_endpoints_are_enforced_when_asked() {
    let fixture = Fixture::new();
    let node = start_node(&fixture, &[]);
    install(
        &node,
        HELLO,
        "1.0.0",
        "strict",
        &[],
        &["--policy", "enforce_endpoints=true"],
    );
    install(&node, HELLO, "1.0.0", "relaxed", &[], &[]);
    install(&node, FAULTY, "1.0.0", "relaxed", &[], &[]);
    install(
        &node,
        FAULTY,
        "1.0.0",
        "strict",
        &[],
        &[
            "--policy",
            "timeout_ms=300",
            // One token per 20 s: no refill between the calls below, however slow the machine.
            "--policy",
            "rate_per_sec=0.05",
            "--policy",
            "rate_burst=2",
        ],
    );
    let strict = bearer(&hs256_token(SHARED_JWT_SECRET, "strict", 300));
    let relaxed = bearer(&hs256_token(SHARED_JWT_SECRET, "relaxed", 300));
    let get =
        |route: &str, auth: &str| request(&node, "GET", route, &[("authorization", auth)], None);

    // Endpoint enforcement: on for the strict install only.
    for (route, want) in [
        ("/greet", 200),
        ("/items/7", 200),
        ("/items/", 404),
        ("/other", 404),
        ("/", 404),
    ] {
        let (status, _, body) = get(&format!("/api/ext/{HELLO}{route}"), &strict);
        assert_eq!(status, want, "{route}: {body}");
        if want == 404 {
            assert_eq!(json(&body)["error"], "endpoint_not_found");
        }
    }
    let (status, _, _) = request(
        &node,
        "POST",
        &format!("/api/ext/{HELLO}/greet"),
        &[("authorization", &strict)],
        Some(b"x".to_vec()),
    );
    assert_eq!(status, 404, "POST is not declared");
    let (status, _, _) = get(&format!("/api/ext/{HELLO}/other"), &relaxed);
    assert_eq!(status, 200, "enforcement is off by default");

    // The install's 300 ms deadline instead of the node's 5 s (faulty compiled first, through
    // the relaxed tenant, so the timing is the deadline's alone).
    assert_eq!(get(&format!("/api/ext/{FAULTY}/"), &relaxed).0, 200);
    let started = Instant::now();
    let (status, _, body) = get(&format!("/api/ext/{FAULTY}/sleep"), &strict);
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("300 ms"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The install's rate (burst 2, 0.05/s): the sleep took one token, the next call the other,
    // so the one after is refused, while the same tenant's other extension is still served.
    let (first, _, _) = get(&format!("/api/ext/{FAULTY}/"), &strict);
    let (second, headers, body) = get(&format!("/api/ext/{FAULTY}/"), &strict);
    assert!(first == 200 || first == 429, "{first}");
    assert_eq!(second, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    let (status, _, _) = get(&format!("/api/ext/{HELLO}/greet"), &strict);
    assert_eq!(status, 200);

    // A body cap set later with `update --policy` applies to the next request, merged with
    // the install's existing overrides.
    admin_ok(
        &node,
        &[
            "update",
            HELLO,
            "--tenant",
            "strict",
            "--policy",
            "max_body_bytes=16",
        ],
    );
    let (_, installed) = admin_json(
        &node,
        "GET",
        &format!("tenants/strict/installs/{HELLO}"),
        None,
    );
    assert_eq!(
        installed["policy"],
        json!({"max_body_bytes": 16, "enforce_endpoints": true})
    );
    let (status, _, body) = request(
        &node,
        "GET",
        &format!("/api/ext/{HELLO}/greet"),
        &[("authorization", &strict)],
        Some(vec![b'a'; 32]),
    );
    assert_eq!(status, 413, "{body}");
    let (status, _, _) = request(
        &node,
        "GET",
        &format!("/api/ext/{HELLO}/greet"),
        &[("authorization", &relaxed)],
        Some(vec![b'a'; 32]),
    );
    assert_eq!(status, 200, "other installs keep the node's cap");

    // Bad policies are refused with 400 and change nothing.
    let out = admin(
        &node,
        &[
            "update",
            HELLO,
            "--tenant",
            "strict",
            "--policy",
            "timeout_ms=0",
        ],
    );
    assert!(!out.ok);
    assert!(out.stderr.contains("timeout_ms"), "{}", out.stderr);
    let (_, samples) = scrape(&node);
    assert!(
        sum(
            &samples,
            "alga_denials_total",
            &[("reason", "endpoint_not_found")]
        ) >= 4.0
    );
    assert!(
        sum(
            &samples,
            "alga_denials_total",
            &[("reason", "install_rate")]
        ) >= 1.0
    );
}

#[test]
fn shutdown_finishes_in_flight_requests_and_flushes_the_execution_log() {
    let fixture = Fixture::new();
    let node = start_node(&fixture, &[]);
    install(
        &node,
        FAULTY,
        "1.0.0",
        "tenant-a",
        &[],
        &["--policy", "timeout_ms=1500"],
    );
    let auth = bearer(&hs256_token(SHARED_JWT_SECRET, "tenant-a", 300));
    let url = node.url(&format!("/api/ext/{FAULTY}/sleep"));
    let slow = std::thread::spawn(move || {
        // `send` fails the test (this thread) when the in-flight request is not answered.
        let headers = [
            ("authorization", auth.as_str()),
            ("x-request-id", "in-flight-at-shutdown"),
        ];
        let (status, _, body) = send(&client(), "GET", &url, &headers, None);
        (status, body)
    });
    std::thread::sleep(Duration::from_millis(500));
    let data = node.data_dir().to_owned();
    let exited = node.terminate(Duration::from_secs(20));
    assert_eq!(exited, Some(true), "the node exits cleanly after draining");
    let (status, body) = slow.join().unwrap();
    assert_eq!(status, 504, "answered, not reset: {body}");

    // Restarted on the same data: the row written during shutdown is there.
    let node = fixture.start_with_env(
        &["--service-token", SERVICE_TOKEN],
        &[("ALGA_TENANT_JWT_HS256_SECRET", SHARED_JWT_SECRET)],
    );
    assert_eq!(node.data_dir(), data);
    let rows = executions(&node, "tenant-a", 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["request_id"], "in-flight-at-shutdown");
    assert_eq!(rows[0]["status"], 504);
}

#[test]
fn readiness_and_liveness_probes_answer() {
    let fixture = Fixture::new();
    let node = fixture.start(&[]);
    for probe in ["/healthz", "/readyz"] {
        let (status, headers, body) = request(&node, "GET", probe, &[], None);
        assert_eq!(status, 200, "{probe}: {body}");
        assert_eq!(headers["content-type"], "application/json");
        assert!(!headers.contains_key("cache-control") || headers["cache-control"] == "no-store");
    }
    // A probe is a route: another method is 405 (in the one error contract), an unknown
    // path 404.
    let (status, _, body) = request(&node, "POST", "/readyz", &[], None);
    assert_eq!(status, 405, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"], "method_not_allowed", "{body}");
    let (status, _, body) = request(&node, "GET", "/readyz/more", &[], None);
    assert_eq!(status, 404, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"], "not_found", "{body}");
    // The immutable caching of UI assets never leaks onto API routes.
    let (_, headers, _) = request(&node, "GET", &format!("/api/ext/{HELLO}/"), &[], None);
    assert!(
        !headers
            .get("cache-control")
            .is_some_and(|v| v.to_str().unwrap().contains("immutable"))
    );
}
