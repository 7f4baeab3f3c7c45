//! OpenTelemetry traces (issue 20) over the real binary and a loopback OTLP/HTTP collector:
//! one trace per request, continuing the caller's `traceparent`, with child spans for the
//! gateway's steps, the guest and each host capability it calls; the `traceparent` reaches an
//! allowlisted upstream and the platform; the trace id is in the execution log and the node
//! log; a collector that is down changes nothing for requests and its losses are counted.

use std::collections::HashMap;
use std::time::Duration;

use alga_edge_e2e::metrics::{scrape, sum};
use alga_edge_e2e::otlp::{Collector, ReceivedSpan};
use alga_edge_e2e::platform::{PLATFORM_CAPS, PlatformServer};
use alga_edge_e2e::publishing::{
    Fixture, admin_ok, bearer, binary, execution_rows, install, json, path, token,
};
use alga_edge_e2e::{Node, request, wait_until};
use serde_json::json;

const CAPS: &str = "com.alga.test.caps";
const RUST: &str = "com.alga.test.alga-rust";
const PLATFORM_TOKEN: &str = "runner-token-for-traces";
const SECRET: &str = "Tr4ce-Secret-Value";

/// What the capabilities sample imports (and is granted).
const CAPS_GRANTS: [&str; 5] = [
    "cap:storage.kv",
    "cap:config.get",
    "cap:secrets.get",
    "cap:log.emit",
    "cap:http.fetch",
];

/// The caller's span every test request continues.
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// The span named `name` in `spans` (exactly one).
fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "{name} in {:#?}", names(spans));
    found[0]
}

