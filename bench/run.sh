#!/usr/bin/env bash
# Loads a bare hyper hello server, alga-edge's dev-mapped hello route (no auth, no registry),
# the minimal route of a WASIp2 and of a WASIp3 component (faulty / faulty-p3, both "ok") and of
# an Alga runner-world component (alga-rust /ok, "ok"),
# and the full gateway path (tenant JWT + registry install lookup + policies + execution log,
# same component as a signed bundle) with wrk, in one run on this machine, and prints the
# throughputs and their ratios. Knobs: BENCH_DURATION (10s),
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
source "$ALGA_ROOT/bench/lib.sh"


# One client tenant drives the whole load: lift its rate and concurrency policies so the bench
# measures the engine, not the limiter.
admin_token=bench-admin-token-0123456789
"$bin_dir/alga-edge" keygen --out "$work/keys" >/dev/null
edge=$(start alga-edge "$bin_dir/alga-edge" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  --tenant-rate 0 --tenant-concurrency 100000 --extension-concurrency 100000 \
  --trust-bundle "$work/keys/publisher.pub.pem" --admin-token "$admin_token" \
  --component "hello=$ALGA_COMPONENTS_DIR/hello.wasm" \
  --component "faulty=$ALGA_COMPONENTS_DIR/faulty.wasm" \
  --component "faulty-p3=$ALGA_COMPONENTS_DIR/faulty-p3.wasm" \
  --component "alga=$ALGA_COMPONENTS_DIR/alga-rust.wasm")
# The same hello component as a signed bundle, published and installed for a bench tenant.
bundle="$work/hello.tar.zst"
"$bin_dir/alga-edge" pack "$ALGA_COMPONENTS_DIR/extensions/hello" --out "$bundle" >/dev/null
"$bin_dir/alga-edge" sign "$bundle" --key "$work/keys/publisher.pem" >/dev/null
remote=(--registry "$edge" --token "$admin_token")
"$bin_dir/alga-edge" publish "$bundle" "${remote[@]}" >/dev/null
"$bin_dir/alga-edge" install com.alga.samples.hello --version "$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$ALGA_COMPONENTS_DIR/extensions/hello/manifest.json")" \
  --tenant bench-tenant "${remote[@]}" >/dev/null
tenant_token=$("$bin_dir/alga-edge" token --tenant bench-tenant --data-dir "$work/data")
baseline=$(start hyper-hello "$bin_dir/hyper-hello" 127.0.0.1:0)

log "bare hyper: $baseline/api/ext/hello/greet"
hyper_rps=$(load "$baseline/api/ext/hello/greet")
log "alga-edge bare route (dev mapping): $edge/api/ext/hello/greet"
edge_rps=$(load "$edge/api/ext/hello/greet")
log "alga-edge WASIp2 minimal route: $edge/api/ext/faulty/"
p2_rps=$(load "$edge/api/ext/faulty/")
log "alga-edge WASIp3 minimal route: $edge/api/ext/faulty-p3/"
p3_rps=$(load "$edge/api/ext/faulty-p3/")
log "alga-edge Alga runner-world minimal route: $edge/api/ext/alga/ok"
alga_rps=$(load "$edge/api/ext/alga/ok")
log "alga-edge full gateway: $edge/api/ext/com.alga.samples.hello/greet"
full_rps=$(load "$edge/api/ext/com.alga.samples.hello/greet" -H "authorization: Bearer $tenant_token")
metrics=$(curl -s "$edge/metrics")
status_200=$(awk '/^alga_requests_total\{.*com.alga.samples.hello.*status="200"/ {s+=$2} END {print s+0}' <<<"$metrics")
other=$(awk '/^alga_requests_total\{.*com.alga.samples.hello/ && !/status="200"/ {s+=$2} END {print s+0}' <<<"$metrics")
dropped=$(awk '/^alga_execution_log_dropped_total/ {print $2}' <<<"$metrics")
written=$(awk '/^alga_execution_log_written_total/ {print $2}' <<<"$metrics")

printf '\n%-36s %12s\n' "server (wrk -t$threads -c$connections -d$duration)" "req/s"
printf '%-36s %12.0f\n' "bare hyper hello" "$hyper_rps" "alga-edge bare route (dev mapping)" "$edge_rps" \
  "alga-edge full gateway (auth+lookup)" "$full_rps" \
  "WASIp2 minimal (faulty /)" "$p2_rps" "WASIp3 minimal (faulty-p3 /)" "$p3_rps" \
  "Alga runner minimal (alga-rust /ok)" "$alga_rps"
awk -v e="$edge_rps" -v h="$hyper_rps" -v f="$full_rps" -v p2="$p2_rps" -v p3="$p3_rps" -v a="$alga_rps" 'BEGIN {
  printf "%-36s %12.3f  (%.1f%% of bare hyper)\n", "ratio bare route / hyper", e/h, 100*e/h
  printf "%-36s %12.3f  (%.1f%% of the bare route)\n", "ratio full gateway / bare route", f/e, 100*f/e
  printf "%-36s %12.3f  (%.1f%% of WASIp2)\n", "ratio WASIp3 / WASIp2 minimal", p3/p2, 100*p3/p2
  printf "%-36s %12.3f  (%.1f%% of WASIp2)\n", "ratio Alga runner / WASIp2 minimal", a/p2, 100*a/p2 }'
printf 'full gateway: %s answered 200, %s other statuses; execution log: %s rows written, %s dropped\n' \
  "$status_200" "$other" "$written" "$dropped"
