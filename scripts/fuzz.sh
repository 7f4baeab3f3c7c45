#!/usr/bin/env bash
# Coverage-guided fuzzing of Alga Edge's input-facing code with AFL++ (afl.rs), on stable Rust.
#
#   scripts/fuzz.sh list               the targets (fuzz/src/targets/*.rs)
#   scripts/fuzz.sh TARGET SECONDS     fuzz TARGET for SECONDS, starting from its committed seeds
#                                      (fuzz/corpus/TARGET), then print executions, crashes and
#                                      hangs; exits 1 when it found a crash
#   scripts/fuzz.sh build [TARGET...]  only build the instrumented binaries
#
# Not part of CI (the suite replays seeds and mutations of them through every target instead:
# fuzz/tests/smoke.rs). The instrumented build has its own target folder, $ALGA_FUZZ_TARGET_DIR
# (default: $CARGO_TARGET_DIR-afl, or target/afl); findings go to $ALGA_FUZZ_FINDINGS (default:
# that folder's findings/), one folder per run: crashes/ and hangs/ hold the inputs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { die "usage: scripts/fuzz.sh list | TARGET SECONDS | build [TARGET...]"; }

# The targets, as fuzz/Cargo.toml declares their binaries (fuzz-<target>).
targets() { sed -n 's/^name = "fuzz-\(.*\)"$/\1/p' "$ALGA_ROOT/fuzz/Cargo.toml"; }

known() { targets | grep -qx -- "$1" || die "unknown target '$1'; targets: $(targets | tr '\n' ' ')"; }

fuzz_target_dir="${ALGA_FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR-afl}}"
fuzz_target_dir="${fuzz_target_dir:-$ALGA_ROOT/target/afl}"
host_triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="$fuzz_target_dir/$host_triple/fuzz"

# Builds fuzz-<target> for each target given with AFL++ instrumentation (scripts/afl-rustc.sh
# decides which crates get it). `--target` keeps build scripts and proc macros uninstrumented.
build() {
  ensure_afl
  local bins=()
  for t in "$@"; do bins+=(--bin "fuzz-$t"); done
  log "building AFL++ binaries (${*}) into $fuzz_target_dir"
  (cd "$ALGA_ROOT" && CARGO_TARGET_DIR="$fuzz_target_dir" CARGO_INCREMENTAL=0 \
    RUSTC_WRAPPER="$ALGA_ROOT/scripts/afl-rustc.sh" \
    RUSTFLAGS="-C link-arg=$ALGA_AFL_RT" \
    cargo build --locked --profile fuzz --target "$host_triple" -p alga-edge-fuzz --features afl "${bins[@]}")
}

# The value of KEY in an AFL++ fuzzer_stats file.
afl_stat() { sed -n "s/^$2 *: *//p" "$1" | head -1; }

fuzz() {
  local target=$1 seconds=$2
  build "$target"
  local findings="${ALGA_FUZZ_FINDINGS:-$fuzz_target_dir/findings}/$target"
  local run
  run="$findings/$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$run"
  # The kv target's databases live on tmpfs when there is one: a disk's fsync per write would
  # make it crawl. Removed afterwards.
  local scratch
  scratch=$(mktemp -d "$([ -d /dev/shm ] && echo /dev/shm || echo "$run")/alga-fuzz.XXXXXX")
  local dict=() timeout_ms=1000
  [ -f "$ALGA_ROOT/fuzz/dict/$target.dict" ] && dict=(-x "$ALGA_ROOT/fuzz/dict/$target.dict")
  [ "$target" = kv ] && timeout_ms=5000
  log "fuzzing $target for $seconds s; findings in $run"
  local status=0
  # -V ends the campaign after SECONDS; timeout bounds it should afl-fuzz hang on start-up.
  TMPDIR="$scratch" AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 \
    AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SUPPRESS_BANNER=1 \
    timeout --signal=INT --kill-after=30 $((seconds + 120)) \
    "$ALGA_AFL_BIN/afl-fuzz" -i "$ALGA_ROOT/fuzz/corpus/$target" -o "$run" -V "$seconds" \
    -t "$timeout_ms" "${dict[@]}" -- "$bin_dir/fuzz-$target" >"$run/afl-fuzz.log" 2>&1 || status=$?
  rm -rf "$scratch"
  local stats="$run/default/fuzzer_stats"
  if [ ! -f "$stats" ]; then
    tail -30 "$run/afl-fuzz.log" >&2
    die "afl-fuzz did not run (exit $status); log: $run/afl-fuzz.log"
  fi
  local execs crashes hangs
  execs=$(afl_stat "$stats" execs_done)
  crashes=$(afl_stat "$stats" saved_crashes)
  hangs=$(afl_stat "$stats" saved_hangs)
  printf 'fuzz %s: %s executions in %s s (%s/s), %s crashes, %s hangs, corpus %s, edges %s, stability %s\n' \
    "$target" "$execs" "$(afl_stat "$stats" run_time)" "$(afl_stat "$stats" execs_per_sec)" "$crashes" "$hangs" \
    "$(afl_stat "$stats" corpus_count)" "$(afl_stat "$stats" edges_found)" "$(afl_stat "$stats" stability)"
  if [ "$crashes" != 0 ]; then
    printf 'crashing inputs:\n' >&2
    ls -1 "$run/default/crashes"/id* >&2
    exit 1
  fi
}

case "${1:-}" in
  list) targets ;;
  build)
    shift
    if [ $# -eq 0 ]; then mapfile -t all < <(targets); set -- "${all[@]}"; fi
    for t in "$@"; do known "$t"; done
    build "$@"
    ;;
  "") usage ;;
  *)
    [ $# -eq 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || usage
    known "$1"
    fuzz "$1" "$2"
    ;;
esac
