//! The live tail over the real binary (`GET /admin/v1/tenants/{t}/extensions/{e}/tail`,
//! `alga-edge tail`): two subscribers see one request's lines in order, then its summary; a
//! level filter; secrets the guest logs or prints are masked; refusals; the CLI; an edge tails
//! its own requests; and a subscriber that never reads neither blocks nor slows requests.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use alga_edge_e2e::metrics::{scrape, sum};
use alga_edge_e2e::publishing::{
    ADMIN_TOKEN, Fixture, admin_call, admin_ok, execution_rows, install, path, shared_token, token,
};
use alga_edge_e2e::tail::{Event, Tail, stalled};
use alga_edge_e2e::{Node, client, send, wait_until};
use serde_json::{Value, json};

const CAPS: &str = "com.alga.test.caps";
const SECRET: &str = "Tail-S3cret-4b7d2e";
const GRANTS: [&str; 2] = ["cap:secrets.get", "cap:log.emit"];
/// Everything the `capabilities` sample imports: its manifest must ask for all of it.
const MANIFEST: [&str; 5] = [
    "cap:storage.kv",
    "cap:config.get",
    "cap:secrets.get",
    "cap:log.emit",
    "cap:http.fetch",
];
const STREAM_LIMIT: Duration = Duration::from_secs(240);
const WAIT: Duration = Duration::from_secs(30);

fn caps_bundle(fixture: &Fixture) -> std::path::PathBuf {
    fixture.bundle_with(
        CAPS,
        "1.0.0",
        "capabilities",
        json!({ "capabilities": MANIFEST }),
    )
}

/// `method /api/ext/CAPS{route}` as `bearer` under the request id `id`: status and body.
fn ext(
    node: &Node,
    agent: &ureq::Agent,
    method: &str,
    route: &str,
    bearer: &str,
    id: &str,
) -> (u16, String) {
    let authorization = format!("Bearer {bearer}");
    let headers = [
        ("authorization", authorization.as_str()),
        ("x-request-id", id),
    ];
    let body = (method == "POST").then(|| b"hello tail".to_vec());
    let (status, _, text) = send(
        agent,
        method,
        &node.url(&format!("/api/ext/{CAPS}{route}")),
        &headers,
        body,
    );
    (status, text)
}

/// The `line` events' `source/level text`, in arrival order.
fn lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|(kind, _)| kind == "line")
        .map(|(_, e)| {
            format!(
                "{}/{} {}",
                e["source"].as_str().unwrap(),
                e["level"].as_str().unwrap(),
                e["text"].as_str().unwrap()
            )
        })
        .collect()
}

fn summary(events: &[Event]) -> &Value {
    let (kind, data) = events.last().expect("events");
    assert_eq!(kind, "request", "{events:?}");
    data
}

