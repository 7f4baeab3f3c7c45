//! Which component serves which extension for which tenant.
//!
//! - [`installed`]: the registry path: tenant → enabled install → version → content hash →
//!   bundle verified by hash and signature → component.
//! - [`dev`]: the `--component ID=PATH` dev shortcut.

pub mod dev;
pub mod installed;

use std::collections::BTreeMap;
use std::sync::Arc;

use alga_edge_capabilities::egress::{InstallAllowlist, install_allowlist};
use alga_edge_registry::InstallPolicy;
use alga_edge_registry::manifest::Endpoint;

pub use dev::{CatalogError, DevCatalog};
pub use installed::{BundleFetcher, InstalledCatalog};

/// What the gateway needs to run an extension for a tenant.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Tenant the request runs as.
    pub tenant: Arc<str>,
    /// The extension id of the route (the manifest name for registry installs).
    pub extension_id: Arc<str>,
    /// The tenant's install of it.
    pub install_id: Arc<str>,
    /// Installed version.
    pub version: String,
    /// Registry id of that version.
    pub version_id: String,
    /// `sha256:<hex>`: of the bundle for installs, of the component file for dev mappings.
    pub content_hash: String,
    /// Where the component bytes come from on a compile-cache miss.
    pub source: ComponentSource,
    /// The install's overrides of the node's policies.
    pub policy: InstallPolicy,
    /// The version's declared `api.endpoints`.
    pub endpoints: Vec<Endpoint>,
    /// Capabilities the install was granted (`cap:*`).
    pub grants: Vec<String>,
    /// The install's config map.
    pub config: Arc<BTreeMap<String, String>>,
    /// The install's secrets, sealed with the node key.
    pub sealed_secrets: Option<Arc<[u8]>>,
    /// A digest of everything about the install a warm instance may have seen (see
    /// [`Resolved::finish`]); computed once per resolution, not per request.
    pub generation: u64,
    /// The policy's outbound HTTP allowlist, parsed once per resolution (see
    /// [`Resolved::finish`]), not per request.
    pub egress_allow: InstallAllowlist,
}

impl Resolved {
    /// Derives what every request of this resolution shares, so no request recomputes it:
    /// `generation`, a digest of everything about the install a warm instance may have seen
    /// (version, bundle, grants, config, sealed secrets and policy; instances are reused only
    /// within one generation, so any change to the install retires them), and the parsed
    /// `egress_allow`. Every constructor, and every change to a resolution, ends with it.
    pub fn finish(mut self) -> Self {
        self.generation = self.digest();
        self.egress_allow = install_allowlist(self.policy.egress_allow.as_deref());
        self
    }

    fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (
            &self.install_id,
            &self.version_id,
            &self.content_hash,
            &self.grants,
            &*self.config,
            self.sealed_secrets.as_deref(),
        )
            .hash(&mut hasher);
        // The policy holds floats; its JSON form is canonical enough to compare.
        serde_json::to_string(&self.policy)
            .unwrap_or_default()
            .hash(&mut hasher);
        hasher.finish()
    }
}

/// Where a resolved component's bytes come from.
#[derive(Debug, Clone)]
pub enum ComponentSource {
    /// Already read from a local file (dev shortcut).
    File(Arc<[u8]>),
    /// `dist/main.wasm` of the stored bundle, whose signature was verified at resolution.
    Bundle,
}

/// Extension ids are route segments: a conservative alphabet, bounded length.
pub fn is_valid_extension_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
