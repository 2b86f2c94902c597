"""Preflight: what `make run` checks before the first step starts, so a typo costs seconds, not a run.

Each check raises PreflightError with one line that says what to change (the README's advice):
the object store answers with the given keys, an s3:// or local source exists, a bundled dataset
name is known and its data passes ingest's checks (the target column, a continuous target asked
to be classes, ...), and the estimator suits the task when the task is known (given, or what ingest
decides for a bundled dataset). An http(s) source is not
fetched here: that is ingest's first act anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from components.candidates import resolve
from components.errors import DataError, ObjectStoreError, PipelineError, TrainError
from components.ingest import IngestConfig, check_columns, prepare
from components.objectstore import ObjectStore
from components.sources import BUNDLED, redact_source
from components.train import ESTIMATORS

SOURCE_FORMS = "a CSV path, s3://bucket/key.csv, http(s)://host/file.csv or " + ", ".join(
    f"sklearn:{name}" for name in BUNDLED)


class PreflightError(PipelineError):
    """Something the run would fail on, found before any step ran."""


def check(values: dict[str, Any], store: ObjectStore | None = None) -> None:
    """Every check, in the order a run would hit them; the first failure raises PreflightError.

    Args:
        values: every pipeline parameter (params.effective).
        store: the object store (default: from the environment).
    """
    store = store or _store(values)
    _check_store(store, values["bucket"])
    ingest_config = IngestConfig.from_params(values["target"], values["task"], values["test_fraction"],
                                             values["seed"], values["missing_values"], values["categorical_features"])
    task = _check_source(str(values["source"]).strip(), ingest_config, store)
    _check_estimators(values, task)


def _store(values: dict[str, Any]) -> ObjectStore:
    try:
        return ObjectStore.from_env(values.get("minio_endpoint") or None, values.get("minio_secure"))
    except ObjectStoreError as exc:
        raise PreflightError(str(exc)) from None


def _check_store(store: ObjectStore, bucket: str) -> None:
    # A HEAD of the model bucket: signed with the keys, so wrong keys, an unreachable endpoint and
    # TLS mix-ups all show here. A missing bucket is fine: push creates it.
    try:
        store.bucket_exists(bucket)
    except ObjectStoreError as exc:
        raise PreflightError(str(exc)) from None


def _check_source(source: str, ingest_config: IngestConfig, store: ObjectStore) -> str:
    """The task when it is known before ingest runs, else "auto"."""
    if source.startswith("sklearn:"):
        name = source.removeprefix("sklearn:")
        if name not in BUNDLED:
            raise PreflightError(f"unknown bundled dataset {source!r}: expected one of "
                                 f"{', '.join(f'sklearn:{key}' for key in BUNDLED)} (or a CSV path, "
                                 "s3://bucket/key.csv, http(s)://host/file.csv)")
        frame = BUNDLED[name](as_frame=True).frame
        if ingest_config.target not in frame.columns:
            raise PreflightError(f"target column {ingest_config.target!r} is not in {source} "
                                 "(its target is 'target'): set --param target=target")
        # The data is at hand and small: ingest's own checks (a continuous target as classes, ...) now.
        try:
            prepared = prepare(frame, ingest_config, source)
        except DataError as exc:
            raise PreflightError(f"{source}: {exc}") from None
        return "classification" if prepared.schema["target"]["classes"] else "regression"
    if source.startswith("s3://"):
        bucket, _, key = redact_source(source).removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise PreflightError(f"source {redact_source(source)!r} is not s3://bucket/key")
        try:
            found = store.exists(bucket, key)
        except ObjectStoreError as exc:
            raise PreflightError(str(exc)) from None
        if not found:
            raise PreflightError(f"source {redact_source(source)} does not exist in the object store at "
                                 f"{store.settings.url}: upload it first, or give {SOURCE_FORMS}")
        return ingest_config.task
    if source.startswith(("http://", "https://")):
        return ingest_config.task
    path = Path(source)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise PreflightError(f"source file {path.resolve()} {what}: give {SOURCE_FORMS}")
    try:  # the header only: the rows are ingest's to read
        check_columns([str(name) for name in pd.read_csv(path, nrows=0).columns], ingest_config, source)
    except DataError as exc:
        raise PreflightError(str(exc)) from None
    except pd.errors.EmptyDataError:
        raise PreflightError(f"source file {path.resolve()} is empty: expected a CSV with a header line") from None
    except (ValueError, OSError) as exc:  # UnicodeDecodeError and pandas' ParserError are ValueErrors
        raise PreflightError(f"source file {path.resolve()} is not a readable CSV: {exc}") from None
    return ingest_config.task


def _check_estimators(values: dict[str, Any], task: str) -> None:
    """Every candidate's estimator (the single estimator, the candidates, or the task's defaults) suits the task."""
    if task not in ESTIMATORS:
        return  # task still "auto": ingest decides it, train checks the pair
    try:
        planned = resolve(task, str(values.get("candidates", "")), str(values.get("estimator", "")),
                          str(values.get("hyperparameters", "")))
    except TrainError:
        return  # a malformed combination: params.check names it
    wrong = [candidate["estimator"] for candidate in planned if candidate["estimator"] not in ESTIMATORS[task]]
    if wrong:
        raise PreflightError(f"estimator {', '.join(map(repr, wrong))} does not suit {task} (the task of "
                             f"{values['source']}): expected one of {', '.join(ESTIMATORS[task])}, or set "
                             "--param task=... to the other task")
