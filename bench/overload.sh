#!/usr/bin/env bash
# Overload: one tenant (flood) floods the node while another (victim) sends steady traffic, on
# loopback, in one run on this machine. The flood comes in turn as hellos, busy loops (faulty
# /loop, each spinning until its deadline) and memory bombs (faulty /oom, each allocating until
# its instance's cap), with BENCH_FLOOD_CONNECTIONS (32 per core) connections: over ten times
# the two per core that saturate the node (bench/run.sh). The victim runs the hello extension
# over BENCH_VICTIM_CONNECTIONS (2) connections, first alone (its baseline), then under each
# flood. Prints the victim's p50/p99 and errors against its baseline, the node's peak RSS
# against its memory budget, and the bytes the node logged per phase, with the goals of issue
# 21 (p99 within 5x of the baseline, no victim errors, RSS under the budget, bounded logs).
#
# Both tenants go through the full gateway (tenant token, registry install, policies) with
# the node's default policies, except: no per-tenant request rate (so the hello flood is a
# flood, not a stream of cheap 429s), and instances of BENCH_INSTANCE_MIB (32) under a memory
# budget of BENCH_MEMORY_BUDGET_MIB (4096; half of it per tenant, the default share: 64
# instances, the default tenant concurrency), a scaled-down node that keeps the bomb phase light
# on a shared machine. Knobs: BENCH_DURATION (10s per phase), BENCH_FLOOD_CONNECTIONS,
# BENCH_VICTIM_CONNECTIONS, BENCH_INSTANCE_MIB, BENCH_MEMORY_BUDGET_MIB, BENCH_EXTRA_ARGS (more
# serve flags), BENCH_PREBUILT_COMPONENTS=1 (use the components in ALGA_COMPONENTS_DIR as
# they are).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

ensure_host_toolchain
ensure_apt wrk
[ "${BENCH_PREBUILT_COMPONENTS:-0}" = 1 ] || bash "$ALGA_ROOT/scripts/build-components.sh"
cd "$ALGA_ROOT"
cargo build --locked --release -p alga-edge
bin_dir="${CARGO_TARGET_DIR:-$ALGA_ROOT/target}/release"

cores=$(nproc)
duration="${BENCH_DURATION:-10s}"
flood_connections="${BENCH_FLOOD_CONNECTIONS:-$((32 * cores))}"
victim_connections="${BENCH_VICTIM_CONNECTIONS:-2}"
budget_mib="${BENCH_MEMORY_BUDGET_MIB:-4096}"
instance_mib="${BENCH_INSTANCE_MIB:-32}"
read -r -a extra_args <<<"${BENCH_EXTRA_ARGS:-}"
threads=1 connections=$victim_connections
source "$ALGA_ROOT/bench/lib.sh"

admin_token=bench-admin-token-0123456789
"$bin_dir/alga-edge" keygen --out "$work/keys" >/dev/null
edge=$(start alga-edge "$bin_dir/alga-edge" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  --tenant-rate 0 --memory-budget-mib "$budget_mib" --memory-limit-mib "$instance_mib" "${extra_args[@]}" \
  --trust-bundle "$work/keys/publisher.pub.pem" --admin-token "$admin_token")
node_pid=$(cat "$work/alga-edge.pid")
remote=(--registry "$edge" --token "$admin_token")
version_of() { sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$ALGA_COMPONENTS_DIR/extensions/$1/manifest.json"; }
name_of() { sed -n 's/.*"name": *"\([^"]*\)".*/\1/p' "$ALGA_COMPONENTS_DIR/extensions/$1/manifest.json"; }
for sample in hello faulty; do
  bundle="$work/$sample.tar.zst"
  "$bin_dir/alga-edge" pack "$ALGA_COMPONENTS_DIR/extensions/$sample" --out "$bundle" >/dev/null
  "$bin_dir/alga-edge" sign "$bundle" --key "$work/keys/publisher.pem" >/dev/null
  "$bin_dir/alga-edge" publish "$bundle" "${remote[@]}" >/dev/null
done
hello=$(name_of hello) faulty=$(name_of faulty)
for tenant in flood victim; do
  "$bin_dir/alga-edge" install "$hello" --version "$(version_of hello)" --tenant "$tenant" "${remote[@]}" >/dev/null
done
"$bin_dir/alga-edge" install "$faulty" --version "$(version_of faulty)" --tenant flood "${remote[@]}" >/dev/null
flood_auth="authorization: Bearer $("$bin_dir/alga-edge" token --tenant flood --data-dir "$work/data")"
victim_auth="authorization: Bearer $("$bin_dir/alga-edge" token --tenant victim --data-dir "$work/data")"
victim_url="$edge/api/ext/$hello/greet"
curl -sf -H "$flood_auth" "$edge/api/ext/$faulty/" >/dev/null || die "faulty does not answer"

# wrk's latency figures (1.2ms, 340.00us, 1.05s) in milliseconds.
ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; else if (v ~ /m$/) n *= 60000; printf "%.2f", n }'; }
log_bytes() { stat -c %s "$work/alga-edge.err"; }
peak_rss_mib() { awk '/^VmHWM:/ { printf "%d", $2 / 1024 }' "/proc/$node_pid/status"; }

