//! Registry-backed resolution: a tenant's enabled install of an extension, with its bundle's
//! signature verified before the first use in this process and its bytes verified against the
//! content hash whenever they are read.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use alga_edge_registry::Registry;
use alga_edge_registry::bundle::{self, ContentHash, UnpackLimits};
use alga_edge_registry::signing::{BundleClaims, TrustBundle};
use alga_edge_registry::store::BundleStore;

use super::{ComponentSource, Resolved};
use crate::engine::LoadError;
use crate::error::GatewayError;

/// Verified (claims, signature) pairs kept before the set is reset; bounds memory on a node
/// that sees very many versions over its lifetime.
const VERIFIED_CAP: usize = 100_000;

/// Resolves installs through the registry.
pub struct InstalledCatalog {
    registry: Arc<Registry>,
    store: BundleStore,
    trust: Option<Arc<TrustBundle>>,
    verified: Mutex<HashSet<String>>,
}

impl InstalledCatalog {
    /// A catalog over `registry` whose bundles live in `store`; `trust` verifies their
    /// signatures (without one, nothing from the registry runs).
    pub fn new(
        registry: Arc<Registry>,
        store: BundleStore,
        trust: Option<Arc<TrustBundle>>,
    ) -> Self {
        Self {
            registry,
            store,
            trust,
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// `tenant`'s enabled install of `extension_id`, its signature verified; `None` when the
    /// tenant has no enabled install.
    pub async fn resolve(
        &self,
        tenant: &str,
        extension_id: &str,
    ) -> Result<Option<Resolved>, GatewayError> {
        let Some(found) = self
            .registry
            .resolve(tenant, extension_id)
            .await
            .map_err(|e| GatewayError::Internal(format!("registry: {e}")))?
        else {
            return Ok(None);
        };
        let claims = BundleClaims {
            content_hash: found.content_hash.to_string(),
            name: found.install.extension.clone(),
            version: found.install.version.clone(),
            publisher: found.publisher.clone(),
        };
        self.verify_signature(&claims, &found.signature)?;
        Ok(Some(Resolved {
            tenant: tenant.to_owned(),
            extension_id: found.install.extension,
            install_id: found.install.id,
            version: found.install.version,
            version_id: found.version_id,
            content_hash: found.content_hash.to_string(),
            source: ComponentSource::Bundle,
        }))
    }

    /// The component of the bundle `content_hash`, read from the store (which re-checks the
    /// hash) and unpacked with the same limits as at publish.
    pub async fn component(&self, content_hash: &str) -> Result<Arc<[u8]>, LoadError> {
        let source_error = |reason: String| LoadError::Source {
            hash: content_hash.to_owned(),
            reason,
        };
        let hash = ContentHash::parse(content_hash).map_err(|e| source_error(e.to_string()))?;
        let bytes = self
            .store
            .get(&hash)
            .await
            .map_err(|e| source_error(e.to_string()))?
            .ok_or_else(|| source_error("the bundle is missing from the bundle store".into()))?;
        // Decompression and untar are CPU work: keep them off the request workers.
        tokio::task::spawn_blocking(move || {
            let files =
                bundle::unpack(&bytes, UnpackLimits::default()).map_err(|e| e.to_string())?;
            let component: Arc<[u8]> = files.component().map_err(|e| e.to_string())?.into();
            Ok::<_, String>(component)
        })
        .await
        .map_err(|e| source_error(format!("reader task failed: {e}")))?
        .map_err(source_error)
    }

    fn verify_signature(&self, claims: &BundleClaims, signature: &str) -> Result<(), GatewayError> {
        let key = format!(
            "{}\n{}\n{}\n{}\n{}",
            claims.content_hash, claims.name, claims.version, claims.publisher, signature
        );
        if self.lock().contains(&key) {
            return Ok(());
        }
        let trust = self.trust.as_ref().ok_or_else(|| {
            GatewayError::BundleRejected(
                "this node has no trust bundle (SIGNING_TRUST_BUNDLE), so it runs no registry bundle"
                    .into(),
            )
        })?;
        trust.verify(signature, claims).map_err(|e| {
            tracing::error!(content_hash = %claims.content_hash, extension = %claims.name,
                version = %claims.version, "stored bundle failed signature verification: {e}");
            GatewayError::BundleRejected(format!(
                "{}@{}: signature rejected: {e}",
                claims.name, claims.version
            ))
        })?;
        let mut verified = self.lock();
        if verified.len() >= VERIFIED_CAP {
            verified.clear();
        }
        verified.insert(key);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}
