//! The platform broker over the real binary: Alga's `clients`, `services`, `invoicing` and
//! `ui-proxy` from the `alga-rust` sample (world `runner`), brokered to a loopback stand-in for
//! Alga PSA's server ([`PlatformServer`]). Every interface granted and denied; the platform
//! sees exactly Alga's paths, headers and bodies; a platform that is down, slow, oversized or
//! malformed becomes the interface's own error within the deadline, reported in the execution
//! log and the metrics; no platform configured names the setting to set.

use std::time::Duration;

use alga_edge_e2e::metrics::{scrape, sum};
use alga_edge_e2e::platform::{Mode, PLATFORM_CAPS, PlatformServer, RecordedCall};
use alga_edge_e2e::publishing::{
    Fixture, admin_ok, call, cli, execution_rows, install, json, path, token,
};
use alga_edge_e2e::{Node, timed, wait_until};
use serde_json::{Value, json};

const RUST: &str = "com.alga.test.alga-rust";
const PLATFORM_TOKEN: &str = "runner-token-for-tests";
const PROXY_KEY: &str = "ui-proxy-key-for-tests";
const API_KEY: &str = "install-api-key-7";

/// A node brokering to `platform` with `extra` flags, the sample published and installed for
/// `tenant-a` (every platform capability, an `api_key` secret) and `tenant-c` (none).
fn start(fixture: &Fixture, platform: &PlatformServer, extra: &[&str]) -> Node {
    let bundle = fixture.bundle_with(
        RUST,
        "1.0.0",
        "alga-rust",
        json!({ "capabilities": PLATFORM_CAPS }),
    );
    let (base, proxy) = (platform.base(), platform.ui_proxy_base());
    let mut args = vec![
        "--tenant-rate",
        "0",
        "--platform-url",
        &base,
        "--platform-token",
        PLATFORM_TOKEN,
        "--ui-proxy-base-url",
        &proxy,
        "--ui-proxy-auth-key",
        PROXY_KEY,
    ];
    args.extend_from_slice(extra);
    let node = fixture.start(&args);
    admin_ok(&node, &["publish", path(&bundle)]);
    let secret = format!("api_key={API_KEY}");
    install(
        &node,
        RUST,
        "1.0.0",
        "tenant-a",
        &PLATFORM_CAPS,
        &["--secret", &secret],
    );
    install(&node, RUST, "1.0.0", "tenant-c", &[], &[]);
    node
}

/// `METHOD /api/ext/{RUST}{route}`: the guest's JSON answer (always 200: an interface's error
/// is a value, never a trap).
fn ext(node: &Node, method: &str, route: &str, bearer: &str, body: &str) -> Value {
    let (status, text) = call(
        node,
        method,
        &format!("/api/ext/{RUST}{route}"),
        bearer,
        body,
    );
    assert_eq!(status, 200, "{method} {route}: {text}");
    json(&text)
}

/// A tenant token naming user `u-9` with a profile.
fn user_token(node: &Node, tenant: &str) -> String {
    let out = cli(&[
        "token",
        "--tenant",
        tenant,
        "--user",
        "u-9",
        "--user-profile",
        r#"{"user_email":"bob@example.com","user_name":"Bob","user_type":"internal","client_name":"Acme"}"#,
        "--data-dir",
        path(node.data_dir()),
    ]);
    assert!(out.ok, "{}", out.stderr);
    out.stdout.trim().to_owned()
}

/// The one call the platform saw since the last look.
fn only_call(platform: &PlatformServer) -> RecordedCall {
    let mut calls = platform.take_calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    calls.remove(0)
}

/// Asserts the identity headers every brokered call carries.
fn assert_identity(seen: &RecordedCall, context: &Value) {
    for (header, field) in [
        ("x-alga-tenant", "tenant_id"),
        ("x-alga-extension", "extension_id"),
        ("x-ext-install-id", "install_id"),
        ("x-ext-version-id", "version_id"),
    ] {
        assert_eq!(
            seen.header(header),
            context[field].as_str(),
            "{header}: {seen:#?}"
        );
    }
    assert!(
        seen.header("x-request-id").is_some_and(|id| !id.is_empty()),
        "{seen:#?}"
    );
}

