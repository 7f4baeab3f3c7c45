# Shared helpers for the scripts in this folder. Source it; don't run it.

# Repository root, whatever the caller's working directory.
ALGA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ALGA_ROOT

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

# ensure_s3_server: an S3-compatible server for the object-store tests (moto, from PyPI, in a
# venv under $ALGA_TOOLS_DIR); exports ALGA_MOTO_SERVER. Installed once, reused afterwards.
ensure_s3_server() {
  local tools="${ALGA_TOOLS_DIR:-$ALGA_ROOT/target/tools}"
  local venv="$tools/s3-venv"
  if [ ! -x "$venv/bin/moto_server" ]; then
    command -v python3 >/dev/null || ensure_apt python3
    python3 -c 'import ensurepip' 2>/dev/null || ensure_apt python3-venv
    log "installing moto (S3-compatible test server) into $venv"
    rm -rf "$venv"
    mkdir -p "$tools"
    python3 -m venv "$venv" || die "cannot create a Python venv (apt-get install python3-venv)"
    "$venv/bin/pip" install -q --disable-pip-version-check 'moto[s3,server]==5.*' \
      || die "pip install moto failed"
  fi
  export ALGA_MOTO_SERVER="$venv/bin/moto_server"
}
