//! The registry lifecycle over the real binary: keygen → pack → sign → publish → install →
//! request, then disable, update, uninstall; two tenants on different versions; admin API
//! errors; and a kill -9 during publishing.

use std::path::PathBuf;
use std::time::Duration;

use alga_edge_e2e::publishing::{
    ADMIN_TOKEN, Fixture, LIMIT, admin, admin_call, admin_json, admin_ok, cli, get, install, json,
    path, token,
};
use alga_edge_e2e::{Node, client, tempfile, wait_until};
use alga_edge_registry::bundle::ContentHash;

use crate::BIN;

const NAME: &str = "com.alga.test.greeter";

#[test]
fn publish_install_request_disable_update_uninstall_over_the_cli() {
    let fixture = Fixture::new();
    let v1 = fixture.bundle(NAME, "1.0.0", "hello");
    let v2 = fixture.bundle(NAME, "2.0.0", "faulty");
    let v1_hash = ContentHash::of(&std::fs::read(&v1).unwrap()).to_string();
    let node = fixture.start(&[]);
    let agent = client();
    let route = node.url(&format!("/api/ext/{NAME}/greet?n=1"));
    let acme = token(&node, "acme");

    let out = admin_ok(&node, &["publish", path(&v1)]);
    assert!(
        out.starts_with(&format!("{v1_hash} {NAME}@1.0.0 published")),
        "{out}"
    );
    let again = admin_ok(&node, &["publish", path(&v1)]);
    assert!(again.contains("already published"), "{again}");
    admin_ok(&node, &["publish", path(&v2)]);
    let listed = admin_ok(&node, &["list"]);
    assert!(
        listed.contains(&format!("{NAME}@1.0.0 {v1_hash}")),
        "{listed}"
    );
    assert!(listed.contains(&format!("{NAME}@2.0.0 ")), "{listed}");

    // Published is not installed.
    assert_eq!(get(&agent, &route, Some(&acme)).0, 404);

    install(&node, NAME, "1.0.0", "acme", &[], &[]);
    let (status, body) = get(&agent, &route, Some(&acme));
    assert_eq!(status, 200, "{body}");
    let body = json(&body);
    assert_eq!(body["path"], "/greet");
    assert_eq!(body["context"]["tenant_id"], "acme");
    assert_eq!(body["context"]["extension_id"], NAME);
    assert_eq!(body["context"]["content_hash"], v1_hash.as_str());
    assert!(
        body["headers"].get("authorization").is_none(),
        "the tenant token must not reach the component: {body}"
    );

    // No token, a garbage token, another node's key: 401 before any lookup.
    assert_eq!(get(&agent, &route, None).0, 401);
    assert_eq!(get(&agent, &route, Some("not-a-jwt")).0, 401);

    admin_ok(&node, &["disable", NAME, "--tenant", "acme"]);
    assert_eq!(get(&agent, &route, Some(&acme)).0, 404);
    let listed = admin_ok(&node, &["list", "--tenant", "acme"]);
    assert!(
        listed.contains(&format!("{NAME}@1.0.0 disabled")),
        "{listed}"
    );
    admin_ok(&node, &["enable", NAME, "--tenant", "acme"]);
    assert_eq!(get(&agent, &route, Some(&acme)).0, 200);

    // Version 2 is other code (the faulty sample answers plain "ok").
    admin_ok(
        &node,
        &["update", NAME, "--version", "2.0.0", "--tenant", "acme"],
    );
    let (status, body) = get(&agent, &route, Some(&acme));
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    admin_ok(&node, &["uninstall", NAME, "--tenant", "acme"]);
    assert_eq!(get(&agent, &route, Some(&acme)).0, 404);
    let out = admin(&node, &["uninstall", NAME, "--tenant", "acme"]);
    assert!(
        !out.ok && out.stderr.contains("HTTP 404") && out.stderr.contains("no install"),
        "{}",
        out.stderr
    );
}