#[test]
fn two_tails_see_a_requests_lines_in_order_and_never_a_secret() {
    let fixture = Fixture::new();
    let bundle = caps_bundle(&fixture);
    let node = fixture.start(&["--tenant-rate", "0"]);
    admin_ok(&node, &["publish", path(&bundle)]);
    let secret = format!("api_key={SECRET}");
    install(
        &node,
        CAPS,
        "1.0.0",
        "tenant-a",
        &GRANTS,
        &["--secret", &secret],
    );
    install(&node, CAPS, "1.0.0", "tenant-b", &GRANTS, &[]);
    let (a, b) = (token(&node, "tenant-a"), token(&node, "tenant-b"));
    let agent = client();

    let first = Tail::open(&node, "tenant-a", CAPS, "", STREAM_LIMIT);
    let second = Tail::open(&node, "tenant-a", CAPS, "", STREAM_LIMIT);
    let errors_only = Tail::open(&node, "tenant-a", CAPS, "level=error", STREAM_LIMIT);
    let other_tenant = Tail::open(&node, "tenant-b", CAPS, "", STREAM_LIMIT);
    assert_eq!(first.ready["tenant"], "tenant-a");
    assert_eq!(errors_only.ready["filter"]["level"], "error");

    // Five rounds of a log line, a stdout line and a stderr line, in that order.
    let (status, _) = ext(
        &node,
        &agent,
        "POST",
        "/log?count=5&stdout=1&stderr=1",
        &a,
        "tail-order-1",
    );
    assert_eq!(status, 200);
    let mut expected = Vec::new();
    for i in 0..5 {
        expected.push(format!("log/info hello tail #{i}"));
        expected.push(format!("stdout/info stdout hello tail #{i}"));
        expected.push(format!("stderr/error stderr hello tail #{i}"));
    }
    for tail in [&first, &second] {
        let events = tail.request("tail-order-1", WAIT);
        assert_eq!(lines(&events), expected, "{events:?}");
        let seqs: Vec<u64> = events
            .iter()
            .map(|(_, e)| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (0..16).collect::<Vec<_>>(),
            "lines, then the summary, numbered in order"
        );
        let done = summary(&events);
        assert_eq!(done["status"], 200, "{done}");
        assert_eq!(done["version"], "1.0.0", "{done}");
        assert_eq!(done["route"], "gateway", "{done}");
        assert!(done["error_class"].is_null(), "{done}");
        assert!(done["duration_ms"].as_u64().is_some(), "{done}");
        assert!(events.iter().all(|(kind, _)| kind != "lost"), "{events:?}");
    }
    let errors = errors_only.request("tail-order-1", WAIT);
    assert_eq!(
        lines(&errors),
        expected
            .iter()
            .filter(|l| l.starts_with("stderr/"))
            .cloned()
            .collect::<Vec<_>>(),
        "level=error shows stderr lines only"
    );

    // A careless guest logs and prints its secret: every tail, the execution log and the
    // node log show it masked.
    let (status, body) = ext(
        &node,
        &agent,
        "GET",
        "/secret?name=api_key&echo=1",
        &a,
        "tail-secret-1",
    );
    assert_eq!(status, 200);
    assert!(
        body.contains(SECRET),
        "the guest itself reads its secret: {body}"
    );
    let events = first.request("tail-secret-1", WAIT);
    assert_eq!(
        lines(&events),
        [
            "log/info secret is [secret]",
            "stdout/info stdout secret [secret]",
            "stderr/error stderr secret [secret]",
        ]
    );
    for (kind, data) in &events {
        assert!(
            !data.to_string().contains(SECRET),
            "the secret in a {kind} event: {data}"
        );
    }
    wait_until(WAIT, "the execution-log row of the secret request", || {
        execution_rows(&node, "tenant-a", 10)
            .iter()
            .any(|row| row["request_id"] == "tail-secret-1")
    });
    let rows = execution_rows(&node, "tenant-a", 10);
    assert!(
        !Value::from(rows.clone()).to_string().contains(SECRET),
        "{rows:?}"
    );
    node.wait_for_log("the guest's masked line in the node log", WAIT, |log| {
        log.contains("secret is [secret]")
    });
    assert!(
        !node.log_text().contains(SECRET),
        "the secret in the node log"
    );

    // Tenant B's tail saw none of tenant A's requests; its own request, yes.
    let (status, _) = ext(&node, &agent, "POST", "/log", &b, "tail-b-1");
    assert_eq!(status, 200);
    let events = other_tenant.request("tail-b-1", WAIT);
    assert_eq!(lines(&events), ["log/info hello tail"]);
    assert!(
        other_tenant.drain(Duration::from_millis(200)).is_empty(),
        "nothing else reached tenant B's tail"
    );

    // Refusals: a bad filter, an extension the tenant has not installed, no admin token.
    let (status, answer) = admin_call(
        &node,
        "GET",
        &format!("tenants/tenant-a/extensions/{CAPS}/tail?level=loud"),
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("loud"),
        "{answer}"
    );
    let (status, answer) = admin_call(
        &node,
        "GET",
        "tenants/tenant-a/extensions/com.alga.absent/tail",
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    assert_eq!(status, 404, "{answer}");
    let (status, _) = admin_call(
        &node,
        "GET",
        &format!("tenants/tenant-a/extensions/{CAPS}/tail"),
        None,
        &[],
        None,
    );
    assert_eq!(status, 401);

    // `alga-edge tail` prints the same stream.
    let mut cli = Command::new(crate::BIN)
        .args([
            "tail",
            CAPS,
            "--tenant",
            "tenant-a",
            "--registry",
            &node.base(),
            "--token",
            ADMIN_TOKEN,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start alga-edge tail");
    let (sender, printed) = mpsc::channel();
    let out = BufReader::new(cli.stdout.take().unwrap());
    let err = BufReader::new(cli.stderr.take().unwrap());
    let err_sender = sender.clone();
    std::thread::spawn(move || {
        out.lines()
            .map_while(Result::ok)
            .try_for_each(|l| sender.send(l))
    });
    std::thread::spawn(move || {
        err.lines()
            .map_while(Result::ok)
            .try_for_each(|l| err_sender.send(l))
    });
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    let mut ready = false;
    while !ready {
        let line = printed
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("alga-edge tail did not start: {seen:?}"));
        ready = line.starts_with("tailing com.alga.test.caps of tenant tenant-a");
        seen.push(line);
    }
    let (status, _) = ext(&node, &agent, "POST", "/log?level=warn", &a, "tail-cli-1");
    assert_eq!(status, 200);
    let mut printed_lines = Vec::new();
    while !printed_lines
        .iter()
        .any(|l: &String| l.contains("tail-cli-1 → 200"))
    {
        let line = printed
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("alga-edge tail printed no summary: {printed_lines:?}"));
        printed_lines.push(line);
    }
    let _ = cli.kill();
    let _ = cli.wait();
    assert!(
        printed_lines
            .iter()
            .any(|l| l.contains("tail-cli-1 WARN  [sample] hello tail")),
        "{printed_lines:?}"
    );
    assert!(
        printed_lines
            .iter()
            .any(|l| l.contains("tail-cli-1 → 200 in ") && l.contains("version 1.0.0")),
        "{printed_lines:?}"
    );
}

#[test]
fn an_edge_tails_its_own_requests() {
    let fixture = Fixture::new();
    let bundle = caps_bundle(&fixture);
    let primary = fixture.start_node_in(&fixture.dir.path().join("primary"), &[]);
    admin_ok(&primary, &["publish", path(&bundle)]);
    install(&primary, CAPS, "1.0.0", "tenant-a", &GRANTS, &[]);
    let edge = fixture.start_edge_in(&fixture.dir.path().join("edge"), &primary.base(), 200, &[]);
    let a = shared_token("tenant-a");
    let agent = client();
    wait_until(WAIT, "the edge to serve the install", || {
        ext(&edge, &agent, "GET", "/context", &a, "tail-edge-probe").0 == 200
    });
    let at_edge = Tail::open(&edge, "tenant-a", CAPS, "", STREAM_LIMIT);
    let at_primary = Tail::open(&primary, "tenant-a", CAPS, "", STREAM_LIMIT);
    let (status, _) = ext(&edge, &agent, "POST", "/log?count=2", &a, "tail-edge-1");
    assert_eq!(status, 200);
    let events = at_edge.request("tail-edge-1", WAIT);
    assert_eq!(
        lines(&events),
        ["log/info hello tail #0", "log/info hello tail #1"]
    );
    assert_eq!(summary(&events)["status"], 200);
    assert!(
        at_primary.drain(Duration::from_millis(300)).is_empty(),
        "the primary tails only its own requests"
    );
}

/// p50 and p99 of `n` requests that each log `lines` lines of about 500 bytes, in ms.
fn latencies(node: &Node, bearer: &str, n: usize, lines: usize, phase: &str) -> (f64, f64) {
    let agent = client();
    let route = format!("/log?count={lines}");
    let message = "x".repeat(500);
    let authorization = format!("Bearer {bearer}");
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("{phase}-{i}");
        let headers = [
            ("authorization", authorization.as_str()),
            ("x-request-id", id.as_str()),
        ];
        let started = Instant::now();
        let (status, _, text) = send(
            &agent,
            "POST",
            &node.url(&format!("/api/ext/{CAPS}{route}")),
            &headers,
            Some(message.clone().into_bytes()),
        );
        took.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "{text}");
    }
    took.sort_by(f64::total_cmp);
    let at = |q: f64| took[((n as f64 * q) as usize).min(n - 1)];
    (at(0.50), at(0.99))
}

