//! Registry replication over real processes on 127.0.0.1: one primary and edges, each its own
//! `alga-edge serve` with its own data directory. Edges follow the primary, keep serving from
//! their replica when it is gone (reporting staleness), refuse admin writes, catch up when it
//! returns; generations roll over and fresh and lagging edges converge to the primary's rows.

use std::path::Path;
use std::time::{Duration, Instant};

use alga_edge_e2e::metrics::scrape;
use alga_edge_e2e::publishing::{
    ADMIN_TOKEN, FAULTY, Fixture, HELLO, admin_call, admin_json, admin_ok, call, install, json,
    path, shared_token as token,
};
use alga_edge_e2e::{Node, client, request, send, wait_until};
use alga_edge_registry::Registry;
use serde_json::Value;

/// Edges of these tests report themselves degraded once their replica is 1.5 s old.
const MAX_STALENESS: [&str; 2] = ["--max-staleness-ms", "1500"];

/// GET `route` on `node` with a token of `tenant`: status.
fn status(node: &Node, route: &str, tenant: &str) -> u16 {
    call(node, "GET", route, &token(tenant), "").0
}

/// GET `route` on `node` without credentials (health probes): status and JSON answer.
fn probe(node: &Node, route: &str) -> (u16, Value) {
    let (status, _, text) = request(node, "GET", route, &[], None);
    (status, json(&text))
}

#[test]
fn edges_follow_the_primary_and_keep_serving_through_its_outage() {
    let fixture = Fixture::new();
    let root = fixture.dir.path().to_owned();
    let hello = fixture.bundle(HELLO, "1.0.0", "hello");
    let faulty = fixture.bundle(FAULTY, "1.0.0", "faulty");
    let primary = fixture.start_node_in(&root.join("primary"), &[]);
    let primary_url = primary.base();
    let port = primary_url.rsplit(':').next().unwrap().to_owned();
    let edges = [
        fixture.start_edge_in(&root.join("edge-1"), &primary_url, 200, &MAX_STALENESS),
        fixture.start_edge_in(&root.join("edge-2"), &primary_url, 200, &MAX_STALENESS),
    ];
    let route = format!("/api/ext/{HELLO}/greet");
    for edge in &edges {
        assert_eq!(
            status(edge, &route, "tenant-a"),
            404,
            "nothing installed yet"
        );
    }

    // Publish + install on the primary: both edges serve it.
    admin_ok(&primary, &["publish", path(&hello)]);
    admin_ok(&primary, &["publish", path(&faulty)]);
    let installed_at = Instant::now();
    install(&primary, HELLO, "1.0.0", "tenant-a", &[], &[]);
    for (i, edge) in edges.iter().enumerate() {
        wait_until(Duration::from_secs(20), "the install on an edge", || {
            status(edge, &route, "tenant-a") == 200
        });
        println!(
            "edge-{} serves the new install {} ms after it was installed on the primary",
            i + 1,
            installed_at.elapsed().as_millis()
        );
    }
    assert_eq!(
        status(&edges[0], &route, "tenant-b"),
        404,
        "other tenants still 404"
    );

    // Admin on an edge: reads answer from the replica, writes are refused naming the primary.
    let (code, answer) = admin_json(&edges[0], "GET", "tenants/tenant-a/installs", None);
    assert_eq!(code, 200);
    assert_eq!(answer["installs"][0]["extension"], HELLO);
    let (code, answer) = admin_json(
        &edges[0],
        "POST",
        "tenants/tenant-b/installs",
        Some(serde_json::json!({"extension": HELLO, "version": "1.0.0"})),
    );
    assert_eq!(code, 409, "{answer}");
    assert_eq!(answer["error"], "read_only_replica");
    assert!(
        answer["message"].as_str().unwrap().contains(&primary_url),
        "{answer}"
    );

    // kill -9 the primary: the edges keep serving and report their staleness.
    primary.kill_hard();
    for edge in &edges {
        for _ in 0..5 {
            assert_eq!(status(edge, &route, "tenant-a"), 200);
        }
        wait_until(
            Duration::from_secs(10),
            "the edge to report degraded",
            || probe(edge, "/healthz").1["status"] == "degraded",
        );
        let (code, health) = probe(edge, "/healthz");
        assert_eq!(code, 200, "liveness stays up: {health}");
        // Degraded means older than 1.5 s; whole milliseconds truncate 1500.4 ms to 1500.
        assert!(
            health["last_sync_age_ms"].as_u64().unwrap() >= 1500,
            "{health}"
        );
        assert!(health["last_error"].is_string(), "{health}");
        assert_eq!(probe(edge, "/readyz").0, 503);
        let (metrics, _) = scrape(edge);
        assert!(metrics.contains("alga_replica_degraded 1"), "{metrics}");
        assert_eq!(
            status(edge, &route, "tenant-a"),
            200,
            "still serving while degraded"
        );
    }
    // New installs queue nowhere: the edge refuses them.
    let (code, _) = admin_json(
        &edges[1],
        "POST",
        "tenants/tenant-a/installs",
        Some(serde_json::json!({"extension": FAULTY, "version": "1.0.0"})),
    );
    assert_eq!(code, 409);

    // The primary comes back on the same address: the edges catch up with what it does next.
    let listen = format!("127.0.0.1:{port}");
    let primary = fixture.start_node_in(&root.join("primary"), &["--listen", &listen]);
    install(&primary, FAULTY, "1.0.0", "tenant-a", &[], &[]);
    let faulty_route = format!("/api/ext/{FAULTY}/");
    for edge in &edges {
        wait_until(Duration::from_secs(20), "an edge to catch up", || {
            status(edge, &faulty_route, "tenant-a") == 200
        });
        wait_until(Duration::from_secs(10), "the edge to report ok", || {
            probe(edge, "/healthz").1["status"] == "ok"
        });
        assert_eq!(probe(edge, "/readyz").0, 200);
    }

    // An edge restarted while the primary is down serves from its local replica.
    primary.kill_hard();
    let [edge1, edge2] = edges;
    edge1.kill_hard();
    let edge1 = fixture.start_edge_in(&root.join("edge-1"), &primary_url, 200, &MAX_STALENESS);
    assert_eq!(status(&edge1, &route, "tenant-a"), 200);
    assert_eq!(status(&edge1, &faulty_route, "tenant-a"), 200);
    assert_eq!(status(&edge1, &route, "tenant-b"), 404);
    let (_, health) = probe(&edge1, "/healthz");
    assert!(health["last_error"].is_string(), "{health}");
    drop(edge2);
}

