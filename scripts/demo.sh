#!/usr/bin/env bash
# Sets up a fresh Debian machine (idempotent), builds everything, and runs `alga-edge demo`: a
# node on embedded defaults with the sample extensions signed, published and installed for a
# demo tenant. Sends a few sample requests, then keeps serving until Ctrl-C (set
# ALGA_DEMO_ONESHOT=1 to stop after the samples).
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

"$bin" demo --listen "$listen" --samples "$ALGA_COMPONENTS_DIR/extensions" >"$out" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$out"' EXIT

for _ in $(seq 1 600); do
  grep -q "token:" "$out" && break
  kill -0 "$pid" 2>/dev/null || die "alga-edge exited during startup"
  sleep 0.1
done
base=$(sed -n 's/^alga-edge listening on //p' "$out")
[ -n "$base" ] || die "alga-edge did not start listening"
token=$(sed -n 's/^tenant .* token: //p' "$out")
cat "$out"

show() { log "curl $*"; curl -sS -w '\n[HTTP %{http_code}]\n' "$@"; }
auth=(-H "authorization: Bearer $token")
show "${auth[@]}" "$base/api/ext/com.alga.samples.hello/greet?x=1"
show "${auth[@]}" "$base/api/ext/com.alga.samples.faulty/trap"
show "$base/api/ext/com.alga.samples.hello/"
show "${auth[@]}" "$base/api/ext/com.alga.samples.nope/anything"
show "$base/healthz"

if [ -n "${ALGA_DEMO_ONESHOT:-}" ]; then exit 0; fi
log "alga-edge is serving on $base; Ctrl-C to stop"
wait "$pid"
