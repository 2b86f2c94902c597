"""How the pipeline's artifacts look on disk, shared by the steps that write and read them.

    train/test Dataset  one CSV file (components.datasets)
    schema              one JSON file: the contract's "schema" object (see README)
    Model               a folder with exactly one model.joblib (what KServe's sklearn runtime
                        loads) and training.json (how it was trained); push adds model.skops
    evaluation          one JSON file: metrics, primary metric and the deploy decision
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from components.errors import PipelineError
# A model folder's file names and readers are the contract the server shares; re-exported for the steps.
from contract.files import (
    DEFAULT_MODEL_NAME,
    METADATA_FILE,
    MODEL_FILE,
    MODEL_SUFFIX,
    MODEL_SUFFIXES,
    SKOPS_FILE,
    TRAINING_FILE,
    feature_names,
    model_files,
)

__all__ = ["DEFAULT_MODEL_NAME", "METADATA_FILE", "MODEL_FILE", "MODEL_SUFFIX", "MODEL_SUFFIXES", "SKOPS_FILE",
           "TRAINING_FILE", "feature_names", "model_files", "write_json", "read_json", "finite_or_none", "schema_task"]


def write_json(path: str | Path, obj: Any) -> None:
    """Write obj as indented JSON (no NaN), creating the parent folders.

    Args:
        path: the file.
        obj: what to write.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file a previous step wrote.

    Args:
        path: the file.
        what: what it is, for the message.

    Returns:
        The parsed value; PipelineError when it is missing or not JSON.
    """
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise PipelineError(f"{what} not found at {path}") from exc
    except ValueError as exc:
        raise PipelineError(f"{what} at {path} is not valid JSON: {exc}") from exc


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: metrics that cannot be computed are stored as null.

    Args:
        value: a metric.

    Returns:
        The value as a float, or None for NaN and infinities.
    """
    value = float(value)
    return value if math.isfinite(value) else None


def schema_task(schema: dict) -> str:
    """The task a schema's target implies.

    Args:
        schema: the ingested schema.

    Returns:
        regression for a continuous target, else classification.
    """
    return "regression" if schema["target"]["type"] == "continuous" else "classification"
