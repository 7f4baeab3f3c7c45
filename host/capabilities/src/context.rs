//! `alga:extension/context`: who and what the current request runs for. Always granted; the
//! values are set by the gateway, never by the guest.

use wasmtime::component::{HasData, Linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/alga.wit",
        world: "alga:extension/imports",
    });
}

pub use bindings::alga::extension::context::RequestContext;

/// Per-request state behind the `context` interface.
pub struct ContextState {
    context: RequestContext,
}

impl ContextState {
    /// Serves `context` to the guest for the whole request.
    pub fn new(context: RequestContext) -> Self {
        Self { context }
    }

    /// The context being served.
    pub fn context(&self) -> &RequestContext {
        &self.context
    }
}

impl bindings::alga::extension::context::Host for ContextState {
    fn get(&mut self) -> RequestContext {
        self.context.clone()
    }
}

struct Context;

impl HasData for Context {
    type Data<'a> = &'a mut ContextState;
}

/// Links `alga:extension/context` into `linker`; `state` finds the request's [`ContextState`].
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    state: fn(&mut T) -> &mut ContextState,
) -> wasmtime::Result<()> {
    bindings::alga::extension::context::add_to_linker::<T, Context>(linker, state)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// `wit/extension.wit` must resolve against the standard WASI packages and describe what
    /// the host serves: the wasi:http handler export plus our context import.
    #[test]
    fn extension_world_exports_the_http_handler_and_imports_context() {
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
        assert!(
            wit.join("deps").is_dir(),
            "wit/deps is missing: scripts/build-components.sh copies it from the wasip2 crate"
        );
        let mut resolve = wit_parser::Resolve::default();
        let (package, _) = resolve.push_dir(&wit).expect("wit/ resolves");
        let world = resolve
            .select_world(&[package], Some("extension"))
            .expect("world `extension`");
        let names = |keys: Vec<&wit_parser::WorldKey>| -> Vec<String> {
            keys.into_iter()
                .map(|k| resolve.name_world_key(k))
                .collect()
        };
        let world = &resolve.worlds[world];
        let exports = names(world.exports.keys().collect());
        let imports = names(world.imports.keys().collect());
        assert!(
            exports.contains(&"wasi:http/incoming-handler@0.2.12".to_owned()),
            "{exports:?}"
        );
        assert!(
            imports.contains(&"alga:extension/context@0.1.0".to_owned()),
            "{imports:?}"
        );
    }
}
