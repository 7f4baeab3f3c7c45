//! Gateway policies over the real binary: response header allowlist, request body and header
//! caps, per-tenant concurrency (429 while other tenants are served) and per-tenant rate.

use std::time::Duration;

use alga_edge_e2e::publishing::{
    FAULTY, Fixture, HELLO, admin_ok, bearer, execution_rows, get, install, json, path, token,
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

/// CPU fairness between tenants (issue 21, item 6): while acme holds 64 instances that spin
/// until their deadline, globex's requests keep being answered, because a guest gets the CPU
/// in turns handed round-robin across tenants, not after each of acme's spinners.
///
/// The assertion compares counts, not latencies: globex's sequential requests per second while
/// acme spins against its rate alone, measured in the same run. Queued behind every spinner
/// (64 × a CPU slice / 2 cores, several times per request, and new connections noticed only
/// every 61 slices) globex gets about one per second, under a hundredth of its rate alone;
/// with fair turns it keeps about a tenth. The bound, a fiftieth, sits well between the two,
/// and a loaded machine slows both measurements.
#[test]
fn a_tenant_spinning_many_instances_does_not_starve_another() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    const SPINNERS: usize = 64;
    const LOOP_DEADLINE_MS: u64 = 10_000;
    let fixture = Fixture::new();
    let hello = fixture.bundle(HELLO, "1.0.0", "hello");
    let faulty = fixture.bundle(FAULTY, "1.0.0", "faulty");
    // A memory budget that admits all 64 spinners whatever this machine's memory.
    let node = fixture.start_with_env(
        &[
            "--tenant-rate",
            "0",
            "--tenant-concurrency",
            "64",
            "--extension-concurrency",
            "256",
            "--memory-limit-mib",
            "16",
        ],
        &[("EXT_MEMORY_BUDGET_MIB", "4096")],
    );
    admin_ok(&node, &["publish", path(&hello)]);
    admin_ok(&node, &["publish", path(&faulty)]);
    let deadline = format!("timeout_ms={LOOP_DEADLINE_MS}");
    install(
        &node,
        FAULTY,
        "1.0.0",
        "acme",
        &[],
        &["--policy", &deadline],
    );
    install(&node, HELLO, "1.0.0", "globex", &[], &[]);
    let acme = bearer(&token(&node, "acme"));
    let globex = bearer(&token(&node, "globex"));
    let as_acme = [("authorization", acme.as_str())];
    let as_globex = [("authorization", globex.as_str())];
    // Compile both components before anything is counted.
    let faulty_root = format!("/api/ext/{FAULTY}/");
    assert_eq!(request(&node, "GET", &faulty_root, &as_acme, None).0, 200);
    let hello_url = node.url(&format!("/api/ext/{HELLO}/"));
    let agent = client();
    // globex's sequential requests while `running` holds (at most 10000): answered, failures,
    // and how long it took.
    let measure = |running: &dyn Fn() -> bool| {
        let started = Instant::now();
        let (mut answered, mut failures) = (0usize, Vec::new());
        while answered + failures.len() < 10_000 && running() {
            let (status, _, body) = send(&agent, "GET", &hello_url, &as_globex, None);
            if status == 200 {
                answered += 1;
            } else {
                failures.push(format!("{status} {body}"));
            }
        }
        (answered, failures, started.elapsed().as_secs_f64())
    };
    let alone_until = Instant::now() + Duration::from_secs(2);
    let (alone, failures, alone_secs) = measure(&|| Instant::now() < alone_until);
    assert!(failures.is_empty(), "{failures:?}");
    let alone_rate = alone as f64 / alone_secs;

    let spinning = Arc::new(AtomicUsize::new(SPINNERS));
    let url = node.url(&format!("/api/ext/{FAULTY}/loop"));
    let spinners: Vec<_> = (0..SPINNERS)
        .map(|_| {
            let (url, authorization, spinning) = (url.clone(), acme.clone(), spinning.clone());
            std::thread::spawn(move || {
                let headers = [("authorization", authorization.as_str())];
                let status = send(&client(), "GET", &url, &headers, None).0;
                spinning.fetch_sub(1, Ordering::SeqCst);
                status
            })
        })
        .collect();
    // Every spinner is admitted and running before globex counts again.
    alga_edge_e2e::wait_until(Duration::from_secs(30), "acme's spinners in flight", || {
        let (_, samples) = alga_edge_e2e::metrics::scrape(&node);
        alga_edge_e2e::metrics::sum(&samples, "alga_in_flight_requests", &[]) >= SPINNERS as f64
    });
    let (contended, failures, contended_secs) =
        measure(&|| spinning.load(Ordering::SeqCst) == SPINNERS);
    let contended_rate = contended as f64 / contended_secs;
    eprintln!(
        "globex alone: {alone} requests in {alone_secs:.1} s ({alone_rate:.0}/s); while acme's \
         {SPINNERS} loops spun: {contended} in {contended_secs:.1} s ({contended_rate:.1}/s)"
    );
    let statuses: Vec<u16> = spinners.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| *s == 504),
        "acme's loops ran to their deadline: {statuses:?}"
    );
    assert!(
        failures.is_empty(),
        "globex's requests failed: {failures:?}"
    );
    assert!(
        contended_rate >= alone_rate / 50.0,
        "globex was starved: {contended_rate:.1} requests/s while acme spun, against \
         {alone_rate:.0}/s alone"
    );
}

