#!/usr/bin/env bash
# `make load`: a bounded hey run, then ab, against a V2 server that is already up (`make serve`).
# Prints requests/s and p50/p90/p99 for each tool. Overrides (environment or make variables):
#   URL=http://127.0.0.1:8080  MODEL_NAME=diabetes-rf  REQUESTS=2000  CONCURRENCY=16
set -euo pipefail
cd "$(dirname "$0")/.."
# The load subcommand uses only the standard library, so any python3 will do without the venv.
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" bench/serving_bench.py load \
  --url "${URL:-http://127.0.0.1:8080}" \
  --model "${MODEL_NAME:-diabetes-rf}" \
  --requests "${REQUESTS:-2000}" \
  --concurrency "${CONCURRENCY:-16}"
