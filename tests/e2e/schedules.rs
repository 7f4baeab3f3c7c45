//! Cron schedules over the real binary: an Alga-ABI extension (`alga-rust`) manages its own
//! schedules through Alga's `scheduler` interface; the primary fires them by itself, exactly
//! once per due time, through the gateway path (payload and `x-alga-trigger` reach the
//! component, one execution-log row marked `schedule`); refusals name their fields and store
//! nothing; tenants never see each other's schedules through the interface, the admin API or
//! the CLI; kill -9 mid-run and fires missed while the node was down are each recorded once;
//! disabling and uninstalling stop them; an edge forwards schedule writes to its primary.

use std::time::Duration;

use alga_edge_e2e::publishing::{
    Fixture, admin, admin_json, admin_ok, call, execution_rows, install, json, path, shared_token,
    token,
};
use alga_edge_e2e::{Node, wait_until};
use serde_json::{Value, json};

const RUST: &str = "com.alga.test.sched";
const GRANTS: [&str; 2] = ["cap:scheduler.manage", "cap:storage.kv"];

/// The sample's manifest `api`: one schedulable endpoint, one not marked, one with a path
/// parameter (never schedulable).
fn api() -> Value {
    json!({"api": {"endpoints": [
        {"method": "POST", "path": "/sync", "handler": "dist/main", "schedulable": true},
        {"method": "GET", "path": "/status", "handler": "dist/main"},
        {"method": "POST", "path": "/items/:id", "handler": "dist/main", "schedulable": true},
    ]}, "capabilities": GRANTS})
}

/// Publishes the sample on a node of `fixture` started with `extra`.
fn start(fixture: &Fixture, extra: &[&str]) -> Node {
    let bundle = fixture.bundle_with(RUST, "1.0.0", "alga-rust", api());
    let node = fixture.start(&[&["--tenant-rate", "0"], extra].concat());
    admin_ok(&node, &["publish", path(&bundle)]);
    node
}

/// `METHOD /api/ext/{RUST}{route}` as `tenant` (token from the node's dev key): 200 JSON.
fn ext(node: &Node, tenant: &str, method: &str, route: &str, body: Value) -> Value {
    ext_with(node, &token(node, tenant), method, route, body)
}

/// `METHOD /api/ext/{RUST}{route}` presenting `bearer`: 200 JSON.
fn ext_with(node: &Node, bearer: &str, method: &str, route: &str, body: Value) -> Value {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, text) = call(
        node,
        method,
        &format!("/api/ext/{RUST}{route}"),
        bearer,
        &body,
    );
    assert_eq!(status, 200, "{method} {route}: {text}");
    json(&text)
}

