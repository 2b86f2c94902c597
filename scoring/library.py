"""The model as a library: ``load_model(uri_or_folder)`` -> a ``Predictor`` for notebooks and programs.

    from scoring import load_model
    model = load_model("s3://models/diabetes-rf/production/")   # or a local model folder
    model.predict(frame)            # a DataFrame with the schema's columns (any order, extra ones ignored)
    model.predict(array)            # or an array whose columns are in schema order

The folder is verified before it is unpickled exactly as the server does it (``serving.artifact``:
sha256, scikit-learn version, format). Rows get the server's checks (``serving.rows``: dtypes,
ranges, NaN policy), and predictions come from the server's engine (``serving.engine``), so
the numbers are the server's to the last bit.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from components.artifacts import METADATA_FILE
from components.errors import ObjectStoreError
from components.objectstore import ObjectStore
from scoring.errors import BadRow, ModelLoadError, SchemaMismatch, ScoringError
from serving import rows
from serving.artifact import ArtifactError, ModelArtifact, load_artifact
from serving.engine import PredictFn, compile_predictor
from serving.settings import ServingSettings

log = logging.getLogger(__name__)

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
S3_SCHEME = "s3://"


@dataclass(frozen=True)
class CheckedRows:
    """One chunk of input as the model takes it, and the rows it refuses (with the reason)."""

    x: np.ndarray  # float64 (rows, features) in schema order; refused rows may hold anything
    ok: np.ndarray  # (rows,) bool
    reasons: dict[int, str] = field(default_factory=dict)  # position in the chunk -> why it is refused


@dataclass(frozen=True, eq=False)
class Predictor:
    """A verified model: its schema, the server's row checks and the server's prediction engine."""

    artifact: ModelArtifact
    spec: rows.InputSpec
    source: str  # where it was loaded from (URI or folder), for messages
    _methods: dict[str, PredictFn] = field(repr=False)

    # -- what the model is ------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The model's name from its metadata ("" when absent).

        Returns:
            The name.
        """
        return str(self.artifact.metadata.get("model_name", ""))

    @property
    def version(self) -> int:
        """The model's registry version.

        Returns:
            The version number.
        """
        return int(self.artifact.metadata["version"])

    @property
    def sha256(self) -> str:
        """The sha256 of model.joblib as recorded in metadata.json (the version's identity).

        Returns:
            64 hex digits.
        """
        return str(self.artifact.metadata["sha256"])

    @property
    def task(self) -> str:
        """regression or classification.

        Returns:
            The task.
        """
        return self.artifact.task

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The input features in column order.

        Returns:
            The names.
        """
        return self.spec.feature_names

    @property
    def classes(self) -> list[Any]:
        """Class labels, in predict_proba's column order ([] for a regressor).

        Returns:
            The labels as Python values.
        """
        return np.asarray(self.artifact.estimator.classes_).tolist() if self.task == "classification" else []

    @property
    def outputs(self) -> tuple[str, ...]:
        """What the server offers for this model: predict, and predict_proba for a classifier.

        Returns:
            Output names, default first.
        """
        return tuple(self._methods)

    @property
    def schema(self) -> dict[str, Any]:
        """The metadata's schema: features (name, dtype, min, max) and target.

        Returns:
            The schema dict, as stored.
        """
        return self.artifact.metadata["schema"]

    # -- predicting -------------------------------------------------------------------------

    def predict(self, data: pd.DataFrame | np.ndarray | Sequence) -> np.ndarray:
        """Predictions for every row; raises BadRow / SchemaMismatch naming the first problem.

        Args:
            data: a DataFrame with the feature columns (any order, extra columns ignored), or an array / list of
                rows in schema order (one row may be given flat).

        Returns:
            One prediction per row (class labels for a classifier).
        """
        return self._call(PREDICT, self.features(data))

    def predict_proba(self, data: pd.DataFrame | np.ndarray | Sequence) -> np.ndarray:
        """Class probabilities (rows, classes), columns in ``classes`` order; classifiers only.

        Args:
            data: a DataFrame with the feature columns (any order, extra columns ignored), or an array / list of
                rows in schema order (one row may be given flat).

        Returns:
            (rows, classes) float64; ScoringError for a regression model.
        """
        if PREDICT_PROBA not in self._methods:
            raise ScoringError(f"{self.name} is a {self.task} model: it has no predict_proba (outputs: predict)")
        return self._call(PREDICT_PROBA, self.features(data))

    def features(self, data: pd.DataFrame | np.ndarray | Sequence) -> np.ndarray:
        """The validated float64 matrix in schema order, as the server builds it from a request.

        Args:
            data: a DataFrame with the feature columns (any order, extra columns ignored), or an array / list of
                rows in schema order (one row may be given flat).

        Returns:
            (rows, features) float64, every cell in the range the model takes.
        """
        if isinstance(data, pd.DataFrame):
            self.check_columns(data.columns, dict(data.dtypes.items()), "the DataFrame")
            checked = self.check_frame(data, "the DataFrame")
            if not checked.ok.all():
                first = int(np.flatnonzero(~checked.ok)[0])
                raise BadRow(f"row {first}: {checked.reasons[first]}", first)
            return checked.x
        return self._array_features(data)

    def _array_features(self, data: np.ndarray | Sequence) -> np.ndarray:
        array = np.asarray(data)
        if array.ndim == 1 and array.shape[0] == self.spec.n_features:
            array = array.reshape(1, -1)  # one row
        if array.ndim != 2 or array.shape[1] != self.spec.n_features:
            raise SchemaMismatch(
                f"array has shape {array.shape}; expected (rows, {self.spec.n_features}) with columns in schema "
                f"order: {', '.join(self.feature_names)}")
        datatype = rows.datatype_of_dtype(array.dtype)
        if datatype is None:
            raise SchemaMismatch(f"array has dtype {array.dtype}; expected numbers (int or float)")
        # Cannot refuse: the datatype is the array's own dtype, so the count and the type's range fit.
        x = rows.as_float(array, datatype, array.size, "array").reshape(array.shape)
        try:
            rows.check_range(x, self.spec, ["array"] * self.spec.n_features, [datatype] * self.spec.n_features)
        except rows.RowCheckError as exc:
            first = int(np.flatnonzero(~rows.accepted_cells(x, self.spec).all(axis=1))[0])
            raise BadRow(str(exc), first) from None
        return x

    def _call(self, method: str, x: np.ndarray) -> np.ndarray:
        if x.shape[0] == 0:
            return np.empty((0, len(self.classes)) if method == PREDICT_PROBA else 0)
        return np.asarray(self._methods[method](x))

    def predict_checked(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every output for rows already checked (``check_frame``): what batch scoring writes.

        Args:
            x: (rows, features) float64 that passed check_frame.

        Returns:
            Output name (predict, predict_proba) -> its values.
        """
        return {method: self._call(method, x) for method in self._methods}

    # -- checks shared with batch scoring ---------------------------------------------------

    def check_columns(self, columns: Sequence[str], dtypes: dict[str, Any], where: str) -> None:
        """Every feature present with a numeric (or text, in CSV) type; SchemaMismatch otherwise.

        Args:
            columns: the input's column names.
            dtypes: column -> dtype.
            where: what the input is, for the message.
        """
        missing = [name for name in self.feature_names if name not in columns]
        if missing:
            raise SchemaMismatch(
                f"{where} lacks feature column(s) {', '.join(missing)}; the model {self.name} v{self.version} takes "
                f"{', '.join(self.feature_names)} (found: {', '.join(map(str, columns))})")
        for name in self.feature_names:
            dtype = dtypes.get(name)
            if dtype is None or _is_text(dtype):
                continue  # text cells are parsed per row: a non-number is that row's problem
            if not _is_number(dtype):
                raise SchemaMismatch(f"{where}: column '{name}' has type {dtype}; expected numbers (int or float)")

    def check_frame(self, frame: pd.DataFrame, where: str, first_row: int = 0) -> CheckedRows:
        """The server's checks on every row of a chunk: the matrix, which rows pass, why the others fail.

        Args:
            frame: one chunk of the input.
            where: what the input is, for the messages.
            first_row: the chunk's offset in its file, so that a type error names the file's row.

        Returns:
            CheckedRows: the matrix, the rows that pass (ok) and the reason for each that does not.
        """
        n = len(frame)
        x = np.empty((n, self.spec.n_features), np.float64)
        reasons: dict[int, str] = {}
        for column, name in enumerate(self.feature_names):
            series = frame[name]
            if _is_text(series.dtype):
                parsed = pd.to_numeric(series, errors="coerce")
                for position in np.flatnonzero(parsed.isna().to_numpy() & series.notna().to_numpy()):
                    reasons.setdefault(int(position), f"feature '{name}' is {_show(series.iloc[position])}; "
                                                      "expected a number")
                series = parsed
            if not _is_number(series.dtype):
                raise SchemaMismatch(f"{where}: column '{name}' has type {series.dtype} at rows from {first_row}; "
                                     "expected numbers (int or float)")
            values = series.to_numpy(dtype=np.float64, na_value=np.nan) if ptypes.is_extension_array_dtype(
                series.dtype) else series.to_numpy()
            # Cannot refuse: the datatype is the column's own (FP64 for one numpy has no V2 name, e.g.
            # longdouble), so the count and the type's range fit; range and NaN are checked per row below.
            datatype = rows.datatype_of_dtype(values.dtype) or "FP64"
            x[:, column] = rows.as_float(values, datatype, n, f"{where} column '{name}'")
        accepted = rows.accepted_cells(x, self.spec)
        ok = accepted.all(axis=1)
        bad = np.flatnonzero(~ok)
        first_column = np.argmax(~accepted[bad], axis=1) if bad.size else ()
        for position, column in zip(bad.tolist(), np.asarray(first_column).tolist()):
            if position not in reasons:
                value = x[position, column]
                problem = rows.value_problem(value, column, self.spec, "FP64")
                separator = "" if problem.startswith(";") else " "
                reasons[position] = f"feature '{self.feature_names[column]}' holds {value}{separator}{problem}"
        ok[list(reasons)] = False
        return CheckedRows(x, ok, reasons)


