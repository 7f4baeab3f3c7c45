//! Extension KV data as the host uses it: reads from the node's copy (the primary's database,
//! or an edge's replica), writes applied on the primary (group-committed, see
//! [`alga_edge_registry::kv`]). An edge forwards each write to the primary and, before
//! answering, waits until its replica has caught up with the position the primary reports for
//! the write, so the writer reads its own write; concurrent writers share the syncs that get
//! them there. The `wasi:keyvalue` capability ([`crate::kv`]) and the admin API sit on this.

use std::sync::Arc;

use alga_edge_http::trace_context;
use alga_edge_registry::RegistryError;
pub use alga_edge_registry::kv::{Applied, KvOp, KvOutcome, WRITE_DEADLINE};
use alga_edge_registry::kv::{KvEntry, KvScope, KvStore};
use alga_edge_registry::replication::{CatchUp, PrimaryClient};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// One write, as an edge forwards it to the primary.
#[derive(Debug, Serialize, Deserialize)]
pub struct KvWrite {
    /// Whose key.
    #[serde(flatten)]
    pub scope: KvScope,
    /// The key.
    pub key: String,
    /// The new value (base64); with neither this nor `increment`, the key is deleted.
    #[serde(default)]
    pub value_b64: Option<String>,
    /// Add this to the decimal counter at the key.
    #[serde(default)]
    pub increment: Option<i128>,
    /// Set `value_b64` only over this current value (compare-and-swap).
    #[serde(default)]
    pub swap: Option<KvSwapGuard>,
    /// A revisioned put (Alga's `storage.put`): store `value_b64` and answer with the key's new
    /// revision. Absent (`false`) in every other write, so older edges' JSON stays valid.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub put: bool,
    /// With `put`: store only if the key currently has this revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_revision: Option<u64>,
    /// Refuse a new key once the tenant × extension holds this many.
    #[serde(default)]
    pub max_keys: Option<u64>,
}

/// The condition of a compare-and-swap write.
#[derive(Debug, Serialize, Deserialize)]
pub struct KvSwapGuard {
    /// The value the key must hold (base64); `None`: the key must be absent.
    pub expected_b64: Option<String>,
}

impl KvWrite {
    /// What an edge sends the primary for `op` on `key`.
    pub fn new(scope: &KvScope, key: &str, op: &KvOp, max_keys: Option<u64>) -> Self {
        Self {
            scope: scope.clone(),
            key: key.to_owned(),
            value_b64: match op {
                KvOp::Set(value) | KvOp::Swap { value, .. } | KvOp::Put { value, .. } => {
                    Some(BASE64.encode(value))
                }
                _ => None,
            },
            increment: match op {
                KvOp::Increment(delta) => Some(*delta),
                _ => None,
            },
            swap: match op {
                KvOp::Swap { expected, .. } => Some(KvSwapGuard {
                    expected_b64: expected.as_ref().map(|v| BASE64.encode(v)),
                }),
                _ => None,
            },
            put: matches!(op, KvOp::Put { .. }),
            if_revision: match op {
                KvOp::Put { if_revision, .. } => *if_revision,
                _ => None,
            },
            max_keys,
        }
    }

    /// The operation this write asks for.
    pub fn op(&self) -> Result<KvOp, String> {
        let decode = |name: &str, value: &str| {
            BASE64
                .decode(value)
                .map_err(|e| format!("{name} is not base64: {e}"))
        };
        if self.put {
            if self.increment.is_some() || self.swap.is_some() {
                return Err("a put takes value_b64 and if_revision, not increment or swap".into());
            }
            let value = self.value_b64.as_deref().ok_or("a put needs value_b64")?;
            return Ok(KvOp::Put {
                value: decode("value_b64", value)?,
                if_revision: self.if_revision,
            });
        }
        if self.if_revision.is_some() {
            return Err("if_revision needs put".into());
        }
        match (&self.value_b64, self.increment, &self.swap) {
            (Some(_), Some(_), _) | (None, Some(_), Some(_)) => {
                Err("give value_b64 (with or without swap) or increment, not both".into())
            }
            (None, None, Some(_)) => Err("a swap needs value_b64".into()),
            (Some(value), None, None) => decode("value_b64", value).map(KvOp::Set),
            (Some(value), None, Some(guard)) => Ok(KvOp::Swap {
                expected: guard
                    .expected_b64
                    .as_deref()
                    .map(|expected| decode("expected_b64", expected))
                    .transpose()?,
                value: decode("value_b64", value)?,
            }),
            (None, Some(delta), None) => Ok(KvOp::Increment(delta)),
            (None, None, None) => Ok(KvOp::Delete),
        }
    }
}

