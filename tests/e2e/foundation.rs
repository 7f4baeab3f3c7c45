//! The foundation over the real binary: hello round trip, and every guest fault contained
//! (trap, infinite loop, memory bomb, stack overflow, huge body) while the node keeps serving;
//! the same for WASIp3 components (`faulty-p3`).

use std::time::Duration;

use alga_edge_e2e::publishing::{get, json, token};
use alga_edge_e2e::{Node, client, get_json, run_to_exit, timed, wait_until};

use crate::BIN;

/// The node still answers a normal request after a fault.
fn assert_still_serving(node: &Node) {
    let (status, _, body) = get_json(&client(), &node.url("/api/ext/hello/after-fault"));
    assert_eq!(
        status,
        200,
        "node stopped serving; log:\n{}",
        node.log_text()
    );
    assert_eq!(body["path"], "/after-fault");
}

/// GETs `/trap` of the dev-mapped `extension`: a 502 `extension_trap`, and the guest's panic
/// message is in the node's log, tied to the request id.
fn assert_trap_is_logged(node: &Node, extension: &str) {
    let route = format!("/api/ext/{extension}/trap");
    let (status, headers, body) = get_json(&client(), &node.url(&route));
    assert_eq!(status, 502, "body: {body}");
    assert_error_body(&headers, &body, "extension_trap");
    let request_id = body["request_id"].as_str().unwrap();
    let message = format!("{extension}: deliberate trap");
    node.wait_for_log(
        &format!("the guest's stderr for {request_id}"),
        Duration::from_secs(10),
        |log| {
            log.lines()
                .any(|l| l.contains(request_id) && l.contains(&message))
        },
    );
}

/// GETs `url`, a body larger than the node's `cap_mib` response cap: 200, then the stream is
/// cut (the connection aborts mid-body) after some bytes and never more than the cap.
fn assert_cut_at_cap(agent: &ureq::Agent, url: &str, cap_mib: u64) {
    let mut response = agent.get(url).call().unwrap();
    assert_eq!(response.status(), 200);
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    assert!(
        received <= cap_mib << 20,
        "got {received} bytes past a {cap_mib} MiB cap"
    );
    assert!(received > 0, "nothing was streamed before the cut");
}

