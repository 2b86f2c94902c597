#!/usr/bin/env bash
# Build both images from the committed Dockerfiles, unchanged:
#   images/build.sh PIPELINE_TAG SERVING_TAG
# The base is PYTHON_IMAGE (default: the Dockerfiles' own) when the engine has it or can pull it;
# otherwise a local stand-in built from Debian packages (images/standin.sh), once per machine.
# The serving image goes first; the pipeline image then reuses its cached wheel stage.
set -euo pipefail
cd "$(dirname "$0")/.."
PIPELINE_TAG="${1:?usage: build.sh PIPELINE_TAG SERVING_TAG}"
SERVING_TAG="${2:?usage: build.sh PIPELINE_TAG SERVING_TAG}"
OFFICIAL="$(sed -n 's/^ARG PYTHON_IMAGE=//p' serving/Dockerfile)"
BASE="${PYTHON_IMAGE:-$OFFICIAL}"
STANDIN="${STANDIN_IMAGE:-local/python-standin:3.11-bookworm}"

docker info >/dev/null 2>&1 || { echo "no Docker engine answers (as root: images/dockerd.sh starts one)" >&2; exit 1; }
# One build at a time on this machine: a second build (CI's early warm-up and the image tests,
# or two checkouts) waits here and then finds every layer in the cache, instead of building
# the same stages, and the Debian stand-in, twice in parallel.
exec 9>"${TMPDIR:-/tmp}/sklearn-kserve-mlops-images.lock"
flock 9
if ! docker image inspect "$BASE" >/dev/null 2>&1 && ! timeout "${PULL_TIMEOUT:-60}" docker pull -q "$BASE" >/dev/null 2>&1; then
  echo "==> $BASE cannot be pulled: building on $STANDIN, a local stand-in made from Debian packages (not the official image)"
  docker image inspect "$STANDIN" >/dev/null 2>&1 || images/standin.sh "$STANDIN"
  BASE="$STANDIN"
fi
for spec in "serving/Dockerfile $SERVING_TAG" "components/Dockerfile $PIPELINE_TAG"; do
  set -- $spec
  echo "==> docker build -f $1 -t $2 (base $BASE)"
  docker build --build-arg PYTHON_IMAGE="$BASE" -f "$1" -t "$2" .
done
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$SERVING_TAG"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$PIPELINE_TAG"
