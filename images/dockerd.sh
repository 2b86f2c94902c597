#!/usr/bin/env bash
# Start dockerd when no engine answers, and wait until `docker info` does (CI and fresh machines, as root).
# Leaves nothing half-started: an engine that does not answer in time is stopped and the script fails.
set -euo pipefail
TIMEOUT="${DOCKERD_TIMEOUT:-60}"
LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"

docker info >/dev/null 2>&1 && exit 0
command -v dockerd >/dev/null || { echo "dockerd not found: apt-get install docker.io" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "no Docker engine answers and starting one needs root" >&2; exit 1; }

echo "==> starting dockerd (log: $LOG)"
nohup dockerd >"$LOG" 2>&1 &
pid=$!
for _ in $(seq "$TIMEOUT"); do
  docker info >/dev/null 2>&1 && { echo "==> dockerd answers (pid $pid)"; exit 0; }
  kill -0 "$pid" 2>/dev/null || break
  sleep 1
done
echo "dockerd did not answer within ${TIMEOUT}s; last log lines:" >&2
tail -n 20 "$LOG" >&2 || true
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
exit 1
