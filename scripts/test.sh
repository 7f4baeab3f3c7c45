#!/usr/bin/env bash
# Sets up a fresh Debian machine (idempotent) and runs the whole test suite: unit tests and the
# end-to-end tests that drive the real alga-edge binary with real components.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_host_toolchain
bash "$ALGA_ROOT/scripts/build-components.sh"

cd "$ALGA_ROOT"
log "building alga-edge"
cargo build --locked --workspace --bins
log "running tests"
cargo test --locked --workspace
