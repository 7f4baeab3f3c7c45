//! Host capabilities over the real binary and the `capabilities` sample component: KV
//! (round trip, tenant × extension isolation with hostile key names, key limit), config,
//! secrets (readable by the component, absent from logs, metrics and error bodies), logging
//! (into the execution log), outbound HTTP (allowlisted loopback server reachable, everything
//! else denied, private addresses behind names refused, bytes metered), deny-by-default for
//! ungranted installs, and KV writes at edges.

use std::sync::atomic::Ordering;
use std::time::Duration;

use alga_edge_e2e::metrics::{Sample, scrape, sum};
use alga_edge_e2e::publishing::{
    Fixture, OTHER, SERVICE_TOKEN, admin_json, admin_ok, call, execution_rows, install, json, path,
    shared_token, token,
};
use alga_edge_e2e::upstream::Upstream;
use alga_edge_e2e::{Node, wait_until};
use serde_json::{Value, json};

const CAPS: &str = "com.alga.test.caps";
const SECRET: &str = "S3cr3t-Value-7f1e9c";
const ALL: [&str; 5] = [
    "cap:storage.kv",
    "cap:config.get",
    "cap:secrets.get",
    "cap:log.emit",
    "cap:http.fetch",
];

/// Calls a route of the sample: always 200 JSON; returns it.
fn sample(node: &Node, ext: &str, method: &str, route: &str, bearer: &str, body: &str) -> Value {
    let (status, text) = call(
        node,
        method,
        &format!("/api/ext/{ext}{route}"),
        bearer,
        body,
    );
    assert_eq!(status, 200, "{method} {route}: {text}");
    json(&text)
}

/// GET `/fetch?url=` of `ext` as `bearer`: what the guest reports of its outbound request.
fn fetch(node: &Node, ext: &str, bearer: &str, url: &str) -> Value {
    let route = format!("/fetch?url={}", q(url));
    sample(node, ext, "GET", &route, bearer, "")
}

/// [`fetch`], where the guest reports `error`, not a response.
fn assert_fetch_refused(node: &Node, ext: &str, bearer: &str, url: &str, error: &str) {
    let answer = fetch(node, ext, bearer, url);
    assert_eq!(answer["ok"], false, "{url}: {answer}");
    assert!(
        answer["error"].as_str().unwrap_or("").contains(error),
        "{url}: {answer}"
    );
}