/// The runs `/sync` stored for `tenant` (storage namespace `sync`), each `{payload, trigger,
/// schedule_id}`.
fn runs(node: &Node, tenant: &str) -> Vec<Value> {
    let answer = ext(node, tenant, "GET", "/storage/sync", Value::Null);
    answer["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|e| json(e["value"].as_str().unwrap()))
        .collect()
}

fn runs_of(node: &Node, tenant: &str, schedule: &str) -> usize {
    runs(node, tenant)
        .iter()
        .filter(|r| r["schedule_id"] == schedule)
        .count()
}

/// The admin API's view of a schedule.
fn schedule(node: &Node, tenant: &str, id: &str) -> Value {
    let (status, answer) = admin_json(
        node,
        "GET",
        &format!("tenants/{tenant}/schedules/{RUST}/{id}"),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    answer["schedule"].clone()
}

/// Creates a schedule through the extension's own `scheduler` import; its id.
fn create(node: &Node, tenant: &str, input: Value) -> String {
    let answer = ext(node, tenant, "POST", "/schedules", input);
    assert_eq!(answer["success"], true, "{answer}");
    answer["schedule_id"].as_str().unwrap().to_owned()
}

#[test]
fn an_extension_schedules_itself_and_the_primary_fires_once_a_minute() {
    let fixture = Fixture::new();
    let node = start(&fixture, &["--schedule-min-interval-secs", "60"]);
    install(&node, RUST, "1.0.0", "tenant-a", &GRANTS, &[]);
    install(
        &node,
        RUST,
        "1.0.0",
        "tenant-b",
        &GRANTS,
        &[
            "--policy",
            "schedule_max=2",
            "--policy",
            "schedule_min_interval_secs=300",
        ],
    );
    install(&node, RUST, "1.0.0", "tenant-c", &["cap:storage.kv"], &[]);

    // The extension creates its own schedule; it fires by itself below.
    let every_minute = create(
        &node,
        "tenant-a",
        json!({"endpoint": "POST /sync", "cron": "* * * * *", "name": "every minute",
               "payload": {"note": "tick"}}),
    );
    let listed = ext(&node, "tenant-a", "GET", "/schedules", Value::Null);
    assert_eq!(
        listed["schedules"][0]["id"],
        every_minute.as_str(),
        "{listed}"
    );
    assert_eq!(listed["schedules"][0]["payload"], r#"{"note":"tick"}"#);
    let endpoints = ext(&node, "tenant-a", "GET", "/endpoints", Value::Null);
    let schedulable: Vec<(&str, bool)> = endpoints["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap(),
                e["schedulable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        schedulable,
        [
            ("POST /sync", true),
            ("GET /status", false),
            ("POST /items/:id", false)
        ]
    );

    // Refusals, through the interface (Alga's field-errors), with nothing stored.
    let refused = |tenant: &str, input: Value, field: &str| {
        let answer = ext(&node, tenant, "POST", "/schedules", input.clone());
        assert_eq!(answer["success"], false, "{input}: {answer}");
        assert!(
            answer["field_errors"][field].is_string(),
            "{input}: no field error for {field}: {answer}"
        );
    };
    refused(
        "tenant-a",
        json!({"endpoint": "GET /status", "cron": "0 * * * *"}),
        "endpoint",
    );
    refused(
        "tenant-a",
        json!({"endpoint": "/items/:id", "cron": "0 * * * *"}),
        "endpoint",
    );
    refused(
        "tenant-a",
        json!({"endpoint": "/sync", "cron": "61 * * * *"}),
        "cron",
    );
    refused(
        "tenant-a",
        json!({"endpoint": "/sync", "cron": "0 * * *"}),
        "cron",
    );
    refused(
        "tenant-a",
        json!({"endpoint": "/sync", "cron": "0 * * * *", "timezone": "Mars/Olympus"}),
        "timezone",
    );
    // tenant-b's policy: at most 2 schedules, 300 s apart.
    refused(
        "tenant-b",
        json!({"endpoint": "/sync", "cron": "* * * * *"}),
        "cron",
    );
    create(
        &node,
        "tenant-b",
        json!({"endpoint": "/sync", "cron": "*/5 * * * *"}),
    );
    let b_own = create(
        &node,
        "tenant-b",
        json!({"endpoint": "/sync", "cron": "0 9 * * 1", "timezone": "Europe/Berlin"}),
    );
    refused(
        "tenant-b",
        json!({"endpoint": "/sync", "cron": "0 * * * *"}),
        "schedules",
    );
    // The admin API and the CLI refuse the same way.
    let (status, answer) = admin_json(
        &node,
        "POST",
        &format!("tenants/tenant-a/schedules/{RUST}"),
        Some(json!({"endpoint": "/sync", "cron": "0 25 * * *"})),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer["fields"]["cron"].is_string(), "{answer}");
    let out = admin(
        &node,
        &[
            "schedules",
            "create",
            RUST,
            "--tenant",
            "tenant-a",
            "--endpoint",
            "/sync",
            "--cron",
            "0 * * * *",
            "--timezone",
            "Nowhere/Town",
        ],
    );
    assert!(!out.ok && out.stderr.contains("timezone"), "{}", out.stderr);
    let count = |tenant: &str| {
        ext(&node, tenant, "GET", "/schedules", Value::Null)["schedules"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(
        (count("tenant-a"), count("tenant-b")),
        (1, 2),
        "refusals stored nothing"
    );
    // Without the capability: the interface's own errors.
    assert_eq!(
        ext(&node, "tenant-c", "GET", "/schedules", Value::Null)["error"],
        "denied"
    );
    let denied = ext(
        &node,
        "tenant-c",
        "POST",
        "/schedules",
        json!({"endpoint": "/sync", "cron": "0 * * * *"}),
    );
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .contains("cap:scheduler.manage"),
        "{denied}"
    );

    // Tenant B cannot read, change, delete or run tenant A's schedule, by any route.
    let a_route = format!("/schedules/{every_minute}");
    assert!(ext(&node, "tenant-b", "GET", &a_route, Value::Null)["schedule"].is_null());
    let patched = ext(
        &node,
        "tenant-b",
        "PATCH",
        &a_route,
        json!({"cron": "0 0 * * *"}),
    );
    assert_eq!(patched["success"], false, "{patched}");
    assert_eq!(
        ext(&node, "tenant-b", "DELETE", &a_route, Value::Null)["success"],
        false
    );
    for (method, suffix) in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/run")] {
        let route = format!("tenants/tenant-b/schedules/{RUST}/{every_minute}{suffix}");
        let body = (method == "PATCH").then(|| json!({"cron": "0 0 * * *"}));
        let (status, answer) = admin_json(&node, method, &route, body);
        assert_eq!(status, 404, "{method} {route}: {answer}");
    }
    let out = admin(
        &node,
        &[
            "schedules",
            "run-now",
            RUST,
            &every_minute,
            "--tenant",
            "tenant-b",
        ],
    );
    assert!(!out.ok, "tenant-b ran tenant-a's schedule: {}", out.stdout);
    // Its cron is unchanged and every run it had was one of its own minutely fires (it may
    // have fired already: the test reaches this point at any second of a minute). A fire
    // moves `next_run_at` on by a minute from the first one after creation; a run-now
    // would count a run without moving it.
    let a = schedule(&node, "tenant-a", &every_minute);
    assert_eq!(a["cron"], "* * * * *", "{a}");
    let first_fire = (a["created_at"].as_i64().unwrap() / 60 + 1) * 60;
    let fired = (a["next_run_at"].as_i64().unwrap() - first_fire) / 60;
    assert!(
        (0..=fired).contains(&a["runs"].as_i64().unwrap()),
        "runs beyond its own {fired} fire(s): {a}"
    );
    let out = admin_ok(&node, &["schedules", "list", RUST, "--tenant", "tenant-b"]);
    assert!(
        out.contains(&b_own) && !out.contains(&every_minute),
        "{out}"
    );

    // It fires by itself: within ~65 s, then once a minute, payload and trigger delivered.
    // Waits poll the admin API (not the extension), so the execution log holds only the runs.
    let finished = |runs: i64| {
        let s = schedule(&node, "tenant-a", &every_minute);
        (s["runs"].as_i64() >= Some(runs) && s["last_run_status"] != "running").then_some(s)
    };
    let mut first = None;
    wait_until(Duration::from_secs(75), "the first scheduled run", || {
        first = finished(1);
        first.is_some()
    });
    let mut second = None;
    wait_until(Duration::from_secs(75), "the second scheduled run", || {
        second = finished(2);
        second.is_some()
    });
    let (first, second) = (first.unwrap(), second.unwrap());
    let stored = runs(&node, "tenant-a");
    assert_eq!(stored.len(), 2, "exactly one run per minute: {stored:?}");
    for run in &stored {
        assert_eq!(run["payload"], json!({"note": "tick"}), "{run}");
        assert_eq!(run["trigger"], "schedule", "{run}");
    }
    let (at1, at2) = (
        first["last_run_at"].as_i64().unwrap(),
        second["last_run_at"].as_i64().unwrap(),
    );
    // Each run starts at the trigger's first tick (1 s) after its minute, later under load.
    assert!(
        (at1 / 60 + 1, at1 % 60 < 10) == (at2 / 60, at2 % 60 < 10),
        "consecutive minutes, each at the minute: {first} {second}"
    );
    assert_eq!(second["runs"], 2, "{second}");
    assert_eq!(second["last_run_status"], "success", "{second}");
    let mut rows = Vec::new();
    let scheduled = |rows: &[Value]| rows.iter().filter(|r| r["trigger"] == "schedule").count();
    for _ in 0..100 {
        rows = execution_rows(&node, "tenant-a", 1000);
        if scheduled(&rows) == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        scheduled(&rows),
        2,
        "one execution-log row per run: {rows:#?}"
    );
}

/// A clock offset near `secs` that puts the node's clock a few seconds past a minute
/// boundary when it starts, so a `* * * * *` schedule's next regular fire is most of a
/// minute away and the counts this test asserts cannot be bumped by the clock.
fn at_minute_start(secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let shifted = now + secs;
    (secs - shifted.rem_euclid(60) + 3).to_string()
}

#[test]
fn missed_fires_run_once_a_killed_run_is_recorded_once_and_disabling_stops_them() {
    let fixture = Fixture::new();
    // A clock an hour behind: nothing is due while the schedules are made.
    let behind = at_minute_start(-3600);
    let node = start(
        &fixture,
        &[
            "--schedule-min-interval-secs",
            "60",
            "--schedule-clock-offset-secs",
            &behind,
        ],
    );
    install(&node, RUST, "1.0.0", "tenant-a", &GRANTS, &[]);
    let slow = create(
        &node,
        "tenant-a",
        json!({"endpoint": "/sync", "cron": "* * * * *", "payload": {"sleep_ms": 60000}}),
    );
    let quick = create(
        &node,
        "tenant-a",
        json!({"endpoint": "/sync", "cron": "* * * * *", "payload": {"n": 1}}),
    );
    node.kill_hard();

    // Two minutes later by the node's clock: both missed two fire times; each runs once.
    let ahead = at_minute_start(120);
    let node = fixture.start(&[
        "--tenant-rate",
        "0",
        "--schedule-min-interval-secs",
        "60",
        "--schedule-clock-offset-secs",
        &ahead,
        "--timeout-ms",
        "120000",
    ]);
    wait_until(Duration::from_secs(30), "the quick schedule's run", || {
        runs_of(&node, "tenant-a", &quick) == 1
    });
    wait_until(Duration::from_secs(10), "the slow run in flight", || {
        schedule(&node, "tenant-a", &slow)["last_run_status"] == "running"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        runs_of(&node, "tenant-a", &quick),
        1,
        "missed fires are coalesced"
    );
    assert_eq!(schedule(&node, "tenant-a", &quick)["runs"], 1);
    node.kill_hard();

    // Restarted on the real clock: the killed run is recorded once, as interrupted, and
    // neither schedule is due again for at least a minute.
    let node = fixture.start(&["--tenant-rate", "0", "--schedule-min-interval-secs", "60"]);
    node.wait_for_log("the lease taken over", Duration::from_secs(30), |log| {
        log.contains("this node fires scheduled triggers")
    });
    std::thread::sleep(Duration::from_secs(2));
    let killed = schedule(&node, "tenant-a", &slow);
    assert_eq!(killed["last_run_status"], "interrupted", "{killed}");
    assert_eq!(killed["runs"], 1, "{killed}");
    assert_eq!(
        runs_of(&node, "tenant-a", &slow),
        0,
        "never finished, never rerun"
    );
    assert_eq!(schedule(&node, "tenant-a", &quick)["runs"], 1);

    // Disabled install: its due schedules stay put; enabled again, they fire; uninstalled,
    // they are gone.
    admin_ok(&node, &["disable", RUST, "--tenant", "tenant-a"]);
    node.terminate(Duration::from_secs(30));
    let later_offset = at_minute_start(600);
    let later = [
        "--tenant-rate",
        "0",
        "--schedule-min-interval-secs",
        "60",
        "--schedule-clock-offset-secs",
        later_offset.as_str(),
    ];
    let node = fixture.start(&later);
    node.wait_for_log("the lease", Duration::from_secs(30), |log| {
        log.contains("this node fires scheduled triggers")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        schedule(&node, "tenant-a", &quick)["runs"],
        1,
        "a disabled install never fires"
    );
    admin_ok(&node, &["enable", RUST, "--tenant", "tenant-a"]);
    wait_until(
        Duration::from_secs(15),
        "the re-enabled schedule's run",
        || runs_of(&node, "tenant-a", &quick) == 2,
    );
    // run-now: through the same path, answered with the run.
    let out = admin_ok(
        &node,
        &[
            "schedules",
            "run-now",
            RUST,
            &quick,
            "--tenant",
            "tenant-a",
            "--json",
        ],
    );
    assert_eq!(json(&out)["run"]["status"], 200, "{out}");
    assert_eq!(runs_of(&node, "tenant-a", &quick), 3);
    admin_ok(&node, &["uninstall", RUST, "--tenant", "tenant-a"]);
    let (status, answer) = admin_json(
        &node,
        "GET",
        &format!("tenants/tenant-a/schedules/{RUST}"),
        None,
    );
    assert_eq!(status, 404, "{answer}");
    install(&node, RUST, "1.0.0", "tenant-a", &GRANTS, &[]);
    assert_eq!(
        ext(&node, "tenant-a", "GET", "/schedules", Value::Null)["schedules"],
        json!([]),
        "uninstalling removed the schedules"
    );
}

#[test]
fn an_edge_forwards_schedule_writes_to_its_primary() {
    let fixture = Fixture::new();
    let root = tempfile::tempdir().unwrap();
    let bundle = fixture.bundle_with(RUST, "1.0.0", "alga-rust", api());
    let primary = fixture.start_node_in(
        &root.path().join("primary"),
        &["--schedule-min-interval-secs", "60"],
    );
    admin_ok(&primary, &["publish", path(&bundle)]);
    install(&primary, RUST, "1.0.0", "tenant-a", &GRANTS, &[]);
    let edge = fixture.start_edge_in(
        &root.path().join("edge"),
        &primary.base(),
        60_000,
        &["--schedule-min-interval-secs", "60"],
    );
    let bearer = shared_token("tenant-a");
    let at = |node: &Node, method: &str, route: &str, body: Value| {
        ext_with(node, &bearer, method, route, body)
    };
    // Written at the edge (its sync interval is a minute: only the write's own sync can
    // show it), read back there at once, and stored on the primary.
    let answer = at(
        &edge,
        "POST",
        "/schedules",
        json!({"endpoint": "/sync", "cron": "0 6 * * *"}),
    );
    assert_eq!(answer["success"], true, "{answer}");
    let id = answer["schedule_id"].as_str().unwrap();
    assert_eq!(
        at(&edge, "GET", "/schedules", Value::Null)["schedules"][0]["id"],
        id
    );
    assert_eq!(schedule(&primary, "tenant-a", id)["cron"], "0 6 * * *");
    let refused = at(
        &edge,
        "POST",
        "/schedules",
        json!({"endpoint": "/sync", "cron": "nope"}),
    );
    assert!(refused["field_errors"]["cron"].is_string(), "{refused}");
    let patched = at(
        &edge,
        "PATCH",
        &format!("/schedules/{id}"),
        json!({"cron": "30 6 * * *"}),
    );
    assert_eq!(patched["success"], true, "{patched}");
    assert_eq!(
        at(&edge, "GET", &format!("/schedules/{id}"), Value::Null)["schedule"]["cron"],
        "30 6 * * *"
    );
    // The edge's admin API forwards too; run-now belongs to the primary.
    let (status, answer) = admin_json(
        &edge,
        "DELETE",
        &format!("tenants/tenant-a/schedules/{RUST}/{id}"),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    let (status, _) = admin_json(
        &primary,
        "GET",
        &format!("tenants/tenant-a/schedules/{RUST}/{id}"),
        None,
    );
    assert_eq!(status, 404);
}

#[test]
fn scheduled_runs_reach_wasi_http_components_of_both_abis_and_stop_at_a_version_without_the_endpoint()
 {
    const HELLO: &str = "com.alga.test.sched-hello";
    const P3: &str = "com.alga.test.sched-p3";
    let fixture = Fixture::new();
    let endpoint = |path: &str| json!({"method": "GET", "path": path, "handler": "dist/main", "schedulable": true});
    let hello = fixture.bundle_with(
        HELLO,
        "1.0.0",
        "hello",
        json!({"api": {"endpoints": [endpoint("/")]}}),
    );
    let hello_v2 = fixture.bundle(HELLO, "2.0.0", "hello");
    let p3 = fixture.bundle_with(
        P3,
        "1.0.0",
        "faulty-p3",
        json!({"capabilities": ["cap:http.fetch"], "api": {"endpoints": [endpoint("/count")]}}),
    );
    let node = fixture.start(&["--tenant-rate", "0"]);
    for bundle in [&hello, &hello_v2, &p3] {
        admin_ok(&node, &["publish", path(bundle)]);
    }
    install(&node, HELLO, "1.0.0", "t", &[], &[]);
    install(&node, P3, "1.0.0", "t", &[], &[]);
    let run_now = |extension: &str, id: &str| {
        let route = format!("tenants/t/schedules/{extension}/{id}/run");
        let (status, answer) = admin_json(&node, "POST", &route, None);
        assert_eq!(status, 200, "{answer}");
        answer["run"].clone()
    };
    let mut ids = Vec::new();
    for (extension, endpoint) in [(HELLO, "GET /"), (P3, "GET /count")] {
        let (status, answer) = admin_json(
            &node,
            "POST",
            &format!("tenants/t/schedules/{extension}"),
            Some(json!({"endpoint": endpoint, "cron": "0 0 1 1 *"})),
        );
        assert_eq!(status, 201, "{answer}");
        let id = answer["schedule"]["id"].as_str().unwrap().to_owned();
        let run = run_now(extension, &id);
        assert_eq!(
            (run["status"].as_u64(), run["outcome"].as_str()),
            (Some(200), Some("success")),
            "{extension}: {run}"
        );
        ids.push(id);
    }
    wait_until(
        Duration::from_secs(10),
        "both runs' execution-log rows",
        || {
            let rows = execution_rows(&node, "t", 50);
            [HELLO, P3].iter().all(|extension| {
                rows.iter().any(|r| {
                    r["extension"] == *extension && r["trigger"] == "schedule" && r["status"] == 200
                })
            })
        },
    );
    // A version that no longer declares the endpoint: the run fails, saying why.
    admin_ok(
        &node,
        &["update", HELLO, "--version", "2.0.0", "--tenant", "t"],
    );
    let run = run_now(HELLO, &ids[0]);
    assert_eq!(run["status"], 404, "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("schedulable"),
        "{run}"
    );
    let (_, answer) = admin_json(
        &node,
        "GET",
        &format!("tenants/t/schedules/{HELLO}/{}", ids[0]),
        None,
    );
    assert_eq!(answer["schedule"]["last_run_status"], "error", "{answer}");
}
