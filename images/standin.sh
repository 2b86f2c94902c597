#!/usr/bin/env bash
# Build a local stand-in for python:3.11-slim-bookworm from Debian's packages, for machines that
# cannot pull images. Debian bookworm's python3 is 3.11, the version the project pins.
# The tag says what it is (local/..., "standin"), so nobody mistakes it for the official image, and
# the host's CA bundle goes into this image only: containers here reach the package registries
# through a proxy that only that bundle trusts. Usage: images/standin.sh TAG
set -euo pipefail
TAG="${1:?usage: standin.sh TAG}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA=/etc/ssl/certs/ca-certificates.crt

command -v debootstrap >/dev/null || { echo "debootstrap not found: apt-get install debootstrap" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "debootstrap needs root" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "==> debootstrap $SUITE (about 100 s, once per machine)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$work/root" "$MIRROR" \
  >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
# The image python:3.11-slim has /usr/local/bin/python and pip; a venv there gives the same paths.
chroot "$work/root" python3 -m venv /usr/local
[ -r "$HOST_CA" ] && cp "$HOST_CA" "$work/root/etc/ssl/certs/ca-certificates.crt"

tar -C "$work/root" -c . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' \
  --message "local stand-in for python:3.11-slim-bookworm, built by images/standin.sh (not the official image)" \
  - "$TAG" >/dev/null
echo "==> built $TAG"