/// The node memory budget (issue 21, item 5): each request reserves its instance's memory
/// limit before it is instantiated; past the tenant's share it is refused with 429, past the
/// node's budget with 503, both with `retry-after`, and a burst of memory bombs leaves the
/// node up and serving.
#[test]
fn instance_memory_is_charged_to_a_node_budget_and_tenant_shares() {
    let fixture = Fixture::new();
    let hello = fixture.bundle(HELLO, "1.0.0", "hello");
    let faulty = fixture.bundle(FAULTY, "1.0.0", "faulty");
    // 64 MiB per instance, 256 MiB for the node, half of it per tenant.
    let node = fixture.start(&[
        "--memory-limit-mib",
        "64",
        "--memory-budget-mib",
        "256",
        "--tenant-memory-share",
        "50",
        "--timeout-ms",
        "15000",
        "--tenant-rate",
        "0",
    ]);
    admin_ok(&node, &["publish", path(&hello)]);
    admin_ok(&node, &["publish", path(&faulty)]);
    for tenant in ["acme", "globex", "initech"] {
        install(&node, FAULTY, "1.0.0", tenant, &[], &[]);
    }
    install(&node, HELLO, "1.0.0", "initech", &[], &[]);
    let authorization = |tenant: &str| bearer(&token(&node, tenant));
    let (acme, globex, initech) = (
        authorization("acme"),
        authorization("globex"),
        authorization("initech"),
    );
    let faulty_route = |route: &str| format!("/api/ext/{FAULTY}/{route}");
    let hello_route = format!("/api/ext/{HELLO}/");
    let call =
        |who: &str, route: &str| request(&node, "GET", route, &[("authorization", who)], None);
    assert_eq!(call(&acme, &faulty_route("")).0, 200, "compiles faulty");
    assert_eq!(call(&initech, &hello_route).0, 200, "compiles hello");

    let (_, samples) = alga_edge_e2e::metrics::scrape(&node);
    let gauge =
        |samples: &[alga_edge_e2e::metrics::Sample], name: &str, labels: &[(&str, &str)]| {
            alga_edge_e2e::metrics::sum(samples, name, labels)
        };
    assert_eq!(
        gauge(&samples, "alga_memory_budget_bytes", &[("scope", "node")]),
        (256u64 << 20) as f64
    );
    assert_eq!(
        gauge(&samples, "alga_memory_budget_bytes", &[("scope", "tenant")]),
        (128u64 << 20) as f64
    );

    // Memory is charged as instances grow, not reserved at their limit: a hundred small
    // instances fit where four big ones would not. Two holders each for acme and globex take
    // 56 MiB apiece, most of the node's 256 MiB and of each tenant's 128.
    let holders: Vec<_> = [&acme, &acme, &globex, &globex]
        .into_iter()
        .map(|who| {
            let (url, who) = (node.url(&faulty_route("hold?mb=56&ms=8000")), who.clone());
            std::thread::spawn(move || {
                send(
                    &client(),
                    "GET",
                    &url,
                    &[("authorization", who.as_str())],
                    None,
                )
                .0
            })
        })
        .collect();
    alga_edge_e2e::wait_until(
        Duration::from_secs(30),
        "the holders' memory charged",
        || {
            let (_, samples) = alga_edge_e2e::metrics::scrape(&node);
            gauge(&samples, "alga_memory_reserved_bytes", &[]) >= ((4 * 56u64) << 20) as f64
        },
    );
    // acme's share has no room for 40 MiB more: 429. initech has all its share, but the node
    // has no room: 503. A small request of initech still runs.
    let (status, headers, body) = call(&acme, &faulty_route("hold?mb=40"));
    assert_eq!(status, 429, "{body}");
    assert_eq!(json(&body)["error"], "tenant_memory_budget", "{body}");
    assert_eq!(headers["retry-after"], "1");
    let (status, headers, body) = call(&initech, &faulty_route("hold?mb=40"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(json(&body)["error"], "node_memory_budget", "{body}");
    assert!(
        json(&body)["message"].as_str().unwrap().contains("256 MiB"),
        "{body}"
    );
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        call(&initech, &hello_route).0,
        200,
        "small instances still fit"
    );
    let statuses: Vec<u16> = holders.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(statuses, [200, 200, 200, 200]);

    // A burst of memory bombs from three tenants: each one admitted hits its instance's cap
    // (502); the rest are refused with retry-after. Nothing else happens to the node.
    let bombs: Vec<_> = (0..18)
        .map(|i| {
            let who = [&acme, &globex, &initech][i % 3].clone();
            let url = node.url(&faulty_route("oom"));
            std::thread::spawn(move || {
                let (status, headers, body) = send(
                    &client(),
                    "GET",
                    &url,
                    &[("authorization", who.as_str())],
                    None,
                );
                (status, headers.contains_key("retry-after"), body)
            })
        })
        .collect();
    for bomb in bombs {
        let (status, retry_after, body) = bomb.join().unwrap();
        match status {
            502 => assert_eq!(json(&body)["error"], "extension_memory_limit", "{body}"),
            429 | 503 => assert!(retry_after, "{status} {body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(call(&initech, &hello_route).0, 200, "the node still serves");
    // Charges end with their instances.
    alga_edge_e2e::wait_until(Duration::from_secs(30), "every charge released", || {
        let (_, samples) = alga_edge_e2e::metrics::scrape(&node);
        gauge(&samples, "alga_memory_reserved_bytes", &[]) == 0.0
    });
    let (_, samples) = alga_edge_e2e::metrics::scrape(&node);
    for reason in ["tenant_memory_budget", "node_memory_budget"] {
        assert!(
            gauge(&samples, "alga_denials_total", &[("reason", reason)]) >= 1.0,
            "refusals are counted by reason ({reason})"
        );
    }
}

/// The CPU budget (issue 20): a busy loop ends with 502 `extension_cpu_budget` after about its
/// budget of CPU, long before its wall-clock deadline; a guest waiting in a host call for
/// longer than the budget is not stopped by it; another tenant is served while loops are
/// stopped; an install's policy can switch the budget off (then the deadline ends the loop);
/// the stop is counted in metrics and recorded in the execution log.
#[test]
fn a_busy_loop_stops_at_its_cpu_budget_long_before_its_deadline() {
    use std::time::Instant;

    let fixture = Fixture::new();
    let hello = fixture.bundle(HELLO, "1.0.0", "hello");
    let faulty = fixture.bundle(FAULTY, "1.0.0", "faulty");
    let node = fixture.start(&[
        "--cpu-budget-ms",
        "100",
        "--timeout-ms",
        "20000",
        "--tenant-rate",
        "0",
    ]);
    admin_ok(&node, &["publish", path(&hello)]);
    admin_ok(&node, &["publish", path(&faulty)]);
    install(&node, FAULTY, "1.0.0", "acme", &[], &[]);
    install(&node, HELLO, "1.0.0", "globex", &[], &[]);
    install(
        &node,
        FAULTY,
        "1.0.0",
        "initech",
        &[],
        &["--policy", "cpu_budget_ms=0", "--policy", "timeout_ms=1500"],
    );
    let acme = bearer(&token(&node, "acme"));
    let globex = bearer(&token(&node, "globex"));
    let initech = bearer(&token(&node, "initech"));
    let as_acme = [("authorization", acme.as_str())];
    let loop_route = format!("/api/ext/{FAULTY}/loop");
    // Compile the component before anything is timed.
    let root = format!("/api/ext/{FAULTY}/");
    assert_eq!(request(&node, "GET", &root, &as_acme, None).0, 200);

    let started = Instant::now();
    let (status, _, body) = request(&node, "GET", &loop_route, &as_acme, None);
    let stopped_after = started.elapsed();
    eprintln!("a busy loop with a 100 ms CPU budget ended after {stopped_after:?} (deadline 20 s)");
    assert_eq!(status, 502, "{body}");
    let answer = json(&body);
    assert_eq!(answer["error"], "extension_cpu_budget", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("100 ms")),
        "the message names the budget: {answer}"
    );
    assert!(
        stopped_after < Duration::from_secs(10),
        "stopped by the 20 s deadline, not the budget: {stopped_after:?}"
    );

    // 1.5 s asleep in a host call is not CPU.
    let started = Instant::now();
    let hold = format!("/api/ext/{FAULTY}/hold?mb=1&ms=1500");
    let (status, _, body) = request(&node, "GET", &hold, &as_acme, None);
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(1500));

    // globex is served while acme's loops are stopped one after another.
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let (url, authorization) = (node.url(&loop_route), acme.clone());
            std::thread::spawn(move || {
                let headers = [("authorization", authorization.as_str())];
                let agent = client();
                (0..3)
                    .map(|_| send(&agent, "GET", &url, &headers, None).0)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let as_globex = [("authorization", globex.as_str())];
    let hello_route = format!("/api/ext/{HELLO}/");
    let mut served = 0;
    while served < 20 || !spinners.iter().all(|s| s.is_finished()) {
        let (status, _, body) = request(&node, "GET", &hello_route, &as_globex, None);
        assert_eq!(status, 200, "globex while acme spun: {body}");
        served += 1;
        assert!(served < 100_000, "acme's loops never ended");
    }
    for spinner in spinners {
        assert_eq!(spinner.join().unwrap(), vec![502; 3]);
    }

    // Budget off by policy: the deadline ends the loop.
    let started = Instant::now();
    let as_initech = [("authorization", initech.as_str())];
    let (status, _, body) = request(&node, "GET", &loop_route, &as_initech, None);
    assert_eq!(status, 504, "{body}");
    assert_eq!(json(&body)["error"], "extension_timeout", "{body}");
    assert!(started.elapsed() >= Duration::from_millis(1450));

    let (_, samples) = alga_edge_e2e::metrics::scrape(&node);
    let counted = alga_edge_e2e::metrics::sum(
        &samples,
        "alga_cpu_budget_exceeded_total",
        &[("extension", FAULTY)],
    );
    assert_eq!(counted, 13.0, "1 + 4 × 3 loops stopped by the budget");
    alga_edge_e2e::wait_until(
        Duration::from_secs(10),
        "the budget in the execution log",
        || {
            execution_rows(&node, "acme", 50)
                .iter()
                .filter(|row| row["error_class"] == "extension_cpu_budget" && row["status"] == 502)
                .count()
                == 13
        },
    );
    assert!(
        execution_rows(&node, "initech", 10)
            .iter()
            .all(|row| row["error_class"] != "extension_cpu_budget")
    );
}
