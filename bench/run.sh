#!/usr/bin/env bash
# Loads alga-edge's hello route and a bare hyper hello server with wrk, in one run on this
# machine, and prints both throughputs and their ratio. Knobs: BENCH_DURATION (10s),
# BENCH_CONNECTIONS (32), BENCH_THREADS (2).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

ensure_host_toolchain
ensure_apt wrk
bash "$ALGA_ROOT/scripts/build-components.sh"
cd "$ALGA_ROOT"
cargo build --locked --release -p alga-edge -p hyper-hello
bin_dir="${CARGO_TARGET_DIR:-$ALGA_ROOT/target}/release"

duration="${BENCH_DURATION:-10s}"
connections="${BENCH_CONNECTIONS:-32}"
threads="${BENCH_THREADS:-2}"
work=$(mktemp -d)
# start runs inside $(...), a subshell, so PIDs go to files the EXIT trap can read.
cleanup() {
  for pidfile in "$work"/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile"); kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  done
  rm -rf "$work"
}
trap cleanup EXIT

# start NAME CMD...: runs CMD in the background and echoes the base URL it prints.
start() {
  local name=$1; shift
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  echo $! >"$work/$name.pid"
  for _ in $(seq 1 600); do
    if grep -q "listening on" "$work/$name.out"; then
      sed -n 's/.*listening on //p' "$work/$name.out"; return 0
    fi
    sleep 0.1
  done
  cat "$work/$name.err" >&2; die "$name did not start"
}

# Warm-up requests, then one wrk run; echoes requests/sec.
load() {
  local url=$1
  wrk -t"$threads" -c"$connections" -d2s "$url" >/dev/null
  wrk -t"$threads" -c"$connections" -d"$duration" --latency "$url" | tee "$work/wrk.txt" >&2
  awk '/^Requests\/sec:/ {print $2}' "$work/wrk.txt"
}

# One client tenant drives the whole load: lift its rate and concurrency policies so the bench
# measures the engine, not the limiter.
edge=$(start alga-edge "$bin_dir/alga-edge" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  --tenant-rate 0 --tenant-concurrency 100000 --extension-concurrency 100000 \
  --component "hello=$ALGA_COMPONENTS_DIR/hello.wasm")
baseline=$(start hyper-hello "$bin_dir/hyper-hello" 127.0.0.1:0)

log "bare hyper: $baseline/api/ext/hello/greet"
hyper_rps=$(load "$baseline/api/ext/hello/greet")
log "alga-edge: $edge/api/ext/hello/greet"
edge_rps=$(load "$edge/api/ext/hello/greet")

printf '\n%-28s %12s\n' "server (wrk -t$threads -c$connections -d$duration)" "req/s"
printf '%-28s %12.0f\n' "bare hyper hello" "$hyper_rps" "alga-edge hello component" "$edge_rps"
awk -v e="$edge_rps" -v h="$hyper_rps" 'BEGIN { printf "%-28s %12.3f  (%.1f%% of bare hyper)\n", "ratio alga-edge / hyper", e/h, 100*e/h }'