#[test]
fn two_tenants_on_different_versions_each_get_their_own() {
    let fixture = Fixture::new();
    let v1 = fixture.bundle(NAME, "1.0.0", "hello");
    let v2 = fixture.bundle(NAME, "2.0.0", "faulty");
    let node = fixture.start(&[]);
    admin_ok(&node, &["publish", path(&v1)]);
    admin_ok(&node, &["publish", path(&v2)]);
    install(&node, NAME, "1.0.0", "acme", &[], &[]);
    install(&node, NAME, "2.0.0", "globex", &[], &[]);
    let agent = client();
    let route = node.url(&format!("/api/ext/{NAME}/"));
    let (acme, globex) = (token(&node, "acme"), token(&node, "globex"));
    for _ in 0..3 {
        let (status, body) = get(&agent, &route, Some(&acme));
        assert_eq!(status, 200);
        assert_eq!(json(&body)["context"]["tenant_id"], "acme");
        assert_eq!(get(&agent, &route, Some(&globex)), (200, "ok\n".to_owned()));
    }
    // A tenant without an install sees 404, not another tenant's install.
    let initech = token(&node, "initech");
    assert_eq!(get(&agent, &route, Some(&initech)).0, 404);
}

#[test]
fn admin_api_refuses_bad_calls_with_the_right_status_and_leaves_nothing_behind() {
    let fixture = Fixture::new();
    let v1 = fixture.bundle(NAME, "1.0.0", "hello");
    let bytes = std::fs::read(&v1).unwrap();
    let signature = std::fs::read_to_string(format!("{}.sig", v1.display())).unwrap();
    let signature = signature.trim();
    let node = fixture.start(&["--max-bundle-mib", "1"]);
    let t = Some(ADMIN_TOKEN);
    let sig = [("x-alga-signature", signature)];

    assert_eq!(
        admin_call(&node, "GET", "extensions", None, &[], None).0,
        401
    );
    assert_eq!(
        admin_call(&node, "GET", "extensions", Some("wrong-token"), &[], None).0,
        401
    );
    assert_eq!(admin_call(&node, "GET", "nope", t, &[], None).0, 404);
    assert_eq!(admin_call(&node, "PUT", "extensions", t, &[], None).0, 405);

    // Publishing: no signature 400; one byte changed 403 (the signature is for another hash);
    // an untrusted key 403; too large 413.
    let (status, body) = admin_call(&node, "POST", "bundles", t, &[], Some(bytes.clone()));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("x-alga-signature")
    );
    let mut tampered = bytes.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let (status, body) = admin_call(&node, "POST", "bundles", t, &sig, Some(tampered));
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("content_hash"),
        "{body}"
    );
    let other = tempfile::tempdir().unwrap();
    assert!(cli(&["keygen", "--out", path(other.path())]).ok);
    let foreign = other.path().join("v1.sig");
    let out = cli(&[
        "sign",
        path(&v1),
        "--key",
        path(&other.path().join("publisher.pem")),
        "--out",
        path(&foreign),
    ]);
    assert!(out.ok, "{}", out.stderr);
    let foreign = std::fs::read_to_string(&foreign).unwrap();
    let (status, body) = admin_call(
        &node,
        "POST",
        "bundles",
        t,
        &[("x-alga-signature", foreign.trim())],
        Some(bytes.clone()),
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = admin_call(&node, "POST", "bundles", t, &sig, Some(vec![7u8; 2 << 20]));
    assert_eq!(status, 413, "{body}");

    // Nothing refused left a trace: no extension, no stored bundle.
    let (_, listed) = admin_call(&node, "GET", "extensions", t, &[], None);
    assert_eq!(listed["extensions"], serde_json::json!([]));
    let stored: Vec<_> = std::fs::read_dir(fixture.data().join("bundles/sha256"))
        .unwrap()
        .collect();
    assert!(stored.is_empty(), "bundle store not empty: {stored:?}");

    let (status, _) = admin_call(&node, "POST", "bundles", t, &sig, Some(bytes));
    assert_eq!(status, 201);

    // Installs: unknown extension/version 404, bad JSON and ungranted capability 400,
    // a second install 409, a deprecated version 409 for new installs.
    let post_install = |tenant: &str, body: serde_json::Value| {
        admin_json(
            &node,
            "POST",
            &format!("tenants/{tenant}/installs"),
            Some(body),
        )
    };
    let body = |extension: &str, version: &str| serde_json::json!({"extension": extension, "version": version});
    assert_eq!(post_install("acme", body("com.alga.nope", "1.0.0")).0, 404);
    assert_eq!(post_install("acme", body(NAME, "9.9.9")).0, 404);
    let (status, answer) = post_install(
        "acme",
        serde_json::json!({"extension": NAME, "version": "1.0.0", "grants": ["cap:storage.kv"]}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("cap:storage.kv")
    );
    let (status, answer) = post_install("acme", serde_json::json!({"extension": NAME}));
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("version"),
        "{answer}"
    );
    assert_eq!(post_install("bad%20tenant", body(NAME, "1.0.0")).0, 400);
    assert_eq!(post_install("acme", body(NAME, "1.0.0")).0, 201);
    assert_eq!(post_install("acme", body(NAME, "1.0.0")).0, 409);
    let (status, _) = admin_call(
        &node,
        "POST",
        &format!("extensions/{NAME}/versions/1.0.0/deprecate"),
        t,
        &[],
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(post_install("globex", body(NAME, "1.0.0")).0, 409);
    // The existing install keeps working.
    let acme = token(&node, "acme");
    let route = node.url(&format!("/api/ext/{NAME}/"));
    assert_eq!(get(&client(), &route, Some(&acme)).0, 200);
}

/// The status and answer of `GET extensions/{NAME}`.
fn listed_versions(node: &Node) -> (u16, serde_json::Value) {
    admin_json(node, "GET", &format!("extensions/{NAME}"), None)
}

/// Kill -9 while bundles are being published: after a restart every listed version is whole
/// (stored bundle present, hash right, installable and runnable) and every bundle, including
/// the one cut off, publishes again without conflict.
#[test]
fn kill_9_during_publish_leaves_no_half_visible_version() {
    const VERSIONS: usize = 40;
    let fixture = Fixture::new();
    let bundles: Vec<PathBuf> = (0..VERSIONS)
        .map(|i| fixture.bundle(NAME, &format!("1.0.{i}"), "hello"))
        .collect();
    let node = fixture.start(&[]);

    let base = node.base();
    let to_publish = bundles.clone();
    let publisher = std::thread::spawn(move || {
        let agent = client();
        let mut outcomes = Vec::new();
        for bundle in &to_publish {
            let bytes = std::fs::read(bundle).unwrap();
            let signature = std::fs::read_to_string(format!("{}.sig", bundle.display())).unwrap();
            let result = agent
                .post(&format!("{base}/admin/v1/bundles"))
                .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
                .header("x-alga-signature", signature.trim())
                .send(&bytes[..]);
            match result {
                Ok(response) => outcomes.push(Some(response.status().as_u16())),
                Err(_) => {
                    // The node is gone: this publish was cut off.
                    outcomes.push(None);
                    break;
                }
            }
        }
        outcomes
    });
    // Let a few publishes land, then kill in the middle of the stream.
    wait_until(
        Duration::from_secs(60),
        "three versions to be listed",
        || {
            let (_, listed) = listed_versions(&node);
            listed["versions"].as_array().map_or(0, Vec::len) >= 3
        },
    );
    node.kill_hard();
    let outcomes = publisher.join().unwrap();
    assert_eq!(
        outcomes.last(),
        Some(&None),
        "the kill must cut a publish off (outcomes {outcomes:?})"
    );
    assert!(outcomes.iter().flatten().all(|s| *s == 201), "{outcomes:?}");

    let node = fixture.start(&[]);
    let (status, listed) = listed_versions(&node);
    assert_eq!(status, 200, "{listed}");
    let versions = listed["versions"].as_array().unwrap().clone();
    let completed = outcomes.iter().flatten().count();
    eprintln!(
        "kill -9 after {completed} acknowledged publishes of {VERSIONS}; {} versions listed after restart",
        versions.len()
    );
    assert!(
        versions.len() == completed || versions.len() == completed + 1,
        "{} versions listed after {completed} acknowledged publishes",
        versions.len()
    );
    for version in &versions {
        let hash = version["content_hash"].as_str().unwrap();
        let hex = hash.strip_prefix("sha256:").unwrap();
        let stored = std::fs::read(fixture.data().join("bundles/sha256").join(hex))
            .unwrap_or_else(|e| panic!("listed version {version} has no stored bundle: {e}"));
        assert_eq!(ContentHash::of(&stored).to_string(), hash);
    }
    // The last listed version installs and runs.
    let last = versions.last().unwrap()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    install(&node, NAME, &last, "acme", &[], &[]);
    let acme = token(&node, "acme");
    assert_eq!(
        get(
            &client(),
            &node.url(&format!("/api/ext/{NAME}/")),
            Some(&acme)
        )
        .0,
        200
    );
    // Every bundle, including the interrupted one, publishes cleanly now.
    for bundle in &bundles {
        let out = admin(&node, &["publish", path(bundle)]);
        assert!(out.ok, "republish {}: {}", bundle.display(), out.stderr);
    }
    let (_, listed) = listed_versions(&node);
    assert_eq!(listed["versions"].as_array().unwrap().len(), VERSIONS);
}

#[test]
fn bundles_can_live_in_an_object_store() {
    let fixture = Fixture::new();
    let v1 = fixture.bundle(NAME, "1.0.0", "hello");
    let hash = ContentHash::of(&std::fs::read(&v1).unwrap());
    let objects = fixture.dir.path().join("objects");
    let url = format!("file://{}", objects.display());
    let node = fixture.start(&["--bundle-store", &url, "--no-disk-cache"]);
    admin_ok(&node, &["publish", path(&v1)]);
    assert!(
        objects.join("sha256").join(hash.hex()).is_file(),
        "the bundle is stored under its hash in the object store"
    );
    assert!(!fixture.data().join("bundles").exists());
    install(&node, NAME, "1.0.0", "acme", &[], &[]);
    let acme = token(&node, "acme");
    let (status, body) = get(
        &client(),
        &node.url(&format!("/api/ext/{NAME}/")),
        Some(&acme),
    );
    assert_eq!(status, 200, "{body}");

    // An unusable store URL stops startup with the reason.
    let data = fixture.dir.path().join("other-node");
    let out = cli(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path(&data),
        "--bundle-store",
        "ftp://example.invalid/bundles",
    ]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("unsupported scheme 'ftp'"),
        "{}",
        out.stderr
    );
}