fn names(spans: &[ReceivedSpan]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn a_request_is_one_trace_continuing_the_callers_traceparent_with_a_span_per_step() {
    let collector = Collector::start();
    let platform = PlatformServer::start(PLATFORM_TOKEN);
    let fixture = Fixture::new();
    let caps = fixture.bundle_with(
        CAPS,
        "1.0.0",
        "capabilities",
        json!({"capabilities": CAPS_GRANTS}),
    );
    let rust = fixture.bundle_with(
        RUST,
        "1.0.0",
        "alga-rust",
        json!({"capabilities": PLATFORM_CAPS}),
    );
    let allow = format!("127.0.0.1:{}", platform.port);
    let (endpoint, base) = (collector.endpoint(), platform.base());
    let node = fixture.start(&[
        "--tenant-rate",
        "0",
        "--egress-allowlist",
        &allow,
        "--platform-url",
        &base,
        "--platform-token",
        PLATFORM_TOKEN,
        "--otel-endpoint",
        &endpoint,
        "--otel-service-name",
        "edge-under-test",
    ]);
    admin_ok(&node, &["publish", path(&caps)]);
    admin_ok(&node, &["publish", path(&rust)]);
    let secret = format!("api_key={SECRET}");
    let egress = format!("egress_allow={allow}");
    install(
        &node,
        CAPS,
        "1.0.0",
        "tenant-a",
        &CAPS_GRANTS,
        &[
            "--config",
            "greeting=hi",
            "--secret",
            &secret,
            "--policy",
            &egress,
        ],
    );
    install(&node, RUST, "1.0.0", "tenant-a", &["cap:client.read"], &[]);
    let authorization = bearer(&token(&node, "tenant-a"));
    let fetched = format!(
        "/fetch?url={}",
        percent_encoding::utf8_percent_encode(
            &format!("{base}/ui-proxy/traced"),
            percent_encoding::NON_ALPHANUMERIC
        )
    );

    // Each route calls one host capability; (method, extension, route, the capability's span).
    let cases: [(&str, &str, &str, &str); 6] = [
        ("PUT", CAPS, "/kv?bucket=b&key=k", "kv.write"),
        ("GET", CAPS, "/kv?bucket=b&key=k", "kv.get"),
        ("GET", CAPS, "/config?key=greeting", "config"),
        ("GET", CAPS, "/secret?name=api_key", "secrets"),
        ("GET", CAPS, &fetched, "egress"),
        ("GET", RUST, "/clients", "platform"),
    ];
    let mut traces = HashMap::new();
    for (i, (method, extension, route, capability)) in cases.iter().enumerate() {
        let trace_id = format!("0af7651916cd43dd8448eb211c8031{i:02x}");
        let traceparent = format!("00-{trace_id}-{CALLER_SPAN}-01");
        let headers = [
            ("authorization", authorization.as_str()),
            ("traceparent", traceparent.as_str()),
        ];
        let url = format!("/api/ext/{extension}{route}");
        let body = (*method == "PUT").then(|| b"v".to_vec());
        let (status, _, body) = request(&node, method, &url, &headers, body);
        assert_eq!(status, 200, "{method} {route}: {body}");
        assert_ne!(json(&body)["ok"], false, "{route}: {body}");

        let spans = collector.trace(&trace_id, "request", Duration::from_secs(30));
        let root = one(&spans, "request");
        assert_eq!(
            root.parent_span_id, CALLER_SPAN,
            "the caller's span is the parent"
        );
        assert_eq!(root.service, "edge-under-test");
        assert_eq!(root.attributes["alga.tenant"], "tenant-a");
        assert_eq!(root.attributes["alga.extension"], *extension);
        assert_eq!(root.attributes["http.response.status_code"], "200");
        for step in ["auth", "resolve", "compile", "guest", "execution_log"] {
            assert_eq!(one(&spans, step).parent_span_id, root.span_id, "{step}");
        }
        let guest = one(&spans, "guest");
        let call = one(&spans, capability);
        assert_eq!(
            call.parent_span_id, guest.span_id,
            "{capability} under the guest"
        );
        // A connected tree: every span's parent is in the trace, or is the caller's.
        for span in &spans {
            assert!(
                span.parent_span_id == CALLER_SPAN
                    || spans.iter().any(|p| p.span_id == span.parent_span_id),
                "{} has a parent outside the trace: {:#?}",
                span.name,
                names(&spans)
            );
        }
        traces.insert(trace_id, (capability.to_string(), call.span_id.clone()));
    }
    // Instantiation is traced (the first request of each install instantiates fresh; so does
    // every request without reuse).
    let all = collector.spans();
    assert!(
        all.iter().any(|s| s.name == "instantiate"),
        "{:#?}",
        names(&all)
    );

    // The upstream and the platform continue the trace under the call's span.
    let seen = platform.calls();
    for (trace_id, (capability, span_id)) in &traces {
        if capability == "egress" || capability == "platform" {
            let expected = format!("00-{trace_id}-{span_id}-01");
            assert!(
                seen.iter()
                    .any(|c| c.header("traceparent") == Some(expected.as_str())),
                "{capability}: no call with traceparent {expected}: {seen:#?}"
            );
        }
    }

    // The execution log and the node log name each trace.
    // (Rows are written in batches: wait for the last request's.)
    wait_until(Duration::from_secs(20), "a row per trace", || {
        let rows = execution_rows(&node, "tenant-a", 20);
        traces
            .keys()
            .all(|id| rows.iter().any(|r| r["trace_id"] == id.as_str()))
    });
    let any = traces.keys().next().unwrap().clone();
    node.wait_for_log(
        "a request line with its trace id",
        Duration::from_secs(20),
        |log| log.contains(&format!("trace_id={any}")),
    );

    // A request without a traceparent starts a new trace of its own.
    let (status, headers, _) = request(
        &node,
        "GET",
        &format!("/api/ext/{CAPS}/config?key=greeting"),
        &[("authorization", authorization.as_str())],
        None,
    );
    assert_eq!(status, 200);
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    let mut fresh = String::new();
    wait_until(Duration::from_secs(20), "the new request's row", || {
        let rows = execution_rows(&node, "tenant-a", 50);
        let row = rows.iter().find(|r| r["request_id"] == request_id.as_str());
        if let Some(id) = row.and_then(|r| r["trace_id"].as_str()) {
            fresh = id.to_owned();
        }
        !fresh.is_empty()
    });
    assert_eq!(fresh.len(), 32);
    assert!(!traces.contains_key(&fresh));
    let spans = collector.trace(&fresh, "request", Duration::from_secs(30));
    assert_eq!(one(&spans, "request").parent_span_id, "", "a new root");

    // The secret never travels in a span.
    assert!(
        collector
            .spans()
            .iter()
            .all(|s| s.attributes.values().all(|v| !v.contains(SECRET))),
        "a span carries the secret"
    );
}

#[test]
fn a_collector_that_is_down_changes_nothing_for_requests_and_the_losses_are_counted() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/v1/traces", closed.local_addr().unwrap());
    drop(closed);
    let node = Node::start(
        &binary(),
        &[
            "--tenant-rate",
            "0",
            "--otel-endpoint",
            &endpoint,
            "--otel-queue",
            "64",
        ],
        &[],
    );
    for i in 0..300 {
        let (status, _, body) = request(&node, "GET", "/api/ext/hello/greet", &[], None);
        assert_eq!(status, 200, "request {i}: {body}");
    }
    let dropped = || {
        let (_, samples) = scrape(&node);
        sum(
            &samples,
            "alga_trace_spans_total",
            &[("result", "dropped_export_failed")],
        ) + sum(
            &samples,
            "alga_trace_spans_total",
            &[("result", "dropped_queue_full")],
        )
    };
    wait_until(Duration::from_secs(30), "spans counted as dropped", || {
        dropped() > 0.0
    });
    let (_, samples) = scrape(&node);
    assert_eq!(
        sum(
            &samples,
            "alga_trace_spans_total",
            &[("result", "exported")]
        ),
        0.0
    );
    // Still serving.
    assert_eq!(
        request(&node, "GET", "/api/ext/hello/greet", &[], None).0,
        200
    );
}
