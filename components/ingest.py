"""Ingest: read a source, validate it, split it, and describe it in a schema.

Validation errors name the column, the data row (1 = the first row after the header) and
the value. Missing values follow an explicit policy:
    error   (default) any missing value stops the run
    drop    rows with a missing feature or target are dropped (and counted in the log)
    impute  missing features are kept; the model imputes them (train adds the step or uses
            estimators that handle NaN); a missing target is still an error
Declared categorical features are encoded as integer codes (float) in sorted category
order; the schema lists the categories, so a client can encode the same way.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from sklearn.model_selection import train_test_split

from components.artifacts import write_json
from components.datasets import write_dataset
from components.errors import DataError
from components.sources import read_source, redact_source, resolve_source

log = logging.getLogger(__name__)

TASK_CHOICES = ("auto", "regression", "classification")
MISSING_POLICIES = ("error", "drop", "impute")
# "auto" calls a whole-number target with at most this many distinct values a class label.
MAX_AUTO_CLASSES = 20
# Above this, "classification" is almost surely a continuous target given the wrong task.
MAX_CLASSES = 100
MIN_TRAIN_ROWS = 2
ROWS_SHOWN = 5


@dataclass(frozen=True)
class IngestConfig:
    target: str = "target"
    task: str = "auto"
    test_fraction: float = 0.2
    seed: int = 42
    missing_values: str = "error"
    categorical_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.target.strip():
            raise DataError("target is empty: expected the name of the target column")
        if self.task not in TASK_CHOICES:
            raise DataError(f"task={self.task!r} is invalid: expected one of {', '.join(TASK_CHOICES)}")
        if self.missing_values not in MISSING_POLICIES:
            raise DataError(
                f"missing_values={self.missing_values!r} is invalid: expected one of {', '.join(MISSING_POLICIES)}"
            )
        if not (isinstance(self.test_fraction, (int, float)) and 0.0 < self.test_fraction < 1.0):
            raise DataError(f"test_fraction={self.test_fraction!r} is invalid: expected a number between 0 and 1")

    @classmethod
    def from_params(cls, target: str, task: str, test_fraction: float, seed: int, missing_values: str,
                    categorical_features: str) -> "IngestConfig":
        """From pipeline parameters: categorical_features is a comma-separated list of column names.

        Args:
            target: the target column.
            task: regression, classification or auto.
            test_fraction: the held-out share.
            seed: the split's seed.
            missing_values: error, drop or impute.
            categorical_features: comma-separated column names.

        Returns:
            The IngestConfig.
        """
        names = tuple(name.strip() for name in categorical_features.split(",") if name.strip())
        return cls(target, task, float(test_fraction), int(seed), missing_values, names)


@dataclass(frozen=True)
class Prepared:
    features: pd.DataFrame  # float64, columns in schema order
    target: pd.Series
    schema: dict
    dropped_rows: int


def _rows(index: pd.Index) -> str:
    """'data rows 3, 8' (1-based, header excluded), shortened after a few."""
    numbers = [str(i + 1) for i in index[:ROWS_SHOWN]]
    more = f" and {len(index) - ROWS_SHOWN} more" if len(index) > ROWS_SHOWN else ""
    return f"data row{'s' if len(index) > 1 else ''} {', '.join(numbers)}{more}"


def _numeric(column: pd.Series, what: str) -> pd.Series:
    if ptypes.is_bool_dtype(column):
        return column.astype(np.float64)
    converted = pd.to_numeric(column, errors="coerce") if not ptypes.is_numeric_dtype(column) else column
    bad = converted.isna() & column.notna()
    if bad.any():
        first = bad.idxmax()
        raise DataError(
            f"{what} {column.name!r} is not numeric: {_rows(pd.Index([first]))} has value {column[first]!r}"
            + ("; declare it in categorical_features if it is a category" if what == "column" else "")
        )
    converted = converted.astype(np.float64)
    infinite = np.isinf(converted)
    if infinite.any():
        first = infinite.idxmax()
        raise DataError(f"{what} {column.name!r} has an infinite value at {_rows(pd.Index([first]))}")
    return converted


def _categorical(column: pd.Series) -> tuple[pd.Series, list[str]]:
    labels = column.map(lambda value: value if pd.isna(value) else str(value))
    categories = sorted(labels.dropna().unique().tolist())
    codes = labels.map({category: float(code) for code, category in enumerate(categories)})
    return codes.astype(np.float64), categories


def _whole_numbers(values: pd.Series) -> bool:
    return bool(np.all(np.mod(values.to_numpy(dtype=np.float64), 1.0) == 0.0))


def resolve_task(target: pd.Series, task: str) -> str:
    """The task: as given, or for auto, classification for a non-numeric target or one of few whole numbers.

    Args:
        target: the target column.
        task: regression, classification or auto.

    Returns:
        regression or classification.
    """
    if task != "auto":
        return task
    values = target.dropna()
    if not ptypes.is_numeric_dtype(values) or ptypes.is_bool_dtype(values):
        return "classification"
    return "classification" if _whole_numbers(values) and values.nunique() <= MAX_AUTO_CLASSES else "regression"


def _class_labels(target: pd.Series) -> pd.Series:
    """Whole-number (and boolean) labels become ints (0.0 -> 0), non-numeric ones str, other numbers stay."""
    values = target.dropna()
    numeric = ptypes.is_numeric_dtype(values)
    if ptypes.is_bool_dtype(values) or (numeric and _whole_numbers(values)):
        return target.map(lambda v: v if pd.isna(v) else int(v))
    return target if numeric else target.map(lambda v: v if pd.isna(v) else str(v))


def _apply_missing_policy(features: pd.DataFrame, target: pd.Series,
                          policy: str) -> tuple[pd.DataFrame, pd.Series, int]:
    missing_target = target.isna()
    if missing_target.any() and policy != "drop":
        raise DataError(
            f"target {target.name!r} is missing at {_rows(target.index[missing_target])}: "
            "rows without a target cannot be used (missing_values='drop' drops them)"
        )
    if policy == "error":
        for name in features.columns:
            missing = features[name].isna()
            if missing.any():
                raise DataError(
                    f"column {name!r} has {int(missing.sum())} missing value(s) at {_rows(features.index[missing])}: "
                    "set missing_values to 'drop' or 'impute'"
                )
        return features, target, 0
    if policy == "drop":
        keep = features.notna().all(axis=1) & target.notna()
        dropped = int((~keep).sum())
        if dropped:
            log.warning("dropped %d of %d rows with missing values (missing_values='drop')", dropped, len(keep))
        if not keep.any():
            raise DataError("every row has a missing value: nothing left after missing_values='drop'")
        return features[keep], target[keep], dropped
    empty = [name for name in features.columns if features[name].isna().all()]
    if empty:
        raise DataError(f"column {empty[0]!r} has no values at all: nothing to impute from")
    return features, target, 0


def _feature_schema(name: str, column: pd.Series, categories: list[str] | None) -> dict:
    entry = {"name": name, "dtype": "float64", "min": float(column.min()), "max": float(column.max())}
    if categories is not None:
        entry["categories"] = categories
    return entry


def check_columns(columns: list[str], config: IngestConfig, source: str) -> list[str]:
    """The header's checks: the target and the categorical features are columns, some feature is left.

    Args:
        columns: the table's column names.
        config: the ingest settings.
        source: the (redacted) source, for messages.

    Returns:
        The feature names, in the table's order.
    """
    if config.target not in columns:
        shown = ", ".join(columns[:20]) + (" ..." if len(columns) > 20 else "")
        raise DataError(f"target column {config.target!r} not found in {source}; columns are: {shown}")
    unknown = [name for name in config.categorical_features if name not in columns]
    if unknown:
        raise DataError(f"categorical_features names {unknown[0]!r}, which is not a column of {source}")
    if config.target in config.categorical_features:
        raise DataError(f"target {config.target!r} cannot also be a categorical feature")
    names = [c for c in columns if c != config.target]
    if not names:
        raise DataError(f"source {source} has only the target column {config.target!r}: no features")
    return names


def prepare(frame: pd.DataFrame, config: IngestConfig, source: str) -> Prepared:
    """Validate a raw table and turn it into float features, a target and the schema.

    Args:
        frame: the table as read.
        config: the ingest settings.
        source: the (redacted) source, for messages.

    Returns:
        Prepared: float features in schema order, the target, the schema, how many rows were dropped.
    """
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise DataError(f"source {source} has no data rows")
    frame = frame.reset_index(drop=True)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    names = check_columns(columns, config, source)

    encoded: dict[str, pd.Series] = {}
    categories: dict[str, list[str]] = {}
    for name in names:
        if name in config.categorical_features:
            encoded[name], categories[name] = _categorical(frame[name])
        else:
            encoded[name] = _numeric(frame[name], "column")
    features = pd.DataFrame(encoded, index=frame.index)

    task = resolve_task(frame[config.target], config.task)
    target = _numeric(frame[config.target], "target") if task == "regression" else _class_labels(frame[config.target])
    features, target, dropped = _apply_missing_policy(features, target, config.missing_values)

    if task == "classification":
        classes = sorted(target.unique().tolist(), key=lambda c: (str(type(c)), c))
        if len(classes) < 2:
            raise DataError(f"target {config.target!r} has a single class {classes!r}: classification needs 2 or more")
        if len(classes) > MAX_CLASSES:
            raise DataError(
                f"target {config.target!r} has {len(classes)} distinct values, more than {MAX_CLASSES} classes: "
                "use task='regression' if it is continuous"
            )
        target_schema = {"name": config.target, "type": "binary" if len(classes) == 2 else "multiclass",
                         "classes": classes}
    else:
        target_schema = {"name": config.target, "type": "continuous", "classes": None}

    schema = {
        "features": [_feature_schema(n, features[n], categories.get(n)) for n in names],
        "target": target_schema,
        "missing_values": config.missing_values,
    }
    return Prepared(features, target.rename(config.target), schema, dropped)


def split(prepared: Prepared, config: IngestConfig):
    """Train/test split; stratified for classification so every class is in both parts.

    Args:
        prepared: what prepare returned.
        config: test_fraction and seed.

    Returns:
        (train_x, test_x, train_y, test_y); DataError when too few rows are left to train on.
    """
    rows = len(prepared.target)
    test_rows = math.ceil(rows * config.test_fraction)
    if test_rows < 1 or rows - test_rows < MIN_TRAIN_ROWS:
        raise DataError(
            f"test_fraction={config.test_fraction} of {rows} rows leaves {rows - test_rows} to train on: "
            f"need at least {MIN_TRAIN_ROWS} training rows and 1 test row"
        )
    classification = prepared.schema["target"]["type"] != "continuous"
    try:
        return train_test_split(
            prepared.features, prepared.target,
            test_size=config.test_fraction, random_state=config.seed,
            stratify=prepared.target if classification else None,
        )
    except ValueError as exc:
        raise DataError(f"cannot split {rows} rows (test_fraction={config.test_fraction}): {exc}") from exc


def run(*, source: str, config: IngestConfig, train_path: str | Path, test_path: str | Path,
        schema_path: str | Path, minio_endpoint: str | None = None, minio_secure: bool | None = None) -> dict:
    """The ingest step: read, validate, split, write both datasets and the schema. Returns a summary.

    Messages, logs and the summary name the source redacted (no credentials, no signed query).

    Args:
        source: the table: sklearn:<name>, s3://bucket/key.csv, http(s)://... or a local path; credentials come from
            SOURCE_URL (a Secret) when the parameter is the redacted URL.
        config: target, task, split and missing-value settings (IngestConfig).
        train_path: where the training split (CSV) goes.
        test_path: where the held-out split goes.
        schema_path: where the schema JSON goes.
        minio_endpoint: the object store for s3:// sources (None: MINIO_ENDPOINT).
        minio_secure: TLS to it (None: MINIO_SECURE).

    Returns:
        A summary: source (redacted), task, rows, dropped_rows, train_rows, test_rows, features.
    """
    # The parameter is the redacted URL; the credentials come from SOURCE_URL (a Secret), never logged.
    frame = read_source(resolve_source(source), minio_endpoint, minio_secure)
    source = redact_source(source)
    prepared = prepare(frame, config, source)
    train_x, test_x, train_y, test_y = split(prepared, config)
    write_dataset(train_path, train_x, train_y)
    write_dataset(test_path, test_x, test_y)
    write_json(schema_path, prepared.schema)
    summary = {
        "source": source,
        "task": "regression" if prepared.schema["target"]["type"] == "continuous" else "classification",
        "rows": len(prepared.target),
        "dropped_rows": prepared.dropped_rows,
        "train_rows": len(train_y),
        "test_rows": len(test_y),
        "features": len(prepared.schema["features"]),
    }
    log.info("ingested %s: %d rows, %d features, task %s, %d train / %d test rows", source, summary["rows"],
             summary["features"], summary["task"], summary["train_rows"], summary["test_rows"])
    return summary