/// The JSON error contract: `{error, message, request_id}` with the id also in the header.
fn assert_error_body(headers: &http::HeaderMap, body: &serde_json::Value, error: &str) {
    assert_eq!(body["error"], error, "body: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
    assert_eq!(
        body["request_id"].as_str(),
        headers.get("x-request-id").and_then(|v| v.to_str().ok()),
        "request id in body and header differ"
    );
}

/// The answer, after `elapsed`, to a request `what` kept running past its `timeout_ms`
/// deadline: 504 `extension_timeout`, not before the deadline (less 50 ms of timer slack) and,
/// when `overshoot_ms` is given, no more than that after it.
fn assert_stopped_at_deadline(
    what: &str,
    (status, headers, body): &(u16, http::HeaderMap, serde_json::Value),
    elapsed: Duration,
    timeout_ms: u64,
    overshoot_ms: Option<u64>,
) {
    eprintln!("{what} answered {status} after {elapsed:?} (deadline {timeout_ms} ms)");
    assert_eq!(*status, 504, "body: {body}");
    assert_error_body(headers, body, "extension_timeout");
    assert!(
        elapsed >= Duration::from_millis(timeout_ms - 50),
        "answered before the deadline: {elapsed:?}"
    );
    if let Some(overshoot_ms) = overshoot_ms {
        assert!(
            elapsed <= Duration::from_millis(timeout_ms + overshoot_ms),
            "deadline overshot: {elapsed:?}"
        );
    }
}

#[test]
fn hello_echoes_path_query_and_context() {
    let node = Node::start(BIN, &[], &[]);
    let agent = client();
    let mut response = agent
        .get(&node.url("/api/ext/hello/greet?x=1&name=Ada%20L"))
        .header("authorization", "Bearer end-user-token")
        .header("x-alga-tenant", "spoofed-tenant")
        .header("x-request-id", "e2e-req-1")
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-request-id"], "e2e-req-1");
    let body: serde_json::Value = response.body_mut().read_json().unwrap();

    assert_eq!(body["method"], "GET");
    assert_eq!(
        body["path"], "/greet",
        "gateway prefix must be removed: {body}"
    );
    assert_eq!(body["query"]["x"], "1");
    assert_eq!(body["query"]["name"], "Ada L");
    assert_eq!(body["context"]["tenant_id"], "dev-tenant");
    assert_eq!(body["context"]["extension_id"], "hello");
    assert_eq!(body["context"]["request_id"], "e2e-req-1");
    assert!(
        body["context"]["content_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(body["greeting"].as_str().unwrap().contains("dev-tenant"));
    // Gateway headers are set by the host, never taken from the caller.
    assert_eq!(body["headers"]["x-alga-tenant"], "dev-tenant");
    assert_eq!(body["headers"]["x-alga-extension"], "hello");
    assert!(
        body["headers"].get("authorization").is_none(),
        "end-user credential leaked: {body}"
    );
}

#[test]
fn unknown_extension_and_route_are_404() {
    let node = Node::start(BIN, &[], &[]);
    let agent = client();
    // Ids that are not dev-mapped go through tenant auth first: no token is 401 …
    let (status, headers, body) = get_json(&agent, &node.url("/api/ext/nope/x"));
    assert_eq!(status, 401);
    assert_error_body(&headers, &body, "unauthorized");
    assert_eq!(headers["www-authenticate"], "Bearer");
    // … and a valid tenant token for an extension the tenant has not installed is 404.
    let token = token(&node, "acme");
    let (status, body) = get(&agent, &node.url("/api/ext/nope/x"), Some(&token));
    assert_eq!(status, 404);
    let body = json(&body);
    assert_eq!(body["error"], "extension_not_found");

    let (status, headers, body) = get_json(&agent, &node.url("/elsewhere"));
    assert_eq!(status, 404);
    assert_error_body(&headers, &body, "not_found");

    let (status, headers, body) = get_json(&agent, &node.url("/api/ext/bad%20id/x"));
    assert_eq!(status, 400);
    assert_error_body(&headers, &body, "bad_request");

    let (status, _, body) = get_json(&agent, &node.url("/healthz"));
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
}

#[test]
fn trap_is_502_and_node_keeps_serving() {
    let node = Node::start(BIN, &[], &[]);
    assert_trap_is_logged(&node, "faulty");
    assert_still_serving(&node);
}

#[test]
fn infinite_loop_is_504_within_deadline_and_next_request_succeeds() {
    const TIMEOUT_MS: u64 = 1000;
    let node = Node::start(BIN, &[], &[("EXT_GATEWAY_TIMEOUT_MS", "1000")]);
    let agent = client();
    // Two loops at once on a 2-core node: neither may starve the other or the deadline.
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let url = node.url("/api/ext/faulty/loop");
            let agent = agent.clone();
            std::thread::spawn(move || timed(|| get_json(&agent, &url)))
        })
        .collect();
    for handle in loops {
        let (answer, elapsed) = handle.join().unwrap();
        assert_stopped_at_deadline("infinite loop", &answer, elapsed, TIMEOUT_MS, Some(200));
    }
    assert_still_serving(&node);
}

/// Fires `bombs` memory bombs at `node` (cap `cap_mib`), each a 502 naming the cap; returns the
/// node's RSS growth in bytes.
fn rss_growth_after_memory_bombs(node: &Node, bombs: usize, cap_mib: u64) -> u64 {
    let agent = client();
    assert_still_serving(node);
    let baseline = node.rss_bytes();
    for _ in 0..bombs {
        let (status, headers, body) = get_json(&agent, &node.url("/api/ext/faulty/oom"));
        assert_eq!(status, 502, "body: {body}");
        assert_error_body(&headers, &body, "extension_memory_limit");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(&format!("{cap_mib} MiB")), "body: {body}");
    }
    assert_still_serving(node);
    let after = node.rss_bytes();
    eprintln!(
        "RSS before {bombs} memory bombs of {cap_mib} MiB: {} MiB, after: {} MiB",
        baseline >> 20,
        after >> 20
    );
    after.saturating_sub(baseline)
}

