//! Hardening over the real binary (issue 21): extension names owned by signing keys, a request
//! log that unauthenticated callers cannot flood, path parameters held to one name rule, the
//! demo host page refusing foreign `Host`s, and request bodies that stop arriving.

use std::path::Path;
use std::time::{Duration, Instant};

use alga_edge_e2e::metrics::{scrape, sum};
use alga_edge_e2e::publishing::{
    ADMIN_TOKEN, Fixture, HELLO, admin, admin_json, admin_ok, bearer, cli, install, path, token,
};
use alga_edge_e2e::{Node, raw, raw_bytes, request, tempfile};

use crate::BIN;

/// Makes a key pair in `dir` with `alga-edge keygen`; returns its fingerprint.
fn keygen(dir: &Path) -> String {
    let out = cli(&["keygen", "--out", path(dir)]);
    assert!(out.ok, "keygen: {}", out.stderr);
    fingerprint_in(&out.stdout)
}

/// The fingerprint `alga-edge keygen` printed.
fn fingerprint_in(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint in {stdout}"))
        .trim()
        .to_owned()
}

/// Re-signs `bundle` with the private key in `keys`.
fn sign_with(bundle: &Path, keys: &Path) {
    let key = keys.join("publisher.pem");
    let out = cli(&["sign", path(bundle), "--key", path(&key)]);
    assert!(out.ok, "sign: {}", out.stderr);
}

#[test]
fn an_extension_name_belongs_to_the_key_that_first_published_it() {
    let fixture = Fixture::new();
    let owner_keys = fixture.keys();
    // A fresh owner key in the fixture's key folder, so its fingerprint is known.
    let out = cli(&["keygen", "--out", path(&owner_keys), "--force"]);
    assert!(out.ok, "keygen: {}", out.stderr);
    let owner = fingerprint_in(&out.stdout);
    let other_keys = fixture.dir.path().join("other-keys");
    let other = keygen(&other_keys);
    // Both keys are trusted by the node: trust alone does not let a key publish any name.
    let trust = fixture.dir.path().join("trust.pem");
    let mut both = std::fs::read_to_string(owner_keys.join("publisher.pub.pem")).unwrap();
    both.push_str(&std::fs::read_to_string(other_keys.join("publisher.pub.pem")).unwrap());
    std::fs::write(&trust, both).unwrap();
    let node = Node::start_in(
        BIN,
        &fixture.data(),
        &["--trust-bundle", path(&trust), "--admin-token", ADMIN_TOKEN],
        &[],
    );

    admin_ok(
        &node,
        &["publish", path(&fixture.bundle(HELLO, "1.0.0", "hello"))],
    );
    install(&node, HELLO, "1.0.0", "t1", &[], &[]);

    // The other key signs 1.1.0 with the very same manifest `publisher` string: refused.
    let takeover = fixture.bundle(HELLO, "1.1.0", "faulty");
    sign_with(&takeover, &other_keys);
    let refused = admin(&node, &["publish", path(&takeover)]);
    assert!(!refused.ok, "a second key published {HELLO}");
    assert!(
        refused.stderr.contains("HTTP 403") && refused.stderr.contains(&owner),
        "{}",
        refused.stderr
    );
    let (_, extension) = admin_json(&node, "GET", &format!("extensions/{HELLO}"), None);
    assert_eq!(extension["owner_key"], owner.as_str(), "{extension}");
    let versions = extension["versions"].as_array().unwrap();
    assert_eq!(
        versions.len(),
        1,
        "nothing of the refused publish is stored"
    );
    assert_eq!(versions[0]["signer"], owner.as_str());
    let listed = admin_ok(&node, &["list"]);
    assert!(listed.contains(&format!("signer={owner}")), "{listed}");

    // A delegation must be signed by the owner's key, not by the key that wants it.
    let key_flag = other_keys.join("publisher.pem");
    let forged = admin(
        &node,
        &[
            "keys",
            "delegate",
            HELLO,
            "--to",
            &other,
            "--key",
            path(&key_flag),
        ],
    );
    assert!(
        !forged.ok && forged.stderr.contains("HTTP 403"),
        "{}",
        forged.stderr
    );

    // The owner delegates: the other key may publish, and the version shows who signed it.
    let owner_key = owner_keys.join("publisher.pem");
    admin_ok(
        &node,
        &[
            "keys",
            "delegate",
            HELLO,
            "--to",
            &other,
            "--key",
            path(&owner_key),
        ],
    );
    admin_ok(&node, &["publish", path(&takeover)]);
    let (_, extension) = admin_json(&node, "GET", &format!("extensions/{HELLO}"), None);
    assert_eq!(
        extension["versions"][1]["signer"],
        other.as_str(),
        "{extension}"
    );

    // Revoked: its next version is refused again; what it published stays.
    admin_ok(&node, &["keys", "revoke", HELLO, &other]);
    let later = fixture.bundle(HELLO, "1.2.0", "hello");
    sign_with(&later, &other_keys);
    let refused = admin(&node, &["publish", path(&later)]);
    assert!(
        !refused.ok && refused.stderr.contains("HTTP 403"),
        "{}",
        refused.stderr
    );
    let (status, keys) = admin_json(&node, "GET", &format!("extensions/{HELLO}/keys"), None);
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["owner"], owner.as_str());
    assert_eq!(
        keys["delegates"].as_array().map(Vec::len),
        Some(0),
        "{keys}"
    );
    let actions: Vec<(&str, &str)> = keys["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["fingerprint"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("claim", owner.as_str()),
            ("delegate", other.as_str()),
            ("revoke", other.as_str())
        ]
    );
    // The owner key itself cannot be revoked.
    let (status, answer) = admin_json(
        &node,
        "DELETE",
        &format!("extensions/{HELLO}/keys/{owner}"),
        None,
    );
    assert_eq!(status, 403, "{answer}");
}