#[test]
fn demo_publishes_installs_and_prints_working_urls_and_reuses_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let agent = client();
    let mut hashes = Vec::new();
    for run in 0..2 {
        let demo = Node::start_demo(BIN, &data);
        let hello = demo
            .wait_for_line("com.alga.samples.hello ", LIMIT)
            .expect("the demo prints the hello sample's URL");
        assert_eq!(
            hello,
            demo.url("/api/ext/com.alga.samples.hello/"),
            "run {run}"
        );
        let token = demo
            .wait_for_line("tenant demo-tenant token: ", LIMIT)
            .expect("the demo prints a tenant token");
        let (status, body) = get(&agent, &format!("{hello}greet"), Some(&token));
        assert_eq!(status, 200, "run {run}: {body}");
        let body = json(&body);
        assert_eq!(body["context"]["tenant_id"], "demo-tenant");
        hashes.push(body["context"]["content_hash"].as_str().unwrap().to_owned());
        assert_eq!(get(&agent, &hello, None).0, 401);
        // The log is written in order: once this request's line is there, so are the
        // start-up lines before it.
        let request_id = body["context"]["request_id"].as_str().unwrap().to_owned();
        let log = demo.wait_for_log("the greet request's line", LIMIT, |log| {
            log.contains(&request_id)
        });
        let published = log.matches("sample published").count();
        // The first run publishes every sample; the second finds them already published.
        let samples = std::fs::read_dir(alga_edge_e2e::samples_dir())
            .unwrap()
            .count();
        assert!(samples >= 3, "hello, faulty and capabilities at least");
        assert_eq!(published, if run == 0 { samples } else { 0 }, "run {run}");
        demo.kill_hard();
    }
    assert_eq!(hashes[0], hashes[1], "re-running serves the same bundle");
}