fn q(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn kv_get(node: &Node, ext: &str, bearer: &str, bucket: &str, key: &str) -> Value {
    sample(
        node,
        ext,
        "GET",
        &format!("/kv?bucket={}&key={}", q(bucket), q(key)),
        bearer,
        "",
    )
}

fn kv_put(node: &Node, ext: &str, bearer: &str, bucket: &str, key: &str, value: &str) -> Value {
    sample(
        node,
        ext,
        "PUT",
        &format!("/kv?bucket={}&key={}", q(bucket), q(key)),
        bearer,
        value,
    )
}

/// How often the node refused `capability` to a guest for `reason`, by its metrics.
fn denials(samples: &[Sample], capability: &str, reason: &str) -> f64 {
    let labels = [("capability", capability), ("reason", reason)];
    sum(samples, "alga_capability_denials_total", &labels)
}

fn ok(answer: &Value) -> bool {
    answer["ok"] == json!(true)
}

/// The keys of `tenant`'s `default` bucket of `ext`, as the admin API lists them.
fn admin_kv_keys(node: &Node, tenant: &str, ext: &str) -> Value {
    let route = format!("tenants/{tenant}/kv/{ext}/default");
    let (status, answer) = admin_json(node, "GET", &route, None);
    assert_eq!(status, 200, "{answer}");
    answer["keys"].clone()
}

fn caps_bundle(fixture: &Fixture, name: &str) -> std::path::PathBuf {
    fixture.bundle_with(
        name,
        "1.0.0",
        "capabilities",
        json!({ "capabilities": ALL }),
    )
}

#[test]
fn capabilities_are_granted_scoped_and_metered() {
    let upstream = Upstream::start();
    let port = upstream.port;
    let fixture = Fixture::new();
    let caps = caps_bundle(&fixture, CAPS);
    let other = caps_bundle(&fixture, OTHER);
    let node_allowlist = format!("127.0.0.1:{port},localhost:{port},example.com");
    let node = fixture.start(&[
        "--tenant-rate",
        "0",
        "--egress-allowlist",
        &node_allowlist,
        "--service-token",
        SERVICE_TOKEN,
    ]);
    admin_ok(&node, &["publish", path(&caps)]);
    admin_ok(&node, &["publish", path(&other)]);

    let egress = upstream.install_policy();
    let secret = format!("api_key={SECRET}");
    install(
        &node,
        CAPS,
        "1.0.0",
        "tenant-a",
        &ALL,
        &[
            "--config",
            "greeting=hello-a",
            "--config",
            "region=eu",
            "--secret",
            &secret,
            "--secret",
            "other=x",
            "--policy",
            &egress,
        ],
    );
    install(
        &node,
        CAPS,
        "1.0.0",
        "tenant-b",
        &ALL,
        &["--config", "greeting=hello-b"],
    );
    install(&node, OTHER, "1.0.0", "tenant-a", &["cap:storage.kv"], &[]);
    install(
        &node,
        CAPS,
        "1.0.0",
        "tenant-c",
        &[],
        &["--secret", &secret, "--config", "greeting=c"],
    );
    install(
        &node,
        CAPS,
        "1.0.0",
        "tenant-d",
        &["cap:storage.kv"],
        &["--policy", "kv_max_keys=2"],
    );
    let (a, b, c, d) = (
        token(&node, "tenant-a"),
        token(&node, "tenant-b"),
        token(&node, "tenant-c"),
        token(&node, "tenant-d"),
    );

    // KV round trip.
    assert!(ok(&kv_put(&node, CAPS, &a, "b1", "k1", "v1")));
    assert_eq!(kv_get(&node, CAPS, &a, "b1", "k1")["value"], "v1");
    assert!(ok(&kv_put(&node, CAPS, &a, "b1", "k2", "v2")));
    let keys = sample(&node, CAPS, "GET", "/kv/keys?bucket=b1", &a, "");
    assert_eq!(keys["keys"], json!(["k1", "k2"]), "{keys}");
    let exists = sample(&node, CAPS, "GET", "/kv/exists?bucket=b1&key=k2", &a, "");
    assert_eq!(exists["exists"], true);
    for (delta, expected) in [(5, 5), (7, 12)] {
        let route = format!("/kv/incr?bucket=b1&key=hits&delta={delta}");
        let counted = sample(&node, CAPS, "POST", &route, &a, "");
        assert_eq!(counted["value"], expected, "{counted}");
    }
    assert_eq!(kv_get(&node, CAPS, &a, "b1", "hits")["value"], "12");
    let not_counter = sample(&node, CAPS, "POST", "/kv/incr?bucket=b1&key=k1", &a, "");
    assert!(
        not_counter["error"]
            .as_str()
            .unwrap()
            .contains("not a decimal"),
        "{not_counter}"
    );
    assert!(ok(&sample(
        &node,
        CAPS,
        "POST",
        "/kv/batch?bucket=b2",
        &a,
        r#"{"x":"1","y":"2"}"#
    )));
    let many = sample(
        &node,
        CAPS,
        "GET",
        "/kv/batch?bucket=b2&keys=x,nope,y",
        &a,
        "",
    );
    assert_eq!(
        many["values"],
        json!([["x", "1"], null, ["y", "2"]]),
        "{many}"
    );
    assert!(ok(&sample(
        &node,
        CAPS,
        "DELETE",
        "/kv?bucket=b1&key=k2",
        &a,
        ""
    )));
    assert_eq!(kv_get(&node, CAPS, &a, "b1", "k2")["found"], false);

    // Isolation: same extension other tenant, same tenant other extension; hostile names.
    let long = "k".repeat(1024);
    let hostile = [
        "k1", "a/b", "../k1", "..", "b1/k1", "%2e%2e", "tenant-b", &long,
    ];
    // A key holding NUL is refused: SQLite would list it cut at the NUL (found by fuzzing).
    let refused = kv_put(&node, CAPS, &a, "b1", "k\0x", "A");
    assert!(!ok(&refused), "a NUL key is refused: {refused}");
    for key in hostile {
        let mine = format!("A:{key}");
        assert!(
            ok(&kv_put(&node, CAPS, &a, "b1", key, &mine)),
            "put {key:?}"
        );
        for (who, ext, bearer) in [("tenant-b", CAPS, &b), ("tenant-a/other", OTHER, &a)] {
            for bucket in ["b1", "../b1", "b1/..", "*"] {
                let seen = kv_get(&node, ext, bearer, bucket, key);
                assert_eq!(seen["found"], false, "{who} read {bucket}/{key:?}: {seen}");
            }
        }
        assert!(ok(&kv_put(&node, CAPS, &b, "b1", key, "B")));
        assert_eq!(kv_get(&node, CAPS, &a, "b1", key)["value"], mine.as_str());
        assert_eq!(kv_get(&node, CAPS, &b, "b1", key)["value"], "B");
    }
    let b_keys = sample(&node, CAPS, "GET", "/kv/keys?bucket=b1", &b, "");
    assert_eq!(
        b_keys["keys"].as_array().unwrap().len(),
        hostile.len(),
        "{b_keys}"
    );
    let too_long = kv_put(&node, CAPS, &a, "b1", &"k".repeat(1025), "x");
    assert!(
        !ok(&too_long) && too_long["error"].as_str().unwrap().contains("invalid key"),
        "{too_long}"
    );
    let bad_bucket = kv_get(&node, CAPS, &a, &"b".repeat(129), "k");
    assert!(!ok(&bad_bucket), "{bad_bucket}");

    // Key limit per install.
    assert!(ok(&kv_put(&node, CAPS, &d, "b", "one", "1")));
    assert!(ok(&kv_put(&node, CAPS, &d, "other-bucket", "two", "2")));
    let third = kv_put(&node, CAPS, &d, "b", "three", "3");
    assert!(
        third["error"]
            .as_str()
            .unwrap_or("")
            .contains("limit of 2 keys"),
        "{third}"
    );
    assert!(
        ok(&kv_put(&node, CAPS, &d, "b", "one", "updated")),
        "overwriting stays allowed"
    );

    // Deny by default: tenant-c was granted nothing; each interface answers its own error.
    let denied = kv_get(&node, CAPS, &c, "b1", "k1");
    assert_eq!(denied, json!({"ok": false, "error": "access-denied"}));
    let config = sample(&node, CAPS, "GET", "/config?key=greeting", &c, "");
    assert!(
        config["error"].as_str().unwrap().contains("access denied"),
        "{config}"
    );
    let secret_denied = sample(&node, CAPS, "GET", "/secret?name=api_key", &c, "");
    assert!(
        secret_denied["error"]
            .as_str()
            .unwrap()
            .contains("AccessDenied"),
        "{secret_denied}"
    );
    // cap:log.emit is granted to every install, as Alga's runner does.
    assert!(ok(&sample(
        &node,
        CAPS,
        "POST",
        "/log",
        &c,
        "default-granted line"
    )));
    let url = format!("http://127.0.0.1:{port}/from-c");
    assert_fetch_refused(&node, CAPS, &c, &url, "HttpRequestDenied");

    // Config and secrets.
    assert_eq!(
        sample(&node, CAPS, "GET", "/config?key=greeting", &a, "")["value"],
        "hello-a"
    );
    assert_eq!(
        sample(&node, CAPS, "GET", "/config?key=greeting", &b, "")["value"],
        "hello-b"
    );
    assert_eq!(
        sample(&node, CAPS, "GET", "/config?key=absent", &a, "")["value"],
        Value::Null
    );
    assert_eq!(
        sample(&node, CAPS, "GET", "/config/all", &a, "")["values"],
        json!({"greeting": "hello-a", "region": "eu"})
    );
    assert_eq!(
        sample(&node, CAPS, "GET", "/secret?name=api_key", &a, "")["value"],
        SECRET
    );
    assert_eq!(
        sample(&node, CAPS, "GET", "/secret/keys", &a, "")["names"],
        json!(["api_key", "other"])
    );
    assert_eq!(
        sample(&node, CAPS, "GET", "/secret?name=api_key", &b, "")["value"],
        Value::Null
    );

    // Logging lands in the execution log of its request.
    assert!(ok(&sample(
        &node,
        CAPS,
        "POST",
        "/log?level=warn",
        &a,
        "hello from the guest"
    )));

    // Outbound HTTP.
    let before = upstream.seen.load(Ordering::Relaxed);
    let fetched = fetch(&node, CAPS, &a, &format!("http://127.0.0.1:{port}/ping"));
    assert_eq!(
        fetched,
        json!({"ok": true, "status": 200, "body": "pong /ping"})
    );
    assert_eq!(upstream.seen.load(Ordering::Relaxed), before + 1);
    for (url, error) in upstream.refused_by_policy() {
        assert_fetch_refused(&node, CAPS, &a, &url, error);
    }
    // In the node's list only.
    assert_fetch_refused(&node, CAPS, &a, "http://example.com/", "HttpRequestDenied");
    // Tenant B has no allowlist at all.
    let url = format!("http://127.0.0.1:{port}/from-b");
    assert_fetch_refused(&node, CAPS, &b, &url, "HttpRequestDenied");
    assert_eq!(
        upstream.seen.load(Ordering::Relaxed),
        before + 1,
        "no denied request reached the server"
    );

    // Metrics: egress bytes and denials by reason.
    let (metrics_text, samples) = scrape(&node);
    let received = sum(
        &samples,
        "alga_egress_bytes_total",
        &[("extension", CAPS), ("kind", "received")],
    );
    assert_eq!(received, "pong /ping".len() as f64, "{metrics_text}");
    assert_eq!(
        sum(
            &samples,
            "alga_egress_requests_total",
            &[("extension", CAPS), ("kind", "ok")]
        ),
        1.0
    );
    assert_eq!(
        denials(&samples, "http", "not_allowlisted"),
        4.0,
        "{metrics_text}"
    );
    assert_eq!(denials(&samples, "http", "not_granted"), 1.0);
    assert_eq!(denials(&samples, "http", "private_address"), 1.0);
    assert!(denials(&samples, "kv", "not_granted") >= 1.0);
    assert_eq!(denials(&samples, "config", "not_granted"), 1.0);
    assert_eq!(denials(&samples, "secrets", "not_granted"), 1.0);
    assert_eq!(denials(&samples, "log", "not_granted"), 0.0);

    // Execution log: the guest's line and the egress bytes, on their requests' rows.
    // (The log writer batches: poll until the rows of those requests are written.)
    let rows_with = |what: &str, wanted: &dyn Fn(&Value) -> bool| {
        wait_until(Duration::from_secs(10), what, || {
            execution_rows(&node, "tenant-a", 20).iter().any(wanted)
        })
    };
    rows_with("an execution-log row carrying the guest's line", &|r| {
        r["logs"] == json!(["WARN sample: hello from the guest"])
    });
    wait_until(
        Duration::from_secs(10),
        "tenant-c's default-granted log line",
        || {
            json!(execution_rows(&node, "tenant-c", 50))
                .to_string()
                .contains("default-granted line")
        },
    );
    rows_with("an execution-log row carrying the egress bytes", &|r| {
        r["egress_bytes"].as_u64().unwrap_or(0) >= "pong /ping".len() as u64
    });

    // The secret never leaks: not in the node's log, the metrics, the execution log, or any
    // error body (a denied read and a missing one).
    let executions = json!(execution_rows(&node, "tenant-c", 200)).to_string();
    for (what, text) in [
        ("node log", node.log_text()),
        ("metrics", metrics_text),
        ("execution log", executions),
        ("denied read", secret_denied.to_string()),
        (
            "other tenant",
            sample(&node, CAPS, "GET", "/secret?name=api_key", &b, "").to_string(),
        ),
    ] {
        assert!(!text.contains(SECRET), "the secret appears in the {what}");
    }
    node.wait_for_log(
        "the guest's log line",
        std::time::Duration::from_secs(10),
        |log| log.contains("hello from the guest"),
    );
    drop(upstream);
}

#[test]
fn kv_writes_at_an_edge_are_read_there_at_once_and_at_the_other_edge_after_sync() {
    let fixture = Fixture::new();
    let caps = caps_bundle(&fixture, CAPS);
    let primary = fixture.start_node_in(&fixture.dir.path().join("primary"), &[]);
    admin_ok(&primary, &["publish", path(&caps)]);
    install(
        &primary,
        CAPS,
        "1.0.0",
        "tenant-a",
        &["cap:storage.kv"],
        &[],
    );
    let edge = |name: &str, interval_ms: u64| {
        fixture.start_edge_in(
            &fixture.dir.path().join(name),
            &primary.base(),
            interval_ms,
            &[],
        )
    };
    // Edge 1 never syncs on its own during the test: what it reads after its write came back
    // with the write itself.
    let edge1 = edge("edge-1", 3_600_000);
    let edge2 = edge("edge-2", 200);
    let a = shared_token("tenant-a");
    for node in [&edge1, &edge2] {
        wait_until(
            Duration::from_secs(20),
            "the edge to serve the install",
            || call(node, "GET", &format!("/api/ext/{CAPS}/context"), &a, "").0 == 200,
        );
    }

    let put = kv_put(&edge1, CAPS, &a, "prefs", "theme", "dark");
    assert!(ok(&put), "{put}");
    assert_eq!(
        kv_get(&edge1, CAPS, &a, "prefs", "theme")["value"],
        "dark",
        "read-your-write at the writing edge"
    );
    assert_eq!(
        kv_get(&primary, CAPS, &a, "prefs", "theme")["value"],
        "dark"
    );
    let counted = sample(
        &edge1,
        CAPS,
        "POST",
        "/kv/incr?bucket=prefs&key=visits&delta=3",
        &a,
        "",
    );
    assert_eq!(counted["value"], 3, "{counted}");
    // Edge 2 syncs on its own schedule: wait for the later write, which carries the earlier.
    let seen = wait_until(
        Duration::from_secs(10),
        "the other edge to see the writes",
        || kv_get(&edge2, CAPS, &a, "prefs", "visits")["value"] == "3",
    );
    println!(
        "edge-2 read edge-1's KV writes after {} ms",
        seen.as_millis()
    );
    assert_eq!(kv_get(&edge2, CAPS, &a, "prefs", "theme")["value"], "dark");
}

#[test]
fn spin_sdk_components_run_unchanged_with_key_value_and_variables() {
    const SPIN: &str = "com.alga.test.spin-kv";
    let fixture = Fixture::new();
    let bundle = fixture.bundle_with(
        SPIN,
        "1.0.0",
        "spin-kv",
        json!({"capabilities": ["cap:storage.kv", "cap:config.get"]}),
    );
    let node = fixture.start(&["--tenant-rate", "0"]);
    admin_ok(&node, &["publish", path(&bundle)]);
    install(
        &node,
        SPIN,
        "1.0.0",
        "tenant-a",
        &["cap:storage.kv", "cap:config.get"],
        &["--config", "greeting=Hi from Spin"],
    );
    install(&node, SPIN, "1.0.0", "tenant-b", &["cap:storage.kv"], &[]);
    install(&node, SPIN, "1.0.0", "tenant-c", &[], &[]);
    let (a, b, c) = (
        token(&node, "tenant-a"),
        token(&node, "tenant-b"),
        token(&node, "tenant-c"),
    );
    let route = format!("/api/ext/{SPIN}/hello");
    for visits in [1, 2] {
        let body = sample(&node, SPIN, "GET", "/hello", &a, "");
        assert_eq!(
            body["greeting"], "Hi from Spin",
            "a Spin variable is the install's config"
        );
        assert_eq!(body["visits"], visits, "Spin key-value is the install's KV");
        assert_eq!(body["keys"], 1);
        assert_eq!(body["path"], "/hello");
    }
    // The same component for another tenant: its own store, and no `greeting` variable.
    let body = sample(&node, SPIN, "GET", "/hello", &b, "");
    assert_eq!(
        (body["greeting"].as_str(), body["visits"].as_u64()),
        (Some("Hello"), Some(1))
    );
    // Without grants, the store's open fails with Spin's own access-denied; the SDK answers 500.
    let (status, body) = call(&node, "GET", &route, &c, "");
    assert_eq!(status, 500, "{body}");
    let (text, samples) = scrape(&node);
    assert!(denials(&samples, "kv", "not_granted") >= 1.0, "{text}");
    // The KV rows are the ones the admin API shows for that tenant and extension.
    assert_eq!(admin_kv_keys(&node, "tenant-a", SPIN), json!(["visits"]));

    // spin.toml runs this very component under Spin (Spin manifest v2).
    let manifest = std::fs::read_to_string(alga_edge_e2e::repo_root().join("spin.toml")).unwrap();
    for line in [
        "spin_manifest_version = 2",
        "source = \"target/components/spin-kv.wasm\"",
        "key_value_stores = [\"default\"]",
        "greeting = \"{{ greeting }}\"",
    ] {
        assert!(manifest.contains(line), "spin.toml lacks {line}");
    }
}

#[test]
fn wasip3_spin_sdk_7_components_run_with_key_value_and_variables_beside_wasip2_ones() {
    const P3: &str = "com.alga.test.spin-p3";
    const P2: &str = "com.alga.test.spin-kv";
    let caps = ["cap:storage.kv", "cap:config.get"];
    let fixture = Fixture::new();
    let p3_bundle = fixture.bundle_with(P3, "1.0.0", "spin-p3", json!({"capabilities": caps}));
    let p2_bundle = fixture.bundle_with(P2, "1.0.0", "spin-kv", json!({"capabilities": caps}));
    let node = fixture.start(&["--tenant-rate", "0"]);
    admin_ok(&node, &["publish", path(&p3_bundle)]);
    admin_ok(&node, &["publish", path(&p2_bundle)]);
    install(
        &node,
        P3,
        "1.0.0",
        "tenant-a",
        &caps,
        &["--config", "greeting=Hi from p3"],
    );
    install(
        &node,
        P2,
        "1.0.0",
        "tenant-a",
        &caps,
        &["--config", "greeting=Hi from p2"],
    );
    install(&node, P3, "1.0.0", "tenant-b", &caps, &[]);
    install(&node, P3, "1.0.0", "tenant-c", &[], &[]);
    install(&node, P3, "1.0.0", "tenant-d", &["cap:storage.kv"], &[]);
    let [a, b, c, d] = ["tenant-a", "tenant-b", "tenant-c", "tenant-d"].map(|t| token(&node, t));
    let route = format!("/api/ext/{P3}/hello");

    // spin-sdk 7's async key-value (get, set, exists, get-keys as a stream) and variables.
    for visits in [1, 2] {
        let body = sample(&node, P3, "GET", "/hello", &a, "");
        assert_eq!(body["wasi"], "p3");
        assert_eq!(
            body["greeting"], "Hi from p3",
            "a Spin variable is the install's config"
        );
        assert_eq!(body["visits"], visits, "Spin key-value is the install's KV");
        assert_eq!(body["exists"], true);
        assert_eq!(body["keys"], json!(["visits"]));
        assert_eq!(body["path"], "/hello");
    }
    let body = sample(&node, P3, "DELETE", "/hello", &a, "");
    assert_eq!(
        (body["visits"].as_u64(), body["exists"].as_bool()),
        (Some(0), Some(false))
    );
    assert_eq!(body["keys"], json!([]));

    // A WASIp2 component on the same node, with the same interface names typed synchronously.
    let body = sample(&node, P2, "GET", "/x", &a, "");
    assert_eq!(
        (body["greeting"].as_str(), body["visits"].as_u64()),
        (Some("Hi from p2"), Some(1))
    );

    // Another tenant: its own store; no `greeting` in its config, so Spin's `undefined`.
    let body = sample(&node, P3, "GET", "/hello", &b, "");
    assert_eq!(
        (body["greeting"].as_str(), body["visits"].as_u64()),
        (Some("Hello"), Some(1))
    );
    // KV granted, config not: the variables call answers Spin's provider error, which the
    // component reports with its own status.
    let (status, body) = call(&node, "GET", &route, &d, "");
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("Provider") && body.contains("access denied"),
        "{body}"
    );
    // Nothing granted: opening the store fails with access-denied, and spin-sdk 7 turns the
    // handler's error into the handler's own error code, which the gateway reports as a bad
    // extension response naming it.
    let (status, body) = call(&node, "GET", &route, &c, "");
    assert_eq!(status, 502, "{body}");
    assert_eq!(json(&body)["error"], "extension_bad_response");
    assert!(body.contains("AccessDenied"), "{body}");
    let (text, samples) = scrape(&node);
    for capability in ["kv", "config"] {
        assert!(
            denials(&samples, capability, "not_granted") >= 1.0,
            "{capability}: {text}"
        );
    }
    // The KV rows are tenant-a's and tenant-b's own.
    for (tenant, keys) in [("tenant-a", json!([])), ("tenant-b", json!(["visits"]))] {
        assert_eq!(admin_kv_keys(&node, tenant, P3), keys, "{tenant}");
    }
}

