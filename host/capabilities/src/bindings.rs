//! Host bindings of our own WIT package `alga:extension` (`wit/alga.wit`, self-contained).

wasmtime::component::bindgen!({
    path: "../../wit/alga.wit",
    world: "alga:extension/host",
});
