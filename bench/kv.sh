#!/usr/bin/env bash
# KV write throughput at the primary and through an edge, same run, same load: a primary and an
# edge (release build), the capabilities sample installed with cap:storage.kv, and wrk PUTting
# unique keys through the guest's wasi:keyvalue `set` (/kv?bucket=&key=): first at the primary
# (writes applied locally), then at the edge (each write forwarded to the primary, answered once
# the edge's replica has it). Prints both writes/s and the ratio edge / primary; every answer
# that is not a stored write (HTTP status or the guest's {"ok":false}) is counted and reported.
# Knobs: BENCH_DURATION (10s), BENCH_CONNECTIONS (16), BENCH_THREADS (2); BENCH_BIN: an
# alga-edge binary already built (the components in $ALGA_COMPONENTS_DIR then too): skips both
# builds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

ensure_apt wrk curl
cd "$ALGA_ROOT"
if [ -n "${BENCH_BIN:-}" ]; then
  bin=$BENCH_BIN
else
  ensure_host_toolchain
  bash "$ALGA_ROOT/scripts/build-components.sh"
  cargo build --locked --release -p alga-edge
  bin="${CARGO_TARGET_DIR:-$ALGA_ROOT/target}/release/alga-edge"
fi

duration="${BENCH_DURATION:-10s}"
connections="${BENCH_CONNECTIONS:-16}"
threads="${BENCH_THREADS:-2}"
source "$ALGA_ROOT/bench/lib.sh"

admin=bench-admin-token-0123456789
sync=bench-sync-token-0123456789
"$bin" keygen --out "$work/keys" >/dev/null
# One tenant drives the load: lift the limits that would measure the limiter instead (rate,
# concurrency, the install's key count).
common=(--trust-bundle "$work/keys/publisher.pub.pem" --admin-token "$admin" --sync-token "$sync"
  --tenant-rate 0 --tenant-concurrency 100000 --extension-concurrency 100000 --kv-max-keys 100000000)
primary=$(start primary "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/primary" "${common[@]}")
mkdir -p "$work/edge/keys"
cp "$work/primary/keys/tenant-token.pem" "$work/edge/keys/"
edge=$(start edge "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/edge" --role edge --primary "$primary" "${common[@]}")

sample="$ALGA_COMPONENTS_DIR/extensions/capabilities"
name=$(sed -n 's/.*"name": *"\([^"]*\)".*/\1/p' "$sample/manifest.json")
version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$sample/manifest.json")
bundle="$work/capabilities.tar.zst"
"$bin" pack "$sample" --out "$bundle" >/dev/null
"$bin" sign "$bundle" --key "$work/keys/publisher.pem" >/dev/null
"$bin" publish "$bundle" --registry "$primary" --token "$admin" >/dev/null
"$bin" install "$name" --version "$version" --tenant bench-tenant --grant cap:storage.kv \
  --registry "$primary" --token "$admin" >/dev/null
token=$("$bin" token --tenant bench-tenant --data-dir "$work/primary")
for _ in $(seq 1 200); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $token" "$edge/api/ext/$name/context")
  [ "$code" = 200 ] && break
  sleep 0.05
done
[ "$code" = 200 ] || die "the edge never served the install (last status $code)"

# Unique keys: each wrk thread its own prefix (and each run its own, so runs never overwrite);
# a response that is not {"ok":true} counts as failed.
cat >"$work/kv.lua" <<'LUA'
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end
function init(args)
  prefix = (args[1] or "run") .. "-" .. id .. "-"
  n = 0
  failed = 0
end
function request()
  n = n + 1
  return wrk.format("PUT", wrk.path .. "&key=" .. prefix .. n, nil, "value " .. prefix .. n)
end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"ok":true', 1, true) then
    failed = failed + 1
  end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("failed") end
  io.write(string.format("kv-failed: %d\n", total))
end
LUA

# kv_load NODE RUN: warm-up, then the measured run; echoes "writes/s failed".
kv_load() {
  local url="$1/api/ext/$name/kv?bucket=bench"
  wrk -t"$threads" -c"$connections" -d2s -s "$work/kv.lua" -H "authorization: Bearer $token" \
    "$url" -- "$2-warm" >/dev/null
  wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$work/kv.lua" \
    -H "authorization: Bearer $token" "$url" -- "$2" | tee "$work/wrk.txt" >&2
  echo "$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.txt") $(awk '/^kv-failed:/ {print $2}' "$work/wrk.txt")"
}

log "KV writes at the primary: $primary"
read -r primary_rps primary_failed < <(kv_load "$primary" primary)
log "KV writes through the edge: $edge (forwarded to $primary)"
read -r edge_rps edge_failed < <(kv_load "$edge" edge)

printf '\n%-40s %12s %8s\n' "KV set (wrk -t$threads -c$connections -d$duration)" "writes/s" "failed"
printf '%-40s %12.0f %8d\n' "at the primary" "$primary_rps" "$primary_failed" \
  "through an edge" "$edge_rps" "$edge_failed"
awk -v e="$edge_rps" -v p="$primary_rps" 'BEGIN {
  printf "%-40s %12.3f  (goal >= 0.5)\n", "ratio edge / primary", e/p }'
