# Shared by the bench scripts: a work directory removed on exit, and servers started in the
# background whose PIDs the EXIT trap stops. Source after scripts/lib.sh.

work=$(mktemp -d)
# start runs inside $(...), a subshell, so PIDs go to files the EXIT trap can read.
bench_cleanup() {
  for pidfile in "$work"/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile"); kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  done
  rm -rf "$work"
}
trap bench_cleanup EXIT

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

# load URL [wrk args…]: warm-up, then one wrk run with $threads/$connections/$duration;
# echoes requests/sec (the full wrk report goes to stderr). With $load_pid set, also writes
# the CPU time that process used per request of the measured run, in µs, to $work/cpu_us: wrk
# shares the machine's cores with the server, so req/s alone mixes the server's cost with
# wrk's; CPU per request is the server's own.
load() {
  local url=$1; shift
  wrk -t"$threads" -c"$connections" -d2s "$@" "$url" >/dev/null
  local before=0 after=0
  [ -n "${load_pid:-}" ] && before=$(cpu_ticks "$load_pid")
  wrk -t"$threads" -c"$connections" -d"$duration" --latency "$@" "$url" | tee "$work/wrk.txt" >&2
  if [ -n "${load_pid:-}" ]; then
    after=$(cpu_ticks "$load_pid")
    awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" \
      '/ requests in / { printf "%.1f\n", ticks / hz * 1e6 / $1 }' "$work/wrk.txt" >"$work/cpu_us"
  fi
  awk '/^Requests\/sec:/ {print $2}' "$work/wrk.txt"
}

# cpu_ticks PID: user + system CPU time PID used so far, in clock ticks (all its threads).
cpu_ticks() {
  awk '{print $14 + $15}' "/proc/$1/stat"
}
