//! KV key and bucket handling (registry/src/kv.rs, host/capabilities/src/kv_service.rs). The
//! first byte picks the form:
//! - 0: a forwarded write (`KvWrite` JSON, edge → primary): the operation it asks for, sent
//!   again, is read back as the same operation;
//! - else: a sequence of operations on a real KV database (libsql, in a temporary folder),
//!   checked against a model after each step. Keys and bucket, tenant and extension names are
//!   arbitrary text (separators, `..`, NUL, over-long): a scope sees exactly its own keys, an
//!   invalid key or scope is refused, counters count, compare-and-swap and revisioned puts
//!   follow their rules, listings are the model's keys in byte order.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use alga_edge_capabilities::kv_service::KvWrite;
use alga_edge_registry::kv::{KvScope, KvStore, MAX_KEY_BYTES};

/// Runs one input.
pub fn run(data: &[u8]) {
    match data.split_first() {
        Some((&0, json)) => forwarded(json),
        Some((_, ops)) => {
            // Opened outside the sequence: opening blocks on the runtime itself.
            let store = store();
            crate::runtime().block_on(sequence(store, ops));
        }
        None => {}
    }
}

fn forwarded(json: &[u8]) {
    let Ok(write) = serde_json::from_slice::<KvWrite>(json) else {
        return;
    };
    let Ok(op) = write.op() else {
        return;
    };
    let again = serde_json::to_vec(&KvWrite::new(&write.scope, &write.key, &op, write.max_keys))
        .expect("a write serialises");
    let read: KvWrite = serde_json::from_slice(&again).expect("a write's own JSON parses");
    assert_eq!(read.scope, write.scope);
    assert_eq!(read.key, write.key);
    assert_eq!(read.max_keys, write.max_keys);
    assert_eq!(read.op(), Ok(op), "the forwarded operation changed");
}

/// The database all sequences run on (one per process); each sequence removes its keys.
fn store() -> &'static KvStore {
    static STORE: OnceLock<(tempfile::TempDir, KvStore)> = OnceLock::new();
    let (_, store) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = crate::runtime()
            .block_on(KvStore::open(&dir.path().join("kv.db")))
            .expect("a new KV database opens");
        (dir, store)
    });
    store
}

/// Reads the operation bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// A length byte, then that many bytes, as text.
    fn text(&mut self) -> Option<String> {
        let len = usize::from(self.byte()?).min(self.0.len());
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(String::from_utf8_lossy(text).into_owned())
    }

    fn u64(&mut self) -> Option<u64> {
        let mut bytes = [0; 8];
        for b in &mut bytes {
            *b = self.byte()?;
        }
        Some(u64::from_le_bytes(bytes))
    }
}

/// Tenants, extensions and buckets a sequence picks from: look-alikes that must stay apart,
/// and names at and past the limits.
const TENANTS: [&str; 4] = ["t1", "t1\0", "T1", ""];
const EXTENSIONS: [&str; 4] = ["com.acme.a", "com.acme.a/..", "com.acme.b", "com.acme"];
const BUCKETS: [&str; 4] = ["default", "default/", "../default", ""];

/// What the database should hold: (tenant, extension, bucket, key) → (value, revision; 0 when
/// the write that set it did not say).
type Model = BTreeMap<(String, String, String, String), (Vec<u8>, u64)>;

fn entry_of(scope: &KvScope, key: &str) -> (String, String, String, String) {
    (
        scope.tenant.clone(),
        scope.extension.clone(),
        scope.bucket.clone(),
        key.to_owned(),
    )
}

fn scope_valid(scope: &KvScope) -> bool {
    [&scope.tenant, &scope.extension, &scope.bucket]
        .iter()
        .all(|part| !part.is_empty() && part.len() <= 128 && !part.contains('\0'))
}

fn key_valid(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES && !key.contains('\0')
}

