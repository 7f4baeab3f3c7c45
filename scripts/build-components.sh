#!/usr/bin/env bash
# Builds every guest component under components/ into $ALGA_COMPONENTS_DIR/<name>.wasm with
# Debian's wasm32 toolchain (DESIGN §7), installing it first when missing. Incremental: the guest
# target dir (and its rebuilt std) is kept in $ALGA_GUEST_TARGET_DIR between runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_apt "${GUEST_APT_PACKAGES[@]}"
command -v python3 >/dev/null || ensure_apt python3
command -v npm >/dev/null || ensure_apt nodejs npm  # UIs with a package.json (scripts/build-ui.sh)

GUEST_TARGET_DIR="${ALGA_GUEST_TARGET_DIR:-$ALGA_ROOT/components/target}"
cd "$ALGA_ROOT/components"

# rustup's proxies shadow Debian's cargo/rustc on PATH, so name Debian's explicitly.
export CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$GUEST_TARGET_DIR"

# The guests' WIT (wit/extension.wit and the samples' worlds) needs standard WASI packages: take
# them from the crates that ship them rather than keeping copies in this repository. wasi:http and
# friends come from the wasip2 crate the guests depend on; wasi:keyvalue, wasi:config and
# wasi:logging from the crates pinned by wit/sources/Cargo.toml (resolved, never built); Spin's
# drafts from spin-sdk.
crate_dirs() { # MANIFEST [--filter-platform T] -- NAME...: source folders, newest version first
  local manifest=$1; shift
  local args=()
  while [ "$1" != "--" ]; do args+=("$1"); shift; done; shift
  /usr/bin/cargo metadata --format-version 1 --locked --manifest-path "$manifest" "${args[@]}" \
    | python3 -c 'import json,sys,os
want=sys.argv[1:]
pkgs=json.load(sys.stdin)["packages"]
for name in want:
    found=[p for p in pkgs if p["name"]==name]
    found.sort(key=lambda p: [int(x) for x in p["version"].split("+")[0].split("-")[0].split(".")], reverse=True)
    if not found: sys.exit("crate %s is not in the lock file" % name)
    print(os.path.dirname(found[0]["manifest_path"]))' "$@"
}
mkdir -p "$ALGA_ROOT/wit/deps"
wasip2_dir=$(crate_dirs "$ALGA_ROOT/components/Cargo.toml" --filter-platform wasm32-wasip2 -- wasip2)
cp "$wasip2_dir"/wit/deps/*.wit "$ALGA_ROOT/wit/deps/"
for dir in $(crate_dirs "$ALGA_ROOT/wit/sources/Cargo.toml" -- \
    wasmtime-wasi-keyvalue wasmtime-wasi-config wasi-logger); do
  for package in "$dir"/wit/deps/*/; do
    rm -rf "$ALGA_ROOT/wit/deps/$(basename "$package")"
    cp -r "$package" "$ALGA_ROOT/wit/deps/"
  done
done
# The drafts Spin hosts (wasi:keyvalue@0.2.0-draft2, wasi:config@0.2.0-draft-2024-09-27), for
# wit/spin-standard/: from spin-sdk, which the spin-p3 sample depends on. A separate WIT folder,
# because a second version of a package in wit/deps would rename every binding of the first.
spin_sdk_dir=$(crate_dirs "$ALGA_ROOT/components/Cargo.toml" --filter-platform wasm32-wasip2 -- spin-sdk)
mkdir -p "$ALGA_ROOT/wit/spin-standard/deps"
for package in wasi-keyvalue-2024-10-17 wasi-runtime-config-2024-09-27; do
  rm -rf "$ALGA_ROOT/wit/spin-standard/deps/$package"
  cp -r "$spin_sdk_dir/wit/deps/$package" "$ALGA_ROOT/wit/spin-standard/deps/"
done

log "building guest components (target dir $GUEST_TARGET_DIR)"
ensure_wasm_tools
/usr/bin/cargo build --release --locked --target wasm32-wasip2 \
  -Zbuild-std=std,panic_abort ${CI:+--quiet}

