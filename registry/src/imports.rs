//! What a component imports, and whether its manifest's capabilities cover it (DESIGN §2):
//! publishing refuses a component that imports a capability it did not declare, or an
//! interface this host does not provide at all.

use wasmparser::{Encoding, Parser, Payload};

use crate::manifest::DEFAULT_GRANTS;

/// Why a component's imports are not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not a WebAssembly component (a core module, or not wasm at all).
    #[error("dist/main.wasm is not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// An import needs a capability the manifest does not request.
    #[error(
        "dist/main.wasm imports '{import}', which needs the capability '{capability}': add it to the manifest's capabilities"
    )]
    Undeclared {
        /// The import name.
        import: String,
        /// The capability that grants it.
        capability: &'static str,
    },
    /// An import no capability provides.
    #[error("dist/main.wasm imports '{0}', which this host does not provide")]
    Unsupported(String),
}

/// The interfaces a component imports at its top level (nested components' imports are
/// satisfied inside it).
pub fn component_imports(wasm: &[u8]) -> Result<Vec<String>, ImportError> {
    let bad = |e: wasmparser::BinaryReaderError| ImportError::NotAComponent(e.to_string());
    let mut imports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(bad)? {
            Payload::Version { encoding, .. } if depth == 0 && encoding != Encoding::Component => {
                return Err(ImportError::NotAComponent(
                    "it is a core module; build a component (e.g. for wasm32-wasip2)".into(),
                ));
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth == 0 => break,
            Payload::End(_) => depth -= 1,
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(bad)?;
                    // Imported types (a world's `use types.{…}` at its top level) are names
                    // for types of the imported interfaces, not capabilities.
                    if matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                        continue;
                    }
                    let name = import.name;
                    // A named import of an interface is judged by the interface it implements.
                    imports.push(name.implements.unwrap_or(name.name).to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(imports)
}

/// The capability an import needs: `Ok(None)` for interfaces every extension gets (our
/// versioned context, wasi:http types, stdio, clocks, random; filesystem and sockets link but
/// grant nothing). Alga PSA's unversioned `alga:extension/*` interfaces (world `runner`) map to
/// Alga's capability names.
pub fn capability_for_import(import: &str) -> Result<Option<&'static str>, ImportError> {
    if let Some(interface) = import.strip_prefix("alga:extension/")
        && !interface.contains('@')
    {
        return alga_runner_capability(interface)
            .ok_or_else(|| ImportError::Unsupported(import.to_owned()));
    }
    let interface = import.split('@').next().unwrap_or(import);
    let package = interface.split('/').next().unwrap_or(interface);
    Ok(match (package, interface) {
        // WASIp2's outbound interface, and WASIp3's.
        (_, "wasi:http/outgoing-handler" | "wasi:http/client") => Some("cap:http.fetch"),
        ("wasi:keyvalue" | "spin:key-value", _) | (_, "fermyon:spin/key-value") => {
            Some("cap:storage.kv")
        }
        ("spin:variables", _) | (_, "fermyon:spin/variables") => Some("cap:config.get"),
        ("wasi:config", _) => Some("cap:config.get"),
        (_, "alga:extension/secrets") => Some("cap:secrets.get"),
        ("wasi:logging", _) => Some("cap:log.emit"),
        (_, "alga:extension/context" | "wasi:http/types") => None,
        (
            "wasi:io" | "wasi:clocks" | "wasi:random" | "wasi:cli" | "wasi:filesystem"
            | "wasi:sockets",
            _,
        ) => None,
        _ => return Err(ImportError::Unsupported(import.to_owned())),
    })
}

/// The capability an interface of Alga's unversioned `alga:extension` package needs
/// (`Some(None)`: none needed), or `None` when Alga's `runner` world has no such interface.
fn alga_runner_capability(interface: &str) -> Option<Option<&'static str>> {
    Some(match interface {
        "types" => None,
        "context" => Some("cap:context.read"),
        "secrets" => Some("cap:secrets.get"),
        "http" => Some("cap:http.fetch"),
        "storage" => Some("cap:storage.kv"),
        "logging" => Some("cap:log.emit"),
        "ui-proxy" => Some("cap:ui.proxy"),
        "user" | "user-v2" => Some("cap:user.read"),
        "scheduler" => Some("cap:scheduler.manage"),
        "invoicing" => Some("cap:invoice.manual.create"),
        "clients" => Some("cap:client.read"),
        "services" => Some("cap:service.read"),
        _ => return None,
    })
}

