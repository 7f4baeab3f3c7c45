//! wit-bindgen bindings of the interfaces the SDK wraps (world
//! `alga:extension/capability-imports`; the WASI packages it needs are copied into `wit/deps/`
//! by `scripts/build-components.sh`).

wit_bindgen::generate!({
    path: "../../wit",
    world: "alga:extension/capability-imports",
    generate_all,
});