#[test]
fn guest_blocked_in_the_host_is_cancelled_at_the_deadline() {
    // No wasm runs while the guest waits on a host timer, so epoch checks cannot stop it: the
    // host cancels the call instead.
    const TIMEOUT_MS: u64 = 800;
    let node = Node::start(BIN, &[], &[("EXT_GATEWAY_TIMEOUT_MS", "800")]);
    let (answer, elapsed) = timed(|| get_json(&client(), &node.url("/api/ext/faulty/sleep")));
    assert_stopped_at_deadline("sleeping guest", &answer, elapsed, TIMEOUT_MS, Some(200));
    assert_still_serving(&node);
}

#[test]
fn memory_bomb_is_502_and_freed_memory_is_returned() {
    // Unbatched decommit: every bomb's memory goes back to the OS when its instance ends, so
    // five bombs grow RSS by less than one instance's cap.
    let node = Node::start(
        BIN,
        &["--memory-limit-mib", "64", "--pool-decommit-batch", "1"],
        &[],
    );
    let growth = rss_growth_after_memory_bombs(&node, 5, 64);
    assert!(growth < 64 << 20, "RSS grew by {} MiB", growth >> 20);
}

#[test]
fn memory_bombs_with_default_decommit_batching_stay_within_the_documented_bound() {
    // With the default batch of 8, up to min(cores, 16) * 7 freed memories may wait for their
    // batch (README). Twice that many bombs must still not grow RSS past that bound plus one cap.
    const CAP_MIB: u64 = 64;
    let shards = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16) as u64;
    let pending = shards * 7;
    let node = Node::start(BIN, &["--memory-limit-mib", "64"], &[]);
    let bombs = 2 * (pending + 1) as usize;
    let growth = rss_growth_after_memory_bombs(&node, bombs, CAP_MIB);
    assert!(
        growth < (pending + 1) * (CAP_MIB << 20),
        "RSS grew by {} MiB after {bombs} bombs (bound {} MiB)",
        growth >> 20,
        ((pending + 1) * CAP_MIB)
    );
}

#[test]
fn stack_overflows_are_502() {
    let node = Node::start(BIN, &[], &[]);
    let agent = client();
    // The wasm call stack: the engine's stack limit traps.
    let (status, headers, body) = get_json(&agent, &node.url("/api/ext/faulty/stack"));
    assert_eq!(status, 502, "body: {body}");
    assert_error_body(&headers, &body, "extension_stack_overflow");
    // Rust's shadow stack in linear memory: runs off the start of memory, an ordinary trap.
    let (status, headers, body) = get_json(&agent, &node.url("/api/ext/faulty/shadow-stack"));
    assert_eq!(status, 502, "body: {body}");
    assert_error_body(&headers, &body, "extension_trap");
    assert_still_serving(&node);
}