/// A KV failure.
#[derive(Debug, thiserror::Error)]
pub enum KvServiceError {
    /// The store refused (bad key, too large, database).
    #[error(transparent)]
    Store(#[from] RegistryError),
    /// The primary refused a forwarded write (its message).
    #[error("{0}")]
    Refused(String),
    /// The primary could not be reached or failed.
    #[error("the primary could not apply the write: {0}")]
    Forward(String),
}

impl KvServiceError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Store(e) => e.status(),
            Self::Refused(_) => 400,
            Self::Forward(_) => 502,
        }
    }
}

/// KV reads and writes for this node.
pub struct KvService {
    store: Arc<KvStore>,
    forward: Option<PrimaryClient>,
}

impl KvService {
    /// KV on `store`; `forward` sends writes to the primary (edges).
    pub fn new(store: Arc<KvStore>, forward: Option<PrimaryClient>) -> Self {
        Self { store, forward }
    }

    /// The store.
    pub fn store(&self) -> &Arc<KvStore> {
        &self.store
    }

    /// Reads `key` from this node's copy.
    pub async fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Vec<u8>>, KvServiceError> {
        let _span = trace_context::span("kv.get");
        Ok(self.store.get(scope, key).await?)
    }

    /// Keys of the scope.
    pub async fn keys(&self, scope: &KvScope, limit: u32) -> Result<Vec<String>, KvServiceError> {
        let _span = trace_context::span("kv.keys");
        Ok(self.store.keys(scope, limit).await?)
    }

    /// Reads `key` and its revision from this node's copy.
    pub async fn get_entry(
        &self,
        scope: &KvScope,
        key: &str,
    ) -> Result<Option<(Vec<u8>, u64)>, KvServiceError> {
        let _span = trace_context::span("kv.get");
        Ok(self.store.get_entry(scope, key).await?)
    }

    /// Entries (key, value, revision) of the scope from this node's copy, sorted by key,
    /// starting after `after_key`, at most `limit`.
    pub async fn list_entries(
        &self,
        scope: &KvScope,
        after_key: Option<&str>,
        limit: u32,
    ) -> Result<Vec<KvEntry>, KvServiceError> {
        let _span = trace_context::span("kv.list");
        Ok(self.store.list_entries(scope, after_key, limit).await?)
    }

    /// Applies `op` to `key`; on an edge, through the primary, then waits for the replica to
    /// have the write so the caller reads it.
    pub async fn write(
        &self,
        scope: &KvScope,
        key: &str,
        op: KvOp,
        max_keys: Option<u64>,
    ) -> Result<KvOutcome, KvServiceError> {
        let mut span = trace_context::span("kv.write");
        span.attribute("alga.kv.forwarded", self.forward.is_some());
        let Some(forward) = &self.forward else {
            return self.apply(scope, key, op, max_keys).await;
        };
        let is_put = matches!(op, KvOp::Put { .. });
        let body = KvWrite::new(scope, key, &op, max_keys);
        let body = serde_json::to_vec(&body).map_err(|e| KvServiceError::Forward(e.to_string()))?;
        let answer = forward
            .forward_kv_write(body)
            .await
            .map_err(|e| KvServiceError::Forward(e.to_string()))?;
        // Taken after the primary answered: a sync started later has the write.
        let ticket = self.store.replica().map_or(0, |r| r.ticket());
        let (status, text) = (answer.status, answer.text);
        let url = format!("the primary {}", forward.base());
        if status.is_client_error() {
            // The primary judged the write itself (bad key, limits): the caller's error.
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(KvServiceError::Refused(message));
        }
        if !status.is_success() {
            return Err(KvServiceError::Forward(format!(
                "{url} answered {status}: {text}"
            )));
        }
        let outcome: KvOutcome = serde_json::from_str(&text)
            .map_err(|e| KvServiceError::Forward(format!("{url} answered {text:?}: {e}")))?;
        if is_put && !matches!(outcome, KvOutcome::Revision(_)) {
            // A primary that predates revisioned puts applied it as a plain set.
            return Err(KvServiceError::Forward(format!(
                "{url} does not support revisioned puts (answered {text}); upgrade the primary"
            )));
        }
        // Read-your-writes: the replica has the write before the caller hears back.
        let target = answer
            .position
            .map_or(CatchUp::SyncAfter(ticket), CatchUp::Position);
        let deadline = tokio::time::Instant::now() + WRITE_DEADLINE;
        if let Err(e) = self.store.catch_up(target, deadline).await {
            return Err(KvServiceError::Forward(format!(
                "the write was applied but the replica could not sync it back: {e}"
            )));
        }
        Ok(outcome)
    }

