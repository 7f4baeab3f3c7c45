//! Extension KV data as the host uses it: reads from the node's copy (the primary's database,
//! or an edge's replica), writes applied on the primary. An edge forwards each write to the
//! primary and syncs its replica before answering, so the writer reads its own write.
//! The `wasi:keyvalue` capability (a later issue) sits on top of this.

use std::sync::Arc;

use alga_edge_registry::RegistryError;
use alga_edge_registry::kv::{KvScope, KvStore};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::replication::REPLICATION_PREFIX;

/// One write, as an edge forwards it to the primary.
#[derive(Debug, Serialize, Deserialize)]
pub struct KvWrite {
    /// Whose key.
    #[serde(flatten)]
    pub scope: KvScope,
    /// The key.
    pub key: String,
    /// The new value (base64); `None` deletes the key.
    pub value_b64: Option<String>,
}

/// A KV failure.
#[derive(Debug, thiserror::Error)]
pub enum KvServiceError {
    /// The store refused (bad key, too large, database).
    #[error(transparent)]
    Store(#[from] RegistryError),
    /// The primary could not apply a forwarded write.
    #[error("the primary could not apply the write: {0}")]
    Forward(String),
}

impl KvServiceError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Store(e) => e.status(),
            Self::Forward(_) => 502,
        }
    }
}

/// Where writes go on an edge.
pub struct Forwarder {
    /// The primary's base URL.
    pub primary: String,
    /// The sync token.
    pub token: String,
    /// HTTP client.
    pub http: reqwest::Client,
}

/// KV reads and writes for this node.
pub struct KvService {
    store: Arc<KvStore>,
    forward: Option<Forwarder>,
}

impl KvService {
    /// KV on `store`; `forward` sends writes to the primary (edges).
    pub fn new(store: Arc<KvStore>, forward: Option<Forwarder>) -> Self {
        Self { store, forward }
    }

    /// The store.
    pub fn store(&self) -> &Arc<KvStore> {
        &self.store
    }

    /// Reads `key` from this node's copy.
    pub async fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Vec<u8>>, KvServiceError> {
        Ok(self.store.get(scope, key).await?)
    }

    /// Keys of the scope.
    pub async fn keys(&self, scope: &KvScope, limit: u32) -> Result<Vec<String>, KvServiceError> {
        Ok(self.store.keys(scope, limit).await?)
    }

    /// Sets (`Some`) or deletes (`None`) `key`; on an edge, through the primary, then syncs.
    /// Returns whether the key existed (deletes) or `true` (puts).
    pub async fn write(
        &self,
        scope: &KvScope,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<bool, KvServiceError> {
        let Some(forward) = &self.forward else {
            return self.apply(scope, key, value).await;
        };
        let body = KvWrite {
            scope: scope.clone(),
            key: key.to_owned(),
            value_b64: value.map(|v| BASE64.encode(v)),
        };
        let url = format!(
            "{}{REPLICATION_PREFIX}kv/write",
            forward.primary.trim_end_matches('/')
        );
        let response = forward
            .http
            .post(&url)
            .bearer_auth(&forward.token)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).map_err(|e| KvServiceError::Forward(e.to_string()))?)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| KvServiceError::Forward(format!("{url}: {e}")))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(KvServiceError::Forward(format!(
                "{url} answered {status}: {text}"
            )));
        }
        let existed = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["existed"].as_bool())
            .unwrap_or(true);
        // Read-your-writes: the replica has the write before the caller hears back.
        if !self.store.sync().await? {
            return Err(KvServiceError::Forward(
                "the write was applied but the replica could not sync it back".into(),
            ));
        }
        Ok(existed)
    }

    /// Applies a write to the primary's store.
    pub async fn apply(
        &self,
        scope: &KvScope,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<bool, KvServiceError> {
        Ok(match value {
            Some(value) => {
                self.store.put(scope, key, value).await?;
                true
            }
            None => self.store.delete(scope, key).await?,
        })
    }
}
