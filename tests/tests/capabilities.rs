//! Host capabilities over the real binary and the `capabilities` sample component: KV
//! (round trip, tenant × extension isolation with hostile key names, key limit), config,
//! secrets (readable by the component, absent from logs, metrics and error bodies), logging
//! (into the execution log), outbound HTTP (allowlisted loopback server reachable, everything
//! else denied, private addresses behind names refused, bytes metered), deny-by-default for
//! ungranted installs, and KV writes at edges.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alga_edge_e2e::Node;
use alga_edge_e2e::metrics::{Sample, sum};
use alga_edge_e2e::publishing::{
    ADMIN_TOKEN, Fixture, admin_ok, call, json, path, shared_token, token,
};
use serde_json::{Value, json};

const CAPS: &str = "com.alga.test.caps";
const OTHER: &str = "com.alga.test.other";
const SECRET: &str = "S3cr3t-Value-7f1e9c";
const SERVICE_TOKEN: &str = "e2e-runner-service-token-0123456789";
const ALL: [&str; 5] = [
    "cap:storage.kv",
    "cap:config.get",
    "cap:secrets.get",
    "cap:log.emit",
    "cap:http.fetch",
];

/// A loopback HTTP server answering `pong <path>` to every request until dropped; counts the
/// requests it saw. Its accept loop polls and stops by itself after two minutes at most.
struct Upstream {
    port: u16,
    seen: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < until {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                seen2.fetch_add(1, Ordering::Relaxed);
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let target = head.split(' ').nth(1).unwrap_or("?").to_owned();
                let body = format!("pong {target}");
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { port, seen, stop }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

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

/// GET `/fetch?url=` of `ext` as `bearer`: the guest reports `error`, not a response.
fn assert_fetch_refused(node: &Node, ext: &str, bearer: &str, url: &str, error: &str) {
    let answer = sample(
        node,
        ext,
        "GET",
        &format!("/fetch?url={}", q(url)),
        bearer,
        "",
    );
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

fn ok(answer: &Value) -> bool {
    answer["ok"] == json!(true)
}

/// The metrics text and its samples.
fn metrics(node: &Node) -> (String, Vec<Sample>) {
    let (status, text) = call(node, "GET", "/metrics", "-", "");
    assert_eq!(status, 200, "{text}");
    let samples = alga_edge_e2e::metrics::parse(&text);
    (text, samples)
}

fn install(node: &Node, tenant: &str, ext: &str, grants: &[&str], extra: &[&str]) {
    let mut args = vec!["install", ext, "--version", "1.0.0", "--tenant", tenant];
    for grant in grants {
        args.extend_from_slice(&["--grant", grant]);
    }
    args.extend_from_slice(extra);
    admin_ok(node, &args);
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

    let egress = format!("egress_allow=127.0.0.1:{port},localhost:{port},169.254.169.254");
    let secret = format!("api_key={SECRET}");
    install(
        &node,
        "tenant-a",
        CAPS,
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
        "tenant-b",
        CAPS,
        &ALL,
        &["--config", "greeting=hello-b"],
    );
    install(&node, "tenant-a", OTHER, &["cap:storage.kv"], &[]);
    install(
        &node,
        "tenant-c",
        CAPS,
        &[],
        &["--secret", &secret, "--config", "greeting=c"],
    );
    install(
        &node,
        "tenant-d",
        CAPS,
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
        "k1", "a/b", "../k1", "..", "b1/k1", "k\0x", "%2e%2e", "tenant-b", &long,
    ];
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
    assert!(ok(&sample(&node, CAPS, "POST", "/log", &c, "dropped line")));
    let url = format!("http://127.0.0.1:{port}/from-c");
    let fetch = sample(
        &node,
        CAPS,
        "GET",
        &format!("/fetch?url={}", q(&url)),
        &c,
        "",
    );
    assert!(
        fetch["error"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "{fetch}"
    );

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
    let url = format!("http://127.0.0.1:{port}/ping");
    let fetched = sample(
        &node,
        CAPS,
        "GET",
        &format!("/fetch?url={}", q(&url)),
        &a,
        "",
    );
    assert_eq!(
        fetched,
        json!({"ok": true, "status": 200, "body": "pong /ping"})
    );
    assert_eq!(upstream.seen.load(Ordering::Relaxed), before + 1);
    let refused = [
        // Not in the install's list (other port).
        (
            format!("http://127.0.0.1:{}/x", port.wrapping_add(1)),
            "HttpRequestDenied",
            &a,
        ),
        // In the install's list but not the node's.
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "HttpRequestDenied",
            &a,
        ),
        // Allowed by both lists by name, but the name resolves to loopback.
        (
            format!("http://localhost:{port}/x"),
            "DestinationIpProhibited",
            &a,
        ),
        // In the node's list only.
        ("http://example.com/".to_owned(), "HttpRequestDenied", &a),
        // Tenant B has no allowlist at all.
        (
            format!("http://127.0.0.1:{port}/from-b"),
            "HttpRequestDenied",
            &b,
        ),
    ];
    for (url, error, bearer) in &refused {
        assert_fetch_refused(&node, CAPS, bearer, url, error);
    }
    assert_eq!(
        upstream.seen.load(Ordering::Relaxed),
        before + 1,
        "no denied request reached the server"
    );

    // Metrics: egress bytes and denials by reason.
    let (metrics_text, samples) = metrics(&node);
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
    let denials = |capability: &str, reason: &str| {
        sum(
            &samples,
            "alga_capability_denials_total",
            &[("capability", capability), ("reason", reason)],
        )
    };
    assert_eq!(denials("http", "not_allowlisted"), 4.0, "{metrics_text}");
    assert_eq!(denials("http", "not_granted"), 1.0);
    assert_eq!(denials("http", "private_address"), 1.0);
    assert!(denials("kv", "not_granted") >= 1.0);
    assert_eq!(denials("config", "not_granted"), 1.0);
    assert_eq!(denials("secrets", "not_granted"), 1.0);
    assert_eq!(denials("log", "not_granted"), 1.0);

    // Execution log: the guest's line and the egress bytes, on their requests' rows.
    // (The log writer batches: poll until the rows of those requests are written.)
    let rows_with = |wanted: &dyn Fn(&Value) -> bool| {
        within(Duration::from_secs(10), || {
            let (status, rows) = call(
                &node,
                "GET",
                "/admin/v1/tenants/tenant-a/executions?limit=20",
                ADMIN_TOKEN,
                "",
            );
            assert_eq!(status, 200, "{rows}");
            json(&rows)["executions"]
                .as_array()
                .is_some_and(|rows| rows.iter().any(wanted))
        })
    };
    assert!(
        rows_with(&|r| r["logs"] == json!(["WARN sample: hello from the guest"])).is_some(),
        "no execution-log row carries the guest's line"
    );
    assert!(
        rows_with(&|r| r["egress_bytes"].as_u64().unwrap_or(0) >= "pong /ping".len() as u64)
            .is_some(),
        "no execution-log row carries the egress bytes"
    );

    // The secret never leaks: not in the node's log, the metrics, the execution log, or any
    // error body (a denied read and a missing one).
    let (_, executions) = call(
        &node,
        "GET",
        "/admin/v1/tenants/tenant-c/executions?limit=200",
        ADMIN_TOKEN,
        "",
    );
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
    let logged = node.log_text();
    assert!(
        logged.contains("hello from the guest"),
        "guest log lines go to the node log"
    );
    drop(upstream);
}

/// A node of the edge test on `dir`.
fn start_in(fixture: &Fixture, dir: &Path, extra: &[&str]) -> Node {
    fixture.start_node_in(dir, extra)
}

/// Polls `probe` every 20 ms for at most `limit`; how long it took to hold.
fn within(limit: Duration, mut probe: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if probe() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn kv_writes_at_an_edge_are_read_there_at_once_and_at_the_other_edge_after_sync() {
    let fixture = Fixture::new();
    let caps = caps_bundle(&fixture, CAPS);
    let primary = start_in(&fixture, &fixture.dir.path().join("primary"), &[]);
    admin_ok(&primary, &["publish", path(&caps)]);
    install(&primary, "tenant-a", CAPS, &["cap:storage.kv"], &[]);
    let edge = |name: &str, interval: &str| {
        start_in(
            &fixture,
            &fixture.dir.path().join(name),
            &[
                "--role",
                "edge",
                "--primary",
                &primary.base(),
                "--sync-interval-ms",
                interval,
            ],
        )
    };
    // Edge 1 never syncs on its own during the test: what it reads after its write came back
    // with the write itself.
    let edge1 = edge("edge-1", "3600000");
    let edge2 = edge("edge-2", "200");
    let a = shared_token("tenant-a");
    for node in [&edge1, &edge2] {
        let served = within(Duration::from_secs(20), || {
            call(node, "GET", &format!("/api/ext/{CAPS}/context"), &a, "").0 == 200
        });
        assert!(served.is_some(), "the edge never served the install");
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
    let seen = within(Duration::from_secs(10), || {
        kv_get(&edge2, CAPS, &a, "prefs", "visits")["value"] == "3"
    })
    .expect("the other edge never saw the writes");
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
        "tenant-a",
        SPIN,
        &["cap:storage.kv", "cap:config.get"],
        &["--config", "greeting=Hi from Spin"],
    );
    install(&node, "tenant-b", SPIN, &["cap:storage.kv"], &[]);
    install(&node, "tenant-c", SPIN, &[], &[]);
    let (a, b, c) = (
        token(&node, "tenant-a"),
        token(&node, "tenant-b"),
        token(&node, "tenant-c"),
    );
    let route = format!("/api/ext/{SPIN}/hello");
    for visits in [1, 2] {
        let (status, body) = call(&node, "GET", &route, &a, "");
        assert_eq!(status, 200, "{body}");
        let body = json(&body);
        assert_eq!(
            body["greeting"], "Hi from Spin",
            "a Spin variable is the install's config"
        );
        assert_eq!(body["visits"], visits, "Spin key-value is the install's KV");
        assert_eq!(body["keys"], 1);
        assert_eq!(body["path"], "/hello");
    }
    // The same component for another tenant: its own store, and no `greeting` variable.
    let (status, body) = call(&node, "GET", &route, &b, "");
    assert_eq!(status, 200, "{body}");
    let body = json(&body);
    assert_eq!(
        (body["greeting"].as_str(), body["visits"].as_u64()),
        (Some("Hello"), Some(1))
    );
    // Without grants, the store's open fails with Spin's own access-denied; the SDK answers 500.
    let (status, body) = call(&node, "GET", &route, &c, "");
    assert_eq!(status, 500, "{body}");
    let (text, samples) = metrics(&node);
    assert!(
        sum(
            &samples,
            "alga_capability_denials_total",
            &[("capability", "kv"), ("reason", "not_granted")]
        ) >= 1.0,
        "{text}"
    );
    // The KV rows are the ones the admin API shows for that tenant and extension.
    let (status, keys) = call(
        &node,
        "GET",
        &format!("/admin/v1/tenants/tenant-a/kv/{SPIN}/default"),
        ADMIN_TOKEN,
        "",
    );
    assert_eq!(status, 200, "{keys}");
    assert_eq!(json(&keys)["keys"], json!(["visits"]));

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
        "tenant-a",
        P3,
        &caps,
        &["--config", "greeting=Hi from p3"],
    );
    install(
        &node,
        "tenant-a",
        P2,
        &caps,
        &["--config", "greeting=Hi from p2"],
    );
    install(&node, "tenant-b", P3, &caps, &[]);
    install(&node, "tenant-c", P3, &[], &[]);
    install(&node, "tenant-d", P3, &["cap:storage.kv"], &[]);
    let [a, b, c, d] = ["tenant-a", "tenant-b", "tenant-c", "tenant-d"].map(|t| token(&node, t));
    let route = format!("/api/ext/{P3}/hello");

    // spin-sdk 7's async key-value (get, set, exists, get-keys as a stream) and variables.
    for visits in [1, 2] {
        let (status, body) = call(&node, "GET", &route, &a, "");
        assert_eq!(status, 200, "{body}");
        let body = json(&body);
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
    let (status, body) = call(&node, "DELETE", &route, &a, "");
    assert_eq!(status, 200, "{body}");
    let body = json(&body);
    assert_eq!(
        (body["visits"].as_u64(), body["exists"].as_bool()),
        (Some(0), Some(false))
    );
    assert_eq!(body["keys"], json!([]));

    // A WASIp2 component on the same node, with the same interface names typed synchronously.
    let (status, body) = call(&node, "GET", &format!("/api/ext/{P2}/x"), &a, "");
    assert_eq!(status, 200, "{body}");
    let body = json(&body);
    assert_eq!(
        (body["greeting"].as_str(), body["visits"].as_u64()),
        (Some("Hi from p2"), Some(1))
    );

    // Another tenant: its own store; no `greeting` in its config, so Spin's `undefined`.
    let (status, body) = call(&node, "GET", &route, &b, "");
    assert_eq!(status, 200, "{body}");
    let body = json(&body);
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
    let (text, samples) = metrics(&node);
    for capability in ["kv", "config"] {
        assert!(
            sum(
                &samples,
                "alga_capability_denials_total",
                &[("capability", capability), ("reason", "not_granted")]
            ) >= 1.0,
            "{capability}: {text}"
        );
    }
    // The KV rows are tenant-a's and tenant-b's own.
    for (tenant, keys) in [("tenant-a", json!([])), ("tenant-b", json!(["visits"]))] {
        let (status, listed) = call(
            &node,
            "GET",
            &format!("/admin/v1/tenants/{tenant}/kv/{P3}/default"),
            ADMIN_TOKEN,
            "",
        );
        assert_eq!(status, 200, "{listed}");
        assert_eq!(json(&listed)["keys"], keys, "{tenant}");
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
    let egress = format!("egress_allow=127.0.0.1:{port},localhost:{port},169.254.169.254");
    install(
        &node,
        "tenant-a",
        P3,
        &["cap:http.fetch"],
        &["--policy", &egress],
    );
    install(&node, "tenant-b", P3, &[], &["--policy", &egress]);
    let (a, b) = (token(&node, "tenant-a"), token(&node, "tenant-b"));
    let url = format!("http://127.0.0.1:{port}/p3");
    let answer = sample(&node, P3, "GET", &format!("/fetch?url={}", q(&url)), &a, "");
    assert_eq!(
        answer,
        json!({"ok": true, "status": 200, "body": "pong /p3"})
    );
    let refused = [
        (
            &a,
            format!("http://127.0.0.1:{}/x", port.wrapping_add(1)),
            "HttpRequestDenied",
        ),
        (
            &a,
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "HttpRequestDenied",
        ),
        (
            &a,
            format!("http://localhost:{port}/x"),
            "DestinationIpProhibited",
        ),
        (
            &b,
            format!("http://127.0.0.1:{port}/ungranted"),
            "HttpRequestDenied",
        ),
    ];
    for (bearer, url, error) in &refused {
        assert_fetch_refused(&node, P3, bearer, url, error);
    }
    assert_eq!(
        upstream.seen.load(Ordering::Relaxed),
        1,
        "only the allowed request reached the server"
    );
    let (text, samples) = metrics(&node);
    for (reason, count) in [
        ("not_allowlisted", 2.0),
        ("private_address", 1.0),
        ("not_granted", 1.0),
    ] {
        assert_eq!(
            sum(
                &samples,
                "alga_capability_denials_total",
                &[("capability", "http"), ("reason", reason)]
            ),
            count,
            "{reason}: {text}"
        );
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
        "tenant-a",
        STD,
        &caps,
        &["--config", "greeting=Hi from draft2"],
    );
    install(&node, "tenant-b", STD, &["cap:storage.kv"], &[]);
    install(&node, "tenant-c", STD, &[], &[]);
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
    let (status, keys) = call(
        &node,
        "GET",
        &format!("/admin/v1/tenants/tenant-a/kv/{STD}/default"),
        ADMIN_TOKEN,
        "",
    );
    assert_eq!(status, 200, "{keys}");
    assert_eq!(json(&keys)["keys"], json!(["c", "r", "visits", "x", "y"]));
}
