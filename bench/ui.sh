#!/usr/bin/env bash
# /ext-ui throughput: alga-edge serving the hello sample's UI files by content hash against
# Debian's nginx serving the very same extracted files, in one run, same wrk settings; prints
# req/s and the ratio. Knobs: BENCH_DURATION (10s), BENCH_CONNECTIONS (32), BENCH_THREADS (2).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

ensure_host_toolchain
ensure_apt wrk nginx-light curl
bash "$ALGA_ROOT/scripts/build-components.sh"
cd "$ALGA_ROOT"
cargo build --locked --release -p alga-edge
bin_dir="${CARGO_TARGET_DIR:-$ALGA_ROOT/target}/release"

duration="${BENCH_DURATION:-10s}"
connections="${BENCH_CONNECTIONS:-32}"
threads="${BENCH_THREADS:-2}"
source "$ALGA_ROOT/bench/lib.sh"


admin_token=bench-admin-token-0123456789
"$bin_dir/alga-edge" keygen --out "$work/keys" >/dev/null
edge=$(start alga-edge "$bin_dir/alga-edge" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  --trust-bundle "$work/keys/publisher.pub.pem" --admin-token "$admin_token")
bundle="$work/hello.tar.zst"
"$bin_dir/alga-edge" pack "$ALGA_COMPONENTS_DIR/extensions/hello" --out "$bundle" >/dev/null
"$bin_dir/alga-edge" sign "$bundle" --key "$work/keys/publisher.pem" >/dev/null
"$bin_dir/alga-edge" publish "$bundle" --registry "$edge" --token "$admin_token" >/dev/null
# /ext-ui serves the UI of versions some tenant installed (or an admin marked previewable).
"$bin_dir/alga-edge" preview com.alga.samples.hello --version 0.1.0 --registry "$edge" \
  --token "$admin_token" >/dev/null
hash=$(curl -sf -H "authorization: Bearer $admin_token" "$edge/admin/v1/extensions/com.alga.samples.hello" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["versions"][0]["content_hash"])')
route="/ext-ui/com.alga.samples.hello/$hash"

# nginx on the same files (the bundle's ui/ as the build laid it out), same URL path.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/nginx/logs"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  types { text/html html; text/javascript js; text/css css; }
  server {
    listen 127.0.0.1:$port;
    location $route/ {
      alias $ALGA_COMPONENTS_DIR/extensions/hello/ui/;
      add_header Cache-Control "public, max-age=31536000, immutable";
    }
  }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log" &
echo $! >"$work/nginx.pid"
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$port$route/index.html" && break
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$port$route/index.html" || die "nginx did not start"
curl -sf -o /dev/null "$edge$route/index.html" || die "alga-edge does not serve $route/index.html"
size=$(curl -s "$edge$route/index.html" | wc -c)

log "nginx: http://127.0.0.1:$port$route/index.html"
nginx_rps=$(load "http://127.0.0.1:$port$route/index.html")
log "alga-edge: $edge$route/index.html"
edge_rps=$(load "$edge$route/index.html")
log "alga-edge, SDK script with accept-encoding: br (precompressed)"
br_rps=$(load "$edge$route/alga-iframe.js" -H "accept-encoding: gzip, br")

printf '\n%-44s %12s\n' "GET index.html ($size bytes), wrk -t$threads -c$connections -d$duration" "req/s"
printf '%-44s %12.0f\n' "nginx (Debian nginx-light, 2 workers)" "$nginx_rps" \
  "alga-edge /ext-ui" "$edge_rps" "alga-edge /ext-ui alga-iframe.js (br)" "$br_rps"
awk -v e="$edge_rps" -v n="$nginx_rps" 'BEGIN {
  printf "%-44s %12.3f  (%.1f%% of nginx)\n", "ratio alga-edge / nginx", e/n, 100*e/n }'