/// Installs and uninstalls for `tenants` through the primary's admin API (`rounds` each).
fn churn(primary: &Node, tenants: &[String], rounds: usize) {
    for _ in 0..rounds {
        for tenant in tenants {
            let route = format!("tenants/{tenant}/installs");
            let (code, answer) = admin_json(
                primary,
                "POST",
                &route,
                Some(serde_json::json!({
                    "extension": HELLO, "version": "1.0.0",
                    "config": {"padding": "x".repeat(2000)},
                })),
            );
            assert_eq!(code, 201, "{answer}");
            let (code, _) = admin_json(primary, "DELETE", &format!("{route}/{HELLO}"), None);
            assert_eq!(code, 200);
        }
    }
}

fn rows(node: &Node, tenants: &[String]) -> Vec<Value> {
    let mut all = vec![admin_json(node, "GET", "extensions", None).1];
    for tenant in tenants {
        all.push(admin_json(node, "GET", &format!("tenants/{tenant}/installs"), None).1);
    }
    all
}

#[test]
fn generations_roll_over_and_fresh_and_lagging_edges_converge() {
    let fixture = Fixture::new();
    let root = fixture.dir.path().to_owned();
    let hello = fixture.bundle(HELLO, "1.0.0", "hello");
    let max_frames = 24;
    let primary = fixture.start_node_in(
        &root.join("primary"),
        &[
            "--replication-max-wal-frames",
            &max_frames.to_string(),
            "--replication-keep-generations",
            "1000",
        ],
    );
    let primary_url = primary.base();
    admin_ok(&primary, &["publish", path(&hello)]);
    let generation = |node: &Node| probe(node, "/healthz").1["generation"].as_u64().unwrap();
    let first = generation(&primary);

    // An edge that syncs the start, then goes away.
    let lagging_dir = root.join("edge-lagging");
    let lagging = fixture.start_edge_in(&lagging_dir, &primary_url, 200, &MAX_STALENESS);
    let tenants: Vec<String> = (0..6).map(|i| format!("tenant-{i}")).collect();
    churn(&primary, &tenants[..1], 1);
    wait_until(
        Duration::from_secs(20),
        "the lagging edge's first sync",
        || rows(&lagging, &tenants) == rows(&primary, &tenants),
    );
    lagging.kill_hard();

    // Enough writes, in bursts, to roll over several generations; the WAL stays bounded.
    let wal = root.join("primary/registry.db-wal");
    let mut largest_wal = 0;
    for burst in 0..6 {
        churn(&primary, &tenants, 2);
        largest_wal = largest_wal.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        for tenant in &tenants[..burst % tenants.len() + 1] {
            admin_json(
                &primary,
                "POST",
                &format!("tenants/{tenant}/installs"),
                Some(serde_json::json!({"extension": HELLO, "version": "1.0.0"})),
            );
            admin_json(
                &primary,
                "DELETE",
                &format!("tenants/{tenant}/installs/{HELLO}"),
                None,
            );
        }
        largest_wal = largest_wal.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        std::thread::sleep(Duration::from_millis(600));
    }
    // The final state: some tenants keep an install.
    for tenant in &tenants[..3] {
        let (code, _) = admin_json(
            &primary,
            "POST",
            &format!("tenants/{tenant}/installs"),
            Some(
                serde_json::json!({"extension": HELLO, "version": "1.0.0", "config": {"k": tenant}}),
            ),
        );
        assert_eq!(code, 201);
    }
    let last = generation(&primary);
    // Every completed generation's frames are archived: together they are everything written.
    let archived: u64 = std::fs::read_dir(root.join("primary/registry.db-replication"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".frames"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    println!(
        "generations {first} -> {last}; largest WAL seen {largest_wal} bytes; {archived} bytes of frames written in all"
    );
    assert!(
        last >= first + 3,
        "expected several generations, got {first} -> {last}"
    );
    let frame = 4096 + 24;
    assert!(
        archived > 3 * largest_wal && archived > 3 * max_frames * frame,
        "the WAL ({largest_wal} bytes at most) must stay far below all that was written ({archived})"
    );

    // A fresh edge and the lagging one (restarted on its old replica) converge to the
    // primary's exact rows.
    let fresh = fixture.start_edge_in(&root.join("edge-fresh"), &primary_url, 200, &MAX_STALENESS);
    let lagging = fixture.start_edge_in(&lagging_dir, &primary_url, 200, &MAX_STALENESS);
    let expected = rows(&primary, &tenants);
    for (name, edge) in [("fresh", &fresh), ("lagging", &lagging)] {
        wait_until(Duration::from_secs(30), name, || {
            rows(edge, &tenants) == expected
        });
        assert_eq!(
            generation(edge),
            generation(&primary),
            "{name} is on the current generation"
        );
        assert_eq!(
            status(edge, &format!("/api/ext/{HELLO}/"), "tenant-0"),
            200,
            "{name}"
        );
        assert_eq!(
            status(edge, &format!("/api/ext/{HELLO}/"), "tenant-5"),
            404,
            "{name}"
        );
    }
}

/// A KV admin call on tenant-a's default bucket of hello, with a raw body: status and answer.
fn kv_call(node: &Node, method: &str, key: &str, body: Option<&str>) -> (u16, Value) {
    let route = format!("tenants/tenant-a/kv/{HELLO}/default/{key}");
    admin_call(
        node,
        method,
        &route,
        Some(ADMIN_TOKEN),
        &[],
        body.map(Into::into),
    )
}

#[test]
fn kv_writes_at_an_edge_go_through_the_primary_and_the_writer_reads_them_at_once() {
    let fixture = Fixture::new();
    let root = fixture.dir.path().to_owned();
    let primary = fixture.start_node_in(&root.join("primary"), &[]);
    let url = primary.base();
    // edge-1 never syncs on its own (a minute), so only the forwarded write's sync can show it
    // the value; edge-2 syncs every 300 ms.
    let edge1 = fixture.start_edge_in(&root.join("edge-1"), &url, 60_000, &MAX_STALENESS);
    let edge2 = fixture.start_edge_in(&root.join("edge-2"), &url, 300, &MAX_STALENESS);
    let key = "greeting%2Fwith%20slash";

    assert_eq!(kv_call(&edge1, "GET", key, None).0, 404);
    let (code, answer) = kv_call(&edge1, "PUT", key, Some("hello from edge-1"));
    assert_eq!(code, 200, "{answer}");
    // Read-your-writes on the writing edge, with no wait.
    let (code, answer) = kv_call(&edge1, "GET", key, None);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["value"], "hello from edge-1");
    assert_eq!(answer["key"], "greeting/with slash");
    // The write happened on the primary …
    assert_eq!(
        kv_call(&primary, "GET", key, None).1["value"],
        "hello from edge-1"
    );
    // … and reaches the other edge with its next sync.
    let waited = wait_until(Duration::from_secs(10), "edge-2 to see the write", || {
        kv_call(&edge2, "GET", key, None).1["value"] == "hello from edge-1"
    });
    println!("edge-2 saw the KV write {} ms later", waited.as_millis());

    // A delete at edge-2: gone there at once; edge-1 (not synced since) still has its copy.
    let (code, answer) = kv_call(&edge2, "DELETE", key, None);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["deleted"], true);
    assert_eq!(kv_call(&edge2, "GET", key, None).0, 404);
    assert_eq!(kv_call(&primary, "GET", key, None).0, 404);
    assert_eq!(
        kv_call(&edge1, "GET", key, None).0,
        200,
        "edge-1 reads its replica"
    );

    // Without the primary a KV write fails clearly (nothing is queued), reads still work.
    kv_call(&edge2, "PUT", "kept", Some("v"));
    primary.kill_hard();
    let (code, answer) = kv_call(&edge2, "PUT", "lost", Some("v"));
    assert_eq!(code, 502, "{answer}");
    assert_eq!(answer["error"], "primary_unavailable");
    assert_eq!(kv_call(&edge2, "GET", "kept", None).1["value"], "v");
}