#[test]
fn wasip3_outbound_http_goes_through_the_same_egress_checks() {
    const P3: &str = "com.alga.test.faulty-p3";
    let upstream = Upstream::start();
    let port = upstream.port;
    let fixture = Fixture::new();
    let bundle = fixture.bundle_with(
        P3,
        "1.0.0",
        "faulty-p3",
        json!({"capabilities": ["cap:http.fetch"]}),
    );
    let node_allowlist = format!("127.0.0.1:{port},localhost:{port}");
    let node = fixture.start(&["--tenant-rate", "0", "--egress-allowlist", &node_allowlist]);
    admin_ok(&node, &["publish", path(&bundle)]);
    let egress = upstream.install_policy();
    install(
        &node,
        P3,
        "1.0.0",
        "tenant-a",
        &["cap:http.fetch"],
        &["--policy", &egress],
    );
    install(&node, P3, "1.0.0", "tenant-b", &[], &["--policy", &egress]);
    let (a, b) = (token(&node, "tenant-a"), token(&node, "tenant-b"));
    let answer = fetch(&node, P3, &a, &format!("http://127.0.0.1:{port}/p3"));
    assert_eq!(
        answer,
        json!({"ok": true, "status": 200, "body": "pong /p3"})
    );
    for (url, error) in upstream.refused_by_policy() {
        assert_fetch_refused(&node, P3, &a, &url, error);
    }
    let url = format!("http://127.0.0.1:{port}/ungranted");
    assert_fetch_refused(&node, P3, &b, &url, "HttpRequestDenied");
    assert_eq!(
        upstream.seen.load(Ordering::Relaxed),
        1,
        "only the allowed request reached the server"
    );
    let (text, samples) = scrape(&node);
    for (reason, count) in [
        ("not_allowlisted", 2.0),
        ("private_address", 1.0),
        ("not_granted", 1.0),
    ] {
        assert_eq!(denials(&samples, "http", reason), count, "{reason}: {text}");
    }
    assert!(
        sum(&samples, "alga_egress_bytes_total", &[("kind", "received")])
            >= "pong /p3".len() as f64,
        "{text}"
    );
}

