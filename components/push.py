"""Push: publish the model as the next version, then move production to it.

Order matters for readers: v<N>/model.joblib, v<N>/metadata.json, then production/model.joblib
and production/metadata.json last, so metadata.json in production always describes a complete
model. Everything that can be checked locally (files, metadata, names, credentials) is checked
before the first write, so a failed validation leaves the bucket untouched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from components.artifacts import METADATA_FILE, MODEL_FILE, TRAINING_FILE, read_json
from components.errors import PushError
from components.objectstore import ObjectStore
from components.registry import (
    check_location,
    metadata_key,
    model_key,
    production_prefix,
    version_prefix,
    versions,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")


@dataclass(frozen=True)
class PushResult:
    version: int
    model_uri: str  # s3://bucket/name/vN
    production_uri: str  # s3://bucket/name/production
    sha256: str


def _model_bytes(model_dir: Path) -> bytes:
    # KServe's sklearn runtime refuses a folder with more than one model file.
    found = sorted(p.name for p in model_dir.iterdir() if p.suffix in MODEL_SUFFIXES) if model_dir.is_dir() else []
    if found != [MODEL_FILE]:
        raise PushError(f"model folder {model_dir} must hold exactly one model file {MODEL_FILE}, found {found}")
    return (model_dir / MODEL_FILE).read_bytes()


def build_metadata(model_name: str, version: int, model: bytes, training: dict, schema: dict, evaluation: dict,
                   run_id: str, created_at: dt.datetime) -> dict:
    """metadata.json as the artifact contract defines it (README: model artifact contract)."""
    missing = [key for key in ("sklearn_version", "estimator", "hyperparameters", "training_seconds", "task")
               if key not in training]
    missing += [key for key in ("metrics", "primary_metric", "data_source") if key not in evaluation]
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


def push(store: ObjectStore, bucket: str, model_name: str, model: bytes,
         metadata_for: Callable[[int], dict]) -> PushResult:
    """Write v<N> then production. metadata_for(version) builds the metadata once N is known."""
    store.ensure_bucket(bucket)
    version = (versions(store, bucket, model_name) or [0])[-1] + 1
    prefix = version_prefix(model_name, version)
    # Versions are never overwritten: a concurrent push that took the same N first wins.
    if store.list_children(bucket, prefix):
        raise PushError(f"s3://{bucket}/{prefix} appeared while pushing (a concurrent run?): not overwriting it")
    metadata = json.dumps(metadata_for(version), indent=2).encode() + b"\n"
    for target in (prefix, production_prefix(model_name)):
        store.put_bytes(bucket, model_key(target), model)
        store.put_bytes(bucket, metadata_key(target), metadata, content_type="application/json")
        log.info("wrote s3://%s/%s{%s,%s}", bucket, target, MODEL_FILE, METADATA_FILE)
    return PushResult(
        version=version,
        model_uri=f"s3://{bucket}/{prefix.rstrip('/')}",
        production_uri=f"s3://{bucket}/{production_prefix(model_name).rstrip('/')}",
        sha256=hashlib.sha256(model).hexdigest(),
    )


def run(model_dir: str | Path, schema_path: str | Path, evaluation_path: str | Path, model_name: str, bucket: str,
        store: ObjectStore, run_id: str, now: dt.datetime | None = None) -> PushResult:
    """The push step: validate everything locally, check access, then write."""
    check_location(bucket, model_name)
    model_dir = Path(model_dir)
    model = _model_bytes(model_dir)
    training = read_json(model_dir / TRAINING_FILE, "training record")
    schema = read_json(schema_path, "schema")
    evaluation = read_json(evaluation_path, "evaluation")
    if not evaluation.get("deploy"):
        raise PushError(f"evaluation says not to deploy ({evaluation.get('reason')}): refusing to push")
    created_at = now or dt.datetime.now(dt.timezone.utc)
    # Build once with a placeholder version so that bad metadata fails before the first write.
    build_metadata(model_name, 0, model, training, schema, evaluation, run_id, created_at)
    result = push(store, bucket, model_name, model,
                  lambda version: build_metadata(model_name, version, model, training, schema, evaluation, run_id,
                                                 created_at))
    log.info("pushed %s (sha256 %s); production now points at v%d", result.model_uri, result.sha256[:12],
             result.version)
    return result