/// The KV generation the primary in `dir` is at (its generation log's `generation` file).
fn kv_generation(dir: &std::path::Path) -> u64 {
    std::fs::read_to_string(dir.join("kv.db-replication/generation"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// What one writer saw: writes acknowledged (key, value), refusals, stale reads of its own
/// acknowledged writes.
#[derive(Default)]
struct WriterLog {
    acknowledged: Vec<(String, String)>,
    refused: Vec<String>,
    stale_reads: Vec<String>,
}

#[test]
fn concurrent_kv_writes_through_an_edge_are_never_refused_while_generations_roll() {
    const KV_EXT: &str = "com.alga.test.kv-load";
    const WRITERS: usize = 32;
    // Every writer writes at least this many keys, and all keep writing until the primary
    // has rolled over several KV generations (at most MAX_PER_WRITER each).
    const MIN_PER_WRITER: usize = 12;
    const MAX_PER_WRITER: usize = 400;
    const ROLLS: u64 = 3;
    let fixture = Fixture::new();
    let root = fixture.dir.path().to_owned();
    let bundle = fixture.bundle_with(
        KV_EXT,
        "1.0.0",
        "capabilities",
        // The sample imports every capability; only KV is granted.
        serde_json::json!({"capabilities": [
            "cap:storage.kv", "cap:config.get", "cap:secrets.get", "cap:log.emit", "cap:http.fetch"
        ]}),
    );
    let limits = [
        "--tenant-concurrency",
        "256",
        "--extension-concurrency",
        "256",
        "--timeout-ms",
        "30000",
        "--kv-max-keys",
        "100000",
    ];
    // A tiny WAL bound: under this load the KV database rolls to a new generation every
    // rollover check (4 per second).
    let mut primary_args = vec!["--replication-max-wal-frames", "16"];
    primary_args.extend_from_slice(&limits);
    let primary_dir = root.join("primary");
    let primary = fixture.start_node_in(&primary_dir, &primary_args);
    admin_ok(&primary, &["publish", path(&bundle)]);
    install(
        &primary,
        KV_EXT,
        "1.0.0",
        "tenant-a",
        &["cap:storage.kv"],
        &[],
    );
    let edge = fixture.start_edge_in(&root.join("edge"), &primary.base(), 200, &limits);
    let bearer = token("tenant-a");
    wait_until(
        Duration::from_secs(20),
        "the edge to serve the install",
        || {
            call(
                &edge,
                "GET",
                &format!("/api/ext/{KV_EXT}/context"),
                &bearer,
                "",
            )
            .0 == 200
        },
    );
    let kv_route = |key: &str| format!("/api/ext/{KV_EXT}/kv?bucket=load&key={key}");

    let first = kv_generation(&primary_dir);
    let done = std::sync::atomic::AtomicBool::new(false);
    let logs: Vec<WriterLog> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                // Nodes stay on this thread; writers reach the edge by URL.
                let (done, kv_route) = (&done, &kv_route);
                let (base, authorization) = (edge.base(), format!("Bearer {bearer}"));
                scope.spawn(move || {
                    let agent = client();
                    let headers = [("authorization", authorization.as_str())];
                    let call = |method: &str, key: &str, body: Option<&str>| {
                        let url = format!("{base}{}", kv_route(key));
                        let body = body.map(|b| b.as_bytes().to_vec());
                        let (code, _, text) = send(&agent, method, &url, &headers, body);
                        (code, text)
                    };
                    let mut log = WriterLog::default();
                    for i in 0..MAX_PER_WRITER {
                        if i >= MIN_PER_WRITER && done.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let (key, value) = (format!("w{w}-k{i}"), format!("value {w}/{i}"));
                        let (code, text) = call("PUT", &key, Some(&value));
                        if code != 200 || json(&text)["ok"] != true {
                            log.refused.push(format!("{key}: {code} {text}"));
                            continue;
                        }
                        // Read-your-writes: the edge answered after its replica had the write.
                        let (code, text) = call("GET", &key, None);
                        if code != 200 || json(&text)["value"] != value.as_str() {
                            log.stale_reads.push(format!("{key}: {code} {text}"));
                        }
                        log.acknowledged.push((key, value));
                    }
                    log
                })
            })
            .collect();
        // Bounded: the writers stop by themselves after MAX_PER_WRITER writes each.
        let started = Instant::now();
        while kv_generation(&primary_dir) < first + ROLLS
            && started.elapsed() < Duration::from_secs(120)
            && !writers.iter().all(|w| w.is_finished())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let last = kv_generation(&primary_dir);
    let acknowledged: Vec<&(String, String)> = logs.iter().flat_map(|l| &l.acknowledged).collect();
    let refused: Vec<&String> = logs.iter().flat_map(|l| &l.refused).collect();
    let stale: Vec<&String> = logs.iter().flat_map(|l| &l.stale_reads).collect();
    println!(
        "{WRITERS} writers: {} writes acknowledged, {} refused, {} stale reads; KV generations {first} -> {last}",
        acknowledged.len(),
        refused.len(),
        stale.len()
    );
    assert!(
        refused.is_empty(),
        "{} writes refused, first: {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
    assert!(
        stale.is_empty(),
        "{} acknowledged writes not read back at the edge, first: {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
    assert!(
        last >= first + ROLLS,
        "the primary rolled KV generations {first} -> {last} only"
    );
    assert!(acknowledged.len() >= WRITERS * MIN_PER_WRITER);

    // Every acknowledged write is there afterwards, at the edge and at the primary.
    for node in [&edge, &primary] {
        let missing: Vec<&String> = acknowledged
            .iter()
            .filter(|(key, value)| {
                let (code, text) = call(node, "GET", &kv_route(key), &bearer, "");
                code != 200 || json(&text)["value"] != value.as_str()
            })
            .map(|(key, _)| key)
            .collect();
        assert!(
            missing.is_empty(),
            "{} acknowledged writes missing at {}, first: {:?}",
            missing.len(),
            node.base(),
            &missing[..missing.len().min(5)]
        );
    }
}

/// Runs `work` on a one-thread runtime (the registry's API is async; these tests are not).
fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}

/// What a build before `executions.db` left at `db` (a primary's `registry.db` or an edge's
/// `local.db`): the registry schema with one execution-log row and its usage window.
fn seed_legacy_log(db: &Path, tenant: &str, request_id: &str) {
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    block_on(async {
        drop(Registry::open(db).await.unwrap());
        let database = libsql::Builder::new_local(db).build().await.unwrap();
        let conn = database.connect().unwrap();
        conn.execute(
            "INSERT INTO extension_execution_log (tenant_id, extension_name, version,
               content_hash, request_id, status, duration_ms, created_at)
             VALUES (?1, 'com.example.old', '0.9.0', 'sha256:00', ?2, 200, 3, unixepoch())",
            libsql::params![tenant, request_id],
        )
        .await
        .unwrap();
        conn.execute(
            "INSERT INTO extension_quota_usage VALUES
               (?1, 'com.example.old', unixepoch() - unixepoch() % 3600, 1, 3, 0)",
            libsql::params![tenant],
        )
        .await
        .unwrap();
    });
}

/// Rows left in `table` of the database at `db`.
fn rows_left(db: &Path, table: &str) -> i64 {
    block_on(async {
        let database = libsql::Builder::new_local(db).build().await.unwrap();
        let conn = database.connect().unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        let mut rows = conn
            .query(&format!("SELECT count(*) FROM {table}"), ())
            .await
            .unwrap();
        rows.next().await.unwrap().unwrap().get(0).unwrap()
    })
}

/// Builds before `executions.db` logged into the registry database (a primary's, replicated
/// with every generation) or an edge's `local.db`. Upgraded nodes move those rows into their
/// own `executions.db` when they start: the admin API still shows them, the old places are
/// emptied (the edge's file is removed), and nothing is counted twice.
#[test]
fn upgraded_nodes_move_the_old_execution_log_into_their_own_database() {
    let fixture = Fixture::new();
    let root = fixture.dir.path().to_owned();
    seed_legacy_log(
        &root.join("primary/registry.db"),
        "tenant-old",
        "old-on-primary",
    );
    seed_legacy_log(&root.join("edge/local.db"), "tenant-old", "old-on-edge");
    let primary = fixture.start_node_in(&root.join("primary"), &[]);
    let edge = fixture.start_edge_in(&root.join("edge"), &primary.base(), 200, &MAX_STALENESS);

    for (node, request_id) in [(&primary, "old-on-primary"), (&edge, "old-on-edge")] {
        let (code, answer) = admin_json(node, "GET", "tenants/tenant-old/executions", None);
        assert_eq!(code, 200, "{answer}");
        let ids: Vec<_> = answer["executions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["request_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [request_id], "{answer}");
        let (code, answer) = admin_json(node, "GET", "tenants/tenant-old/usage", None);
        assert_eq!(code, 200, "{answer}");
        assert_eq!(answer["usage"][0]["requests"], 1, "{answer}");
        assert_eq!(answer["usage"].as_array().unwrap().len(), 1, "{answer}");
    }
    let registry = root.join("primary/registry.db");
    assert_eq!(rows_left(&registry, "extension_execution_log"), 0);
    assert_eq!(rows_left(&registry, "extension_quota_usage"), 0);
    assert!(root.join("primary/executions.db").is_file());
    assert!(!root.join("edge/local.db").exists());
    assert!(root.join("edge/executions.db").is_file());

    // A restart finds nothing more to move and keeps what moved.
    drop(primary);
    let primary = fixture.start_node_in(&root.join("primary"), &[]);
    let (_, answer) = admin_json(&primary, "GET", "tenants/tenant-old/usage", None);
    assert_eq!(answer["usage"][0]["requests"], 1, "{answer}");
}
