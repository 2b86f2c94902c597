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

# The model a run trains and serves when no name is given: the one place this name is written
# (pipeline defaults, the CLIs, batch scoring, the server; a test checks no other module spells it).
DEFAULT_MODEL_NAME = "diabetes-rf"
MODEL_FILE = "model.joblib"
TRAINING_FILE = "training.json"
METADATA_FILE = "metadata.json"
# The same model in skops form (components.modelformat): what this project's server and batch scoring
# load, since loading it cannot run code. Not a pickle suffix, so KServe's stock runtime ignores it.
SKOPS_FILE = "model.skops"
# The one model format this project writes and its server loads.
MODEL_SUFFIX = Path(MODEL_FILE).suffix
# What KServe's stock sklearn runtime takes for a model file; it refuses a folder holding more
# than one. Push applies both rules, so every pushed folder loads in either server.
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")


def write_json(path: str | Path, obj: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise PipelineError(f"{what} not found at {path}") from exc
    except ValueError as exc:
        raise PipelineError(f"{what} at {path} is not valid JSON: {exc}") from exc


def model_files(folder: Path) -> list[str]:
    """Names in folder that KServe's sklearn runtime would take for a model file, sorted; [] if no folder."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: metrics that cannot be computed are stored as null."""
    value = float(value)
    return value if math.isfinite(value) else None


def feature_names(schema: dict) -> list[str]:
    return [feature["name"] for feature in schema["features"]]


def schema_task(schema: dict) -> str:
    return "regression" if schema["target"]["type"] == "continuous" else "classification"
