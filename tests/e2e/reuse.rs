//! Instance reuse over the real binary (issue 19): a warm instance serves only its own install,
//! each request still sees its own context, and anything unclean or any change to the install
//! retires it. The components count their requests in guest memory, so a count that goes on
//! means the instance was reused and a count back at 1 means a fresh one.

use std::time::Duration;

use serde_json::{Value, json};

use alga_edge_e2e::metrics::{scrape, sum};
use alga_edge_e2e::publishing::{
    FAULTY, Fixture, HELLO, admin_ok, bearer, install, json as parse, path, token,
};
use alga_edge_e2e::{Node, request, wait_until};

const P3: &str = "com.alga.test.faulty-p3";
const RUNNER: &str = "com.alga.test.alga-rust";

/// Idle warm instances on `node` now.
fn idle(node: &Node) -> f64 {
    sum(&scrape(node).1, "alga_warm_instances", &[("state", "idle")])
}

/// Instances retired so far.
fn retired(node: &Node) -> f64 {
    sum(
        &scrape(node).1,
        "alga_instance_reuse_total",
        &[("result", "retired")],
    )
}

/// Waits until `node` holds `count` idle instances: the last response has been delivered and
/// its instance put back (or not), so the next request's instance is known.
fn settle(node: &Node, count: f64) {
    wait_until(
        Duration::from_secs(20),
        &format!("{count} idle warm instances"),
        || idle(node) == count,
    );
}

/// `GET /api/ext/{ext}{route}` as `auth` with request id `id`: status and body.
fn get(node: &Node, ext: &str, route: &str, auth: &str, id: &str) -> (u16, String) {
    let (status, _, body) = request(
        node,
        "GET",
        &format!("/api/ext/{ext}{route}"),
        &[("authorization", auth), ("x-request-id", id)],
        None,
    );
    (status, body)
}

/// hello's answer for `id`, checked to carry this request's own context.
fn hello(node: &Node, auth: &str, tenant: &str, id: &str) -> Value {
    let (status, body) = get(node, HELLO, "/", auth, id);
    assert_eq!(status, 200, "{body}");
    let answer = parse(&body);
    assert_eq!(answer["context"]["request_id"], id, "{answer}");
    assert_eq!(answer["context"]["tenant_id"], tenant, "{answer}");
    answer
}

/// `faulty`'s `/count`: requests this instance served.
fn count(node: &Node, ext: &str, auth: &str) -> u64 {
    let (status, body) = get(node, ext, "/count", auth, "count");
    assert_eq!(status, 200, "{body}");
    body.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {body}"))
}

#[test]
fn warm_instances_serve_one_install_in_turn_and_anything_unclean_retires_them() {
    let fixture = Fixture::new();
    let hello_bundle = fixture.bundle(HELLO, "1.0.0", "hello");
    let faulty_bundle = fixture.bundle(FAULTY, "1.0.0", "faulty");
    let node = fixture.start(&[
        "--instance-reuse",
        "4",
        "--tenant-rate",
        "0",
        "--timeout-ms",
        "3000",
        "--memory-limit-mib",
        "64",
        // Long enough that no instance idles out during the test.
        "--instance-idle-ms",
        "600000",
    ]);
    admin_ok(&node, &["publish", path(&hello_bundle)]);
    admin_ok(&node, &["publish", path(&faulty_bundle)]);
    for tenant in ["acme", "globex"] {
        install(&node, HELLO, "1.0.0", tenant, &[], &[]);
        install(&node, FAULTY, "1.0.0", tenant, &[], &[]);
    }
    let (acme, globex) = (
        bearer(&token(&node, "acme")),
        bearer(&token(&node, "globex")),
    );

    // One instance serves acme's requests in turn, each with its own context, up to 4.
    for n in 1..=4 {
        let answer = hello(&node, &acme, "acme", &format!("acme-{n}"));
        assert_eq!(answer["instance_requests"], n, "{answer}");
        settle(&node, if n < 4 { 1.0 } else { 0.0 });
    }
    let answer = hello(&node, &acme, "acme", "acme-5");
    assert_eq!(answer["instance_requests"], 1, "dropped after 4: {answer}");
    settle(&node, 1.0);

    // Another tenant with the same bundle never gets acme's instance.
    let answer = hello(&node, &globex, "globex", "globex-1");
    assert_eq!(answer["instance_requests"], 1, "{answer}");
    settle(&node, 2.0);
    let answer = hello(&node, &acme, "acme", "acme-6");
    assert_eq!(answer["instance_requests"], 2, "{answer}");
    settle(&node, 2.0);

    // A trap, a timeout and a memory-limit hit each retire the instance.
    assert_eq!(count(&node, FAULTY, &acme), 1);
    settle(&node, 3.0);
    assert_eq!(count(&node, FAULTY, &acme), 2);
    settle(&node, 3.0);
    for (route, status) in [("/trap", 502), ("/loop", 504), ("/oom", 502)] {
        let (got, body) = get(&node, FAULTY, route, &acme, "unclean");
        assert_eq!(got, status, "{route}: {body}");
        settle(&node, 2.0);
        assert_eq!(
            count(&node, FAULTY, &acme),
            1,
            "a fresh instance after {route}"
        );
        settle(&node, 3.0);
    }

    // A change to the install (here its policy) retires its idle instances at once, and the
    // next request runs on a fresh one.
    let before = retired(&node);
    admin_ok(
        &node,
        &[
            "update",
            HELLO,
            "--tenant",
            "acme",
            "--policy",
            "timeout_ms=2500",
        ],
    );
    wait_until(Duration::from_secs(20), "acme's hello retired", || {
        idle(&node) == 2.0
    });
    assert!(retired(&node) > before);
    let answer = hello(&node, &acme, "acme", "acme-7");
    assert_eq!(answer["instance_requests"], 1, "{answer}");
    settle(&node, 3.0);

    // Disabling retires too; globex's instance stays.
    admin_ok(&node, &["disable", HELLO, "--tenant", "acme"]);
    wait_until(Duration::from_secs(20), "acme's hello retired", || {
        idle(&node) == 2.0
    });
    let answer = hello(&node, &globex, "globex", "globex-2");
    assert_eq!(answer["instance_requests"], 2, "{answer}");

    // An install may turn reuse off for itself.
    admin_ok(
        &node,
        &[
            "update",
            FAULTY,
            "--tenant",
            "globex",
            "--policy",
            "instance_reuse=0",
        ],
    );
    for _ in 0..2 {
        assert_eq!(count(&node, FAULTY, &globex), 1);
    }
    let (_, samples) = scrape(&node);
    assert!(
        sum(
            &samples,
            "alga_instance_reuse_total",
            &[("result", "reused")]
        ) >= 6.0
    );
}

