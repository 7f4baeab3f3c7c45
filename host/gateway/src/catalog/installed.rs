//! Registry-backed resolution: a tenant's enabled install of an extension, with its bundle's
//! signature verified before the first use in this process and its bytes verified against the
//! content hash whenever they are read.

use std::collections::{BTreeSet, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use alga_edge_registry::Registry;
use alga_edge_registry::bundle::{self, ContentHash, UnpackLimits};
use alga_edge_registry::signing::{BundleClaims, TrustBundle};
use alga_edge_registry::store::BundleStore;

use super::{ComponentSource, Resolved, install_allowlist};
use crate::error::GatewayError;
use alga_edge_engine::LoadError;
use alga_edge_registry::replication::PrimaryClient;

/// Verified (claims, signature) pairs kept before the set is reset; bounds memory on a node
/// that sees very many versions over its lifetime.
const VERIFIED_CAP: usize = 100_000;

/// (tenant, extension) resolutions remembered between registry changes.
const RESOLVED_CAP: usize = 10_000;

type ResolvedCache = LruCache<(String, String), (u64, Option<Arc<Resolved>>)>;

/// Resolves installs through the registry. Resolutions (found or not) are cached until the
/// registry's change count moves, so the hot path does no SQL while the catalog is unchanged.
pub struct InstalledCatalog {
    registry: Arc<Registry>,
    store: BundleStore,
    trust: Option<Arc<TrustBundle>>,
    verified: Mutex<HashSet<String>>,
    resolved: Mutex<ResolvedCache>,
    fetcher: Option<BundleFetcher>,
}

/// Where an edge gets bundles its store lacks: the primary's replication API. Fetched bytes are
/// checked against the content hash before they are stored; the local store is kept under a
/// size bound (least recently written bundles go first).
pub struct BundleFetcher {
    /// The edge's client of its primary.
    pub primary: PrimaryClient,
    /// The local bundle directory to bound, when the store is local.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Its bound, in bytes.
    pub cache_bytes: u64,
    /// Told the hash of every bundle fetched (the node extracts its UI then, once); a full
    /// channel drops the news, and the UI is extracted at its first view instead.
    pub fetched: Option<tokio::sync::mpsc::Sender<ContentHash>>,
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
            resolved: Mutex::new(LruCache::new(
                NonZeroUsize::new(RESOLVED_CAP).expect("non-zero"),
            )),
            fetcher: None,
        }
    }

    /// Fetches missing bundles with `fetcher` (edges).
    pub fn with_fetcher(mut self, fetcher: BundleFetcher) -> Self {
        self.fetcher = Some(fetcher);
        self
    }

    /// The registry's change count: resolutions stay valid while it stays the same.
    pub fn change_count(&self) -> u64 {
        self.registry.change_count()
    }

    /// `tenant`'s enabled install of `extension_id`, its signature verified; `None` when the
    /// tenant has no enabled install. Shared with the cache: a request copies nothing of it.
    pub async fn resolve(
        &self,
        tenant: &str,
        extension_id: &str,
    ) -> Result<Option<Arc<Resolved>>, GatewayError> {
        // Read the change count before the registry, so a change racing this lookup leaves the
        // entry stale rather than wrong.
        let changes = self.registry.change_count();
        let key = (tenant.to_owned(), extension_id.to_owned());
        if let Some((seen, resolved)) = self.cache().get(&key)
            && *seen == changes
        {
            return Ok(resolved.clone());
        }
        let mut resolved = self.lookup(tenant, extension_id).await?.map(Arc::new);
        // An edge may simply not have synced the install yet: pull once (rate-limited) and look
        // again before answering 404.
        if resolved.is_none() && self.registry.replica().is_some() {
            match self.registry.sync_on_demand().await {
                Ok(true) => {
                    let changes = self.registry.change_count();
                    resolved = self.lookup(tenant, extension_id).await?.map(Arc::new);
                    self.cache().put(key, (changes, resolved.clone()));
                    return Ok(resolved);
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("on-demand sync failed: {e}"),
            }
        }
        self.cache().put(key, (changes, resolved.clone()));
        Ok(resolved)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ResolvedCache> {
        self.resolved.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn lookup(
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
        Ok(Some(
            Resolved {
                tenant: tenant.into(),
                extension_id: found.install.extension.into(),
                policy: found.install.policy,
                endpoints: found.endpoints,
                grants: found.install.grants,
                config: Arc::new(found.install.config),
                sealed_secrets: found.sealed_secrets.map(Arc::from),
                install_id: found.install.id.into(),
                version: found.install.version,
                version_id: found.version_id,
                content_hash: found.content_hash.to_string(),
                source: ComponentSource::Bundle,
                generation: 0,
                egress_allow: install_allowlist(None),
            }
            .finish(),
        ))
    }

    /// The published version of `extension_id` whose bundle is `content_hash`, signature
    /// verified, to run for `tenant` (the runner API, where the platform already resolved the
    /// install). The tenant's install in this registry, when there is one, supplies the install
    /// id and policy overrides; a disabled one refuses. `None` when no such version exists.
    /// Beside it, the canonical capabilities the version's manifest requests (what the caller
    /// may grant).
    pub async fn resolve_bundle(
        &self,
        tenant: &str,
        extension_id: &str,
        content_hash: &str,
        install_id: Option<&str>,
    ) -> Result<Option<(Resolved, BTreeSet<String>)>, GatewayError> {
        let registry_error =
            |e: alga_edge_registry::RegistryError| GatewayError::Internal(format!("registry: {e}"));
        let Some(version) = self
            .registry
            .version_by_hash(extension_id, content_hash)
            .await
            .map_err(registry_error)?
        else {
            return Ok(None);
        };
        let install = self
            .registry
            .install_of(tenant, extension_id)
            .await
            .map_err(registry_error)?;
        if install.as_ref().is_some_and(|i| !i.enabled) {
            return Err(GatewayError::UnknownExtension(extension_id.to_owned()));
        }
        let claims = BundleClaims {
            content_hash: version.content_hash.to_string(),
            name: version.name.clone(),
            version: version.version.clone(),
            publisher: version.manifest.publisher.clone(),
        };
        self.verify_signature(&claims, &version.signature)?;
        // Secrets are sealed in the install row; `resolve` is what reads them.
        let sealed_secrets = match &install {
            Some(_) => self
                .registry
                .resolve(tenant, extension_id)
                .await
                .map_err(registry_error)?
                .and_then(|found| found.sealed_secrets)
                .map(Arc::from),
            None => None,
        };
        let (install_id, policy, grants, config) = match install {
            Some(install) => (install.id, install.policy, install.grants, install.config),
            None => (
                install_id.map_or_else(|| format!("runner:{tenant}:{extension_id}"), str::to_owned),
                Default::default(),
                Vec::new(),
                Default::default(),
            ),
        };
        let requested = version.manifest.capability_set();
        let resolved = Resolved {
            tenant: tenant.into(),
            extension_id: version.name.into(),
            install_id: install_id.into(),
            version: version.version,
            version_id: version.id,
            content_hash: version.content_hash.to_string(),
            source: ComponentSource::Bundle,
            policy,
            endpoints: version
                .manifest
                .api
                .map(|api| api.endpoints)
                .unwrap_or_default(),
            grants,
            config: Arc::new(config),
            sealed_secrets,
            generation: 0,
            egress_allow: install_allowlist(None),
        }
        .finish();
        Ok(Some((resolved, requested)))
    }

    /// The component of the bundle `content_hash`, read from the store (which re-checks the
    /// hash) and unpacked with the same limits as at publish.
    pub async fn component(&self, content_hash: &str) -> Result<Arc<[u8]>, LoadError> {
        let source_error = |reason: String| LoadError::Source {
            hash: content_hash.to_owned(),
            reason,
        };
        self.unpacked(content_hash, |files| {
            Ok(files.component().map_err(|e| e.to_string())?.into())
        })
        .await
        .map_err(source_error)
    }

    /// Every file of the bundle `content_hash` (path, bytes), for the UI cache.
    pub async fn bundle_files(&self, content_hash: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        self.unpacked(content_hash, |files| {
            Ok(files
                .paths()
                .map(|p| (p.to_owned(), files.get(p).unwrap_or_default().to_vec()))
                .collect())
        })
        .await
    }

    /// The stored (or, at an edge, fetched) bundle `content_hash`, unpacked with the safe
    /// limits and handed to `take` off the async workers (decompression is CPU work).
    async fn unpacked<T: Send + 'static>(
        &self,
        content_hash: &str,
        take: impl FnOnce(&bundle::BundleFiles) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let hash = ContentHash::parse(content_hash).map_err(|e| e.to_string())?;
        let stored = self.store.get(&hash).await.map_err(|e| e.to_string())?;
        let bytes = match (stored, &self.fetcher) {
            (Some(bytes), _) => bytes,
            (None, Some(fetcher)) => self
                .fetch(fetcher, &hash)
                .await
                .map_err(|e| format!("fetching it from the primary: {e}"))?,
            (None, None) => return Err("the bundle is missing from the bundle store".into()),
        };
        tokio::task::spawn_blocking(move || {
            let files =
                bundle::unpack(&bytes, UnpackLimits::default()).map_err(|e| e.to_string())?;
            take(&files)
        })
        .await
        .map_err(|e| format!("reader task failed: {e}"))?
    }

    /// Fetches `hash` from the primary, checks the bytes hash to it, stores them, and keeps the
    /// local store under its bound.
    async fn fetch(&self, fetcher: &BundleFetcher, hash: &ContentHash) -> Result<Vec<u8>, String> {
        let bytes = fetcher
            .primary
            .fetch_bundle(hash)
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .put(hash, &bytes)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(content_hash = %hash, bytes = bytes.len(), "bundle fetched from the primary");
        if let Some(fetched) = &fetcher.fetched {
            let _ = fetched.try_send(hash.clone());
        }
        if let Some(dir) = fetcher.cache_dir.clone() {
            let (cap, keep) = (fetcher.cache_bytes, hash.to_string());
            let _ = tokio::task::spawn_blocking(move || evict(&dir, cap, &keep)).await;
        }
        Ok(bytes)
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

/// Deletes the least recently written bundles under `dir` until it holds at most `cap` bytes,
/// never `keep` (the one just stored).
fn evict(dir: &std::path::Path, cap: u64, keep: &str) {
    let keep = keep.trim_start_matches("sha256:");
    let Ok(entries) = std::fs::read_dir(dir.join("sha256")) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, std::path::PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            let temporary = e.file_name().to_string_lossy().starts_with('.');
            let modified = meta.modified().ok()?;
            (meta.is_file() && !temporary).then(|| (modified, meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= cap {
            break;
        }
        if path.file_name().and_then(|n| n.to_str()) == Some(keep) {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            tracing::info!(path = %path.display(), "bundle evicted from the edge cache");
            total = total.saturating_sub(len);
        }
    }
}
