//! Alga PSA extensions over the real binary, unchanged: components of Alga's `runner` world
//! (the `alga-rust` sample built with wit-bindgen, the `alga-js` sample built with
//! componentize-js) through the gateway and through `/v1/execute` with Alga's own request
//! shape and headers; every runner-world interface granted, denied and isolated between
//! tenants; storage revisions; the same egress refusals as wasi:http; guest faults contained.

use std::time::Duration;

use alga_edge_e2e::metrics::{scrape, sum};
use alga_edge_e2e::publishing::{
    Fixture, SERVICE_TOKEN, admin_ok, call, cli, content_hash, execution_rows, install, json, path,
    shared_token, token,
};
use alga_edge_e2e::upstream::Upstream;
use alga_edge_e2e::{Node, client, get_json, request, samples_dir, wait_until};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::BIN;

const RUST: &str = "com.alga.test.alga-rust";
const JS: &str = "com.alga.test.alga-js";
/// Every capability the runner world's interfaces need beyond the default grants.
const ALGA_ALL: [&str; 8] = [
    "cap:secrets.get",
    "cap:http.fetch",
    "cap:storage.kv",
    "cap:ui.proxy",
    "cap:scheduler.manage",
    "cap:invoice.manual.create",
    "cap:client.read",
    "cap:service.read",
];
const SECRET: &str = "alga-S3cr3t-42";

/// A node with both samples published, verifying the fixture's key, with the runner API on.
fn start(fixture: &Fixture, extra: &[&str]) -> Node {
    let rust = fixture.bundle_with(
        RUST,
        "1.0.0",
        "alga-rust",
        json!({ "capabilities": ALGA_ALL }),
    );
    let js = fixture.bundle_with(
        JS,
        "1.0.0",
        "alga-js",
        json!({ "runtime": "wasm-js@1", "capabilities": ["cap:storage.kv"] }),
    );
    let mut args = vec!["--tenant-rate", "0", "--service-token", SERVICE_TOKEN];
    args.extend_from_slice(extra);
    let node = fixture.start(&args);
    admin_ok(&node, &["publish", path(&rust)]);
    admin_ok(&node, &["publish", path(&js)]);
    node
}

/// `METHOD /api/ext/{ext}{route}` with the tenant token `bearer` (the prefix is added): 200 JSON.
fn ext(node: &Node, ext: &str, method: &str, route: &str, bearer: &str, body: &str) -> Value {
    let (status, text) = call(
        node,
        method,
        &format!("/api/ext/{ext}{route}"),
        bearer,
        body,
    );
    assert_eq!(status, 200, "{method} {ext}{route}: {text}");
    json(&text)
}

/// The header values the echo saw under `name`.
fn seen_header<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("no headers in {echo}"))
        .iter()
        .filter(|pair| pair[0] == name)
        .filter_map(|pair| pair[1].as_str())
        .collect()
}

/// What both samples' echo must show for `POST {url}` with body `hello`.
fn assert_echo(echo: &Value, url: &str, extension: &str, tenant: &str) {
    assert_eq!(echo["method"], "POST", "{echo}");
    assert_eq!(echo["url"], url, "{echo}");
    assert_eq!(echo["body"], "hello", "{echo}");
    assert_eq!(seen_header(echo, "x-idempotency-key"), ["k-1"], "{echo}");
    assert_eq!(seen_header(echo, "x-alga-tenant"), [tenant], "{echo}");
    assert!(
        seen_header(echo, "authorization").is_empty() && seen_header(echo, "cookie").is_empty(),
        "credentials never reach the component: {echo}"
    );
    for context in [&echo["context"], &echo["context_import"]] {
        assert_eq!(context["tenant_id"], tenant, "{echo}");
        assert_eq!(context["extension_id"], extension, "{echo}");
        assert!(
            context["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{echo}"
        );
        assert!(context["install_id"].as_str().is_some(), "{echo}");
    }
}

/// `POST /v1/execute` with `headers` and `envelope`: status and answer.
fn execute(node: &Node, headers: &[(&str, &str)], envelope: &Value) -> (u16, Value) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (status, _, text) = request(
        node,
        "POST",
        "/v1/execute",
        &all,
        Some(envelope.to_string().into_bytes()),
    );
    (status, json(&text))
}

