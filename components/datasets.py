"""train/test Dataset artifacts: one CSV file, the features in schema order, then the target column.

Kept apart from components.artifacts so that steps which never touch a table (push) do not
pay for importing pandas in their fresh process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from components.artifacts import feature_names
from components.errors import PipelineError


def write_dataset(path: str | Path, features: pd.DataFrame, target: pd.Series) -> None:
    """Write one split as CSV: the features in schema order, then the target.

    Args:
        path: the file.
        features: the feature columns.
        target: the target column.
    """
    frame = features.copy()
    frame[target.name] = target.to_numpy()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def read_dataset(path: str | Path, schema: dict) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) with X a float64 array in schema order: models are fitted on arrays, not DataFrames.

    Args:
        path: the CSV file.
        schema: the ingested schema.

    Returns:
        (X, y).
    """
    target = schema["target"]
    classes = target.get("classes") or []
    # String class labels such as "1" must stay strings, or they would no longer match the schema's classes.
    dtype = {target["name"]: str} if any(isinstance(c, str) for c in classes) else None
    frame = pd.read_csv(path, dtype=dtype, float_precision="round_trip")
    names = feature_names(schema)
    expected = names + [target["name"]]
    if list(frame.columns) != expected:
        raise PipelineError(f"dataset {path} has columns {list(frame.columns)}, expected {expected}")
    return frame[names].to_numpy(dtype=np.float64), frame[target["name"]].to_numpy()
