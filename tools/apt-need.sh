#!/usr/bin/env bash
# Make sure commands from Debian packages are present: as root, apt-get installs the missing ones
# (one line, apt's output hidden); otherwise one line says what to install, and the exit status is 1.
# Usage: bash tools/apt-need.sh COMMAND:PACKAGE [COMMAND:PACKAGE ...]     e.g. npm:npm node:nodejs
set -euo pipefail

missing=()
for pair in "$@"; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian package(s) ${missing[*]} and not root: run 'sudo apt-get install -y ${missing[*]}'" >&2
  exit 1
fi
echo "==> apt-get install ${missing[*]}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
  echo "apt-get install ${missing[*]} failed:" >&2
  tail -n 5 "$log" >&2
  exit 1
fi
