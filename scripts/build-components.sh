#!/usr/bin/env bash
# Builds every guest component under components/ into $ALGA_COMPONENTS_DIR/<name>.wasm with
# Debian's wasm32 toolchain (DESIGN §7), installing it first when missing. Incremental: the guest
# target dir (and its rebuilt std) is kept in $ALGA_GUEST_TARGET_DIR between runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_apt "${GUEST_APT_PACKAGES[@]}"
command -v python3 >/dev/null || ensure_apt python3

GUEST_TARGET_DIR="${ALGA_GUEST_TARGET_DIR:-$ALGA_ROOT/components/target}"
cd "$ALGA_ROOT/components"

# rustup's proxies shadow Debian's cargo/rustc on PATH, so name Debian's explicitly.
export CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$GUEST_TARGET_DIR"

log "building guest components (target dir $GUEST_TARGET_DIR)"
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
    if [ -d "$name/ui" ]; then cp -r "$name/ui" "$ext/ui"; fi
  fi
done

# wit/extension.wit needs the standard WASI packages: take them from the wasip2 crate that the
# guests already depend on, rather than keeping copies in this repository.
wasip2_dir=$(/usr/bin/cargo metadata --format-version 1 --locked --filter-platform wasm32-wasip2 \
  | python3 -c 'import json,sys,os
pkgs=[p for p in json.load(sys.stdin)["packages"] if p["name"]=="wasip2"]
pkgs.sort(key=lambda p: [int(x) for x in p["version"].split("+")[0].split(".")])
print(os.path.dirname(pkgs[-1]["manifest_path"]) if pkgs else "")')
if [ -n "$wasip2_dir" ] && [ -d "$wasip2_dir/wit/deps" ]; then
  mkdir -p "$ALGA_ROOT/wit/deps"
  cp "$wasip2_dir"/wit/deps/*.wit "$ALGA_ROOT/wit/deps/"
fi