/// Alga's runner envelope for `extension` of `tenant`, as Alga's gateway builds it (plus an
/// unknown field, which Alga ignores).
fn envelope(node: &Node, extension: &str, tenant: &str, http: Value, extra: Value) -> Value {
    let mut envelope = json!({
        "context": {
            "request_id": "alga-req-1",
            "tenant_id": tenant,
            "extension_id": extension,
            "content_hash": content_hash(node, extension),
            "version_id": "v-uuid-1",
            "config": {"mode": "alga"},
        },
        "http": http,
        "limits": {"timeout_ms": 10_000, "memory_mb": 64, "fuel": 1_000_000},
        "providers": [],
        "ignored_by_alga_too": true,
    });
    if let (Some(fields), Some(extra)) = (envelope.as_object_mut(), extra.as_object()) {
        fields.extend(extra.clone());
    }
    envelope
}

/// The component's JSON answer inside a `/v1/execute` answer.
fn executed_body(answer: &Value) -> Value {
    let b64 = answer["body_b64"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    json(&String::from_utf8(BASE64.decode(b64).unwrap()).unwrap())
}

#[test]
fn alga_abi_extensions_answer_through_the_gateway_and_v1_execute() {
    let fixture = Fixture::new();
    let node = start(&fixture, &[]);
    install(&node, RUST, "1.0.0", "tenant-a", &ALGA_ALL, &[]);
    install(&node, JS, "1.0.0", "tenant-a", &["cap:storage.kv"], &[]);
    let bearer = format!("Bearer {}", token(&node, "tenant-a"));
    let service = format!("Bearer {SERVICE_TOKEN}");
    // The first request of the JavaScript sample compiles its ~12 MB component (tens of
    // seconds in a debug build under load): give it a long client bound once.
    let (status, _, text) = alga_edge_e2e::send(
        &alga_edge_e2e::client_with_timeout(Duration::from_secs(600)),
        "GET",
        &node.url(&format!("/api/ext/{JS}/warm-up")),
        &[("authorization", bearer.as_str())],
        None,
    );
    assert_eq!(status, 200, "{text}");

    for extension in [RUST, JS] {
        // Through the gateway: method, path with its query in `url`, headers, body.
        let route = format!("/api/ext/{extension}/items/7?q=a%20b");
        let (status, headers, text) = request(
            &node,
            "POST",
            &route,
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "text/plain"),
                ("x-idempotency-key", "k-1"),
                ("cookie", "session=secret"),
            ],
            Some(b"hello".to_vec()),
        );
        assert_eq!(status, 200, "{extension}: {text}");
        assert_echo(&json(&text), "/items/7?q=a%20b", extension, "tenant-a");
        assert_eq!(headers["x-ext-echo"], "1", "{extension}");
        assert_eq!(headers["content-type"], "application/json");
        assert!(
            headers.get("set-cookie").is_none(),
            "{extension}: set-cookie must be dropped"
        );

        // Through /v1/execute as Alga's own callers send it.
        let http = json!({
            "method": "POST",
            "path": "/items/7",
            "query": {"q": "a b"},
            "headers": {"content-type": "text/plain", "x-idempotency-key": "k-1"},
            "body_b64": BASE64.encode("hello"),
        });
        let (status, answer) = execute(
            &node,
            &[
                ("x-runner-service-token", SERVICE_TOKEN),
                ("x-alga-tenant", "tenant-a"),
                ("x-alga-extension", extension),
            ],
            &envelope(&node, extension, "tenant-a", http.clone(), json!({})),
        );
        assert_eq!(status, 200, "{extension}: {answer}");
        assert_eq!(answer["status"], 200, "{answer}");
        assert_eq!(answer["error"], Value::Null, "{answer}");
        assert_eq!(answer["headers"]["x-ext-echo"], "1", "{answer}");
        assert!(answer["headers"].get("set-cookie").is_none(), "{answer}");
        let echo = executed_body(&answer);
        // The query map is form-encoded into `url`, as Alga's runner does.
        assert_echo(&echo, "/items/7?q=a+b", extension, "tenant-a");
        assert_eq!(echo["context"]["request_id"], "alga-req-1", "{echo}");

        // `authorization: Bearer` works too; a mismatched x-alga-tenant is refused (403),
        // and so is a wrong service token in Alga's header (401).
        let (status, _) = execute(
            &node,
            &[("authorization", service.as_str())],
            &envelope(&node, extension, "tenant-a", http.clone(), json!({})),
        );
        assert_eq!(status, 200);
        let (status, answer) = execute(
            &node,
            &[
                ("x-runner-service-token", SERVICE_TOKEN),
                ("x-alga-tenant", "tenant-b"),
                ("x-alga-extension", extension),
            ],
            &envelope(&node, extension, "tenant-a", http.clone(), json!({})),
        );
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["error"], "forbidden", "{answer}");
        let (status, answer) = execute(
            &node,
            &[("x-runner-service-token", "not-the-token")],
            &envelope(&node, extension, "tenant-a", http, json!({})),
        );
        assert_eq!(status, 401, "{answer}");
    }

    // `providers` may only grant what the version requests (or a default grant), and
    // `tenant_id` is held to the same charset as everywhere else.
    let ping = json!({"method": "GET", "path": "/ok"});
    let service_headers = [("x-runner-service-token", SERVICE_TOKEN)];
    for (providers, status) in [
        (json!(["storage.kv", "cap:user.read"]), 200),
        (json!(["cap:config.get"]), 403),
    ] {
        let (got, answer) = execute(
            &node,
            &service_headers,
            &envelope(
                &node,
                RUST,
                "tenant-a",
                ping.clone(),
                json!({ "providers": providers }),
            ),
        );
        assert_eq!(got, status, "{providers}: {answer}");
    }
    let mut hostile = envelope(&node, RUST, "tenant-a", ping, json!({}));
    hostile["context"]["tenant_id"] = json!("../tenant-b");
    let (got, answer) = execute(&node, &service_headers, &hostile);
    assert_eq!(got, 400, "{answer}");

    // The envelope's `user` and its plain base64-JSON `secret_envelope` reach the interfaces.
    let user = json!({
        "user_id": "u-42", "user_email": "ann@example.com", "user_name": "Ann",
        "user_type": "client", "client_name": "Acme", "client_id": "c-7",
        "additional_fields": {"locale": "en"}
    });
    let secrets = BASE64.encode(json!({"api_key": SECRET}).to_string());
    let get = |path: &str| json!({"method": "GET", "path": path});
    let run = |path: &str, extra: Value| {
        let (status, answer) = execute(
            &node,
            &[("x-runner-service-token", SERVICE_TOKEN)],
            &envelope(&node, RUST, "tenant-a", get(path), extra),
        );
        assert_eq!(status, 200, "{path}: {answer}");
        executed_body(&answer)
    };
    let seen = run("/user", json!({ "user": user }));
    assert_eq!(seen["user"]["user_email"], "ann@example.com", "{seen}");
    assert_eq!(seen["user"]["tenant_id"], "tenant-a", "{seen}");
    assert_eq!(seen["user_v2"]["client_id"], "c-7", "{seen}");
    let seen = run("/user", json!({}));
    assert_eq!(seen["user"]["error"], "not-available", "{seen}");
    let seen = run(
        "/secrets/api_key",
        json!({ "secret_envelope": {"ciphertext_b64": secrets} }),
    );
    assert_eq!(seen["value"], SECRET, "{seen}");
    let (status, answer) = execute(
        &node,
        &[("x-runner-service-token", SERVICE_TOKEN)],
        &envelope(
            &node,
            RUST,
            "tenant-a",
            get("/secrets/api_key"),
            json!({"secret_envelope": {"ciphertext_b64": "dmF1bHQ6djE6YWJj", "algorithm": "vault-transit", "key_path": "k"}}),
        ),
    );
    assert_eq!(status, 501, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("Vault transit"),
        "{answer}"
    );
    assert!(
        !node.log_text().contains(SECRET),
        "a secret from the envelope reached the node log"
    );
}