#[test]
fn every_platform_api_is_granted_and_denied_and_the_platform_sees_algas_calls() {
    let platform = PlatformServer::start(PLATFORM_TOKEN);
    let fixture = Fixture::new();
    let node = start(&fixture, &platform, &[]);
    let (a, c) = (user_token(&node, "tenant-a"), token(&node, "tenant-c"));
    let context = ext(&node, "GET", "/", &a, "")["context"].clone();
    let install_id = context["install_id"].as_str().unwrap().to_owned();
    assert_eq!(context["tenant_id"], "tenant-a", "{context}");
    assert!(context["version_id"].is_string(), "{context}");

    // clients.list-clients: Alga's path, token, operation, filter and user.
    let listed = ext(
        &node,
        "GET",
        "/clients?search=acme&page=1&page_size=10",
        &a,
        "",
    );
    assert_eq!(listed["total_count"], 1, "{listed}");
    assert_eq!(listed["items"][0]["client_id"], "c-1", "{listed}");
    assert_eq!(listed["items"][0]["client_name"], "Acme Corp", "{listed}");
    assert_eq!(
        listed["items"][0]["billing_email"], "billing@acme.test",
        "{listed}"
    );
    let seen = only_call(&platform);
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.target,
        format!("/api/internal/ext-clients/install/{install_id}")
    );
    assert_eq!(seen.header("x-runner-auth"), Some(PLATFORM_TOKEN));
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_identity(&seen, &context);
    assert_eq!(
        seen.json(),
        json!({"operation": "list",
            "input": {"search": "acme", "page": 1, "pageSize": 10},
            "user": {"userId": "u-9", "userType": "internal"}})
    );

    // clients.get-client: found and not found.
    let got = ext(&node, "GET", "/clients/c-2", &a, "");
    assert_eq!(got["item"]["client_name"], "Globex", "{got}");
    assert_eq!(got["item"]["account_manager_name"], "Hank", "{got}");
    assert_eq!(
        only_call(&platform).json(),
        json!({"operation": "get", "input": {"clientId": "c-2"},
            "user": {"userId": "u-9", "userType": "internal"}})
    );
    assert_eq!(
        ext(&node, "GET", "/clients/nope", &a, "")["item"],
        Value::Null
    );
    platform.take_calls();

    // services.list-services and get-service.
    let listed = ext(&node, "GET", "/services", &a, "");
    assert_eq!(listed["total_count"], 2, "{listed}");
    assert_eq!(listed["items"][1]["item_kind"], "product", "{listed}");
    assert_eq!(listed["items"][1]["billing_method"], "usage", "{listed}");
    assert_eq!(listed["items"][1]["default_rate"], 120.5, "{listed}");
    let seen = only_call(&platform);
    assert_eq!(
        seen.target,
        format!("/api/internal/ext-services/install/{install_id}")
    );
    assert_eq!(seen.header("x-runner-auth"), Some(PLATFORM_TOKEN));
    assert_eq!(
        seen.json(),
        json!({"operation": "list", "input": {"page": 1, "pageSize": 25},
            "user": {"userId": "u-9", "userType": "internal"}})
    );
    let got = ext(&node, "GET", "/services/s-1", &a, "");
    assert_eq!(got["item"]["sku"], "BK-1", "{got}");
    assert_eq!(got["item"]["is_active"], true, "{got}");
    assert_eq!(
        only_call(&platform).json()["input"],
        json!({"serviceId": "s-1"})
    );

    // invoicing.create-manual-invoice: Alga's body, absent optionals left out, no user.
    let invoice = ext(
        &node,
        "POST",
        "/invoice",
        &a,
        &json!({"client_id": "c-1", "po_number": "PO-77", "items": [
            {"service_id": "s-1", "quantity": 2, "description": "Backup, March", "rate": 50}]})
        .to_string(),
    );
    assert_eq!(invoice["success"], true, "{invoice}");
    assert_eq!(invoice["invoice_id"], "inv-1", "{invoice}");
    assert_eq!(invoice["invoice_number"], "INV-0001", "{invoice}");
    assert_eq!(invoice["total"], 100.0, "{invoice}");
    let seen = only_call(&platform);
    assert_eq!(
        seen.target,
        format!("/api/internal/ext-invoicing/install/{install_id}")
    );
    assert_eq!(seen.header("x-runner-auth"), Some(PLATFORM_TOKEN));
    assert_identity(&seen, &context);
    assert_eq!(
        seen.json(),
        json!({"operation": "createManualInvoice", "clientId": "c-1", "poNumber": "PO-77",
            "items": [{"serviceId": "s-1", "quantity": 2.0, "description": "Backup, March",
                "rate": 50.0}]})
    );
    // The platform's own refusal reaches the guest as Alga's result shape.
    let refused = ext(
        &node,
        "POST",
        "/invoice",
        &a,
        r#"{"client_id":"c-1","items":[]}"#,
    );
    assert_eq!(refused["success"], false, "{refused}");
    assert_eq!(refused["error"], "Validation failed", "{refused}");
    assert!(
        refused["field_errors"]
            .as_str()
            .unwrap()
            .contains("at least one item"),
        "{refused}"
    );
    platform.take_calls();

    // ui-proxy.call-route: GET under the extension's prefix, with the query; POST to a
    // platform API route with the payload.
    let proxied = ext(&node, "GET", "/proxy?route=%2Fitems%2F7%3Fx%3D1", &a, "");
    let answer = json(proxied["body"].as_str().unwrap());
    assert_eq!(answer["method"], "GET", "{answer}");
    let seen = only_call(&platform);
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, format!("/ui-proxy/{RUST}/items/7?x=1"));
    assert_eq!(seen.header("x-runner-auth"), Some(PROXY_KEY));
    assert_eq!(seen.header("x-api-key"), Some(API_KEY));
    assert_eq!(seen.header("x-user-id"), Some("u-9"));
    assert_eq!(seen.header("x-user-email"), Some("bob@example.com"));
    assert_eq!(seen.header("content-type"), None);
    assert_identity(&seen, &context);
    let proxied = ext(
        &node,
        "POST",
        "/proxy?route=%2Fapi%2Fv1%2Fthings",
        &a,
        r#"{"n":1}"#,
    );
    assert_eq!(
        json(proxied["body"].as_str().unwrap())["body"],
        r#"{"n":1}"#
    );
    let seen = only_call(&platform);
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("POST", "/ui-proxy/api/v1/things")
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.body, br#"{"n":1}"#);
    // The platform's 404 and a route that would climb out of the base.
    assert_eq!(
        ext(&node, "GET", "/proxy?route=%2Fmissing", &a, "")["error"],
        "route-not-found"
    );
    platform.take_calls();
    assert_eq!(
        ext(&node, "GET", "/proxy?route=%2F..%2Fadmin", &a, "")["error"],
        "bad-request"
    );
    // Input refused before any call, as Alga's runner does.
    assert_eq!(
        ext(&node, "GET", "/clients?page_size=500", &a, "")["error"],
        "invalid-input"
    );
    assert!(platform.take_calls().is_empty());

    // Denied: every interface's own error, and nothing reaches the platform.
    assert_eq!(
        ext(&node, "GET", "/clients", &c, "")["error"],
        "not-allowed"
    );
    assert_eq!(
        ext(&node, "GET", "/clients/c-1", &c, "")["error"],
        "not-allowed"
    );
    assert_eq!(
        ext(&node, "GET", "/services", &c, "")["error"],
        "not-allowed"
    );
    assert_eq!(
        ext(&node, "GET", "/services/s-1", &c, "")["error"],
        "not-allowed"
    );
    let denied = ext(
        &node,
        "POST",
        "/invoice",
        &c,
        r#"{"client_id":"c-1","items":[{"service_id":"s-1"}]}"#,
    );
    assert_eq!(denied["success"], false, "{denied}");
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .contains("cap:invoice.manual.create"),
        "{denied}"
    );
    assert_eq!(
        ext(&node, "GET", "/proxy?route=%2Fx", &c, "")["error"],
        "denied"
    );
    assert!(platform.take_calls().is_empty());

    // Counted: calls by interface and outcome, refusals as denials.
    let (_, samples) = scrape(&node);
    let calls = |interface: &str, outcome: &str| {
        sum(
            &samples,
            "alga_platform_requests_total",
            &[("interface", interface), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("clients", "ok"), 3.0);
    assert_eq!(calls("services", "ok"), 2.0);
    assert_eq!(calls("invoicing", "ok"), 2.0);
    assert_eq!(calls("ui_proxy", "ok"), 2.0);
    assert_eq!(calls("ui_proxy", "status"), 1.0);
    assert_eq!(calls("ui_proxy", "bad_route"), 1.0);
    assert!(
        sum(
            &samples,
            "alga_platform_bytes_total",
            &[("interface", "clients"), ("outcome", "received")]
        ) > 0.0
    );
    for capability in ["clients", "services", "invoicing", "ui_proxy"] {
        assert!(
            sum(
                &samples,
                "alga_capability_denials_total",
                &[("capability", capability), ("reason", "not_granted")],
            ) >= 1.0,
            "{capability}"
        );
    }
    // And in the execution log of the request that made them.
    wait_until(
        Duration::from_secs(10),
        "a platform line in the log",
        || {
            execution_rows(&node, "tenant-a", 50).iter().any(|row| {
                row["logs"]
                    .to_string()
                    .contains("platform: clients.list ok")
            })
        },
    );
}

#[test]
fn a_platform_down_slow_oversized_or_malformed_becomes_the_interfaces_error_in_time() {
    let platform = PlatformServer::start(PLATFORM_TOKEN);
    let fixture = Fixture::new();
    let node = start(
        &fixture,
        &platform,
        &[
            "--platform-timeout-ms",
            "1000",
            "--ui-proxy-timeout-ms",
            "1000",
            "--platform-max-response-kib",
            "16",
            "--platform-max-calls",
            "3",
        ],
    );
    let a = token(&node, "tenant-a");
    let invoice_body =
        r#"{"client_id":"c-1","items":[{"service_id":"s-1","quantity":1,"rate":5}]}"#;
    let invoice_error = |node: &Node| {
        let answer = ext(node, "POST", "/invoice", &a, invoice_body);
        assert_eq!(answer["success"], false, "{answer}");
        answer["error"].as_str().unwrap().to_owned()
    };

    // Slow: each interface gives up at its deadline (1 s), well before the platform answers.
    platform.set_mode(Mode::Slow(Duration::from_secs(6)));
    let (listed, took) = timed(|| ext(&node, "GET", "/clients", &a, ""));
    assert_eq!(listed["error"], "internal", "{listed}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    let (proxied, took) = timed(|| ext(&node, "GET", "/proxy?route=%2Fx", &a, ""));
    assert_eq!(proxied["error"], "internal", "{proxied}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    let (error, took) = timed(|| invoice_error(&node));
    assert!(error.contains("did not answer within 1000 ms"), "{error}");
    assert!(took < Duration::from_secs(4), "{took:?}");

    // Down: connections close unanswered.
    platform.set_mode(Mode::Down);
    let (listed, took) = timed(|| ext(&node, "GET", "/services", &a, ""));
    assert_eq!(listed["error"], "internal", "{listed}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(
        invoice_error(&node).contains("could not be reached"),
        "down"
    );

    // Oversized: refused at the cap (16 KiB), not buffered.
    platform.set_mode(Mode::Oversized(64 << 10));
    assert_eq!(ext(&node, "GET", "/clients", &a, "")["error"], "internal");
    assert_eq!(
        ext(&node, "GET", "/proxy?route=%2Fx", &a, "")["error"],
        "internal"
    );
    let error = invoice_error(&node);
    assert!(error.contains("over the 16384-byte cap"), "{error}");

    // Malformed: JSON of the wrong shape, and text that is not JSON.
    platform.set_mode(Mode::Malformed);
    for route in ["/clients", "/clients/c-1", "/services"] {
        assert_eq!(
            ext(&node, "GET", route, &a, "")["error"],
            "internal",
            "{route}"
        );
    }
    let error = invoice_error(&node);
    assert!(error.contains("malformed"), "{error}");
    platform.set_mode(Mode::NotJson);
    assert_eq!(ext(&node, "GET", "/clients", &a, "")["error"], "internal");
    assert!(invoice_error(&node).contains("not JSON"));

    // The platform's refusals map as Alga's runner maps them.
    platform.set_mode(Mode::Status(403));
    assert_eq!(
        ext(&node, "GET", "/clients", &a, "")["error"],
        "not-allowed"
    );
    assert_eq!(
        ext(&node, "GET", "/proxy?route=%2Fx", &a, "")["error"],
        "denied"
    );
    platform.set_mode(Mode::Status(400));
    assert_eq!(
        ext(&node, "GET", "/services", &a, "")["error"],
        "invalid-input"
    );
    platform.set_mode(Mode::Status(500));
    assert_eq!(ext(&node, "GET", "/clients", &a, "")["error"], "internal");
    let error = invoice_error(&node);
    assert!(
        error.contains("HTTP 500") && error.contains("refused by the test"),
        "{error}"
    );

    // Back to normal: the node is unharmed.
    platform.set_mode(Mode::Normal);
    assert_eq!(
        ext(&node, "GET", "/clients/c-1", &a, "")["item"]["client_id"],
        "c-1"
    );

    // One request makes at most --platform-max-calls calls: `/platform` tries four (invoicing,
    // ui-proxy, clients, services, in that order); the fourth is refused unsent.
    platform.take_calls();
    let all = ext(&node, "GET", "/platform", &a, "");
    assert_eq!(all["create_manual_invoice"]["success"], true, "{all}");
    assert_eq!(all["ui_proxy"], "ok", "{all}");
    assert_eq!(all["list_clients"], "ok", "{all}");
    assert_eq!(all["list_services"], "internal", "{all}");
    assert_eq!(platform.take_calls().len(), 3);

    // Reported: outcomes in the metrics, reasons in the execution log.
    let (_, samples) = scrape(&node);
    for (interface, outcome) in [
        ("clients", "timeout"),
        ("ui_proxy", "timeout"),
        ("invoicing", "timeout"),
        ("services", "unreachable"),
        ("clients", "too_large"),
        ("ui_proxy", "too_large"),
        ("clients", "malformed"),
        ("services", "malformed"),
        ("invoicing", "malformed"),
        ("clients", "status"),
        ("services", "limit"),
    ] {
        assert!(
            sum(
                &samples,
                "alga_platform_requests_total",
                &[("interface", interface), ("outcome", outcome)],
            ) >= 1.0,
            "{interface} {outcome}"
        );
    }
    wait_until(Duration::from_secs(10), "the failures in the log", || {
        let logs: String = execution_rows(&node, "tenant-a", 100)
            .iter()
            .map(|row| row["logs"].to_string())
            .collect();
        [
            "platform: clients.list failed",
            "did not answer within 1000 ms",
            "over the 16384-byte cap",
            "client.clientId is not a string",
            "service.itemKind \\\"gift\\\" is unknown",
            "more than 3 platform calls in one request",
        ]
        .iter()
        .all(|needle| logs.contains(needle))
    });
}

#[test]
fn without_a_platform_each_interface_names_the_setting_to_set() {
    let fixture = Fixture::new();
    let bundle = fixture.bundle_with(
        RUST,
        "1.0.0",
        "alga-rust",
        json!({ "capabilities": PLATFORM_CAPS }),
    );
    let node = fixture.start(&["--tenant-rate", "0"]);
    admin_ok(&node, &["publish", path(&bundle)]);
    install(&node, RUST, "1.0.0", "tenant-a", &PLATFORM_CAPS, &[]);
    let a = token(&node, "tenant-a");
    assert_eq!(ext(&node, "GET", "/clients", &a, "")["error"], "internal");
    assert_eq!(ext(&node, "GET", "/services", &a, "")["error"], "internal");
    // Alga's runner answers `route-not-found` when UI_PROXY_BASE_URL is unset.
    assert_eq!(
        ext(&node, "GET", "/proxy?route=%2Fx", &a, "")["error"],
        "route-not-found"
    );
    let invoice = ext(
        &node,
        "POST",
        "/invoice",
        &a,
        r#"{"client_id":"c-1","items":[]}"#,
    );
    assert!(
        invoice["error"]
            .as_str()
            .unwrap()
            .contains("set STORAGE_API_BASE_URL"),
        "{invoice}"
    );
    wait_until(Duration::from_secs(10), "the settings in the log", || {
        let logs: String = execution_rows(&node, "tenant-a", 20)
            .iter()
            .map(|row| row["logs"].to_string())
            .collect();
        logs.contains("set STORAGE_API_BASE_URL") && logs.contains("set UI_PROXY_BASE_URL")
    });
}

#[test]
fn a_wasi_http_component_imports_the_platform_interfaces_too() {
    const WASI: &str = "com.alga.test.platform-http";
    let caps = ["cap:client.read", "cap:invoice.manual.create"];
    let platform = PlatformServer::start(PLATFORM_TOKEN);
    let fixture = Fixture::new();
    let bundle = fixture.bundle_with(
        WASI,
        "1.0.0",
        "platform-http",
        json!({ "capabilities": caps }),
    );
    let base = platform.base();
    let node = fixture.start(&[
        "--tenant-rate",
        "0",
        "--platform-url",
        &base,
        "--platform-token",
        PLATFORM_TOKEN,
    ]);
    admin_ok(&node, &["publish", path(&bundle)]);
    install(&node, WASI, "1.0.0", "tenant-a", &caps, &[]);
    install(&node, WASI, "1.0.0", "tenant-c", &[], &[]);
    let (a, c) = (token(&node, "tenant-a"), token(&node, "tenant-c"));
    let wasi = |method: &str, route: &str, bearer: &str| {
        let (status, text) = call(
            &node,
            method,
            &format!("/api/ext/{WASI}{route}"),
            bearer,
            "",
        );
        assert_eq!(status, 200, "{route}: {text}");
        json(&text)
    };

    let listed = wasi("GET", "/clients", &a);
    assert_eq!(listed["names"], json!(["Acme Corp", "Globex"]), "{listed}");
    let invoice = wasi("POST", "/invoice", &a);
    assert_eq!(invoice["success"], true, "{invoice}");
    assert_eq!(invoice["total"], 30.0, "{invoice}");
    let calls = platform.take_calls();
    let targets: Vec<&str> = calls.iter().map(|c| c.target.as_str()).collect();
    assert_eq!(targets.len(), 2, "{calls:#?}");
    assert!(
        targets[0].starts_with("/api/internal/ext-clients/install/"),
        "{targets:?}"
    );
    assert!(
        targets[1].starts_with("/api/internal/ext-invoicing/install/"),
        "{targets:?}"
    );
    assert!(
        calls
            .iter()
            .all(|c| c.header("x-runner-auth") == Some(PLATFORM_TOKEN))
    );

    assert_eq!(wasi("GET", "/clients", &c)["error"], "not-allowed");
    assert_eq!(wasi("POST", "/invoice", &c)["success"], false);
    assert!(platform.take_calls().is_empty());
}
