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

/// Host capabilities an extension may ask for (DESIGN §2), in their canonical `cap:` form: ours
/// and Alga PSA's (`cap:context.read` … `cap:service.read`, the names of Alga's `runner` world).
pub const KNOWN_CAPABILITIES: [&str; 12] = [
    "cap:http.fetch",
    "cap:storage.kv",
    "cap:config.get",
    "cap:secrets.get",
    "cap:log.emit",
    "cap:context.read",
    "cap:ui.proxy",
    "cap:user.read",
    "cap:scheduler.manage",
    "cap:invoice.manual.create",
    "cap:client.read",
    "cap:service.read",
];

/// Capabilities every install holds whether or not its manifest lists them, as Alga PSA's runner
/// grants them: reading the request context, emitting log lines, and reading the calling user.
/// Publishing counts them as declared, and an install may list them without the manifest
/// requesting them.
pub const DEFAULT_GRANTS: [&str; 3] = ["cap:context.read", "cap:log.emit", "cap:user.read"];

/// HTTP methods an `api.endpoints` entry may declare (Alga's set; matched case-insensitively and
/// normalised to upper case).
pub const ENDPOINT_METHODS: [&str; 7] =
    ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"];

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
    /// Host integration points (`appMenu`, `clientPortalMenu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
}

/// `ui.hooks` of a manifest: where the host shows the extension. The two menu hooks Alga PSA
/// defines are typed; other keys are kept as given, because Alga's manifest leaves hooks
/// open-ended for future integration points.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hooks {
    /// An entry in the MSP application's menu.
    #[serde(rename = "appMenu", default, skip_serializing_if = "Option::is_none")]
    pub app_menu: Option<MenuHook>,
    /// An entry in the client portal's menu.
    #[serde(
        rename = "clientPortalMenu",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_portal_menu: Option<MenuHook>,
    /// Hooks this host does not interpret, kept verbatim.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A menu entry hook (`ui.hooks.appMenu`, `ui.hooks.clientPortalMenu`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MenuHook {
    /// The menu entry's text.
    pub label: String,
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
    /// Whether a schedule may invoke this endpoint (Alga's scheduler only targets endpoints that
    /// say so). Absent means `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub schedulable: bool,
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
            ui_violations(ui, files, &mut violation);
        }
        if let Some(api) = &self.api {
            api_violations(api, &mut violation);
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
            if pattern.trim().is_empty() {
                violation(field, "must be a non-empty glob pattern".into());
            } else if pattern.starts_with('/') || pattern.split('/').any(|part| part == "..") {
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
        if let Some(api) = &mut self.api {
            for endpoint in &mut api.endpoints {
                endpoint.method.make_ascii_uppercase();
            }
        }
        self.capabilities = self.capability_set().into_iter().collect();
    }
}

/// The rules of the `ui` section; with `files`, its entry must be a file of the bundle.
fn ui_violations(ui: &Ui, files: Option<&BundleFiles>, violation: &mut impl FnMut(String, String)) {
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
    let hooks = ui.hooks.as_ref();
    for (name, menu) in [
        ("appMenu", hooks.and_then(|h| h.app_menu.as_ref())),
        (
            "clientPortalMenu",
            hooks.and_then(|h| h.client_portal_menu.as_ref()),
        ),
    ] {
        if menu.is_some_and(|m| m.label.trim().is_empty()) {
            violation(
                format!("ui.hooks.{name}.label"),
                "must be a non-empty string".into(),
            );
        }
    }
}