/// `GET /storage/{namespace}/{key}` etc. of the Rust sample.
fn storage(node: &Node, token: &str, method: &str, route: &str, body: Value) -> Value {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    ext(
        node,
        RUST,
        method,
        &format!("/storage{route}"),
        token,
        &body,
    )
}

#[test]
fn every_runner_interface_is_granted_denied_and_scoped_to_its_install() {
    let upstream = Upstream::start();
    let port = upstream.port;
    let fixture = Fixture::new();
    let allow = format!("127.0.0.1:{port},localhost:{port}");
    let node = start(&fixture, &["--egress-allowlist", &allow]);
    let secret = format!("api_key={SECRET}");
    let policy = upstream.install_policy();
    install(
        &node,
        RUST,
        "1.0.0",
        "tenant-a",
        &ALGA_ALL,
        &["--secret", &secret, "--policy", &policy],
    );
    install(
        &node,
        RUST,
        "1.0.0",
        "tenant-b",
        &ALGA_ALL,
        &["--secret", "api_key=tenant-b-value", "--policy", &policy],
    );
    install(
        &node,
        RUST,
        "1.0.0",
        "tenant-c",
        &[],
        &["--secret", &secret],
    );
    let (a, b, c) = (
        token(&node, "tenant-a"),
        token(&node, "tenant-b"),
        token(&node, "tenant-c"),
    );

    // user / user-v2 from the tenant token's claims; granted by default.
    let out = cli(&[
        "token",
        "--tenant",
        "tenant-c",
        "--user",
        "u-9",
        "--user-profile",
        r#"{"user_email":"bob@example.com","user_name":"Bob","user_type":"internal","client_name":"Acme"}"#,
        "--data-dir",
        path(node.data_dir()),
    ]);
    assert!(out.ok, "{}", out.stderr);
    let with_user = out.stdout.trim().to_owned();
    let seen = ext(&node, RUST, "GET", "/user", &with_user, "");
    assert_eq!(seen["user"]["user_id"], "u-9", "{seen}");
    assert_eq!(seen["user"]["user_email"], "bob@example.com", "{seen}");
    assert_eq!(seen["user_v2"]["user_name"], "Bob", "{seen}");
    let seen = ext(&node, RUST, "GET", "/user", &c, "");
    assert_eq!(seen["user"]["error"], "not-available", "{seen}");
    assert_eq!(seen["user_v2"]["error"], "not-available", "{seen}");

    // secrets: the install's own, denied without the grant.
    assert_eq!(
        ext(&node, RUST, "GET", "/secrets/api_key", &a, "")["value"],
        SECRET
    );
    assert_eq!(
        ext(&node, RUST, "GET", "/secrets/api_key", &b, "")["value"],
        "tenant-b-value"
    );
    assert_eq!(
        ext(&node, RUST, "GET", "/secrets/nope", &a, "")["error"],
        "missing"
    );
    assert_eq!(
        ext(&node, RUST, "GET", "/secrets", &a, "")["keys"],
        json!(["api_key"])
    );
    assert_eq!(
        ext(&node, RUST, "GET", "/secrets/api_key", &c, "")["error"],
        "denied"
    );
    assert_eq!(
        ext(&node, RUST, "GET", "/secrets", &c, "")["keys"],
        json!([])
    );

    // storage: revisions as optimistic concurrency.
    let put = |bearer: &str, route: &str, value: &str, revision: Value| {
        storage(
            &node,
            bearer,
            "PUT",
            route,
            json!({"value": value, "revision": revision}),
        )
    };
    let first = put(&a, "/n1/k", "v1", Value::Null)["revision"].clone();
    assert!(first.as_u64().is_some(), "{first}");
    let got = storage(&node, &a, "GET", "/n1/k", Value::Null);
    assert_eq!(
        (got["value"].clone(), got["revision"].clone()),
        (json!("v1"), first.clone())
    );
    let second = put(&a, "/n1/k", "v2", first.clone())["revision"].clone();
    assert!(second.as_u64() > first.as_u64(), "{first} -> {second}");
    assert_eq!(
        put(&a, "/n1/k", "stale", first.clone())["error"],
        "conflict"
    );
    assert_eq!(
        storage(&node, &a, "GET", "/n1/k", Value::Null)["value"],
        "v2"
    );
    assert_eq!(
        storage(&node, &a, "DELETE", "/n1/k", Value::Null)["ok"],
        true
    );
    assert_eq!(
        storage(&node, &a, "GET", "/n1/k", Value::Null)["error"],
        "missing"
    );
    assert_eq!(put(&a, "/n1/k", "again", second)["error"], "conflict");
    for key in ["b", "a", "c"] {
        put(&a, &format!("/pages/{key}"), key, Value::Null);
    }
    let keys = |answer: Value| -> Vec<String> {
        answer["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"))
            .iter()
            .map(|e| e["key"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        keys(storage(&node, &a, "GET", "/pages", Value::Null)),
        ["a", "b", "c"]
    );
    assert_eq!(
        keys(storage(&node, &a, "GET", "/pages?cursor=a", Value::Null)),
        ["b", "c"]
    );

    // Isolation: tenant B and hostile namespaces never see tenant A's entries.
    put(&a, "/shared/k", "tenant-a-data", Value::Null);
    for namespace in ["shared", "..%2Fshared", "shared%00", "%2E%2E"] {
        let answer = storage(&node, &b, "GET", &format!("/{namespace}/k"), Value::Null);
        assert_ne!(answer["value"], "tenant-a-data", "{namespace}: {answer}");
    }
    assert_eq!(
        storage(&node, &c, "GET", "/shared/k", Value::Null)["error"],
        "denied"
    );
    assert_eq!(put(&c, "/shared/k", "x", Value::Null)["error"], "denied");

    // http.fetch: the same egress path and refusals as wasi:http.
    let fetch = |bearer: &str, url: &str| {
        let q = url.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
        ext(&node, RUST, "GET", &format!("/fetch?url={q}"), bearer, "")
    };
    let fetched = fetch(&a, &format!("http://127.0.0.1:{port}/x"));
    assert_eq!(
        (fetched["status"].clone(), fetched["body"].clone()),
        (json!(200), json!("pong /x"))
    );
    for (url, _wasi_error) in upstream.refused_by_policy() {
        assert_eq!(fetch(&a, &url)["error"], "not-allowed", "{url}");
    }
    assert_eq!(fetch(&a, "not a url")["error"], "invalid-url");
    assert_eq!(
        fetch(&c, &format!("http://127.0.0.1:{port}/x"))["error"],
        "not-allowed"
    );

    // logging: into the execution log.
    assert_eq!(ext(&node, RUST, "GET", "/log", &a, "")["ok"], true);
    wait_until(Duration::from_secs(10), "the /log execution row", || {
        execution_rows(&node, "tenant-a", 5).iter().any(|row| {
            let logs = row["logs"].to_string();
            logs.contains("alga-info") && logs.contains("alga-warn") && logs.contains("alga-error")
        })
    });

    // The platform interfaces (tests/e2e/platform.rs brokers them to a platform): this node
    // has none configured, so granted calls answer their interface's error, never a trap.
    let granted = ext(&node, RUST, "GET", "/platform", &a, "");
    let denied = ext(&node, RUST, "GET", "/platform", &c, "");
    // What Alga's runner answers without UI_PROXY_BASE_URL.
    assert_eq!(granted["ui_proxy"], "route-not-found", "{granted}");
    assert_eq!(denied["ui_proxy"], "denied", "{denied}");
    // The scheduler is built (tests/e2e/schedules.rs); this manifest declares no
    // schedulable endpoint, so `/sync` is refused.
    assert_eq!(granted["list_schedules"], "ok", "{granted}");
    assert_eq!(denied["list_schedules"], "denied", "{denied}");
    assert_eq!(granted["create_schedule"]["success"], false, "{granted}");
    assert!(
        granted["create_schedule"]["error"]
            .as_str()
            .unwrap()
            .contains("not schedulable"),
        "{granted}"
    );
    assert!(
        denied["create_schedule"]["error"]
            .as_str()
            .unwrap()
            .contains("cap:scheduler.manage"),
        "{denied}"
    );
    assert!(
        granted["create_manual_invoice"]["error"]
            .as_str()
            .unwrap()
            .contains("set STORAGE_API_BASE_URL"),
        "{granted}"
    );
    assert!(
        denied["create_manual_invoice"]["error"]
            .as_str()
            .unwrap()
            .contains("cap:invoice.manual.create"),
        "{denied}"
    );
    assert_eq!(granted["list_clients"], "internal", "{granted}");
    assert_eq!(denied["list_clients"], "not-allowed", "{denied}");
    assert_eq!(granted["list_services"], "internal", "{granted}");
    assert_eq!(denied["list_services"], "not-allowed", "{denied}");

    let (_, samples) = scrape(&node);
    let refused = |capability: &str| {
        sum(
            &samples,
            "alga_capability_denials_total",
            &[("capability", capability), ("reason", "not_granted")],
        )
    };
    for capability in [
        "secrets",
        "kv",
        "http",
        "ui_proxy",
        "scheduler",
        "clients",
        "services",
    ] {
        assert!(
            refused(capability) >= 1.0,
            "{capability} denials not counted"
        );
    }
}

#[test]
fn faults_in_alga_abi_components_are_contained_like_wasi_ones() {
    let component = alga_edge_e2e::component("alga-rust");
    let mapping = format!("alga={}", component.display());
    let node = Node::start(
        BIN,
        &["--component", &mapping, "--memory-limit-mib", "64"],
        &[("EXT_GATEWAY_TIMEOUT_MS", "1500")],
    );
    let agent = client();
    let (status, _, body) = get_json(&agent, &node.url("/api/ext/alga/echo"));
    assert_eq!(status, 200, "{body}");
    for (route, status, code) in [
        ("/trap", 502, "extension_trap"),
        ("/loop", 504, "extension_timeout"),
        ("/oom", 502, "extension_memory_limit"),
    ] {
        let (got, _, body) = get_json(&agent, &node.url(&format!("/api/ext/alga{route}")));
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{route}: {body}"
        );
        let (after, _, body) = get_json(&agent, &node.url("/api/ext/alga/after"));
        assert_eq!(after, 200, "node stopped serving after {route}: {body}");
        assert_eq!(body["url"], "/after");
    }
}