#[test]
fn wasip3_and_runner_world_instances_are_reused_per_install() {
    let fixture = Fixture::new();
    // The manifests request what the components import; the installs grant none of it.
    let p3 = fixture.bundle_with(
        P3,
        "1.0.0",
        "faulty-p3",
        json!({"capabilities": ["cap:http.fetch"]}),
    );
    let runner = fixture.bundle_with(
        RUNNER,
        "1.0.0",
        "alga-rust",
        json!({"capabilities": [
            "cap:secrets.get", "cap:http.fetch", "cap:storage.kv", "cap:ui.proxy",
            "cap:scheduler.manage", "cap:invoice.manual.create", "cap:client.read",
            "cap:service.read",
        ]}),
    );
    let node = fixture.start(&["--tenant-rate", "0", "--instance-idle-ms", "600000"]);
    admin_ok(&node, &["publish", path(&p3)]);
    admin_ok(&node, &["publish", path(&runner)]);
    // Reuse is off on the node and switched on per install.
    for tenant in ["acme", "globex"] {
        for name in [P3, RUNNER] {
            install(
                &node,
                name,
                "1.0.0",
                tenant,
                &[],
                &["--policy", "instance_reuse=100"],
            );
        }
    }
    let (acme, globex) = (
        bearer(&token(&node, "acme")),
        bearer(&token(&node, "globex")),
    );
    let runner_count = |auth: &str| -> u64 {
        let (status, body) = get(&node, RUNNER, "/count", auth, "count");
        assert_eq!(status, 200, "{body}");
        parse(&body)["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("{body}"))
    };

    assert_eq!(count(&node, P3, &acme), 1);
    settle(&node, 1.0);
    assert_eq!(count(&node, P3, &acme), 2);
    settle(&node, 1.0);
    assert_eq!(
        count(&node, P3, &globex),
        1,
        "never another tenant's instance"
    );
    settle(&node, 2.0);
    // A trap retires a WASIp3 instance too.
    assert_eq!(get(&node, P3, "/trap", &acme, "trap").0, 502);
    settle(&node, 1.0);
    assert_eq!(count(&node, P3, &acme), 1);
    settle(&node, 2.0);

    assert_eq!(runner_count(&acme), 1);
    settle(&node, 3.0);
    assert_eq!(runner_count(&acme), 2);
    settle(&node, 3.0);
    assert_eq!(runner_count(&globex), 1);
    settle(&node, 4.0);
    // Each runner request sees its own context through the context import.
    for id in ["runner-a", "runner-b"] {
        let (status, body) = get(&node, RUNNER, "/echo", &acme, id);
        assert_eq!(status, 200, "{body}");
        let echo = parse(&body);
        assert_eq!(echo["context_import"]["request_id"], id, "{echo}");
        assert_eq!(echo["context_import"]["tenant_id"], "acme", "{echo}");
        settle(&node, 4.0);
    }
    assert_eq!(
        runner_count(&acme),
        3,
        "the echo requests ran on the same instance"
    );
}