mkdir -p "$ALGA_COMPONENTS_DIR"
members=$(/usr/bin/cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json,sys; print("\n".join(p["name"] for p in json.load(sys.stdin)["packages"]))')
for name in $members; do
  src="$GUEST_TARGET_DIR/wasm32-wasip2/release/${name//-/_}.wasm"
  [ -f "$src" ] || die "expected build output $src is missing"
  # Copy only on change so mtimes (and the host's compile cache) stay stable.
  cmp -s "$src" "$ALGA_COMPONENTS_DIR/$name.wasm" 2>/dev/null || cp "$src" "$ALGA_COMPONENTS_DIR/$name.wasm"
  printf '  %-10s %8d bytes  %s\n' "$name" "$(stat -c %s "$ALGA_COMPONENTS_DIR/$name.wasm")" "$ALGA_COMPONENTS_DIR/$name.wasm" >&2
  # Samples with a manifest also get a packable extension folder (what `alga-edge pack` and
  # `alga-edge demo` read): manifest.json, dist/main.wasm, ui/.
  if [ -f "$name/manifest.json" ]; then
    ext="$ALGA_COMPONENTS_DIR/extensions/$name"
    mkdir -p "$ext/dist"
    cp "$name/manifest.json" "$ext/manifest.json"
    cmp -s "$src" "$ext/dist/main.wasm" 2>/dev/null || cp "$src" "$ext/dist/main.wasm"
    rm -rf "$ext/ui"
    if [ -f "$name/ui/package.json" ]; then
      # A UI with npm dependencies (the UI kit): built as `alga-edge ext build` builds it.
      bash "$ALGA_ROOT/scripts/build-ui.sh" "$name/ui" "$ext/ui"
    elif [ -d "$name/ui" ]; then
      cp -r "$name/ui" "$ext/ui"
      # UIs import the iframe SDK from their own folder: the bundle carries the version it
      # was built with.
      cp "$ALGA_ROOT/sdk/iframe/alga-iframe.js" "$ext/ui/alga-iframe.js"
    fi
  fi
done

# The spin-sdk sample: spin-sdk 5.x builds a wasm32-wasip1 module, which the wasip1 reactor
# adapter (from the crate pinned in wit/sources) turns into a component (DESIGN §7).
log "building the spin-sdk sample (wasm32-wasip1 + component adapter)"
(cd "$ALGA_ROOT/components/spin-kv" && \
  RUSTFLAGS="-L /usr/lib/wasm32-wasi -Clinker=/usr/bin/wasm-ld-19" \
  /usr/bin/cargo build --release --locked --target wasm32-wasip1 -Zbuild-std=std,panic_abort ${CI:+--quiet})
adapter="$(crate_dirs "$ALGA_ROOT/wit/sources/Cargo.toml" -- wasi-preview1-component-adapter-provider)/artefacts/wasi_snapshot_preview1.reactor.wasm"
[ -f "$adapter" ] || die "the wasip1 reactor adapter is missing: $adapter"
spin_out="$GUEST_TARGET_DIR/spin-kv.component.wasm"
"$ALGA_WASM_TOOLS" component new "$GUEST_TARGET_DIR/wasm32-wasip1/release/spin_kv.wasm" \
  --adapt "wasi_snapshot_preview1=$adapter" -o "$spin_out"
cmp -s "$spin_out" "$ALGA_COMPONENTS_DIR/spin-kv.wasm" 2>/dev/null || cp "$spin_out" "$ALGA_COMPONENTS_DIR/spin-kv.wasm"
mkdir -p "$ALGA_COMPONENTS_DIR/extensions/spin-kv/dist"
cp "$ALGA_ROOT/components/spin-kv/manifest.json" "$ALGA_COMPONENTS_DIR/extensions/spin-kv/manifest.json"
cmp -s "$spin_out" "$ALGA_COMPONENTS_DIR/extensions/spin-kv/dist/main.wasm" 2>/dev/null \
  || cp "$spin_out" "$ALGA_COMPONENTS_DIR/extensions/spin-kv/dist/main.wasm"
printf '  %-10s %8d bytes  %s\n' spin-kv "$(stat -c %s "$ALGA_COMPONENTS_DIR/spin-kv.wasm")" "$ALGA_COMPONENTS_DIR/spin-kv.wasm" >&2


# alga-js: an extension of Alga's runner world in TypeScript, built as Alga's samples build
# theirs: esbuild bundles src/index.ts (alga:extension/* left external), then componentize-js
# 0.23 makes the component with every WASI feature disabled (the runner world exports only
# `handler`). componentize-js takes a minute or more, so it runs only when the bundle, the WIT
# or the toolchain changed.
log "building the alga-js sample (esbuild + componentize-js, world runner)"
ensure_js_toolchain
ensure_alga_js_toolchain
js_out="$GUEST_TARGET_DIR/alga-js"
mkdir -p "$js_out"
NODE_PATH="$ALGA_JS_NODE_PATH" "$ALGA_ESBUILD" "$ALGA_ROOT/components/alga-js/src/index.ts" \
  --bundle --format=esm --platform=neutral --target=es2022 '--external:alga:extension/*' \
  --log-level=warning --outfile="$js_out/index.js"
js_key=$(cat "$js_out/index.js" "$ALGA_ROOT/wit/runner/runner.wit" "$ALGA_ROOT/sdk/toolchains/js/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ ! -f "$js_out/alga-js.wasm" ] || [ "$(cat "$js_out/key" 2>/dev/null)" != "$js_key" ]; then
  "$ALGA_COMPONENTIZE_JS" "$js_out/index.js" -w "$ALGA_ROOT/wit/runner" -n runner \
    -d stdio random clocks http fetch-event -o "$js_out/alga-js.wasm"
  echo "$js_key" > "$js_out/key"
fi
cmp -s "$js_out/alga-js.wasm" "$ALGA_COMPONENTS_DIR/alga-js.wasm" 2>/dev/null || cp "$js_out/alga-js.wasm" "$ALGA_COMPONENTS_DIR/alga-js.wasm"
ext="$ALGA_COMPONENTS_DIR/extensions/alga-js"
mkdir -p "$ext/dist"
cp "$ALGA_ROOT/components/alga-js/manifest.json" "$ext/manifest.json"
cmp -s "$js_out/alga-js.wasm" "$ext/dist/main.wasm" 2>/dev/null || cp "$js_out/alga-js.wasm" "$ext/dist/main.wasm"
rm -rf "$ext/ui" && cp -r "$ALGA_ROOT/components/alga-js/ui" "$ext/ui"
cp "$ALGA_ROOT/sdk/iframe/alga-iframe.js" "$ext/ui/alga-iframe.js"
printf '  %-10s %8d bytes  %s\n' alga-js "$(stat -c %s "$ALGA_COMPONENTS_DIR/alga-js.wasm")" "$ALGA_COMPONENTS_DIR/alga-js.wasm" >&2
