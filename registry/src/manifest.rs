//! Manifest v2 (`manifest.json` at a bundle's root): the model and every validation rule of
//! DESIGN §4. Validation reports all violations at once, each naming the field it is about.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bundle::{BundleFiles, COMPONENT_PATH, UI_DIR};

/// The runtime every accepted manifest is normalised to.
pub const RUNTIME: &str = "wasm-component@1";
/// Alga's earlier name for the same runtime (componentize-js output), accepted as an alias.
pub const RUNTIME_ALIAS: &str = "wasm-js@1";

/// Host capabilities an extension may ask for (DESIGN §2), in their canonical `cap:` form.
pub const KNOWN_CAPABILITIES: [&str; 5] = [
    "cap:http.fetch",
    "cap:storage.kv",
    "cap:config.get",
    "cap:secrets.get",
    "cap:log.emit",
];

/// HTTP methods an `api.endpoints` entry may declare.
pub const ENDPOINT_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// A parsed manifest v2. Unknown fields are rejected so a typo never silently drops a setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Reverse-domain extension name, e.g. `com.acme.reports`.
    pub name: String,
    /// Publishing organisation.
    pub publisher: String,
    /// Semver version.
    pub version: String,
    /// `wasm-component@1` (or its alias `wasm-js@1`).
    pub runtime: String,
    /// Requested host capabilities (`cap:http.fetch` or `http.fetch`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Iframe UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<Ui>,
    /// Declared HTTP endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    /// Event subscriptions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
    /// Main wasm entry; when present it must be `dist/main.wasm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// Target triple → precompiled artifact path in the bundle.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub precompiled: BTreeMap<String, String>,
    /// Glob patterns of static assets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assets: Vec<String>,
    /// SBOM reference (a path in the bundle or a URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<String>,
}

/// `ui` of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ui {
    /// Must be `iframe`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Entry page, a file of the bundle (e.g. `ui/index.html`).
    pub entry: String,
    /// Host integration points (e.g. `appMenu.label`); open-ended by design.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `api` of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// Declared endpoints.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// One `api.endpoints` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// Path pattern starting with `/`, e.g. `/agreements/:id`.
    pub path: String,
    /// Handler name inside the component.
    pub handler: String,
}

/// One `events` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Topic subscribed to.
    pub topic: String,
    /// Handler name inside the component.
    pub handler: String,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON path of the field, e.g. `api.endpoints[1].path`.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a manifest is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or not the shape of a manifest (serde names the field and line).
    #[error("manifest.json is not a valid manifest v2: {0}")]
    Parse(String),
    /// Parsed, but breaks rules.
    #[error("manifest.json is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Violation>),
}

impl Manifest {
    /// Parses manifest JSON.
    pub fn parse(json: &[u8]) -> Result<Self, ManifestError> {
        serde_json::from_slice(json).map_err(|e| ManifestError::Parse(e.to_string()))
    }

    /// Parses, validates against the bundle's files, and normalises (runtime alias and
    /// capability prefixes) a bundle's manifest.
    pub fn from_bundle(files: &BundleFiles) -> Result<Self, ManifestError> {
        let json = files
            .manifest()
            .map_err(|e| ManifestError::Parse(e.to_string()))?;
        let mut manifest = Self::parse(json)?;
        let violations = manifest.violations(Some(files));
        if !violations.is_empty() {
            return Err(ManifestError::Invalid(violations));
        }
        manifest.normalise();
        Ok(manifest)
    }

    /// The canonical capability names this manifest asks for.
    pub fn capability_set(&self) -> BTreeSet<String> {
        self.capabilities
            .iter()
            .filter_map(|c| canonical_capability(c))
            .collect()
    }

