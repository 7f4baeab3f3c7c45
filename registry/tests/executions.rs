//! The node-local execution store: rows and usage windows, pruning, and adopting the log an
//! older build kept in the registry database.

use alga_edge_registry::{ExecutionRecord, ExecutionStore, Registry, USAGE_WINDOW_SECS};

async fn store() -> (tempfile::TempDir, ExecutionStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ExecutionStore::open(&dir.path().join("executions.db"))
        .await
        .unwrap();
    (dir, store)
}

fn record(tenant: &str, request_id: &str, status: u16, at: i64) -> ExecutionRecord {
    ExecutionRecord {
        tenant: tenant.into(),
        extension: "com.acme.hello".into(),
        version: "1.0.0".into(),
        content_hash: format!("sha256:{}", "0".repeat(64)),
        request_id: request_id.into(),
        status,
        duration_ms: 7,
        error_class: (status >= 400).then(|| "extension_trap".to_string()),
        at,
        logs: if status >= 400 {
            vec![
                "ERROR sample: it broke".into(),
                "INFO sample: \"quoted\"\nline".into(),
            ]
        } else {
            Vec::new()
        },
        egress_bytes: u64::from(status),
        trigger: (status < 400).then(|| "schedule".to_string()),
        trace_id: (status < 400).then(|| "0af7651916cd43dd8448eb211c80319c".to_string()),
    }
}

#[tokio::test]
async fn execution_records_land_in_the_log_and_the_usage_windows() {
    let (_dir, store) = store().await;
    let hour = USAGE_WINDOW_SECS;
    let records = [
        record("a", "r1", 200, 10 * hour + 5),
        record("a", "r2", 502, 10 * hour + 6),
        record("a", "r3", 200, 11 * hour),
        record("b", "r4", 200, 10 * hour),
    ];
    store.record_executions(&records).await.unwrap();
    store.record_executions(&records[..1]).await.unwrap();

    let logged = store.executions("a", None, 10).await.unwrap();
    let ids: Vec<_> = logged
        .iter()
        .map(|l| l.record.request_id.as_str())
        .collect();
    assert_eq!(ids, ["r1", "r3", "r2", "r1"], "newest first");
    assert_eq!(logged[2].record, records[1]);
    assert_eq!(store.executions("a", None, 1).await.unwrap().len(), 1);
    assert!(
        store
            .executions("a", Some("other"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let usage = store.usage("a", 0).await.unwrap();
    let windows: Vec<_> = usage
        .iter()
        .map(|u| (u.window_start, u.requests, u.cpu_ms, u.egress_bytes))
        .collect();
    assert_eq!(
        windows,
        [(10 * hour, 3, 21, 200 + 502 + 200), (11 * hour, 1, 7, 200)]
    );

    assert_eq!(store.prune_executions(11 * hour).await.unwrap(), 4);
    assert_eq!(store.executions("a", None, 10).await.unwrap().len(), 1);
    assert_eq!(store.usage("a", 0).await.unwrap().len(), 1);

    // A batch of several multi-row INSERTs (the full-size one reused) and a remainder keeps
    // every row, whole and in order.
    let many: Vec<_> = (0..650)
        .map(|i| record("c", &format!("m{i}"), 200, 20 * hour))
        .collect();
    store.record_executions(&many).await.unwrap();
    let logged = store.executions("c", None, 1000).await.unwrap();
    assert_eq!(logged.len(), 650);
    assert_eq!(logged[0].record.request_id, "m649");
    assert_eq!(logged[649].record.request_id, "m0");
    assert_eq!(logged[649 - 401].record, many[401]);
    assert_eq!(store.usage("c", 0).await.unwrap()[0].requests, 650);
}

async fn count(conn: &libsql::Connection, table: &str) -> i64 {
    let mut rows = conn
        .query(&format!("SELECT count(*) FROM {table}"), ())
        .await
        .unwrap();
    rows.next().await.unwrap().unwrap().get(0).unwrap()
}

/// Older builds logged into the registry database (replicated, so every generation copied
/// every row). Adoption moves the rows in order, adds the usage windows once, and empties the
/// registry's tables; a second adoption moves nothing.
#[tokio::test]
async fn the_log_an_older_build_kept_in_the_registry_moves_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let legacy_path = dir.path().join("registry.db");
    let registry = Registry::open(&legacy_path).await.unwrap();
    let raw = |path: std::path::PathBuf| async move {
        let db = libsql::Builder::new_local(path).build().await.unwrap();
        let conn = db.connect().unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        (db, conn)
    };
    let hour = USAGE_WINDOW_SECS;
    // What an older build left: more rows than one adoption chunk, and usage windows.
    let (_legacy_db, legacy) = raw(legacy_path.clone()).await;
    legacy.execute("BEGIN", ()).await.unwrap();
    for i in 1..=3000_i64 {
        legacy
            .execute(
                "INSERT INTO extension_execution_log (tenant_id, extension_name, version,
                   content_hash, request_id, status, duration_ms, error_class, created_at, logs,
                   egress_bytes, trigger, trace_id)
                 VALUES (?1, 'com.acme.hello', '1.0.0', 'sha256:00', ?2, 200, 7, NULL, ?3,
                   '[\"INFO x\"]', 3, NULL, NULL)",
                libsql::params![
                    if i % 2 == 0 { "a" } else { "b" },
                    format!("old{i}"),
                    10 * hour
                ],
            )
            .await
            .unwrap();
    }
    for (tenant, extension, window, requests) in [
        ("a", "com.acme.hello", 10 * hour, 1500),
        ("b", "com.acme.hello", 10 * hour, 1500),
        ("a", "com.acme.other", 11 * hour, 5),
    ] {
        legacy
            .execute(
                "INSERT INTO extension_quota_usage VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                libsql::params![
                    tenant,
                    extension,
                    window,
                    requests,
                    requests * 7,
                    requests * 3
                ],
            )
            .await
            .unwrap();
    }
    legacy.execute("COMMIT", ()).await.unwrap();

    // A crash after the store added one window but before the registry's row went: the
    // journal lists it, so it must not be added a second time.
    let store = ExecutionStore::open(&dir.path().join("executions.db"))
        .await
        .unwrap();
    let other = |request_id: &str| ExecutionRecord {
        extension: "com.acme.other".into(),
        ..record("a", request_id, 200, 11 * hour)
    };
    store
        .record_executions(&[other("new1"), other("new2")])
        .await
        .unwrap();
    let (_store_db, store_raw) = raw(dir.path().join("executions.db")).await;
    store_raw
        .execute(
            "INSERT INTO adopted_quota_usage VALUES ('a', 'com.acme.other', ?1, 5, 35, 15)",
            libsql::params![11 * hour],
        )
        .await
        .unwrap();

    assert_eq!(store.adopt(&registry, "registry.db").await.unwrap(), 3000);
    let a = store.executions("a", None, 5000).await.unwrap();
    assert_eq!(a.len(), 1502);
    let old: Vec<_> = a
        .iter()
        .filter(|l| l.record.request_id.starts_with("old"))
        .collect();
    assert_eq!(old.len(), 1500);
    // In their old order, after the rows logged here before.
    assert_eq!(old[0].record.request_id, "old3000");
    assert_eq!(old[1499].record.request_id, "old2");
    assert_eq!((old[1499].id, old[0].id), (4, 3002));
    assert_eq!(old[0].record.logs, ["INFO x"]);
    assert_eq!(old[0].record.egress_bytes, 3);
    assert_eq!(store.executions("b", None, 5000).await.unwrap().len(), 1500);
    let windows = |usage: Vec<alga_edge_registry::Usage>| -> Vec<_> {
        usage
            .into_iter()
            .map(|u| (u.extension, u.window_start, u.requests, u.cpu_ms))
            .collect()
    };
    let expected = vec![
        ("com.acme.hello".to_string(), 10 * hour, 1500, 10500),
        ("com.acme.other".to_string(), 11 * hour, 2, 14),
    ];
    assert_eq!(windows(store.usage("a", 0).await.unwrap()), expected);
    assert_eq!(count(&legacy, "extension_execution_log").await, 0);
    assert_eq!(count(&legacy, "extension_quota_usage").await, 0);
    assert_eq!(count(&store_raw, "adopted_quota_usage").await, 0);

    // Nothing is left to move, and nothing is added twice.
    assert_eq!(store.adopt(&registry, "registry.db").await.unwrap(), 0);
    assert_eq!(windows(store.usage("a", 0).await.unwrap()), expected);
    // New rows take ids after the moved ones.
    store.record_executions(&[other("new3")]).await.unwrap();
    let newest = &store.executions("a", None, 1).await.unwrap()[0];
    assert_eq!(newest.record.request_id, "new3");
    assert_eq!(newest.id, old[0].id + 1);
}

