"""Push: publish the model as a new immutable version, then move the production pointer to it.

The order is what keeps readers and failures safe (components.registry has the layout):
  1. Everything checkable locally (files, metadata, names) is checked before the first write.
  2. The store is probed for conditional writes; without them every writer holds the registry lock
     (REGISTRY_LOCK_FILE) for the whole push. Partial versions left by dead pushes are tombstoned.
  3. Production trained on the same data with the same parameters: nothing new to learn, nothing written.
  4. v<N>/claim.json (If-None-Match: *; a taken N means N+1), model.joblib, model.skops, metadata.json last. A push
     that fails part-way marks its claim abandoned and deletes the rest: no reader ever counts it.
  5. The gate decides again on production as production.json names it now, and the pointer moves by
     compare-and-swap from exactly that state; if another promotion won meanwhile, read, decide, retry.
     A candidate that now loses stays as a complete v<N> and production does not move.
  6. production/ (the fixed storageUri) is refreshed from the pointer: model first, metadata last.
     If that fails, production.json is already right and the next push, promote or `make models`
     repairs production/; the error says so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from components import modelformat
from components.artifacts import MODEL_FILE, MODEL_SUFFIXES, SKOPS_FILE, TRAINING_FILE, model_files, read_json
from components.errors import EvaluateError, ObjectStoreError, ProductionMoved, PushError
from components.gate import Decision, decide, fingerprint
from components.registry import (
    MAX_MOVE_ATTEMPTS,
    MAX_VERSION_ATTEMPTS,
    Guard,
    Registry,
    check_location,
    pointer_key,
    version_prefix,
)
from contract.files import FORMAT_VERSION

log = logging.getLogger(__name__)

__all__ = ["MAX_VERSION_ATTEMPTS", "PushResult", "build_metadata", "run"]
GIT_COMMIT_ENV = "CODE_GIT_COMMIT"  # set in images, which carry no .git
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class PushResult:
    version: int  # the new v<N>; with nothing_new, the production version (nothing was written)
    model_uri: str  # s3://bucket/name/vN/ (slash-terminated: an exact storageUri prefix)
    production_uri: str  # s3://bucket/name/production/
    sha256: str
    promoted: bool  # False: v<N> was written but production did not move (the gate said no at push time)
    reason: str  # the gate's reason, as decided right before moving production
    nothing_new: bool = False  # production was trained on the same data with the same parameters


def git_commit() -> str:
    """The code's commit: CODE_GIT_COMMIT, else `git rev-parse HEAD` of this checkout, else "unknown".

    Returns:
        The commit id, or "unknown".
    """
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    try:
        done = subprocess.run(["git", "-C", str(_PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) == 40 else "unknown"


def _model_bytes(model_dir: Path) -> bytes:
    found = model_files(model_dir)
    if found != [MODEL_FILE]:
        raise PushError(
            f"model folder {model_dir} must hold exactly one model file {MODEL_FILE}, found {found} "
            f"(KServe's sklearn runtime takes every {'/'.join(MODEL_SUFFIXES)} file for a model)")
    return (model_dir / MODEL_FILE).read_bytes()


def skops_bytes(model_dir: Path) -> bytes:
    """model.joblib rewritten with skops, refused here if this project's server would refuse it.

    The pickle unpickled here is the train step's output of this very run, not a file from the
    model bucket; the server and batch scoring never unpickle, they load this skops file.

    Args:
        model_dir: the folder train wrote.

    Returns:
        The model.skops bytes; PushError when the server's loader would refuse them.
    """
    import joblib

    data = modelformat.dumps(joblib.load(model_dir / MODEL_FILE))
    try:
        modelformat.loads(data)
    except modelformat.UntrustedModel as exc:
        raise PushError(f"{SKOPS_FILE} of {model_dir} would be refused by the server: {exc}; if this estimator "
                        "is new, add it to components.train.ESTIMATORS and run `python -m components.modelformat "
                        "--write`") from None
    return data


def lineage(model_name: str, bucket: str, training: dict, schema: dict, evaluation: dict, run_id: str) -> dict:
    """Where the model comes from: data hash as read, code commit, run, every parameter, what it was compared with.

    Args:
        model_name: the model's folder in the bucket.
        bucket: the bucket.
        training: training.json.
        schema: the ingested schema.
        evaluation: evaluate's JSON.
        run_id: this run's id.

    Returns:
        The lineage object of metadata.json (with its fingerprint).
    """
    split = evaluation.get("split") or {}
    data_sha256 = training.get("data_sha256")
    return {
        "data_sha256": data_sha256,
        # From this model's own training record (evaluate computes the same for the gate).
        "fingerprint": (fingerprint(data_sha256, schema, training["estimator"], training["hyperparameters"], split)
                        if data_sha256 else None),
        "git_commit": git_commit(),
        "run_id": run_id,
        "params": {
            "source": evaluation.get("data_source"),
            "target": (schema.get("target") or {}).get("name"),
            "task": training.get("task"),
            "test_fraction": split.get("test_fraction"),
            "seed": split.get("seed"),
            "missing_values": schema.get("missing_values"),
            "categorical_features": [f["name"] for f in schema.get("features", []) if "categories" in f],
            "estimator": training.get("estimator"),
            "hyperparameters": training.get("hyperparameters"),
            "threshold": evaluation.get("threshold"),
            "model_name": model_name,
            "bucket": bucket,
            "allow_schema_change": bool(evaluation.get("allow_schema_change", False)),
        },
        "evaluated_against": (evaluation.get("production") or {}).get("version"),
        "compared_with": None,  # set by push: the production version as read right before writing
    }


def build_metadata(model_name: str, version: int, model: bytes, training: dict, schema: dict, evaluation: dict,
                   run_id: str, created_at: dt.datetime, bucket: str = "", skops: bytes | None = None) -> dict:
    """metadata.json as the artifact contract defines it (README: model artifact contract).

    Args:
        model_name: the model's folder in the bucket.
        version: the N of v<N>.
        model: model.joblib's bytes (hashed).
        training: training.json.
        schema: the ingested schema.
        evaluation: evaluate's JSON.
        run_id: this run's id.
        created_at: the creation time (UTC).
        bucket: the bucket, for the lineage.
        skops: model.skops's bytes (hashed), None when there is none.

    Returns:
        The metadata; PushError names the keys missing from training or evaluation.
    """
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
        **({"skops_file": SKOPS_FILE, "skops_sha256": hashlib.sha256(skops).hexdigest()} if skops is not None else {}),
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
        "lineage": lineage(model_name, bucket, training, schema, evaluation, run_id),
        # The training data profile drift is measured against (components.profile); a model folder
        # trained before profiles were recorded has none, and its metadata simply lacks the key.
        **({"profile": training["profile"]} if "profile" in training else {}),
    }
    try:
        json.dumps(metadata, allow_nan=False)
    except ValueError as exc:
        raise PushError(f"metadata.json would not be valid JSON: {exc}") from exc
    return metadata


def _decide(evaluation: dict, production: dict | None, production_uri: str, schema: dict, trained_as: str | None,
            allow_schema_change: bool) -> Decision:
    primary = evaluation["primary_metric"]
    try:
        return decide(primary["name"], primary["value"], float(evaluation["threshold"]), evaluation["task"],
                      production, production_uri, schema=schema, training_fingerprint=trained_as,
                      allow_schema_change=allow_schema_change)
    except EvaluateError as exc:
        raise PushError(f"{exc}; production was not moved") from exc


def _sync(registry: Registry, moved_to: int | None) -> None:
    """production/ as the pointer says; a failure here never undoes the pointer (the next writer repairs it)."""
    try:
        try:
            registry.sync_production(after_move=moved_to is not None)
        except ObjectStoreError as exc:  # one more round: copies are idempotent, the pointer decides what lands
            log.warning("refreshing %s failed (%s): trying once more", registry.production_uri, exc)
            registry.sync_production()
    except (ObjectStoreError, PushError) as exc:
        state = f"production.json names v{moved_to}" if moved_to else "production.json is unchanged"
        raise PushError(f"{state}, but {registry.production_uri} could not be refreshed from it ({exc}); readers of "
                        "production.json and of v<N>/ are unaffected, this project's server refuses the stale "
                        "copy (sha256 mismatch); the next push, `make promote` or `make models` repairs it") from exc


def run(*, model_dir: str | Path, schema_path: str | Path, evaluation_path: str | Path, model_name: str,
        bucket: str, store, run_id: str, now: dt.datetime | None = None, guard: Guard | None = None) -> PushResult:
    """The push step: validate everything locally, write v<N>, decide again, then move the pointer.

    Args:
        model_dir: the folder train wrote.
        schema_path: the ingested schema (into metadata.json).
        evaluation_path: evaluate's JSON; a 'do not deploy' there refuses the push.
        model_name: the model's folder in the bucket.
        bucket: the bucket to publish into.
        store: the object store (ObjectStore).
        run_id: this run's id, recorded in metadata.json.
        now: the creation time to record (default: now, UTC).
        guard: the registry's concurrency guard (default: the registry's own).

    Returns:
        What was written and whether production moved (PushResult).
    """
    check_location(bucket, model_name)
    model_dir = Path(model_dir)
    model = _model_bytes(model_dir)
    skops = skops_bytes(model_dir)
    training = read_json(model_dir / TRAINING_FILE, "training record")
    schema = read_json(schema_path, "schema")
    evaluation = read_json(evaluation_path, "evaluation")
    if not evaluation.get("deploy"):
        raise PushError(f"evaluation says not to deploy ({evaluation.get('reason')}): refusing to push")
    allow_schema_change = bool(evaluation.get("allow_schema_change", False))
    created_at = now or dt.datetime.now(dt.timezone.utc)
    # Built (and the model hashed) once, before the first write, so bad metadata writes nothing;
    # each version attempt only sets its number (an existing key keeps its place in the JSON).
    base = build_metadata(model_name, 0, model, training, schema, evaluation, run_id, created_at, bucket, skops)
    trained_as = base["lineage"]["fingerprint"]
    registry = Registry.for_writing(store, bucket, model_name, guard)
    production_uri = registry.production_uri

    def result(version: int, promoted: bool, reason: str, nothing_new: bool = False) -> PushResult:
        return PushResult(version, registry.uri(version_prefix(model_name, version)), production_uri,
                          base["sha256"], promoted, reason, nothing_new)

    with registry.guard.session():
        registry.clean_partials()
        current = registry.current()
        decision = _decide(evaluation, registry.production_metadata(), production_uri, schema, trained_as,
                           allow_schema_change)
        if decision.nothing_new:
            _sync(registry, None)
            log.warning("%s: nothing pushed", decision.reason)
            return result(current.version, False, decision.reason, nothing_new=True)
        compared = {**base["lineage"], "compared_with": current.version if current else None}
        version = registry.write_version(model, lambda n: {**base, "version": n, "lineage": compared}, run_id,
                                         skops=skops)
        for _ in range(MAX_MOVE_ATTEMPTS):
            current = registry.current()
            decision = _decide(evaluation, registry.production_metadata(), production_uri, schema, trained_as,
                               allow_schema_change)
            if not decision.deploy:
                log.warning("production NOT moved: %s (production changed since evaluate); %s is kept",
                            decision.reason, registry.uri(version_prefix(model_name, version)))
                _sync(registry, None)
                return result(version, False, decision.reason)
            try:
                registry.move(version, action="push", by=f"run {run_id}", reason=decision.reason, expected=current)
                break
            except ProductionMoved as exc:
                log.warning("%s; deciding again", exc)
            except ObjectStoreError as exc:
                raise PushError(f"moving {registry.uri(pointer_key(model_name))} to v{version} failed: {exc}; "
                                f"v{version} is complete and kept; production.json is unchanged, or names "
                                f"v{version} if only the answer was lost: `make models` shows which and "
                                "repairs production/") from exc
        else:
            raise PushError(f"production kept moving: v{version} was written (complete, kept) but not promoted "
                            f"after {MAX_MOVE_ATTEMPTS} compare-and-swap attempts")
        _sync(registry, version)
    pushed = result(version, True, decision.reason)
    log.info("pushed %s (sha256 %s); production now points at v%d", pushed.model_uri, pushed.sha256[:12], version)
    return pushed
