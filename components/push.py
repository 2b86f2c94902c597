"""Push: publish the model as the next version, then move production to it.

The order is what keeps readers and failures safe:
  1. Everything checkable locally (files, metadata, names) is checked before the first write.
  2. v<N>/model.joblib, then v<N>/metadata.json, each written only if absent (If-None-Match: *).
     A v<N> that a concurrent run took first is left alone and N+1 is tried. A model.joblib
     whose metadata.json could not be written is deleted: no v<N> stays without its metadata.
  3. The gate decides again against production as it is now: another run may have promoted a
     better model since evaluate looked. If the candidate now loses, v<N> stays and production
     does not move.
  4. production/model.joblib, then production/metadata.json, as server-side copies of v<N>/. If
     anything fails once the first copy has started, production is put back to the version it
     held (copies of its v<M>/), so production/metadata.json keeps describing production/model.joblib.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from components.artifacts import METADATA_FILE, MODEL_FILE, MODEL_SUFFIXES, TRAINING_FILE, model_files, read_json
from components.errors import EvaluateError, ObjectAlreadyExists, ObjectStoreError, PushError, VersionTaken
from components.gate import Decision, decide
from components.objectstore import ObjectStore
from components.registry import (
    check_location,
    metadata_key,
    model_key,
    production_metadata,
    production_prefix,
    version_prefix,
    versions,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Concurrent runs each take the next free v<N>; past this many collisions something else is wrong.
MAX_VERSION_ATTEMPTS = 5


@dataclass(frozen=True)
class PushResult:
    version: int
    model_uri: str  # s3://bucket/name/vN/ (slash-terminated: an exact storageUri prefix)
    production_uri: str  # s3://bucket/name/production/
    sha256: str
    promoted: bool  # False: v<N> was written but production did not move (the gate said no at push time)
    reason: str  # the gate's reason, as decided right before moving production


def _model_bytes(model_dir: Path) -> bytes:
    found = model_files(model_dir)
    if found != [MODEL_FILE]:
        raise PushError(
            f"model folder {model_dir} must hold exactly one model file {MODEL_FILE}, found {found} "
            f"(KServe's sklearn runtime takes every {'/'.join(MODEL_SUFFIXES)} file for a model)")
    return (model_dir / MODEL_FILE).read_bytes()


def build_metadata(model_name: str, version: int, model: bytes, training: dict, schema: dict, evaluation: dict,
                   run_id: str, created_at: dt.datetime) -> dict:
    """metadata.json as the artifact contract defines it (README: model artifact contract)."""
    missing = [key for key in ("sklearn_version", "estimator", "hyperparameters", "training_seconds", "task")
               if key not in training]
    missing += [key for key in ("metrics", "primary_metric", "data_source", "threshold", "task")
                if key not in evaluation]
    if missing:
        raise PushError(f"cannot write metadata.json: training/evaluation records lack {', '.join(missing)}")
    metadata = {
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "version": version,
        "framework": "scikit-learn",
        "sklearn_version": training["sklearn_version"],
        "model_file": MODEL_FILE,
        "sha256": hashlib.sha256(model).hexdigest(),
        "size_bytes": len(model),
        "task": training["task"],
        "estimator": training["estimator"],
        "hyperparameters": training["hyperparameters"],
        "schema": schema,
        "metrics": evaluation["metrics"],
        "primary_metric": evaluation["primary_metric"],
        "data_source": evaluation["data_source"],
        "split": evaluation.get("split"),
        "run_id": run_id,
        "created_at": created_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "training_seconds": training["training_seconds"],
    }
    try:
        json.dumps(metadata, allow_nan=False)
    except ValueError as exc:
        raise PushError(f"metadata.json would not be valid JSON: {exc}") from exc
    return metadata


def _discard(store: ObjectStore, bucket: str, keys: list[str]) -> str:
    """Delete what this run wrote of an unfinished v<N>; says what became of it (for the error message)."""
    try:
        for key in keys:
            store.remove(bucket, key)
    except ObjectStoreError as exc:
        log.error("could not delete s3://%s/%s: %s", bucket, key, exc)
        return (f"s3://{bucket}/{key} could not be deleted ({exc}): delete the unfinished version by hand "
                "(it is never promoted)")
    return f"s3://{bucket}/{keys[0].rsplit('/', 1)[0]}/ is not left half-written"


def write_version(store: ObjectStore, bucket: str, model_name: str, version: int, model: bytes,
                  metadata: bytes) -> None:
    """v<N>/model.joblib then v<N>/metadata.json, or VersionTaken when another run holds v<N>."""
    prefix = version_prefix(model_name, version)
    taken = f"v{version} was taken by a concurrent run (s3://{bucket}/{prefix})"
    # Stores that ignore If-None-Match (rclone) still never have a version overwritten by this check.
    if store.list_children(bucket, prefix):
        raise VersionTaken(taken)
    attempted: list[str] = []
    for key, data, content_type in ((model_key(prefix), model, "application/octet-stream"),
                                    (metadata_key(prefix), metadata, "application/json")):
        try:
            store.put_bytes(bucket, key, data, content_type=content_type, if_absent=True)
            attempted.append(key)
        except BaseException as exc:
            if isinstance(exc, ObjectAlreadyExists) and key == model_key(prefix):
                raise VersionTaken(taken) from exc  # nothing of this run's is there
            # A failed write may still have landed (a lost answer): delete it too, unless it is
            # another run's object that the server refused to overwrite.
            if not isinstance(exc, ObjectAlreadyExists):
                attempted.append(key)
            outcome = _discard(store, bucket, attempted)
            if not isinstance(exc, Exception):  # Ctrl-C: cleaned up, now stop
                raise
            raise PushError(f"writing s3://{bucket}/{key} failed: {exc}; {outcome}; "
                            "production was not touched") from exc
    log.info("wrote s3://%s/%s{%s,%s}", bucket, prefix, MODEL_FILE, METADATA_FILE)


def publish_version(store: ObjectStore, bucket: str, model_name: str, model: bytes,
                    metadata_for: Callable[[int], dict]) -> int:
    """Write the next free v<N>; metadata_for(N) builds its metadata. Returns N."""
    store.ensure_bucket(bucket)
    tried = 0
    for _ in range(MAX_VERSION_ATTEMPTS):
        version = max((versions(store, bucket, model_name) or [0])[-1], tried) + 1
        metadata = json.dumps(metadata_for(version), indent=2).encode() + b"\n"
        try:
            write_version(store, bucket, model_name, version, model, metadata)
            return version
        except VersionTaken as exc:
            log.warning("%s; trying v%d", exc, version + 1)
            tried = version
    raise PushError(f"gave up after {MAX_VERSION_ATTEMPTS} attempts (the last v{tried}): each version of "
                    f"s3://{bucket}/{model_name}/ tried was taken by a concurrent run")


def _restore(store: ObjectStore, bucket: str, model_name: str, previous: dict | None) -> str:
    """Put production back as it was before promote() started; says how that went."""
    target = production_prefix(model_name)
    try:
        if previous is None:
            # There was no production: remove whatever got copied, rather than serve half of it.
            store.remove(bucket, model_key(target))
            store.remove(bucket, metadata_key(target))
            return "production was removed again (there was none before)"
        version = previous.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise PushError(f"the previous production metadata names no version (version={version!r})")
        _copy_folder(store, bucket, version_prefix(model_name, version), target)
        return f"production was restored to v{version}"
    except (ObjectStoreError, PushError) as exc:
        log.error("could not restore s3://%s/%s: %s", bucket, target, exc)
        return (f"production could NOT be restored ({exc}): copy the previous v<M>/ into s3://{bucket}/{target} "
                "by hand; until then this project's server refuses it (sha256 mismatch), while KServe's stock "
                "runtime would load whatever model.joblib is there")


def _copy_folder(store: ObjectStore, bucket: str, source: str, target: str) -> None:
    """Server-side copy of a model folder: model.joblib first, metadata.json last (readers check the pair)."""
    store.copy(bucket, model_key(source), model_key(target))
    store.copy(bucket, metadata_key(source), metadata_key(target))


def promote(store: ObjectStore, bucket: str, model_name: str, version: int, previous: dict | None) -> None:
    """Copy v<N>/ into production/, model.joblib first and metadata.json last; undo on any failure."""
    source, target = version_prefix(model_name, version), production_prefix(model_name)
    try:
        _copy_folder(store, bucket, source, target)
    except BaseException as exc:
        outcome = _restore(store, bucket, model_name, previous)
        if not isinstance(exc, Exception):  # Ctrl-C: restored, now stop
            raise
        raise PushError(f"moving s3://{bucket}/{target} to v{version} failed: {exc}; {outcome}; "
                        f"s3://{bucket}/{source} is complete and kept") from exc
    log.info("production s3://%s/%s now holds v%d", bucket, target, version)


def recheck(store: ObjectStore, bucket: str, model_name: str, evaluation: dict,
            version: int) -> tuple[Decision, dict | None]:
    """The gate again, on production as it is now: (decision, production metadata)."""
    production_uri = f"s3://{bucket}/{production_prefix(model_name)}"
    primary = evaluation["primary_metric"]
    try:
        current = production_metadata(store, bucket, model_name)
        decision = decide(primary["name"], primary["value"], float(evaluation["threshold"]), evaluation["task"],
                          current, production_uri)
    except (EvaluateError, ObjectStoreError) as exc:
        raise PushError(f"{exc}; v{version} was written, production was not moved") from exc
    return decision, current


def run(model_dir: str | Path, schema_path: str | Path, evaluation_path: str | Path, model_name: str, bucket: str,
        store: ObjectStore, run_id: str, now: dt.datetime | None = None) -> PushResult:
    """The push step: validate everything locally, write v<N>, decide again, then move production."""
    check_location(bucket, model_name)
    model_dir = Path(model_dir)
    model = _model_bytes(model_dir)
    training = read_json(model_dir / TRAINING_FILE, "training record")
    schema = read_json(schema_path, "schema")
    evaluation = read_json(evaluation_path, "evaluation")
    if not evaluation.get("deploy"):
        raise PushError(f"evaluation says not to deploy ({evaluation.get('reason')}): refusing to push")
    created_at = now or dt.datetime.now(dt.timezone.utc)
    # Built (and the model hashed) once, before the first write, so bad metadata writes nothing;
    # each version attempt only sets its number (an existing key keeps its place in the JSON).
    base = build_metadata(model_name, 0, model, training, schema, evaluation, run_id, created_at)
    version = publish_version(store, bucket, model_name, model, lambda n: {**base, "version": n})
    decision, current = recheck(store, bucket, model_name, evaluation, version)
    result = PushResult(
        version=version,
        model_uri=f"s3://{bucket}/{version_prefix(model_name, version)}",
        production_uri=f"s3://{bucket}/{production_prefix(model_name)}",
        sha256=base["sha256"],
        promoted=decision.deploy,
        reason=decision.reason,
    )
    if not decision.deploy:
        log.warning("production NOT moved: %s (production changed since evaluate); %s is kept", decision.reason,
                    result.model_uri)
        return result
    promote(store, bucket, model_name, version, current)
    log.info("pushed %s (sha256 %s); production now points at v%d", result.model_uri, result.sha256[:12], version)
    return result
