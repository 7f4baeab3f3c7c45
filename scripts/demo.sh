#!/usr/bin/env bash
# Sets up a fresh Debian machine (idempotent), builds everything, and runs an Alga Edge node on
# embedded defaults serving the sample extensions. Sends a few sample requests, then keeps
# serving until Ctrl-C (set ALGA_DEMO_ONESHOT=1 to stop after the samples).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_host_toolchain
ensure_apt curl
bash "$ALGA_ROOT/scripts/build-components.sh"

cd "$ALGA_ROOT"
log "building alga-edge (release)"
cargo build --locked --release -p alga-edge
bin="${CARGO_TARGET_DIR:-$ALGA_ROOT/target}/release/alga-edge"
listen="${ALGA_LISTEN:-127.0.0.1:8080}"
out=$(mktemp)

"$bin" serve --listen "$listen" --data-dir "$ALGA_ROOT/target/demo-data" \
  --component "hello=$ALGA_COMPONENTS_DIR/hello.wasm" \
  --component "faulty=$ALGA_COMPONENTS_DIR/faulty.wasm" >"$out" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$out"' EXIT

for _ in $(seq 1 600); do
  grep -q "listening on" "$out" && break
  kill -0 "$pid" 2>/dev/null || die "alga-edge exited during startup"
  sleep 0.1
done
base=$(sed -n 's/^alga-edge listening on //p' "$out")
[ -n "$base" ] || die "alga-edge did not start listening"

show() { log "curl $1"; curl -sS -w '\n[HTTP %{http_code}]\n' "$1"; }
show "$base/api/ext/hello/greet?x=1"
show "$base/api/ext/faulty/trap"
show "$base/api/ext/nope/anything"
show "$base/healthz"

if [ -n "${ALGA_DEMO_ONESHOT:-}" ]; then exit 0; fi
log "alga-edge is serving on $base (hello, faulty); Ctrl-C to stop"
wait "$pid"
