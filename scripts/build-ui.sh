#!/usr/bin/env bash
# build-ui.sh UI_DIR OUT_DIR: builds an extension UI that has a package.json (React and
# @alga-psa/ui-kit, say) into OUT_DIR, the files a bundle's ui/ holds: `npm ci` from its lock
# file (no install scripts: nothing is downloaded at install), then esbuild bundles
# src/main.{tsx,jsx,ts,js} into app.js (+ app.css for imported CSS), beside index.html and
# public/. `import … from 'alga-iframe'` resolves to this checkout's iframe SDK. Used by
# `alga-edge ext build` and scripts/build-components.sh alike.
set -euo pipefail
ui=$(cd "$1" && pwd)
out=$2
sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/sdk/iframe/alga-iframe.js"
[ -f "$ui/package.json" ] || { echo "build-ui: $ui has no package.json" >&2; exit 2; }
[ -f "$ui/package-lock.json" ] || {
  echo "build-ui: $ui has no package-lock.json: run 'npm install' there once and commit the lock file" >&2
  exit 2
}
command -v npm >/dev/null || { echo "build-ui: npm is missing (apt install npm)" >&2; exit 2; }
if ! cmp -s "$ui/package-lock.json" "$ui/node_modules/.installed-from.lock"; then
  (cd "$ui" && npm ci --ignore-scripts --no-audit --no-fund --silent)
  cp "$ui/package-lock.json" "$ui/node_modules/.installed-from.lock"
fi
entry=
for candidate in src/main.tsx src/main.jsx src/main.ts src/main.js; do
  [ -f "$ui/$candidate" ] && { entry=$candidate; break; }
done
[ -n "$entry" ] || { echo "build-ui: $ui has no src/main.{tsx,jsx,ts,js}" >&2; exit 2; }
[ -x "$ui/node_modules/.bin/esbuild" ] || {
  echo "build-ui: esbuild is not among $ui's dependencies (add it to devDependencies)" >&2
  exit 2
}
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
(cd "$ui" && node_modules/.bin/esbuild "$entry" --bundle --format=esm --minify \
  --target=es2022 --jsx=automatic --log-level=warning \
  --define:process.env.NODE_ENV='"production"' --alias:alga-iframe="$sdk" \
  --outfile="$out/app.js")
[ -f "$ui/index.html" ] && cp "$ui/index.html" "$out/"
[ -d "$ui/public" ] && cp -r "$ui/public/." "$out/"
exit 0