#[test]
fn hundred_concurrent_hello_requests_all_succeed() {
    // The node must carry them all; the tenant's concurrency policy (64 by default) is
    // another test's subject, so it is raised past the burst here.
    let node = Node::start(BIN, &["--tenant-concurrency", "128"], &[]);
    let agent = client();
    let workers: Vec<_> = (0..100)
        .map(|i| {
            let url = node.url(&format!("/api/ext/hello/req/{i}"));
            let agent = agent.clone();
            std::thread::spawn(move || (i, get_json(&agent, &url)))
        })
        .collect();
    let mut request_ids = std::collections::HashSet::new();
    for handle in workers {
        let (i, (status, _, body)) = handle.join().unwrap();
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(body["path"], format!("/req/{i}"));
        request_ids.insert(body["context"]["request_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        request_ids.len(),
        100,
        "each request gets its own id and instance"
    );
}

#[test]
fn huge_body_streams_and_is_cut_at_the_response_cap() {
    let node = Node::start(BIN, &["--max-response-mib", "4"], &[]);
    let agent = client();

    // Under the cap: streamed whole.
    let mut response = agent
        .get(&node.url("/api/ext/faulty/huge?mb=3"))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    let received = std::io::copy(&mut response.body_mut().as_reader(), &mut std::io::sink())
        .expect("a body under the cap arrives whole");
    assert_eq!(received, 3 << 20);

    // Over the cap: the stream is cut (the connection aborts mid-body); never more than the cap.
    assert_cut_at_cap(&agent, &node.url("/api/ext/faulty/huge?mb=1024"), 4);
    assert_still_serving(&node);
}

#[test]
fn busy_node_answers_503_with_retry_after_then_recovers() {
    let node = Node::start(
        BIN,
        &["--max-instances", "1"],
        // Long enough that a loaded machine still gets a probe in while the loop holds the
        // slot.
        &[("EXT_GATEWAY_TIMEOUT_MS", "6000")],
    );
    let agent = client();
    let url = node.url("/api/ext/faulty/loop");
    let start_loop = || {
        let (agent, url) = (agent.clone(), url.clone());
        std::thread::spawn(move || get_json(&agent, &url))
    };
    let mut looping = start_loop();
    // Wait (bounded) until the loop holds the only slot, then a second request is refused. A
    // probe that arrives first takes the slot and the loop is the one refused: start it again.
    let mut refused = None;
    wait_until(
        Duration::from_secs(30),
        "a 503 while the only instance slot is busy",
        || {
            if looping.is_finished() {
                looping = start_loop();
                return false;
            }
            let (status, headers, body) = get_json(&agent, &node.url("/api/ext/hello/x"));
            refused = Some((headers, body));
            status == 503
        },
    );
    let (headers, body) = refused.unwrap();
    assert_error_body(&headers, &body, "node_at_capacity");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(looping.join().unwrap().0, 504);
    assert_still_serving(&node);
}

/// Serves `/` of the `faulty-p3` component (WASIp3) and `/ok` of the `alga` one (runner world).
fn assert_p3_and_runner_serve(node: &Node) {
    let agent = client();
    for route in ["/api/ext/faulty-p3/", "/api/ext/alga/ok"] {
        let mut response = agent.get(&node.url(route)).call().unwrap();
        assert_eq!(response.status(), 200, "{route}; log:\n{}", node.log_text());
        assert!(!response.body_mut().read_to_string().unwrap().is_empty());
    }
}

/// Also: WASIp2 and runner-world components are compiled for the engine without
/// component-model concurrency, WASIp3 ones for the engine with it; each engine has its own
/// compatibility suffix in the artifact names, and both kinds load back from disk.
#[test]
fn a_restarted_node_loads_precompiled_components_from_disk() {
    let cache = alga_edge_e2e::tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let faulty_p3 = format!(
        "faulty-p3={}",
        alga_edge_e2e::component("faulty-p3").display()
    );
    let alga = format!("alga={}", alga_edge_e2e::component("alga-rust").display());
    let args = [
        "--cache-dir",
        cache_dir,
        "--component",
        &faulty_p3,
        "--component",
        &alga,
    ];
    let first = Node::start(BIN, &args, &[]);
    assert_still_serving(&first);
    assert_p3_and_runner_serve(&first);
    first.wait_for_log("four compiled components", Duration::from_secs(10), |log| {
        log.contains("compiled=4 from_disk_cache=0")
    });
    drop(first);
    let artifacts: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        artifacts.len(),
        4,
        "one precompiled artifact per component: {artifacts:?}"
    );
    let engine_of = |name: &str| -> String {
        // A dev-mapped component's content hash is its file's.
        let bytes = std::fs::read(alga_edge_e2e::component(name)).unwrap();
        let hash = alga_edge_registry::bundle::ContentHash::of(&bytes).to_string();
        let hex = hash.strip_prefix("sha256:").unwrap();
        let file = artifacts
            .iter()
            .find(|file| file.starts_with(hex))
            .unwrap_or_else(|| panic!("no artifact of {name} in {artifacts:?}"));
        file[hex.len()..].to_owned()
    };
    let plain = engine_of("hello");
    assert_eq!(
        engine_of("faulty"),
        plain,
        "WASIp2 components share an engine"
    );
    assert_eq!(
        engine_of("alga-rust"),
        plain,
        "the runner world runs on the WASIp2 engine"
    );
    assert_ne!(
        engine_of("faulty-p3"),
        plain,
        "WASIp3 components run on the concurrent engine"
    );

    let second = Node::start(BIN, &args, &[]);
    second.wait_for_log(
        "four components from the disk cache",
        Duration::from_secs(10),
        |log| log.contains("compiled=0 from_disk_cache=4"),
    );
    assert_still_serving(&second);
    assert_p3_and_runner_serve(&second);
}

#[test]
fn invalid_component_fails_startup_with_a_clear_error() {
    let dir = alga_edge_e2e::tempfile::tempdir().unwrap();
    let dir = dir.path();
    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm definitely not a component").unwrap();
    let spec = format!("broken={}", garbage.display());
    let data = dir.join("data");
    let finished = run_to_exit(
        BIN,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--component",
            &spec,
        ],
        Duration::from_secs(60),
    );
    let (ok, stderr) = (finished.ok, finished.stderr);
    assert!(!ok, "startup with a broken component must fail");
    assert!(stderr.contains("extension 'broken'"), "stderr: {stderr}");
    assert!(stderr.contains("does not compile"), "stderr: {stderr}");

    let untouched = dir.join("untouched");
    let finished = run_to_exit(
        BIN,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            untouched.to_str().unwrap(),
            "--component",
            "missing-equals",
        ],
        Duration::from_secs(60),
    );
    let (ok, stderr) = (finished.ok, finished.stderr);
    assert!(!ok);
    assert!(
        stderr.contains("expected EXTENSION_ID=PATH"),
        "stderr: {stderr}"
    );
    assert!(
        !untouched.exists(),
        "a refused --component must not create the data directory"
    );
}