async fn sequence(store: &KvStore, ops: &[u8]) {
    let mut model = Model::new();
    let mut input = Reader(ops);
    for _ in 0..64 {
        let (Some(op), Some(pick)) = (input.byte(), input.byte()) else {
            break;
        };
        let mut scope = KvScope {
            tenant: TENANTS[usize::from(pick & 3)].into(),
            extension: EXTENSIONS[usize::from((pick >> 2) & 3)].into(),
            bucket: BUCKETS[usize::from((pick >> 4) & 3)].into(),
        };
        if pick >> 6 == 3 {
            // A name from the input, past the limit when long.
            let name = input.text().unwrap_or_default().repeat(3);
            scope.bucket = name;
        }
        let key = input.text().unwrap_or_default();
        let valid = scope_valid(&scope) && key_valid(&key);
        let entry = entry_of(&scope, &key);
        match op % 8 {
            0 => {
                let value = input.text().unwrap_or_default().into_bytes();
                let result = store.put(&scope, &key, &value, None).await;
                assert_eq!(result.is_ok(), valid, "put {entry:?}: {result:?}");
                if result.is_ok() {
                    model.insert(entry, (value, 0));
                }
            }
            1 => {
                let result = store.delete(&scope, &key).await;
                assert_eq!(result.is_ok(), valid, "delete {entry:?}: {result:?}");
                if let Ok(existed) = result {
                    assert_eq!(existed, model.remove(&entry).is_some(), "delete {entry:?}");
                }
            }
            2 => {
                let delta = i128::from(input.u64().unwrap_or(1) as i64);
                let result = store.increment(&scope, &key, delta, None).await;
                let current = match model.get(&entry) {
                    None => Some(0),
                    Some((value, _)) => std::str::from_utf8(value)
                        .ok()
                        .and_then(|t| t.parse::<i128>().ok())
                        .filter(|v| (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(v)),
                };
                let expected = current
                    .and_then(|c| c.checked_add(delta))
                    .filter(|n| (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(n))
                    .filter(|_| valid);
                assert_eq!(
                    result.as_ref().ok(),
                    expected.as_ref(),
                    "increment {entry:?}"
                );
                if let Some(next) = expected {
                    model.insert(entry, (next.to_string().into_bytes(), 0));
                }
            }
            3 => {
                let expected = match input.byte() {
                    Some(b) if b & 1 == 1 => Some(input.text().unwrap_or_default().into_bytes()),
                    _ => model.get(&entry).map(|(v, _)| v.clone()),
                };
                let value = input.text().unwrap_or_default().into_bytes();
                let result = store
                    .compare_and_swap(&scope, &key, expected.as_deref(), &value, None)
                    .await;
                assert_eq!(result.is_ok(), valid, "swap {entry:?}: {result:?}");
                let holds = model.get(&entry).map(|(v, _)| v) == expected.as_ref();
                if let Ok(swapped) = result {
                    assert_eq!(swapped, holds, "swap {entry:?}");
                    if swapped {
                        model.insert(entry, (value, 0));
                    }
                }
            }
            4 => {
                let value = input.text().unwrap_or_default().into_bytes();
                let current = model.get(&entry).map(|(_, r)| *r);
                let if_revision = match input.byte() {
                    Some(0) => None,
                    Some(1) => input.u64(),
                    _ => current.filter(|r| *r != 0),
                };
                let result = store
                    .put_revised(&scope, &key, &value, if_revision, None)
                    .await;
                assert_eq!(result.is_ok(), valid, "put_revised {entry:?}: {result:?}");
                if let Ok(revision) = result {
                    // Unrevisioned writes (0 in the model) have a revision the model does not
                    // know: only a revisioned key's own revision can be expected to match.
                    let known = current.filter(|r| *r != 0);
                    match (if_revision, revision) {
                        (Some(wanted), None) => {
                            assert!(known.is_none_or(|r| r != wanted), "conflict on {entry:?}")
                        }
                        (Some(wanted), Some(_)) => {
                            assert!(current.is_some(), "revision {wanted} of an absent key");
                            assert!(known.is_none_or(|r| r == wanted));
                        }
                        (None, None) => panic!("an unconditional put conflicted"),
                        (None, Some(_)) => {}
                    }
                    if let Some(revision) = revision {
                        assert!(revision > 0, "revision 0");
                        assert!(revision > known.unwrap_or(0), "revisions went back");
                        model.insert(entry, (value, revision));
                    }
                }
            }
            5 => {
                let result = store.get_entry(&scope, &key).await;
                assert_eq!(result.is_ok(), valid, "get {entry:?}: {result:?}");
                if let Ok(found) = result {
                    let modelled = model.get(&entry);
                    assert_eq!(found.as_ref().map(|(v, _)| v), modelled.map(|(v, _)| v));
                    if let (Some((_, r)), Some((_, known))) = (&found, modelled)
                        && *known != 0
                    {
                        assert_eq!(r, known, "revision of {entry:?}");
                    }
                }
            }
            6 => {
                let result = store.keys(&scope, 1000).await;
                assert_eq!(result.is_ok(), scope_valid(&scope), "keys {scope:?}");
                if let Ok(keys) = result {
                    let modelled: Vec<&String> = model
                        .keys()
                        .filter(|(t, e, b, _)| {
                            (t, e, b) == (&scope.tenant, &scope.extension, &scope.bucket)
                        })
                        .map(|(_, _, _, k)| k)
                        .collect();
                    assert_eq!(
                        keys.iter().collect::<Vec<_>>(),
                        modelled,
                        "keys of {scope:?}"
                    );
                }
            }
            _ => {
                let max = u64::from(input.byte().unwrap_or(1) % 4);
                let value = input.text().unwrap_or_default().into_bytes();
                let held = model
                    .keys()
                    .filter(|(t, e, _, _)| (t, e) == (&scope.tenant, &scope.extension))
                    .count() as u64;
                let room = model.contains_key(&entry) || held < max;
                let result = store.put(&scope, &key, &value, Some(max)).await;
                assert_eq!(
                    result.is_ok(),
                    valid && room,
                    "put {entry:?} max {max}: {result:?}"
                );
                if result.is_ok() {
                    model.insert(entry, (value, 0));
                }
            }
        }
    }
    // Leave the database as the sequence found it.
    for (tenant, extension, bucket, key) in model.keys() {
        let scope = KvScope {
            tenant: tenant.clone(),
            extension: extension.clone(),
            bucket: bucket.clone(),
        };
        assert_eq!(
            store.delete(&scope, key).await.ok(),
            Some(true),
            "{scope:?} {key:?}"
        );
    }
}
