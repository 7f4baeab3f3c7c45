#!/usr/bin/env bash
# RUSTC_WRAPPER of scripts/fuzz.sh's AFL++ build: adds AFL++'s coverage instrumentation (the
# flags `cargo afl build` gives every crate) only to our crates and the parsers they feed
# input to, and only when compiling for the fuzz target (`--target` given; build scripts and
# proc macros are compiled without it). The rest of the tree (wasmtime, cranelift, libsql…)
# builds as in a dev build: instrumenting it would multiply the build time for coverage of
# code the targets never reach.
set -euo pipefail

crate=""
for_target=0
prev=""
for arg in "$@"; do
  [ "$prev" = "--crate-name" ] && crate=$arg
  case "$arg" in --target | --target=*) for_target=1 ;; esac
  prev=$arg
done

instrument=0
if [ "$for_target" = 1 ]; then
  case "$crate" in
    alga_edge | alga_edge_* | fuzz_* | serde_json | tar | zstd | percent_encoding | \
      form_urlencoded | http | base64 | jwt_simple | semver | globset | mime_guess)
      instrument=1 ;;
  esac
fi

if [ "$instrument" = 1 ]; then
  exec "$@" \
    -C codegen-units=1 \
    -C passes=sancov-module \
    -C llvm-args=-sanitizer-coverage-level=3 \
    -C llvm-args=-sanitizer-coverage-trace-pc-guard \
    -C llvm-args=-sanitizer-coverage-prune-blocks=0 \
    -C llvm-args=-sanitizer-coverage-trace-compares
fi
exec "$@"