#[test]
fn wasip3_components_stream_both_ways_and_their_faults_are_contained() {
    const TIMEOUT_MS: u64 = 2000;
    let faulty_p3 = format!(
        "faulty-p3={}",
        alga_edge_e2e::component("faulty-p3").display()
    );
    let node = Node::start(
        BIN,
        &["--component", &faulty_p3, "--max-response-mib", "4"],
        &[("EXT_GATEWAY_TIMEOUT_MS", "2000")],
    );
    let agent = client();

    // A body written by a task the handler spawned after returning the response head.
    let mut response = agent
        .get(&node.url("/api/ext/faulty-p3/stream?kib=3072"))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream",
        "the guest's response headers pass"
    );
    let body = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .expect("a streamed body under the cap arrives whole");
    assert_eq!(body.len(), 3 << 20);
    for (i, kib) in body.chunks(1024).enumerate() {
        assert!(
            kib.iter().all(|&b| b == b'a' + (i % 26) as u8),
            "KiB {i} garbled"
        );
    }

    // The request body reaches the guest whole and comes back.
    let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut response = agent
        .post(&node.url("/api/ext/faulty-p3/echo"))
        .send(&sent[..])
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-ext-received-bytes"], "300000");
    let echoed = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .unwrap();
    assert!(echoed == sent, "the echo differs from what was sent");

    // Over the response cap: cut, never more than the cap.
    assert_cut_at_cap(&agent, &node.url("/api/ext/faulty-p3/stream?kib=65536"), 4);

    // An infinite loop is stopped at the deadline.
    let (answer, elapsed) = timed(|| get_json(&agent, &node.url("/api/ext/faulty-p3/loop")));
    assert_stopped_at_deadline("WASIp3 infinite loop", &answer, elapsed, TIMEOUT_MS, None);

    // A trap is a 502; the guest's panic message is logged with the request id.
    assert_trap_is_logged(&node, "faulty-p3");
    assert_still_serving(&node);
}