def _is_number(dtype: Any) -> bool:
    """int or float: not bool, and not complex (casting it to float would drop the imaginary part)."""
    return ptypes.is_numeric_dtype(dtype) and not ptypes.is_bool_dtype(dtype) and not ptypes.is_complex_dtype(dtype)


def _is_text(dtype: Any) -> bool:
    return ptypes.is_object_dtype(dtype) or ptypes.is_string_dtype(dtype)


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def from_artifact(artifact: ModelArtifact, source: str, fast: bool | None = None) -> Predictor:
    """A Predictor over a verified artifact: the server's spec and compiled methods.

    Args:
        artifact: a model folder load_artifact verified.
        source: where it came from, for messages.
        fast: the engine's fast path (None: SERVING_FAST_PATH, on).

    Returns:
        The Predictor.
    """
    methods = [PREDICT, PREDICT_PROBA] if artifact.task == "classification" else [PREDICT]
    if fast is None:
        fast = ServingSettings.value_from_env("fast_path")
    return Predictor(artifact, rows.input_spec(artifact.estimator, artifact.feature_names), source,
                     {method: compile_predictor(artifact.estimator, method, fast=fast) for method in methods})


def split_s3(uri: str) -> tuple[str, str]:
    """"s3://bucket/a/b" -> ("bucket", "a/b"); InputError-style ScoringError when it is not that.

    Args:
        uri: an s3:// URI.

    Returns:
        (bucket, key).
    """
    if not uri.startswith(S3_SCHEME):
        raise ScoringError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len(S3_SCHEME):].partition("/")
    if not bucket:
        raise ScoringError(f"{uri!r} names no bucket: expected s3://bucket/key")
    return bucket, key


