//! `alga:extension/context`: who and what the current request runs for. Always granted; the
//! values are set by the gateway, never by the guest.

use wasmtime::component::{HasData, Linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/context.wit",
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