/// A crash after the store took a chunk but before the registry deleted it: the store's record
/// of the last old id it holds keeps those rows from being added twice.
#[tokio::test]
async fn an_adoption_cut_short_resumes_after_the_rows_it_took() {
    let dir = tempfile::tempdir().unwrap();
    let legacy_path = dir.path().join("registry.db");
    let registry = Registry::open(&legacy_path).await.unwrap();
    let legacy = libsql::Builder::new_local(&legacy_path)
        .build()
        .await
        .unwrap();
    let legacy = legacy.connect().unwrap();
    for i in 1..=10 {
        legacy
            .execute(
                "INSERT INTO extension_execution_log (tenant_id, extension_name, version,
                   content_hash, request_id, status, duration_ms, created_at)
                 VALUES ('a', 'com.acme.hello', '1.0.0', 'sha256:00', ?1, 200, 7, 0)",
                libsql::params![format!("old{i}")],
            )
            .await
            .unwrap();
    }
    let store_path = dir.path().join("executions.db");
    let store = ExecutionStore::open(&store_path).await.unwrap();
    let taken: Vec<_> = (1..=4)
        .map(|i| record("a", &format!("old{i}"), 200, 0))
        .collect();
    store.record_executions(&taken).await.unwrap();
    let raw = libsql::Builder::new_local(&store_path)
        .build()
        .await
        .unwrap();
    raw.connect()
        .unwrap()
        .execute("INSERT INTO adopted_log VALUES ('registry.db', 4)", ())
        .await
        .unwrap();

    assert_eq!(store.adopt(&registry, "registry.db").await.unwrap(), 6);
    let ids: Vec<_> = store
        .executions("a", None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.record.request_id)
        .collect();
    let expected: Vec<_> = (1..=10).rev().map(|i| format!("old{i}")).collect();
    assert_eq!(ids, expected, "each old row once, in order");
    assert_eq!(count(&legacy, "extension_execution_log").await, 0);
}
