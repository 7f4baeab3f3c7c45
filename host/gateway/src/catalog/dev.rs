//! The dev shortcut: components from local files (`--component ID=PATH`), served without a
//! token as one fixed dev tenant. Never a substitute for the registry in production.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alga_edge_registry::bundle::ContentHash;

use super::{ComponentSource, Resolved, install_allowlist, is_valid_extension_id};

/// A bad `--component` mapping.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Not of the form `ID=PATH`.
    #[error("invalid component mapping '{0}': expected EXTENSION_ID=PATH_TO_COMPONENT.wasm")]
    BadSpec(String),
    /// The id has characters a route cannot carry.
    #[error("invalid extension id '{0}': use 1-128 characters of A-Z a-z 0-9 . _ -")]
    BadId(String),
    /// The same id was mapped twice.
    #[error("extension id '{0}' is mapped more than once")]
    Duplicate(String),
    /// The file cannot be read.
    #[error("cannot read component file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The dev catalog: components from local files, each resolved for the fixed dev tenant.
pub struct DevCatalog {
    extensions: HashMap<String, Arc<Resolved>>,
}

impl DevCatalog {
    /// Reads every `ID=PATH` mapping now, so a bad path fails at startup, not on first request.
    pub fn from_specs(tenant: &str, specs: &[String]) -> Result<Self, CatalogError> {
        let mut extensions = HashMap::new();
        for spec in specs {
            let (id, path) = spec
                .split_once('=')
                .filter(|(id, path)| !id.is_empty() && !path.is_empty())
                .ok_or_else(|| CatalogError::BadSpec(spec.clone()))?;
            if !is_valid_extension_id(id) {
                return Err(CatalogError::BadId(id.to_owned()));
            }
            let resolved = Arc::new(read_component(tenant, id, Path::new(path))?);
            if extensions.insert(id.to_owned(), resolved).is_some() {
                return Err(CatalogError::Duplicate(id.to_owned()));
            }
        }
        Ok(Self { extensions })
    }

    /// The dev-mapped extension `extension_id`, if there is one.
    pub fn get(&self, extension_id: &str) -> Option<&Arc<Resolved>> {
        self.extensions.get(extension_id)
    }

    /// Every mapped extension.
    pub fn extensions(&self) -> impl Iterator<Item = &Resolved> {
        self.extensions.values().map(|resolved| &**resolved)
    }
}

fn read_component(tenant: &str, id: &str, path: &Path) -> Result<Resolved, CatalogError> {
    let bytes = std::fs::read(path).map_err(|source| CatalogError::Read {
        path: path.to_owned(),
        source,
    })?;
    let content_hash = ContentHash::of(&bytes).to_string();
    Ok(Resolved {
        tenant: tenant.into(),
        extension_id: id.into(),
        install_id: format!("dev-install-{id}").into(),
        version: "0.0.0-dev".to_owned(),
        version_id: "dev".to_owned(),
        content_hash,
        source: ComponentSource::File(bytes.into()),
        policy: Default::default(),
        endpoints: Vec::new(),
        // Dev mappings are for trying a component locally: its own KV space and logging, no
        // config, secrets or outbound HTTP (those need an install).
        grants: vec![
            alga_edge_capabilities::names::KV.to_owned(),
            alga_edge_capabilities::names::LOG.to_owned(),
        ],
        config: Default::default(),
        sealed_secrets: None,
        generation: 0,
        egress_allow: install_allowlist(None),
    }
    .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_specs_and_ids() {
        assert!(matches!(
            DevCatalog::from_specs("t", &["no-equals".into()]),
            Err(CatalogError::BadSpec(_))
        ));
        assert!(matches!(
            DevCatalog::from_specs("t", &["=x.wasm".into()]),
            Err(CatalogError::BadSpec(_))
        ));
        assert!(matches!(
            DevCatalog::from_specs("t", &["a/b=x.wasm".into()]),
            Err(CatalogError::BadId(_))
        ));
        assert!(matches!(
            DevCatalog::from_specs("t", &["ok=/definitely/missing.wasm".into()]),
            Err(CatalogError::Read { .. })
        ));
    }

    #[test]
    fn maps_ids_to_hashed_components_for_the_dev_tenant() {
        let dir = std::env::temp_dir().join(format!("alga-catalog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.wasm");
        std::fs::write(&file, b"abc").unwrap();
        let catalog =
            DevCatalog::from_specs("dev", &[format!("hello={}", file.display())]).unwrap();
        let hello = catalog.get("hello").unwrap();
        assert_eq!(&*hello.tenant, "dev");
        // sha256("abc")
        assert_eq!(
            hello.content_hash,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(catalog.get("missing").is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