#[test]
fn bundles_can_live_in_an_s3_bucket() {
    let s3 = alga_edge_e2e::S3Server::start();
    s3.create_bucket("alga-bundles");
    let fixture = Fixture::new();
    let v1 = fixture.bundle(NAME, "1.0.0", "hello");
    let bytes = std::fs::read(&v1).unwrap();
    let hash = ContentHash::of(&bytes);
    let trust = fixture.keys().join("publisher.pub.pem");
    let env = [
        ("AWS_ENDPOINT", s3.endpoint()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ];
    let node = Node::start_in(
        BIN,
        &fixture.data(),
        &[
            "--trust-bundle",
            path(&trust),
            "--admin-token",
            ADMIN_TOKEN,
            "--bundle-store",
            "s3://alga-bundles/edge",
            // Compile from the bundle read back from the bucket, not a cached artifact.
            "--no-disk-cache",
        ],
        &env,
    );
    admin_ok(&node, &["publish", path(&v1)]);
    let key = format!("edge/sha256/{}", hash.hex());
    assert_eq!(
        s3.object_size("alga-bundles", &key),
        Some(bytes.len() as u64),
        "the bundle is in the bucket under its hash"
    );
    assert!(
        !fixture.data().join("bundles").exists(),
        "nothing stored locally"
    );
    assert!(admin_ok(&node, &["publish", path(&v1)]).contains("already published"));
    install(&node, NAME, "1.0.0", "acme", &[], &[]);
    let acme = token(&node, "acme");
    let route = node.url(&format!("/api/ext/{NAME}/"));
    let (status, body) = get(&client(), &route, Some(&acme));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn install_secrets_are_sealed_at_rest_and_never_echoed() {
    const SECRET: &str = "plaintext-s3cr3t-7f1c2a";
    let fixture = Fixture::new();
    let v1 = fixture.bundle(NAME, "1.0.0", "hello");
    let node = fixture.start(&[]);
    admin_ok(&node, &["publish", path(&v1)]);
    let secret = format!("api_key={SECRET}");
    let out = install(
        &node,
        NAME,
        "1.0.0",
        "acme",
        &[],
        &[
            "--config",
            "region=config-marker-93ad",
            "--secret",
            &secret,
            "--json",
        ],
    );
    let installed = json(&out);
    assert_eq!(installed["config"]["region"], "config-marker-93ad");
    assert!(
        !out.contains(SECRET),
        "the admin API echoed a secret: {out}"
    );
    let listed = admin_ok(&node, &["list", "--tenant", "acme", "--json"]);
    assert!(!listed.contains(SECRET), "{listed}");

    // Neither the database files (with their WAL) nor the node log hold the plaintext, while
    // the (not secret) config value is found there, so the scan does see stored data.
    let contains =
        |bytes: &[u8], needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    let mut checked = 0;
    let mut config_seen = false;
    // The replication directory (base images, archived frames) holds copies of the data too.
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for entry in std::fs::read_dir(fixture.data()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && name.starts_with("registry.db") {
            files.extend(
                std::fs::read_dir(entry.path())
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if ["registry.db", "executions.db"]
            .iter()
            .any(|db| name.starts_with(db))
            || name.ends_with(".log")
        {
            files.push(entry.path());
        }
    }
    for path in files {
        let name = path.display().to_string();
        {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !contains(&bytes, SECRET),
                "{name} holds the secret in plaintext"
            );
            config_seen |= contains(&bytes, "config-marker-93ad");
            checked += 1;
        }
    }
    assert!(checked >= 2, "expected the registry database and the log");
    assert!(config_seen, "the scan found no stored config value either");
}