#[test]
fn standard_keyvalue_and_config_as_spin_hosts_them_run_unchanged() {
    const STD: &str = "com.alga.test.standard-kv";
    let caps = ["cap:storage.kv", "cap:config.get"];
    let fixture = Fixture::new();
    let bundle = fixture.bundle_with(STD, "1.0.0", "standard-kv", json!({"capabilities": caps}));
    let node = fixture.start(&["--tenant-rate", "0"]);
    admin_ok(&node, &["publish", path(&bundle)]);
    install(
        &node,
        STD,
        "1.0.0",
        "tenant-a",
        &caps,
        &["--config", "greeting=Hi from draft2"],
    );
    install(&node, STD, "1.0.0", "tenant-b", &["cap:storage.kv"], &[]);
    install(&node, STD, "1.0.0", "tenant-c", &[], &[]);
    let [a, b, c] = ["tenant-a", "tenant-b", "tenant-c"].map(|t| token(&node, t));
    let std_call = |bearer: &str, method: &str, route: &str, body: &str| {
        sample(&node, STD, method, route, bearer, body)
    };

    // wasi:config/store@0.2.0-draft-2024-09-27 and the draft2 atomics, store and list-keys.
    for visits in [1, 2] {
        let answer = std_call(&a, "GET", "/", "");
        assert_eq!(
            answer,
            json!({"ok": true, "greeting": "Hi from draft2", "visits": visits, "keys": ["visits"]})
        );
    }
    // s64 counters go below zero.
    assert_eq!(
        std_call(&a, "POST", "/incr?key=c&delta=-5", "")["value"],
        -5
    );
    assert_eq!(std_call(&a, "POST", "/incr?key=c&delta=7", "")["value"], 2);
    // Compare-and-swap: a swap over a stale value fails with a fresh cas, which then swaps.
    assert_eq!(
        std_call(&a, "POST", "/race?key=r", ""),
        json!({"ok": true, "before": null, "first": "cas-failed", "seen": "intervening", "after": "late"})
    );
    assert_eq!(std_call(&a, "POST", "/race?key=r", "")["before"], "late");
    // Batches: this draft's get-many answers every key asked for.
    assert_eq!(
        std_call(&a, "POST", "/many", r#"{"x":"1","y":"2"}"#)["set"],
        2
    );
    assert_eq!(
        std_call(&a, "GET", "/many?keys=x,nope,y", "")["found"],
        json!([["x", "1"], ["nope", null], ["y", "2"]])
    );
    assert_eq!(
        std_call(&a, "GET", "/keys", ""),
        json!({"ok": true, "keys": ["c", "r", "visits", "x", "y"], "cursor": null})
    );
    let bad_cursor = std_call(&a, "GET", "/keys?cursor=nonsense", "");
    assert!(
        bad_cursor["error"]
            .as_str()
            .unwrap_or("")
            .contains("not a cursor"),
        "{bad_cursor}"
    );

    // Another tenant: its own counters; its config is not granted (the interface's error).
    assert_eq!(std_call(&b, "POST", "/incr?key=c&delta=1", "")["value"], 1);
    let denied = std_call(&b, "GET", "/", "");
    assert!(
        denied["error"]
            .as_str()
            .unwrap_or("")
            .contains("access denied"),
        "{denied}"
    );
    // Nothing granted: access-denied from the store.
    assert_eq!(
        std_call(&c, "POST", "/incr?key=c&delta=1", ""),
        json!({"ok": false, "error": "access-denied"})
    );
    assert_eq!(
        admin_kv_keys(&node, "tenant-a", STD),
        json!(["c", "r", "visits", "x", "y"])
    );
}

#[test]
fn guest_log_text_cannot_forge_lines_of_the_node_log() {
    let fixture = Fixture::new();
    let caps = caps_bundle(&fixture, CAPS);
    let node = fixture.start(&["--tenant-rate", "0"]);
    admin_ok(&node, &["publish", path(&caps)]);
    install(&node, CAPS, "1.0.0", "tenant-a", &[], &[]);
    let a = token(&node, "tenant-a");
    // A newline, a carriage return and a terminal escape, each followed by a fake host line.
    let forged = "line one\n1999-01-01T00:00:00Z  INFO alga_edge::admin: bundle published forged-a\r1999-01-01T00:00:00Z  INFO forged-b\u{1b}[2K";
    assert!(ok(&sample(&node, CAPS, "POST", "/log", &a, forged)));
    wait_until(
        Duration::from_secs(10),
        "the guest's line in the node log",
        || node.log_text().contains("line one\\n1999-01-01"),
    );
    let log = node.log_text();
    for line in log.lines() {
        assert!(
            !line.starts_with("1999-") && !line.contains('\u{1b}') && !line.contains('\r'),
            "a guest line became a line of its own: {line:?}"
        );
    }
    assert!(
        log.contains("forged-a\\r1999") && log.contains("forged-b\\u{1b}[2K"),
        "{log}"
    );
}