/// Whether `capability` counts as declared by a manifest requesting `capabilities`: it is
/// listed, or it is one of the [`DEFAULT_GRANTS`] every install holds.
pub fn capability_declared(
    capability: &str,
    capabilities: &std::collections::BTreeSet<String>,
) -> bool {
    capabilities.contains(capability) || DEFAULT_GRANTS.contains(&capability)
}

/// Whether `import` is an interface of Alga's `runner` world (unversioned `alga:extension`).
/// Alga's toolchains (componentize-js, `jco componentize`, wit-bindgen with the whole world)
/// import every interface of that world whatever the code calls, and Alga's manifests list
/// only what the code uses; so these imports are not held to the manifest at publish. They
/// stay deny-by-default at call time: a capability the manifest does not request can never be
/// granted, so its interface always answers its own denial.
pub fn is_runner_world_import(import: &str) -> bool {
    import
        .strip_prefix("alga:extension/")
        .is_some_and(|interface| !interface.contains('@'))
}

/// Checks every import of `wasm` against the manifest's canonical `capabilities` (the
/// [`DEFAULT_GRANTS`] count as declared; see [`is_runner_world_import`] for Alga's world).
pub fn check_imports(
    wasm: &[u8],
    capabilities: &std::collections::BTreeSet<String>,
) -> Result<(), ImportError> {
    for import in component_imports(wasm)? {
        if let Some(capability) = capability_for_import(&import)?
            && !capability_declared(capability, capabilities)
            && !is_runner_world_import(&import)
        {
            return Err(ImportError::Undeclared { import, capability });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_world_imports_are_recognised_by_their_unversioned_package() {
        assert!(is_runner_world_import("alga:extension/storage"));
        assert!(is_runner_world_import("alga:extension/types"));
        assert!(!is_runner_world_import("alga:extension/secrets@0.1.0"));
        assert!(!is_runner_world_import("wasi:keyvalue/store@0.2.0-draft"));
    }

    #[test]
    fn maps_imports_to_capabilities() {
        assert_eq!(
            capability_for_import("wasi:http/outgoing-handler@0.2.12").unwrap(),
            Some("cap:http.fetch")
        );
        assert_eq!(
            capability_for_import("wasi:http/client@0.3.0").unwrap(),
            Some("cap:http.fetch")
        );
        assert_eq!(
            capability_for_import("wasi:http/types@0.3.0").unwrap(),
            None
        );
        assert_eq!(
            capability_for_import("wasi:keyvalue/atomics@0.2.0-draft").unwrap(),
            Some("cap:storage.kv")
        );
        assert_eq!(
            capability_for_import("wasi:config/store@0.2.0-draft").unwrap(),
            Some("cap:config.get")
        );
        assert_eq!(
            capability_for_import("alga:extension/secrets@0.1.0").unwrap(),
            Some("cap:secrets.get")
        );
        assert_eq!(
            capability_for_import("wasi:logging/logging@0.1.0-draft").unwrap(),
            Some("cap:log.emit")
        );
        assert_eq!(
            capability_for_import("alga:extension/context@0.1.0").unwrap(),
            None
        );
        assert_eq!(
            capability_for_import("wasi:cli/stdout@0.2.12").unwrap(),
            None
        );
        // Spin SDK components: key-value and variables map onto KV and config.
        assert_eq!(
            capability_for_import("fermyon:spin/key-value@2.0.0").unwrap(),
            Some("cap:storage.kv")
        );
        assert_eq!(
            capability_for_import("spin:variables/variables@3.0.0").unwrap(),
            Some("cap:config.get")
        );
        assert!(matches!(
            capability_for_import("fermyon:spin/postgres@2.0.0"),
            Err(ImportError::Unsupported(_))
        ));
        assert!(matches!(
            capability_for_import("acme:evil/rootkit"),
            Err(ImportError::Unsupported(_))
        ));
    }

    #[test]
    fn maps_alga_runner_imports_to_alga_capabilities() {
        let expected = [
            ("types", None),
            ("context", Some("cap:context.read")),
            ("secrets", Some("cap:secrets.get")),
            ("http", Some("cap:http.fetch")),
            ("storage", Some("cap:storage.kv")),
            ("logging", Some("cap:log.emit")),
            ("ui-proxy", Some("cap:ui.proxy")),
            ("user", Some("cap:user.read")),
            ("user-v2", Some("cap:user.read")),
            ("scheduler", Some("cap:scheduler.manage")),
            ("invoicing", Some("cap:invoice.manual.create")),
            ("clients", Some("cap:client.read")),
            ("services", Some("cap:service.read")),
        ];
        for (interface, capability) in expected {
            let import = format!("alga:extension/{interface}");
            assert_eq!(
                capability_for_import(&import).unwrap(),
                capability,
                "{import}"
            );
            if let Some(capability) = capability {
                assert!(
                    crate::manifest::KNOWN_CAPABILITIES.contains(&capability),
                    "{capability}"
                );
            }
        }
        // Our own versioned interfaces keep their mapping: context is free.
        assert_eq!(
            capability_for_import("alga:extension/context@0.1.0").unwrap(),
            None
        );
        assert_eq!(
            capability_for_import("alga:extension/secrets@0.1.0").unwrap(),
            Some("cap:secrets.get")
        );
        // Neither an unknown Alga interface nor a versioned copy of one we do not define.
        assert!(matches!(
            capability_for_import("alga:extension/tickets"),
            Err(ImportError::Unsupported(_))
        ));
        assert!(matches!(
            capability_for_import("alga:extension/storage@0.1.0"),
            Err(ImportError::Unsupported(_))
        ));
    }

    /// A component whose only import is `import` (an instance of an empty type).
    fn component_importing(import: &str) -> Vec<u8> {
        use wasm_encoder::{
            Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
        };
        let mut component = Component::new();
        let mut types = ComponentTypeSection::new();
        types.instance(&InstanceType::new());
        component.section(&types);
        let mut imports = ComponentImportSection::new();
        imports.import(import, ComponentTypeRef::Instance(0));
        component.section(&imports);
        component.finish()
    }

    #[test]
    fn default_grants_count_as_declared_at_publish() {
        let none = std::collections::BTreeSet::new();
        for import in [
            "wasi:logging/logging@0.1.0-draft",
            "alga:extension/logging",
            "alga:extension/context",
            "alga:extension/user",
            "alga:extension/user-v2",
            "alga:extension/types",
        ] {
            let wasm = component_importing(import);
            assert_eq!(component_imports(&wasm).unwrap(), [import]);
            check_imports(&wasm, &none).unwrap_or_else(|e| panic!("{import}: {e}"));
        }
        // Alga's runner world: toolchains import all of it, so undeclared interfaces publish
        // (they can never be granted, so they always deny at call time).
        for import in ["alga:extension/storage", "alga:extension/scheduler"] {
            check_imports(&component_importing(import), &none)
                .unwrap_or_else(|e| panic!("{import}: {e}"));
        }
        let import = "wasi:keyvalue/store@0.2.0-draft";
        let wasm = component_importing(import);
        match check_imports(&wasm, &none) {
            Err(ImportError::Undeclared { capability, .. }) => {
                assert_eq!(capability, "cap:storage.kv")
            }
            other => panic!("{import}: expected Undeclared, got {other:?}"),
        }
        let declared = ["cap:storage.kv".to_owned()].into_iter().collect();
        check_imports(&wasm, &declared).unwrap();
    }

    #[test]
    fn refuses_core_modules_and_garbage() {
        assert!(matches!(
            component_imports(b"\0asm\x01\0\0\0"),
            Err(ImportError::NotAComponent(_))
        ));
        assert!(matches!(
            component_imports(b"not wasm"),
            Err(ImportError::NotAComponent(_))
        ));
        assert_eq!(
            component_imports(b"\0asm\x0d\0\x01\0").unwrap(),
            Vec::<String>::new()
        );
    }
}