# victim PHASE: runs the victim's wrk for $duration; records p50, p99 (ms), requests, errors.
victim() {
  local phase=$1
  wrk -t1 -c"$victim_connections" -d"$duration" --timeout 10s --latency -H "$victim_auth" "$victim_url" >"$work/victim-$phase.txt"
  cat "$work/victim-$phase.txt" >&2
  p50[$phase]=$(ms "$(awk '$1 == "50%" { print $2 }' "$work/victim-$phase.txt")")
  p99[$phase]=$(ms "$(awk '$1 == "99%" { print $2 }' "$work/victim-$phase.txt")")
  requests[$phase]=$(awk '/requests in/ { print $1 }' "$work/victim-$phase.txt")
  errors[$phase]=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$work/victim-$phase.txt")
}

# flood PHASE PATH: the flood tenant hammers PATH while the victim runs.
flood() {
  local phase=$1 path=$2 before
  before=$(log_bytes)
  wrk -t"$cores" -c"$flood_connections" -d"$(( ${duration%s} + 3 ))s" --timeout 30s -H "$flood_auth" "$edge$path" >"$work/flood-$phase.txt" 2>&1 &
  local flood_pid=$!
  sleep 2
  victim "$phase"
  wait "$flood_pid"
  flood_requests[$phase]=$(awk '/requests in/ { print $1 }' "$work/flood-$phase.txt")
  flood_non2xx[$phase]=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$work/flood-$phase.txt")
  logged[$phase]=$(( $(log_bytes) - before ))
  rss[$phase]=$(peak_rss_mib)
  # Let the last instances of this flood end before the next phase.
  sleep 6
}

declare -A p50 p99 requests errors logged rss flood_requests flood_non2xx
log "victim alone: $victim_url"
before=$(log_bytes)
wrk -t1 -c"$victim_connections" -d2s -H "$victim_auth" "$victim_url" >/dev/null
victim unloaded
logged[unloaded]=$(( $(log_bytes) - before )) rss[unloaded]=$(peak_rss_mib)
flood_requests[unloaded]=0 flood_non2xx[unloaded]=0
log "flood of hellos"
flood hellos "/api/ext/$hello/greet"
log "flood of busy loops"
flood loops "/api/ext/$faulty/loop"
log "flood of memory bombs"
flood bombs "/api/ext/$faulty/oom"
metrics=$(curl -s "$edge/metrics")

printf '\n%s\n' "victim: wrk -t1 -c$victim_connections -d$duration; flood: wrk -t$cores -c$flood_connections; $cores cores; $instance_mib MiB instances, memory budget $budget_mib MiB ${extra_args[*]}"
printf '%-10s %10s %10s %9s %9s %8s %12s %14s %12s %12s\n' phase "p50 ms" "p99 ms" "p99/base" requests errors "flood reqs" "flood non-2xx" "log bytes" "peak RSS MiB"
for phase in unloaded hellos loops bombs; do
  printf '%-10s %10s %10s %9s %9s %8s %12s %14s %12s %12s\n' "$phase" "${p50[$phase]}" "${p99[$phase]}" \
    "$(awk -v a="${p99[$phase]}" -v b="${p99[unloaded]}" 'BEGIN { printf "%.1fx", a / b }')" \
    "${requests[$phase]}" "${errors[$phase]}" "${flood_requests[$phase]}" "${flood_non2xx[$phase]:-0}" \
    "${logged[$phase]}" "${rss[$phase]}"
done
printf '\nrefusals (alga_denials_total by reason):\n'
awk '/^alga_denials_total\{/ { match($0, /reason="[^"]*"/); r = substr($0, RSTART + 8, RLENGTH - 9); n[r] += $2 } END { for (r in n) printf "  %-24s %d\n", r, n[r]; if (length(n) == 0) print "  none" }' <<<"$metrics"
printf 'run slots waited for: %s; execution log: %s rows written, %s dropped\n' \
  "$(awk '/^alga_cpu_turns_total/ { print $2 }' <<<"$metrics")" \
  "$(awk '/^alga_execution_log_written_total/ { print $2 }' <<<"$metrics")" \
  "$(awk '/^alga_execution_log_dropped_total/ { print $2 }' <<<"$metrics")"
worst=$(for phase in hellos loops bombs; do awk -v a="${p99[$phase]}" -v b="${p99[unloaded]}" 'BEGIN { print a / b }'; done | sort -g | tail -1)
victim_errors=$(( ${errors[hellos]} + ${errors[loops]} + ${errors[bombs]} ))
printf '\ngoals: victim p99 <= 5x baseline under each flood: %s (worst %.1fx); victim errors 0: %s (%d); peak RSS %s MiB < budget %s MiB: %s\n' \
  "$(awk -v w="$worst" 'BEGIN { print (w <= 5 ? "met" : "NOT met") }')" "$worst" \
  "$([ "$victim_errors" -eq 0 ] && echo met || echo 'NOT met')" "$victim_errors" \
  "${rss[bombs]}" "$budget_mib" "$([ "${rss[bombs]}" -lt "$budget_mib" ] && echo met || echo 'NOT met')"
