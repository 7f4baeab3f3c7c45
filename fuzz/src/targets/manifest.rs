//! `manifest.json` parse + validate (registry/src/manifest.rs): a parsed manifest serialises
//! and parses back to itself; validation without the bundle agrees with validation inside a
//! bundle that holds every file the manifest names; an accepted manifest is normalised
//! (canonical runtime, capabilities and methods) and still valid.

use std::collections::BTreeMap;

use alga_edge_registry::bundle::{self, COMPONENT_PATH, MANIFEST_PATH, UnpackLimits};
use alga_edge_registry::manifest::{
    ENDPOINT_METHODS, KNOWN_CAPABILITIES, Manifest, ManifestError, RUNTIME,
};

/// Runs one input: the bytes of a `manifest.json`.
pub fn run(data: &[u8]) {
    let Ok(manifest) = Manifest::parse(data) else {
        return;
    };
    let json = serde_json::to_vec(&manifest).expect("a parsed manifest serialises");
    let again = Manifest::parse(&json).expect("a manifest's own JSON parses");
    assert_eq!(again, manifest, "JSON round trip changed the manifest");

    let violations = manifest.violations(None);
    // A bundle with this manifest and every file it names (ui.entry, precompiled artifacts).
    let mut files: BTreeMap<&str, &[u8]> = BTreeMap::new();
    files.insert(MANIFEST_PATH, data);
    files.insert(COMPONENT_PATH, b"\0asm");
    if let Some(ui) = &manifest.ui {
        files.entry(ui.entry.as_str()).or_insert(b"<html>");
    }
    for path in manifest.precompiled.values() {
        files.entry(path.as_str()).or_insert(b"cwasm");
    }
    let Some(packed) = crate::pack(files.iter().map(|(p, d)| (*p, *d))) else {
        return;
    };
    // Paths the manifest accepts but no bundle can hold are refused at unpack: that is the
    // manifest's other check, not this target's subject.
    let limits = UnpackLimits::default();
    let Ok(unpacked) = bundle::unpack(&packed, limits) else {
        assert!(
            !violations.is_empty() || files.len() >= limits.max_entries,
            "a valid manifest names a path no bundle can hold: {:?}",
            files.keys().collect::<Vec<_>>()
        );
        return;
    };
    match Manifest::from_bundle(&unpacked) {
        Ok(accepted) => {
            assert!(
                violations.is_empty(),
                "accepted in a bundle despite {violations:?}"
            );
            check_accepted(&accepted, &unpacked);
        }
        Err(ManifestError::Invalid(found)) => {
            assert!(!found.is_empty(), "refused without a violation");
            assert!(
                !violations.is_empty(),
                "valid alone, refused in a bundle holding its files: {found:?}"
            );
        }
        Err(ManifestError::Parse(e)) => panic!("parsed alone, unparsable in a bundle: {e}"),
    }
}

/// What publishing may rely on for an accepted manifest.
fn check_accepted(m: &Manifest, files: &bundle::BundleFiles) {
    assert_eq!(m.runtime, RUNTIME);
    assert!(
        m.capabilities.windows(2).all(|w| w[0] < w[1]),
        "capabilities not sorted and unique: {:?}",
        m.capabilities
    );
    for capability in &m.capabilities {
        assert!(
            KNOWN_CAPABILITIES.contains(&capability.as_str()),
            "{capability}"
        );
    }
    let labels: Vec<&str> = m.name.split('.').collect();
    assert!(labels.len() >= 2 && m.name.len() <= 128, "name {}", m.name);
    for endpoint in m.api.iter().flat_map(|api| &api.endpoints) {
        assert!(ENDPOINT_METHODS.contains(&endpoint.method.as_str()));
        assert!(endpoint.path.starts_with('/') && !endpoint.path.contains(".."));
        assert!(!endpoint.handler.trim().is_empty() && !endpoint.handler.contains(".."));
    }
    for path in
        m.ui.iter()
            .map(|ui| &ui.entry)
            .chain(m.precompiled.values())
    {
        assert!(
            !path.starts_with('/') && path.split('/').all(|s| s != ".." && s != "."),
            "a bundle path leaves the bundle: {path}"
        );
        assert!(files.contains(path), "{path} is not in the bundle");
    }
    assert!(
        m.violations(Some(files)).is_empty(),
        "normalising made the manifest invalid"
    );
}
