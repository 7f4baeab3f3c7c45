#!/usr/bin/env bash
# Publish→visible-on-edge latency: a primary and an edge (release build, default 1 s sync
# interval, on-demand sync on a miss), 100 installs on the primary, each timed until the edge's
# gateway serves it. Prints p50/p99/max. Knob: BENCH_INSTALLS (100).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

ensure_host_toolchain
bash "$ALGA_ROOT/scripts/build-components.sh"
cd "$ALGA_ROOT"
cargo build --locked --release -p alga-edge
bin="${CARGO_TARGET_DIR:-$ALGA_ROOT/target}/release/alga-edge"
installs="${BENCH_INSTALLS:-100}"
source "$ALGA_ROOT/bench/lib.sh"

admin=bench-admin-token-0123456789
sync=bench-sync-token-0123456789
"$bin" keygen --out "$work/keys" >/dev/null
common=(--trust-bundle "$work/keys/publisher.pub.pem" --admin-token "$admin" --sync-token "$sync" --tenant-rate 0)
primary=$(start primary "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/primary" "${common[@]}")
# The edge verifies tenant tokens with the same key as the primary (the platform's key in
# production; here the primary's dev key).
mkdir -p "$work/edge/keys"
cp "$work/primary/keys/tenant-token.pem" "$work/edge/keys/"
edge=$(start edge "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/edge" --role edge --primary "$primary" "${common[@]}")

bundle="$work/hello.tar.zst"
"$bin" pack "$ALGA_COMPONENTS_DIR/extensions/hello" --out "$bundle" >/dev/null
"$bin" sign "$bundle" --key "$work/keys/publisher.pem" >/dev/null
"$bin" publish "$bundle" --registry "$primary" --token "$admin" >/dev/null
version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$ALGA_COMPONENTS_DIR/extensions/hello/manifest.json")
name=com.alga.samples.hello

log "timing $installs installs: primary $primary → edge $edge"
: >"$work/latencies"
for i in $(seq 1 "$installs"); do
  tenant="bench-$i"
  token=$("$bin" token --tenant "$tenant" --data-dir "$work/primary")
  start_ns=$(date +%s%N)
  curl -sf -o /dev/null -X POST -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d "{\"extension\":\"$name\",\"version\":\"$version\"}" "$primary/admin/v1/tenants/$tenant/installs" \
    || die "install $i failed"
  for _ in $(seq 1 2000); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $token" "$edge/api/ext/$name/")
    [ "$code" = 200 ] && break
    sleep 0.005
  done
  [ "$code" = 200 ] || die "install $i never became visible on the edge (last status $code)"
  echo $(( ($(date +%s%N) - start_ns) / 1000000 )) >>"$work/latencies"
done
sort -n "$work/latencies" | awk '{ v[NR] = $1 } END {
  p50 = v[int((NR + 1) * 0.50)]; p99 = v[int(NR * 0.99 + 0.999)]
  printf "\npublish→visible-on-edge over %d installs (ms, includes the install call):\n", NR
  printf "  p50 %d   p99 %d   max %d   min %d\n", p50, p99, v[NR], v[1] }'