#[test]
fn an_alga_manifest_with_schedulable_endpoints_and_menu_hooks_packs_and_publishes() {
    let fixture = Fixture::new();
    let node = fixture.start(&[]);
    let sample = samples_dir().join("alga-rust");
    let manifest: Value =
        json(&std::fs::read_to_string(sample.join("manifest.json")).expect("sample manifest"));
    let endpoints = manifest["api"]["endpoints"].as_array().unwrap();
    assert!(
        endpoints.iter().any(|e| e["schedulable"] == true),
        "the sample marks an endpoint schedulable: {manifest}"
    );
    assert!(
        manifest["ui"]["hooks"]["appMenu"]["label"].is_string(),
        "{manifest}"
    );
    let bundle = fixture.pack_and_sign(&sample, fixture.data().join("alga-sample.tar.zst"));
    let out = admin_ok(&node, &["publish", path(&bundle)]);
    assert!(out.contains("sha256:"), "{out}");
}

#[test]
fn alga_storage_writes_at_an_edge_go_to_the_primary_and_keep_their_revisions() {
    let fixture = Fixture::new();
    let rust = fixture.bundle_with(
        RUST,
        "1.0.0",
        "alga-rust",
        json!({ "capabilities": ALGA_ALL }),
    );
    let primary = fixture.start_node_in(&fixture.dir.path().join("primary"), &[]);
    admin_ok(&primary, &["publish", path(&rust)]);
    install(
        &primary,
        RUST,
        "1.0.0",
        "tenant-a",
        &["cap:storage.kv"],
        &[],
    );
    // The edge never syncs on its own during the test: what it reads after a write came back
    // with the write itself.
    let edge = fixture.start_edge_in(
        &fixture.dir.path().join("edge"),
        &primary.base(),
        3_600_000,
        &[],
    );
    let a = shared_token("tenant-a");
    wait_until(
        Duration::from_secs(20),
        "the edge to serve the install",
        || call(&edge, "GET", &format!("/api/ext/{RUST}/ok"), &a, "").0 == 200,
    );

    let put = |node: &Node, value: &str, revision: Value| {
        storage(
            node,
            &a,
            "PUT",
            "/prefs/theme",
            json!({"value": value, "revision": revision}),
        )
    };
    let first = put(&edge, "dark", Value::Null)["revision"].clone();
    assert!(first.as_u64().is_some(), "{first}");
    let read = storage(&edge, &a, "GET", "/prefs/theme", Value::Null);
    assert_eq!(
        (&read["value"], &read["revision"]),
        (&json!("dark"), &first),
        "read-your-write"
    );
    let second = put(&edge, "light", first.clone())["revision"].clone();
    assert!(second.as_u64() > first.as_u64(), "{first} -> {second}");
    assert_eq!(put(&edge, "stale", first)["error"], "conflict");
    let on_primary = storage(&primary, &a, "GET", "/prefs/theme", Value::Null);
    assert_eq!(
        (&on_primary["value"], &on_primary["revision"]),
        (&json!("light"), &second),
        "the primary holds the edge's write with the same revision"
    );
}