#[test]
fn unauthenticated_failures_cannot_flood_the_node_log() {
    let fixture = Fixture::new();
    let node = fixture.start(&[]);
    let before = node.log_text().len();
    let long = "x".repeat(4096);
    let agent = alga_edge_e2e::client();
    let started = Instant::now();
    const SENT: usize = 600;
    for i in 0..SENT {
        let url = node.url(&format!("/api/ext/{HELLO}/{long}{i}"));
        let (status, _, _) = alga_edge_e2e::send(&agent, "GET", &url, &[], None);
        assert_eq!(status, 401);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Lines are written after the answer: give the last ones a moment.
    std::thread::sleep(Duration::from_millis(200));
    let log = node.log_text()[before..].to_owned();
    let logged = log
        .lines()
        .filter(|l| l.contains("gateway request"))
        .count();
    // 50 at once, then 10 per second node-wide (one second of slack).
    let allowed = 50 + (10.0 * (elapsed + 1.0)).ceil() as usize;
    assert!(
        logged <= allowed,
        "{logged} lines logged for {SENT} anonymous requests in {elapsed:.1} s"
    );
    assert!(
        logged >= 50,
        "the first failures are still logged: {logged}"
    );
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1024, "a line of {longest} bytes");
    assert!(
        log.len() < 200 << 10,
        "{} bytes of log for {SENT} anonymous requests",
        log.len()
    );
    let (_, samples) = scrape(&node);
    let suppressed = sum(&samples, "alga_request_log_suppressed_total", &[]) as usize;
    assert_eq!(suppressed + logged, SENT, "every line left out is counted");

    // An authenticated caller's request is always logged, even right after the flood.
    admin_ok(
        &node,
        &["publish", path(&fixture.bundle(HELLO, "1.0.0", "hello"))],
    );
    install(&node, HELLO, "1.0.0", "t1", &[], &[]);
    let tenant = bearer(&token(&node, "t1"));
    let (status, headers, _) = request(
        &node,
        "GET",
        &format!("/api/ext/{HELLO}/after-the-flood"),
        &[("authorization", &tenant)],
        None,
    );
    assert_eq!(status, 200);
    let id = headers["x-request-id"].to_str().unwrap().to_owned();
    alga_edge_e2e::wait_until(Duration::from_secs(10), "the tenant's line", || {
        node.log_text().contains(&id)
    });
}

#[test]
fn path_names_bodies_and_the_demo_host_are_held_to_their_rules() {
    let fixture = Fixture::new();
    let node = fixture.start(&[]);
    let admin_auth = bearer(ADMIN_TOKEN);
    let auth = [("authorization", admin_auth.as_str())];

    // Tenant and extension path parameters follow the rules install and the gateway apply.
    for target in [
        "/admin/v1/tenants/../kv/com.x.y/b/k",
        "/admin/v1/tenants/%2E%2E%2Ft2/kv/com.x.y/b/k",
        "/admin/v1/tenants/t1/kv/..%2Fother/b/k",
        "/admin/v1/tenants/a%20b/installs",
        "/admin/v1/tenants/../executions",
    ] {
        let (status, _, body) = raw(&node, "GET", target, &auth);
        assert_eq!(status, 400, "{target}: {}", String::from_utf8_lossy(&body));
    }

    // A body that stops arriving is answered 408 within seconds, not held open.
    let address = node.base().trim_start_matches("http://").to_owned();
    let stalled = format!(
        "PUT /admin/v1/tenants/t1/kv/com.x.y/b/k HTTP/1.1\r\nhost: {address}\r\n\
         authorization: {admin_auth}\r\nconnection: close\r\ncontent-length: 100\r\n\r\n12"
    );
    let started = Instant::now();
    let (status, _, body) = raw_bytes(&node, stalled.as_bytes(), Duration::from_secs(60));
    let waited = started.elapsed();
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
    assert!(
        waited < Duration::from_secs(30),
        "answered after {waited:?}"
    );
    drop(node);

    // The demo host page hands out a tenant token: only to a loopback Host.
    let data = tempfile::tempdir().unwrap();
    let demo = Node::start_demo(BIN, data.path());
    let port = demo.base().rsplit(':').next().unwrap().to_owned();
    for (host, expected) in [
        (format!("127.0.0.1:{port}"), 200),
        (format!("localhost:{port}"), 200),
        (format!("rebound.example:{port}"), 403),
    ] {
        let request =
            format!("GET /demo/config HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        let (status, _, body) = raw_bytes(&demo, request.as_bytes(), Duration::from_secs(10));
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, expected, "{host}: {text}");
        if expected == 403 {
            assert!(!text.contains("token\""), "{text}");
        }
    }
}