    /// Every rule this manifest breaks. With `files`, rules about bundle contents are checked
    /// too (`ui.entry` exists, precompiled artifacts exist, no hidden assets).
    pub fn violations(&self, files: Option<&BundleFiles>) -> Vec<Violation> {
        let mut found = Vec::new();
        let mut violation =
            |field: String, message: String| found.push(Violation { field, message });

        if let Err(why) = check_reverse_domain(&self.name) {
            violation("name".into(), why);
        }
        if self.publisher.trim().is_empty() || self.publisher.len() > 128 {
            violation(
                "publisher".into(),
                "must be a non-empty organisation name of at most 128 characters".into(),
            );
        }
        if let Err(e) = semver::Version::parse(&self.version) {
            violation(
                "version".into(),
                format!(
                    "'{}' is not a semver version (e.g. 1.2.3): {e}",
                    self.version
                ),
            );
        }
        if self.runtime != RUNTIME && self.runtime != RUNTIME_ALIAS {
            violation(
                "runtime".into(),
                format!("'{}' is not supported; use '{RUNTIME}'", self.runtime),
            );
        }

        let mut seen_caps = BTreeSet::new();
        for (i, capability) in self.capabilities.iter().enumerate() {
            match canonical_capability(capability) {
                None => violation(
                    format!("capabilities[{i}]"),
                    format!(
                        "unknown capability '{capability}'; known: {}",
                        KNOWN_CAPABILITIES.join(", ")
                    ),
                ),
                Some(canonical) if !seen_caps.insert(canonical.clone()) => violation(
                    format!("capabilities[{i}]"),
                    format!("'{capability}' is listed more than once"),
                ),
                Some(_) => {}
            }
        }

        if let Some(ui) = &self.ui {
            if ui.kind != "iframe" {
                violation(
                    "ui.type".into(),
                    format!("'{}' is not supported; use 'iframe'", ui.kind),
                );
            }
            if let Err(why) = check_bundle_path(&ui.entry) {
                violation("ui.entry".into(), why);
            } else if let Some(files) = files
                && !files.contains(&ui.entry)
            {
                violation(
                    "ui.entry".into(),
                    format!("'{}' is not a file of the bundle", ui.entry),
                );
            }
            if let Some(app_menu) = ui.hooks.as_ref().and_then(|h| h.get("appMenu")) {
                let label = app_menu.get("label").and_then(|l| l.as_str());
                if label.is_none_or(|l| l.trim().is_empty()) {
                    violation(
                        "ui.hooks.appMenu.label".into(),
                        "must be a non-empty string".into(),
                    );
                }
            }
        }

        if let Some(api) = &self.api {
            let mut routes = BTreeSet::new();
            for (i, endpoint) in api.endpoints.iter().enumerate() {
                let field = |name: &str| format!("api.endpoints[{i}].{name}");
                if !ENDPOINT_METHODS.contains(&endpoint.method.as_str()) {
                    violation(
                        field("method"),
                        format!(
                            "'{}' is not one of {}",
                            endpoint.method,
                            ENDPOINT_METHODS.join(", ")
                        ),
                    );
                }
                if !endpoint.path.starts_with('/') {
                    violation(
                        field("path"),
                        format!("'{}' must start with '/'", endpoint.path),
                    );
                }
                if endpoint.handler.trim().is_empty() {
                    violation(field("handler"), "must not be empty".into());
                }
                if !routes.insert((endpoint.method.clone(), endpoint.path.clone())) {
                    violation(
                        field("path"),
                        format!(
                            "{} {} is declared more than once",
                            endpoint.method, endpoint.path
                        ),
                    );
                }
            }
        }

        for (i, event) in self.events.iter().enumerate() {
            if event.topic.trim().is_empty() {
                violation(format!("events[{i}].topic"), "must not be empty".into());
            }
            if event.handler.trim().is_empty() {
                violation(format!("events[{i}].handler"), "must not be empty".into());
            }
        }

        if let Some(entry) = &self.entry
            && entry != COMPONENT_PATH
        {
            violation(
                "entry".into(),
                format!("'{entry}' is not supported; the component is always '{COMPONENT_PATH}'"),
            );
        }

        for (target, path) in &self.precompiled {
            let field = format!("precompiled.{target}");
            if let Err(why) = check_bundle_path(path) {
                violation(field, why);
            } else if let Some(files) = files
                && !files.contains(path)
            {
                violation(field, format!("'{path}' is not a file of the bundle"));
            }
        }

        for (i, pattern) in self.assets.iter().enumerate() {
            let field = format!("assets[{i}]");
            if pattern.starts_with('/') || pattern.split('/').any(|part| part == "..") {
                violation(
                    field,
                    format!("'{pattern}' must be relative to the bundle root without '..'"),
                );
            } else if pattern.split('/').any(|part| part.starts_with('.')) {
                violation(
                    field,
                    format!("'{pattern}' selects hidden files, which bundles may not contain"),
                );
            } else if let Err(e) = globset::Glob::new(pattern) {
                violation(field, format!("'{pattern}' is not a valid glob: {e}"));
            }
        }

        if let Some(files) = files {
            let ui_prefix = format!("{UI_DIR}/");
            for path in files.paths().filter(|p| p.starts_with(&ui_prefix)) {
                if path.split('/').any(|part| part.starts_with('.')) {
                    violation(
                        "assets".into(),
                        format!("the bundle contains the hidden file '{path}'"),
                    );
                }
            }
        }

        if let Some(sbom) = &self.sbom
            && sbom.trim().is_empty()
        {
            violation("sbom".into(), "must not be empty when present".into());
        }

        found
    }

    fn normalise(&mut self) {
        self.runtime = RUNTIME.to_owned();
        self.capabilities = self.capability_set().into_iter().collect();
    }
}

/// `cap:x` or `x` for a known capability → `cap:x`.
pub fn canonical_capability(name: &str) -> Option<String> {
    let canonical = if name.starts_with("cap:") {
        name.to_owned()
    } else {
        format!("cap:{name}")
    };
    KNOWN_CAPABILITIES
        .contains(&canonical.as_str())
        .then_some(canonical)
}

fn check_reverse_domain(name: &str) -> Result<(), String> {
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if name.len() > 128 || labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(format!(
            "'{name}' is not a reverse-domain name: use at least two dot-separated labels of lowercase letters, digits and hyphens (e.g. com.acme.reports), at most 128 characters"
        ));
    }
    Ok(())
}

fn check_bundle_path(path: &str) -> Result<(), String> {
    let parts: Vec<&str> = path.split('/').collect();
    if path.is_empty()
        || path.contains('\\')
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(format!(
            "'{path}' must be a plain relative path inside the bundle"
        ));
    }
    if parts.iter().any(|p| p.starts_with('.')) {
        return Err(format!(
            "'{path}' is a hidden file, which bundles may not contain"
        ));
    }
    Ok(())
}
