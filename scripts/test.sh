#!/usr/bin/env bash
# Sets up a fresh Debian machine (idempotent) and runs the whole test suite: unit tests and the
# end-to-end tests that drive the real alga-edge binary with real components.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_host_toolchain
ensure_s3_server
ensure_browser
ensure_python_toolchain
ensure_js_toolchain
# esbuild for `ext build` of JavaScript extensions of Alga's runner world (the author tests).
ensure_alga_js_toolchain
# Screenshots and other artifacts of the browser test.
export ALGA_ARTIFACTS_DIR="${ALGA_ARTIFACTS_DIR:-$ALGA_ROOT/target/artifacts}"
bash "$ALGA_ROOT/scripts/build-components.sh"

cd "$ALGA_ROOT"
# One cargo invocation: the end-to-end tests are targets of the alga-edge package, so this also
# builds the binary they drive, and dependencies are compiled once with one feature set (a
# separate `cargo build` first would resolve features without dev-dependencies and build the
# wasmtime stack twice). The workspace includes the fuzz targets' smoke run (fuzz/tests/smoke.rs:
# every seed, recorded crash and a fixed number of mutations through each target; fuzzing
# itself is scripts/fuzz.sh, not CI).
log "building and running tests"
cargo test --locked --workspace

# The guest SDK's own unit tests (pure logic: routing), run natively; the crate is built for
# wasm32 only as a dependency of guests, so it is not a member of the host workspace.
log "running the guest SDK's unit tests"
cargo test --locked --manifest-path "$ALGA_ROOT/sdk/rust/Cargo.toml"
