"""What a pushed model folder holds: its file names, its format version and the helpers that read them.

    model.joblib   the fitted scikit-learn Pipeline (what KServe's stock sklearn runtime loads)
    model.skops    the same model as skops (contract.modelformat): what this project's server loads
    training.json  how it was trained (written by train)
    metadata.json  format_version, checksums, schema, task, version (written by push)
"""

from __future__ import annotations

from pathlib import Path

# metadata.json's "format_version": push writes it, the server refuses any other.
FORMAT_VERSION = 1

# The model a run trains and serves when no name is given: the one place this name is written
# (pipeline defaults, the CLIs, batch scoring, the server; tests/test_default_model_name.py checks
# that no other module spells it).
DEFAULT_MODEL_NAME = "diabetes-rf"

MODEL_FILE = "model.joblib"
TRAINING_FILE = "training.json"
METADATA_FILE = "metadata.json"
# The same model in skops form (contract.modelformat): what this project's server and batch scoring
# load, since loading it cannot run code. Not a pickle suffix, so KServe's stock runtime ignores it.
SKOPS_FILE = "model.skops"
# The one model format this project writes and its server loads.
MODEL_SUFFIX = Path(MODEL_FILE).suffix
# What KServe's stock sklearn runtime takes for a model file; it refuses a folder holding more
# than one. Push applies both rules, so every pushed folder loads in either server.
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")


def model_files(folder: Path) -> list[str]:
    """Names in folder that KServe's sklearn runtime would take for a model file.

    Args:
        folder: a model folder (it may not exist).

    Returns:
        The names, sorted; [] when there is no such folder.
    """
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)


def feature_names(schema: dict) -> list[str]:
    """The feature names of a contract schema, in column order.

    Args:
        schema: the "schema" object (``{"features": [{"name": ...}, ...], ...}``).

    Returns:
        The names, in the order the model takes its columns.
    """
    return [feature["name"] for feature in schema["features"]]