#[test]
fn a_tail_that_never_reads_neither_blocks_nor_slows_requests() {
    let fixture = Fixture::new();
    let bundle = caps_bundle(&fixture);
    let node = fixture.start(&["--tenant-rate", "0", "--tail-buffer", "64"]);
    admin_ok(&node, &["publish", path(&bundle)]);
    install(&node, CAPS, "1.0.0", "tenant-a", &GRANTS, &[]);
    let a = token(&node, "tenant-a");
    let (n, lines) = (300, 50);
    latencies(&node, &a, 20, lines, "warm");

    let before = latencies(&node, &a, n, lines, "without-1");
    let subscriber = stalled(&node, "tenant-a", CAPS);
    wait_until(WAIT, "the stalled tail to be connected", || {
        sum(&scrape(&node).1, "alga_tail_subscribers", &[]) == 1.0
    });
    let with = latencies(&node, &a, n, lines, "with");
    let lost = sum(&scrape(&node).1, "alga_tail_events_lost_total", &[]);
    drop(subscriber);
    wait_until(WAIT, "the stalled tail to be gone", || {
        sum(&scrape(&node).1, "alga_tail_subscribers", &[]) == 0.0
    });
    let after = latencies(&node, &a, n, lines, "without-2");
    println!(
        "tail latency, {n} requests of {lines} lines each: without p50 {:.2} ms p99 {:.2} ms | with a tail that never reads p50 {:.2} ms p99 {:.2} ms | without again p50 {:.2} ms p99 {:.2} ms; events lost to the stalled tail: {lost}",
        before.0, before.1, with.0, with.1, after.0, after.1
    );
    // Its queue (64 events) and the socket buffers filled, so most of its events were dropped:
    // the requests went on without it.
    assert!(lost > 1000.0, "the stalled tail lost only {lost} events");
    // Bounds wide enough for a loaded CI machine, narrow enough to catch requests waiting on
    // the subscriber (each would then take as long as the stall: the whole run).
    let baseline_p50 = before.0.max(after.0);
    let baseline_p99 = before.1.max(after.1);
    assert!(
        with.0 <= baseline_p50 * 2.0 + 5.0,
        "p50 {:.2} ms with vs {baseline_p50:.2} without",
        with.0
    );
    assert!(
        with.1 <= baseline_p99 * 3.0 + 50.0,
        "p99 {:.2} ms with vs {baseline_p99:.2} without",
        with.1
    );
}
