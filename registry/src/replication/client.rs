//! The one edge-to-primary client: it owns the replication API's URLs (the libsql sync
//! endpoints, KV write forwarding, bundle fetching) and the sync token, so no other code
//! builds a primary URL.

use std::time::Duration;

use super::WalPosition;
use crate::bundle::ContentHash;

/// Path prefix of the primary's replication API.
pub const REPLICATION_PREFIX: &str = "/replication/v1/";

/// Header of the primary's answer to a forwarded KV write: the [`WalPosition`] of the KV
/// database once the write was committed (`generation:frame`); the edge waits for its replica
/// to get there. Older primaries do not send it.
pub const POSITION_HEADER: &str = "x-alga-kv-position";

/// How long a forwarded write (KV, schedules) may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a bundle download may take.
const BUNDLE_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// A call to the primary failed before it answered, or answered something unusable.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {message}")]
pub struct PrimaryCallError {
    /// The URL called.
    pub url: String,
    /// What went wrong.
    pub message: String,
}

/// The primary's answer to a forwarded write.
#[derive(Debug)]
pub struct ForwardedWrite {
    /// Its status.
    pub status: reqwest::StatusCode,
    /// Its body.
    pub text: String,
    /// Where the KV database stood after the write ([`POSITION_HEADER`]), when the primary
    /// says.
    pub position: Option<WalPosition>,
}

/// An edge's client of its primary's replication API.
#[derive(Clone)]
pub struct PrimaryClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl PrimaryClient {
    /// A client of the primary at `base` (its base URL) authenticating with the sync `token`.
    pub fn new(base: &str, token: &str, http: reqwest::Client) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        }
    }

    /// The primary's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The sync token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The HTTP client (for libsql's sync, which takes the URL and token separately).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn url(&self, path: &str) -> String {
        format!("{}{REPLICATION_PREFIX}{path}", self.base)
    }

    /// The registry database's sync endpoint.
    pub fn registry_sync_url(&self) -> String {
        self.url("registry")
    }

    /// The KV database's sync endpoint.
    pub fn kv_sync_url(&self) -> String {
        self.url("kv")
    }

    /// Sends a KV write (a JSON body) to the primary; its answer, whatever the status (the
    /// caller judges a refusal).
    pub async fn forward_kv_write(
        &self,
        body: Vec<u8>,
    ) -> Result<ForwardedWrite, PrimaryCallError> {
        self.forward_write("kv/write", body).await
    }

    /// Sends a schedule write (a JSON body) to the primary; its answer, whatever the status.
    pub async fn forward_schedule_write(
        &self,
        body: Vec<u8>,
    ) -> Result<ForwardedWrite, PrimaryCallError> {
        self.forward_write("schedules/write", body).await
    }

    /// POSTs a forwarded write to `path` of the replication API.
    async fn forward_write(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<ForwardedWrite, PrimaryCallError> {
        let url = self.url(path);
        let error = |message: String| PrimaryCallError {
            url: url.clone(),
            message,
        };
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .timeout(WRITE_TIMEOUT)
            .send()
            .await
            .map_err(|e| error(e.to_string()))?;
        let status = response.status();
        let position = response
            .headers()
            .get(POSITION_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        let text = response.text().await.map_err(|e| error(e.to_string()))?;
        Ok(ForwardedWrite {
            status,
            text,
            position,
        })
    }

    /// The bundle with content hash `hash`, checked to hash to it.
    pub async fn fetch_bundle(&self, hash: &ContentHash) -> Result<Vec<u8>, PrimaryCallError> {
        let url = self.url(&format!("bundles/{hash}"));
        let error = |message: String| PrimaryCallError {
            url: url.clone(),
            message,
        };
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .timeout(BUNDLE_FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| error(e.to_string()))?;
        if !response.status().is_success() {
            return Err(error(format!("answered {}", response.status())));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| error(e.to_string()))?
            .to_vec();
        let got = ContentHash::of(&bytes);
        if &got != hash {
            return Err(error(format!(
                "the primary sent bytes hashing to {got}, not {hash}"
            )));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_every_url_under_the_replication_prefix() {
        let client = PrimaryClient::new("http://127.0.0.1:9/", "t", crate::http_client());
        assert_eq!(
            client.registry_sync_url(),
            "http://127.0.0.1:9/replication/v1/registry"
        );
        assert_eq!(client.kv_sync_url(), "http://127.0.0.1:9/replication/v1/kv");
    }

    #[test]
    fn positions_order_by_generation_then_frame_and_round_trip_as_text() {
        let at = |generation, frame| WalPosition { generation, frame };
        assert!(at(3, 900) < at(4, 0));
        assert!(at(4, 1) < at(4, 2));
        assert_eq!("12:345".parse::<WalPosition>(), Ok(at(12, 345)));
        assert_eq!(
            at(12, 345).to_string().parse::<WalPosition>(),
            Ok(at(12, 345))
        );
        for bad in ["", "12", "12:", ":3", "a:1", "1:2:3", "-1:2"] {
            assert!(bad.parse::<WalPosition>().is_err(), "{bad}");
        }
    }
}