    /// Applies a write to the primary's store.
    pub async fn apply(
        &self,
        scope: &KvScope,
        key: &str,
        op: KvOp,
        max_keys: Option<u64>,
    ) -> Result<KvOutcome, KvServiceError> {
        Ok(self.apply_at(scope, key, op, max_keys).await?.outcome)
    }

    /// [`apply`](Self::apply), with where the primary's KV history stood once the write was
    /// committed (for the edge that forwarded it).
    pub async fn apply_at(
        &self,
        scope: &KvScope,
        key: &str,
        op: KvOp,
        max_keys: Option<u64>,
    ) -> Result<Applied, KvServiceError> {
        Ok(self.store.apply(scope, key, op, max_keys).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an edge sends for `op`, read back by the primary.
    fn forwarded(op: &KvOp) -> KvOp {
        let scope = KvScope {
            tenant: "t".into(),
            extension: "e".into(),
            bucket: "b".into(),
        };
        let json = serde_json::to_string(&KvWrite::new(&scope, "k", op, None)).unwrap();
        serde_json::from_str::<KvWrite>(&json)
            .unwrap()
            .op()
            .unwrap()
    }

    #[test]
    fn forwarded_writes_keep_their_operation() {
        for op in [
            KvOp::Set(b"v".to_vec()),
            KvOp::Delete,
            KvOp::Increment(-42),
            KvOp::Increment(i128::from(u64::MAX)),
            KvOp::Swap {
                expected: None,
                value: b"new".to_vec(),
            },
            KvOp::Swap {
                expected: Some(b"old".to_vec()),
                value: b"new".to_vec(),
            },
            KvOp::Put {
                value: b"v".to_vec(),
                if_revision: None,
            },
            KvOp::Put {
                value: Vec::new(),
                if_revision: Some(7),
            },
        ] {
            assert_eq!(forwarded(&op), op);
        }
    }

    #[test]
    fn contradictory_writes_are_refused() {
        let write = |json: &str| serde_json::from_str::<KvWrite>(json).unwrap().op();
        let scope = r#""tenant":"t","extension":"e","bucket":"b","key":"k""#;
        assert!(write(&format!(r#"{{{scope},"value_b64":"dg==","increment":1}}"#)).is_err());
        assert!(write(&format!(r#"{{{scope},"swap":{{"expected_b64":null}}}}"#)).is_err());
        assert!(write(&format!(r#"{{{scope},"value_b64":"not base64!"}}"#)).is_err());
        assert!(write(&format!(r#"{{{scope},"put":true}}"#)).is_err());
        assert!(
            write(&format!(
                r#"{{{scope},"put":true,"value_b64":"dg==","increment":1}}"#
            ))
            .is_err()
        );
        assert!(
            write(&format!(
                r#"{{{scope},"value_b64":"dg==","if_revision":3}}"#
            ))
            .is_err()
        );
    }

    #[test]
    fn old_write_forms_stay_valid_and_only_puts_carry_the_new_fields() {
        let write = |json: &str| serde_json::from_str::<KvWrite>(json).unwrap().op().unwrap();
        let scope = r#""tenant":"t","extension":"e","bucket":"b","key":"k""#;
        assert_eq!(
            write(&format!(
                r#"{{{scope},"value_b64":"dg==","increment":null,"swap":null,"max_keys":null}}"#
            )),
            KvOp::Set(b"v".to_vec())
        );
        assert_eq!(write(&format!("{{{scope}}}")), KvOp::Delete);
        assert_eq!(
            write(&format!(
                r#"{{{scope},"value_b64":"dg==","put":true,"if_revision":9}}"#
            )),
            KvOp::Put {
                value: b"v".to_vec(),
                if_revision: Some(9)
            }
        );
        let scope = KvScope {
            tenant: "t".into(),
            extension: "e".into(),
            bucket: "b".into(),
        };
        let set = serde_json::to_value(KvWrite::new(&scope, "k", &KvOp::Set(b"v".to_vec()), None))
            .unwrap();
        assert!(
            set.get("put").is_none() && set.get("if_revision").is_none(),
            "{set}"
        );
    }

    #[test]
    fn revision_outcomes_round_trip() {
        for outcome in [KvOutcome::Revision(Some(12)), KvOutcome::Revision(None)] {
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(serde_json::from_str::<KvOutcome>(&json).unwrap(), outcome);
        }
    }
}