def fetch_model_folder(uri: str, target: Path, store: ObjectStore | None = None) -> Path:
    """Download the files of an s3:// model folder (not its subfolders) into target.

    Args:
        uri: s3://bucket/prefix of a model folder.
        target: the local folder to fill.
        store: the object store (default: from MINIO_* settings).

    Returns:
        target; ModelLoadError when there is no model there or the store fails.
    """
    bucket, prefix = split_s3(uri)
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    try:
        store = store or ObjectStore.from_env()
        keys = [key for key in store.list_keys(bucket, prefix) if "/" not in key[len(prefix):]]
        if not any(key.endswith("/" + METADATA_FILE) or key == METADATA_FILE for key in keys):
            raise ModelLoadError(f"no model at {S3_SCHEME}{bucket}/{prefix}: no {METADATA_FILE} there "
                                 f"(found {len(keys)} object(s)); push a model first (`make run`)")
        for key in keys:
            store.download_file(bucket, key, target / key[len(prefix):])
    except ObjectStoreError as exc:
        raise ModelLoadError(f"cannot fetch the model {uri}: {exc}") from None
    return target


def load_model(uri_or_folder: str | Path, store: ObjectStore | None = None, fast: bool | None = None) -> Predictor:
    """Fetch (s3://bucket/name/production/ or /v<N>/) or open (a local folder) a model, verify it, compile it.

    Args:
        uri_or_folder: an s3:// model folder or a local one.
        store: the object store for s3:// URIs (default: from MINIO_* settings).
        fast: the engine's fast path (default: SERVING_FAST_PATH, on).

    Returns:
        The Predictor; ModelLoadError says what is wrong.
    """
    source = str(uri_or_folder)
    try:
        if source.startswith(S3_SCHEME):
            with tempfile.TemporaryDirectory(prefix="model-") as folder:
                artifact = load_artifact(fetch_model_folder(source, Path(folder), store))
        else:
            artifact = load_artifact(Path(source))
    except ArtifactError as exc:
        raise ModelLoadError(f"model {source} refused: {exc}") from None
    predictor = from_artifact(artifact, source, fast)
    log.info("loaded %s v%s (sha256 %s) from %s", predictor.name, predictor.version, predictor.sha256[:12], source)
    return predictor
