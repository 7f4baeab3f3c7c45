//! Gateway policies over the real binary: response header allowlist, request body and header
//! caps, per-tenant concurrency (429 while other tenants are served) and per-tenant rate.

use std::time::Duration;

use alga_edge_e2e::publishing::{
    FAULTY, Fixture, HELLO, admin_ok, bearer, get, install, json, path, token,
};
use alga_edge_e2e::{Node, client, request, send};

/// A node with hello and faulty published and installed for `tenants`.
fn node_with_installs(fixture: &Fixture, extra: &[&str], tenants: &[&str]) -> Node {
    let hello = fixture.bundle(HELLO, "1.0.0", "hello");
    let faulty = fixture.bundle(FAULTY, "1.0.0", "faulty");
    let node = fixture.start(extra);
    admin_ok(&node, &["publish", path(&hello)]);
    admin_ok(&node, &["publish", path(&faulty)]);
    for tenant in tenants {
        for name in [HELLO, FAULTY] {
            install(&node, name, "1.0.0", tenant, &[], &[]);
        }
    }
    node
}

#[test]
fn headers_bodies_and_concurrency_are_policed_per_tenant() {
    let fixture = Fixture::new();
    let node = node_with_installs(
        &fixture,
        &[
            "--max-body-kib",
            "1",
            "--tenant-concurrency",
            "2",
            "--timeout-ms",
            "2000",
            "--tenant-rate",
            "0",
            "--max-headers",
            "40",
        ],
        &["acme", "globex"],
    );
    let acme = token(&node, "acme");
    let globex = token(&node, "globex");
    let acme_authorization = bearer(&acme);
    let as_acme = [("authorization", acme_authorization.as_str())];

    // Response headers: set-cookie and public caching are stripped, x-ext-* passes.
    let route = format!(
        "/api/ext/{HELLO}/?response_header=set-cookie:session%3D1\
         &response_header=x-ext-trace:42&response_header=cache-control:public,max-age%3D60"
    );
    let (status, headers, body) = request(&node, "GET", &route, &as_acme, None);
    assert_eq!(status, 200, "{body}");
    assert!(headers.get("set-cookie").is_none(), "{headers:?}");
    assert_eq!(headers["x-ext-trace"], "42");
    assert!(headers.get("cache-control").is_none(), "{headers:?}");
    assert_eq!(headers["content-type"], "application/json");

    // Bodies: within the cap 200, over it 413 before the component runs.
    let hello = format!("/api/ext/{HELLO}/echo");
    assert_eq!(
        request(&node, "POST", &hello, &as_acme, Some(vec![b'a'; 1000])).0,
        200
    );
    let (status, _, body) = request(&node, "POST", &hello, &as_acme, Some(vec![b'a'; 2048]));
    assert_eq!(status, 413, "{body}");
    assert_eq!(json(&body)["error"], "payload_too_large");

    // Headers: more than the cap is 431.
    let fillers: Vec<String> = (0..60).map(|i| format!("x-filler-{i}")).collect();
    let mut many = as_acme.to_vec();
    many.extend(fillers.iter().map(|name| (name.as_str(), "v")));
    let (status, _, body) = request(&node, "GET", &hello, &many, None);
    assert_eq!(status, 431, "{body}");
    assert_eq!(json(&body)["error"], "request_headers_too_large");

    // Concurrency: acme may run 2 at once. Five parallel sleepers: 2 run into the 2 s deadline
    // (504), 3 are refused at once with 429 and retry-after, and globex is served meanwhile.
    let sleep = node.url(&format!("/api/ext/{FAULTY}/sleep"));
    let sleepers: Vec<_> = (0..5)
        .map(|_| {
            let (url, authorization) = (sleep.clone(), acme_authorization.clone());
            std::thread::spawn(move || {
                let headers = [("authorization", authorization.as_str())];
                let (status, headers, _) = send(&client(), "GET", &url, &headers, None);
                let retry_after = headers
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                (status, retry_after)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = get(
        &client(),
        &node.url(&format!("/api/ext/{HELLO}/")),
        Some(&globex),
    );
    assert_eq!(status, 200, "another tenant is still served: {body}");
    let mut outcomes: Vec<(u16, Option<String>)> =
        sleepers.into_iter().map(|t| t.join().unwrap()).collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        vec![
            (429, Some("1".into())),
            (429, Some("1".into())),
            (429, Some("1".into())),
            (504, None),
            (504, None),
        ]
    );
    // The slots were released: acme is served again.
    assert_eq!(
        get(
            &client(),
            &node.url(&format!("/api/ext/{HELLO}/")),
            Some(&acme)
        )
        .0,
        200
    );
}

#[test]
fn tenant_rate_limit_answers_429_with_retry_after_and_spares_other_tenants() {
    let fixture = Fixture::new();
    let node = node_with_installs(
        &fixture,
        // One token per 10 s: no refill can happen between the burst and the refusal, however
        // slow the machine.
        &["--tenant-rate", "0.1", "--tenant-burst", "3"],
        &["acme", "globex"],
    );
    let acme = bearer(&token(&node, "acme"));
    let globex = bearer(&token(&node, "globex"));
    let (as_acme, as_globex) = (
        [("authorization", acme.as_str())],
        [("authorization", globex.as_str())],
    );
    let route = format!("/api/ext/{HELLO}/");
    // Compile the component first (on another tenant's budget).
    assert_eq!(request(&node, "GET", &route, &as_globex, None).0, 200);
    let statuses: Vec<u16> = (0..4)
        .map(|_| request(&node, "GET", &route, &as_acme, None).0)
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    let (status, headers, body) = request(&node, "GET", &route, &as_acme, None);
    assert_eq!(status, 429);
    assert_eq!(json(&body)["error"], "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "retry-after {retry}");
    assert_eq!(request(&node, "GET", &route, &as_globex, None).0, 200);
}