/// The rules of the `api` section: methods, paths, handlers, unique method + path.
fn api_violations(api: &Api, violation: &mut impl FnMut(String, String)) {
    let mut routes = BTreeSet::new();
    for (i, endpoint) in api.endpoints.iter().enumerate() {
        let field = |name: &str| format!("api.endpoints[{i}].{name}");
        let method = endpoint.method.to_ascii_uppercase();
        if !ENDPOINT_METHODS.contains(&method.as_str()) {
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
        } else if endpoint.path.contains(char::is_whitespace) || endpoint.path.contains("..") {
            violation(
                field("path"),
                format!("'{}' must not contain whitespace or '..'", endpoint.path),
            );
        }
        if endpoint.handler.trim().is_empty() {
            violation(field("handler"), "must not be empty".into());
        } else if endpoint.handler.contains("..") {
            violation(field("handler"), "must not contain '..'".into());
        }
        if !routes.insert((method, endpoint.path.clone())) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{self, UnpackLimits};
    use serde_json::{Value, json};

    /// A bundle of `manifest`, a component, `ui/index.html` and any `extra` files (archived
    /// here rather than by `bundle::pack`, which takes only `dist/` and `ui/`), unpacked and run
    /// through the full parse + validate + normalise path.
    fn from_bundle(manifest: &Value, extra: &[&str]) -> Result<Manifest, ManifestError> {
        let manifest = manifest.to_string();
        let mut files = vec![
            ("manifest.json", manifest.as_bytes()),
            ("dist/main.wasm", b"\0asm".as_slice()),
            ("ui/index.html", b"<!doctype html>".as_slice()),
        ];
        files.extend(extra.iter().map(|path| (*path, b"x".as_slice())));
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            tar.append_data(&mut header, path, data).unwrap();
        }
        let archive = zstd::encode_all(tar.into_inner().unwrap().as_slice(), 3).unwrap();
        let files = bundle::unpack(&archive, UnpackLimits::default()).unwrap();
        Manifest::from_bundle(&files)
    }

    fn accepted(manifest: Value) -> Manifest {
        match from_bundle(&manifest, &[]) {
            Ok(parsed) => parsed,
            Err(e) => panic!("{manifest} was refused: {e}"),
        }
    }

    fn iframe(label: &str) -> Value {
        json!({"type": "iframe", "entry": "ui/index.html", "hooks": {"appMenu": {"label": label}}})
    }

    #[test]
    fn scheduler_shape_keeps_schedulable_per_endpoint() {
        let manifest = accepted(json!({
            "name": "com.example.sample.scheduler",
            "publisher": "Example",
            "version": "0.2.0",
            "runtime": "wasm-js@1",
            "capabilities": ["cap:scheduler.manage", "cap:log.emit", "cap:context.read"],
            "ui": iframe("Scheduler"),
            "api": {"endpoints": [
                {"method": "GET", "path": "/api/status", "handler": "dist/main", "schedulable": true},
                {"method": "POST", "path": "/api/setup", "handler": "dist/main"},
                {"method": "DELETE", "path": "/api/schedules/:id", "handler": "dist/main"},
                {"method": "POST", "path": "/api/tick", "handler": "dist/main", "schedulable": false}
            ]},
            "assets": ["ui/**/*"]
        }));
        let schedulable: Vec<bool> = manifest
            .api
            .as_ref()
            .unwrap()
            .endpoints
            .iter()
            .map(|e| e.schedulable)
            .collect();
        assert_eq!(schedulable, [true, false, false, false]);
        assert_eq!(manifest.runtime, RUNTIME, "wasm-js@1 is an alias");
        assert_eq!(
            manifest.capabilities,
            ["cap:context.read", "cap:log.emit", "cap:scheduler.manage"]
        );
        // Round trip: `schedulable: true` survives storage, `false` is left out.
        let stored = serde_json::to_value(&manifest).unwrap();
        assert_eq!(stored["api"]["endpoints"][0]["schedulable"], json!(true));
        assert!(stored["api"]["endpoints"][1].get("schedulable").is_none());
        assert_eq!(
            Manifest::parse(stored.to_string().as_bytes()).unwrap(),
            manifest
        );
    }

    #[test]
    fn both_menu_hooks_are_typed_and_checked() {
        let manifest = accepted(json!({
            "name": "com.example.sample.portal",
            "publisher": "Example",
            "version": "1.3.0",
            "runtime": "wasm-js@1",
            "capabilities": ["cap:context.read", "cap:log.emit", "cap:ui.proxy", "cap:http.fetch", "cap:user.read"],
            "ui": {"type": "iframe", "entry": "ui/index.html", "hooks": {
                "appMenu": {"label": "Portal demo"},
                "clientPortalMenu": {"label": "Portal demo (clients)"}
            }},
            "assets": ["ui/**/*"]
        }));
        let hooks = manifest.ui.unwrap().hooks.unwrap();
        assert_eq!(hooks.app_menu.unwrap().label, "Portal demo");
        assert_eq!(
            hooks.client_portal_menu.unwrap().label,
            "Portal demo (clients)"
        );
        assert!(hooks.other.is_empty());

        let mut bad = json!({
            "name": "com.example.sample.portal", "publisher": "Example", "version": "1.0.0",
            "runtime": "wasm-js@1",
            "ui": {"type": "iframe", "entry": "ui/index.html",
                   "hooks": {"clientPortalMenu": {"label": " "}}}
        });
        let Err(ManifestError::Invalid(violations)) = from_bundle(&bad, &[]) else {
            panic!("an empty clientPortalMenu label must be refused");
        };
        assert_eq!(violations[0].field, "ui.hooks.clientPortalMenu.label");
        bad["ui"]["hooks"] = json!({"appMenu": {"label": "x", "icon": "y"}});
        let error = from_bundle(&bad, &[]).unwrap_err().to_string();
        assert!(error.contains("icon"), "{error}");
    }

    #[test]
    fn read_invoicing_secrets_and_proxy_shapes_are_accepted() {
        // Client/service read: no assets, two GET endpoints on one handler.
        accepted(json!({
            "name": "com.example.sample.client-read", "publisher": "Example",
            "version": "0.1.5", "runtime": "wasm-js@1",
            "capabilities": ["cap:client.read", "cap:service.read"],
            "ui": iframe("Clients"),
            "api": {"endpoints": [
                {"method": "GET", "path": "/api/clients", "handler": "dist/main"},
                {"method": "GET", "path": "/api/services", "handler": "dist/main"}
            ]}
        }));
        // Manual invoicing through the UI proxy.
        accepted(json!({
            "name": "com.example.sample.invoicing", "publisher": "Example",
            "version": "0.1.0", "runtime": "wasm-js@1",
            "capabilities": ["cap:invoice.manual.create", "cap:log.emit", "cap:context.read", "cap:ui.proxy"],
            "ui": iframe("Invoicing"),
            "api": {"endpoints": [
                {"method": "GET", "path": "/api/status", "handler": "dist/main"},
                {"method": "POST", "path": "/api/create-manual-invoice", "handler": "dist/main"}
            ]},
            "assets": ["ui/**/*"]
        }));
        // Secrets: one endpoint at the root.
        accepted(json!({
            "name": "com.example.sample.secrets", "publisher": "Example",
            "version": "0.1.1", "runtime": "wasm-js@1",
            "capabilities": ["cap:secrets.get", "cap:log.emit"],
            "ui": iframe("Secrets"),
            "api": {"endpoints": [{"method": "GET", "path": "/", "handler": "dist/main"}]},
            "assets": ["ui/**/*"]
        }));
        // Service proxy: UI only, no api section.
        accepted(json!({
            "name": "com.example.sample.proxy", "publisher": "Example",
            "version": "0.1.8", "runtime": "wasm-js@1",
            "capabilities": ["cap:context.read", "cap:log.emit", "cap:secrets.get", "cap:http.fetch", "cap:ui.proxy"],
            "ui": iframe("Proxy"),
            "assets": ["ui/**/*"]
        }));
        // UI-only with no capabilities; component-only template with `entry`.
        accepted(json!({
            "name": "com.example.sample.hello", "publisher": "Example",
            "version": "0.1.1", "runtime": "wasm-js@1", "capabilities": [],
            "ui": iframe("Hello"), "assets": ["ui/**/*"]
        }));
        accepted(json!({
            "name": "com.example.component", "publisher": "Example",
            "version": "0.1.0", "runtime": "wasm-js@1", "entry": "dist/main.wasm",
            "capabilities": ["cap:context.read", "cap:log.emit", "cap:secrets.get"]
        }));
    }

    #[test]
    fn precompiled_artifacts_and_lower_case_methods_are_accepted() {
        let manifest = json!({
            "name": "com.example.reporting", "publisher": "Example",
            "version": "0.3.1", "runtime": "wasm-js@1",
            "capabilities": ["cap:context.read", "cap:log.emit", "cap:ui.proxy"],
            "ui": iframe("Reporting"),
            "precompiled": {
                "x86_64-linux-gnu": "precompiled/x86_64-linux-gnu.cwasm",
                "aarch64-linux-gnu": "precompiled/aarch64-linux-gnu.cwasm"
            },
            "api": {"endpoints": [
                {"method": "get", "path": "/api/report", "handler": "dist/main"},
                {"method": "OPTIONS", "path": "/api/report", "handler": "dist/main"}
            ]},
            "assets": ["ui/**/*"]
        });
        let parsed = from_bundle(
            &manifest,
            &[
                "precompiled/x86_64-linux-gnu.cwasm",
                "precompiled/aarch64-linux-gnu.cwasm",
            ],
        )
        .unwrap();
        assert_eq!(parsed.precompiled.len(), 2);
        assert_eq!(parsed.api.unwrap().endpoints[0].method, "GET");
    }

    #[test]
    fn assets_must_be_relative_visible_non_empty_globs() {
        for (pattern, why) in [
            ("", "non-empty"),
            ("/ui/*", "relative"),
            ("ui/../../etc/*", "relative"),
            (".env", "hidden"),
            ("ui/.cache/**", "hidden"),
            ("ui/[", "glob"),
        ] {
            let manifest = json!({
                "name": "com.example.assets", "publisher": "Example",
                "version": "1.0.0", "runtime": "wasm-component@1", "assets": [pattern]
            });
            let Err(ManifestError::Invalid(violations)) = from_bundle(&manifest, &[]) else {
                panic!("assets {pattern:?} must be refused");
            };
            assert_eq!(violations[0].field, "assets[0]");
            assert!(violations[0].message.contains(why), "{violations:?}");
        }
    }

    #[test]
    fn endpoint_paths_and_handlers_refuse_dot_dot_and_spaces() {
        for (endpoint, field) in [
            (
                json!({"method": "GET", "path": "/a b", "handler": "h"}),
                "api.endpoints[0].path",
            ),
            (
                json!({"method": "GET", "path": "/a/../b", "handler": "h"}),
                "api.endpoints[0].path",
            ),
            (
                json!({"method": "GET", "path": "/a", "handler": "../h"}),
                "api.endpoints[0].handler",
            ),
            (
                json!({"method": "TRACE", "path": "/a", "handler": "h"}),
                "api.endpoints[0].method",
            ),
        ] {
            let manifest = json!({
                "name": "com.example.api", "publisher": "Example", "version": "1.0.0",
                "runtime": "wasm-component@1", "api": {"endpoints": [endpoint]}
            });
            let violations = Manifest::parse(manifest.to_string().as_bytes())
                .unwrap()
                .violations(None);
            assert!(
                violations.iter().any(|v| v.field == field),
                "{violations:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_refused_by_name_at_every_level() {
        let base = json!({
            "name": "com.example.strict", "publisher": "Example", "version": "1.0.0",
            "runtime": "wasm-js@1",
            "ui": iframe("Strict"),
            "api": {"endpoints": [{"method": "GET", "path": "/", "handler": "h"}]}
        });
        type Edit = fn(&mut Value);
        let cases: [(&str, Edit); 4] = [
            ("homepage", |m| m["homepage"] = json!("https://example.com")),
            ("routes", |m| m["ui"]["routes"] = json!([])),
            ("schedule", |m| {
                m["api"]["endpoints"][0]["schedule"] = json!("* * * * *")
            }),
            ("basePath", |m| m["api"]["basePath"] = json!("/x")),
        ];
        for (field, edit) in cases {
            let mut manifest = base.clone();
            edit(&mut manifest);
            let error = Manifest::parse(manifest.to_string().as_bytes()).unwrap_err();
            assert!(
                matches!(error, ManifestError::Parse(_)) && error.to_string().contains(field),
                "{field}: {error}"
            );
        }
    }

    #[test]
    fn capability_names_and_default_grants() {
        for name in KNOWN_CAPABILITIES {
            assert_eq!(canonical_capability(name).as_deref(), Some(name));
            let bare = name.strip_prefix("cap:").unwrap();
            assert_eq!(canonical_capability(bare).as_deref(), Some(name));
        }
        for name in DEFAULT_GRANTS {
            assert!(KNOWN_CAPABILITIES.contains(&name), "{name}");
        }
        assert_eq!(canonical_capability("cap:fs.write"), None);
    }
}
