"""Reading a model folder written by the pipeline's push step (the artifact contract).

A folder holds exactly one ``*.joblib`` (a fitted scikit-learn Pipeline, for KServe's stock
runtime), the same model as ``model.skops``, and ``metadata.json``. This module never unpickles:
it loads the skops file, which names types instead of running code, and refuses one that names a
type outside the list derived from the estimators this project trains (contract.modelformat).
Checksums only catch corruption and stale copies (whoever can write the bucket can write them too);
the type list is what keeps code from the bucket out of the process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sklearn

from contract import modelformat
from contract.errors import ObjectStoreError
from contract.files import (
    FORMAT_VERSION,
    METADATA_FILE,
    MODEL_SUFFIX,
    MODEL_SUFFIXES,
    SKOPS_FILE,
    feature_names,
    model_files,
)
from contract.store import ENDPOINT_ENV, StoreSettings

log = logging.getLogger(__name__)

TASKS = ("regression", "classification")  # metadata.json "task" values the server knows
_HASH_CHUNK = 1 << 20


class ArtifactError(RuntimeError):
    """The model folder breaks the artifact contract; the model must not be served."""


@dataclass(frozen=True)
class ModelArtifact:
    estimator: Any
    metadata: dict[str, Any]
    path: Path

    @property
    def version(self) -> str:
        """The model's version from metadata.json.

        Returns:
            The version as a string (V2 versions are strings).
        """
        return str(self.metadata["version"])

    @property
    def task(self) -> str:
        """regression or classification, from metadata.json.

        Returns:
            The task.
        """
        return self.metadata["task"]

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The input features in column order, from the metadata's schema.

        Returns:
            The names.
        """
        return tuple(feature_names(self.metadata["schema"]))


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in chunks.

    Args:
        path: the file.

    Returns:
        Its hex digest.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(folder: Path) -> dict[str, Any]:
    """metadata.json of a model folder, checked against the contract.

    Args:
        folder: the model folder.

    Returns:
        The metadata; ArtifactError names the missing or wrong field.
    """
    path = folder / METADATA_FILE
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; the push step writes it next to the model file")
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{path} holds a JSON {type(metadata).__name__}; expected an object")
    _check_metadata(metadata, path)
    return metadata


def _check_metadata(metadata: dict[str, Any], path: Path) -> None:
    def need(ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise ArtifactError(f"{path}: {field} is {metadata.get(field)!r}; expected {expected}")

    need(metadata.get("format_version") == FORMAT_VERSION, "format_version", str(FORMAT_VERSION))
    need(isinstance(metadata.get("model_file"), str), "model_file", "a file name")
    need(isinstance(metadata.get("sha256"), str) and len(metadata["sha256"]) == 64, "sha256", "64 hex digits")
    need(isinstance(metadata.get("sklearn_version"), str), "sklearn_version", "a version string")
    need(metadata.get("task") in TASKS, "task", " or ".join(TASKS))
    need(isinstance(metadata.get("version"), int), "version", "an integer")
    if "skops_file" in metadata:  # absent in versions pushed before model.skops: load_artifact says what to do
        need(metadata["skops_file"] == SKOPS_FILE, "skops_file", repr(SKOPS_FILE))
        need(isinstance(metadata.get("skops_sha256"), str) and len(metadata["skops_sha256"]) == 64, "skops_sha256",
             "64 hex digits")
    schema = metadata.get("schema")
    features = schema.get("features") if isinstance(schema, dict) else None
    if not features or not all(isinstance(f, dict) and isinstance(f.get("name"), str) for f in features):
        raise ArtifactError(f"{path}: schema.features is {features!r}; expected a list of {{\"name\": ...}} objects")


def find_model_file(folder: Path) -> Path:
    """The one model.joblib of a folder, by the same rule as push and KServe's stock runtime.

    Args:
        folder: the model folder.

    Returns:
        Its path; ArtifactError when there is none or more than one model file.
    """
    if not folder.is_dir():
        raise ArtifactError(f"model folder {folder} does not exist")
    # The same rule as push and KServe's stock runtime: any pickle-like file counts, and there is one.
    found = model_files(folder)
    if len(found) != 1 or not found[0].endswith(MODEL_SUFFIX):
        raise ArtifactError(
            f"{folder} holds {found or 'no'} model files ({'/'.join(MODEL_SUFFIXES)}); "
            f"expected exactly one {MODEL_SUFFIX}"
        )
    return folder / found[0]


def load_artifact(folder: Path | str) -> ModelArtifact:
    """Verify a model folder, then load its skops file; raises ArtifactError saying what is wrong.

    Args:
        folder: the model folder (model.joblib, model.skops, metadata.json).

    Returns:
        The verified ModelArtifact (estimator, metadata, path).
    """
    folder = Path(folder)
    model_path = find_model_file(folder)
    metadata = read_metadata(folder)
    if metadata["model_file"] != model_path.name:
        raise ArtifactError(
            f"metadata.json names model_file {metadata['model_file']!r}; the folder holds {model_path.name!r}"
        )
    actual = sha256_of(model_path)
    if actual != metadata["sha256"].lower():
        raise ArtifactError(
            f"sha256 of {model_path.name} is {actual}; metadata.json says {metadata['sha256']}: "
            "the file is corrupt or was replaced, refusing the model"
        )
    if metadata["sklearn_version"] != sklearn.__version__:
        raise ArtifactError(
            f"model was trained with scikit-learn {metadata['sklearn_version']}; this server has "
            f"{sklearn.__version__}: serve it with the same version (models are not portable across versions)"
        )
    estimator = _load_skops(folder, metadata)
    artifact = ModelArtifact(estimator, metadata, folder)
    _check_estimator(artifact)
    _forget_input_feature_names(estimator)
    return artifact


def _load_skops(folder: Path, metadata: dict[str, Any]) -> Any:
    if "skops_file" not in metadata:
        raise ArtifactError(
            f"v{metadata['version']} has no {SKOPS_FILE} (it was pushed before the project wrote one) and this "
            f"server never unpickles {metadata['model_file']}: a pickle runs code when loaded. Train and push "
            "it again (`make run`), or promote a version that has one (`make models` lists them)"
        )
    path = folder / SKOPS_FILE
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; metadata.json names it (skops_file)")
    actual = sha256_of(path)
    if actual != metadata["skops_sha256"].lower():
        raise ArtifactError(f"sha256 of {SKOPS_FILE} is {actual}; metadata.json says {metadata['skops_sha256']}: "
                            "the file is corrupt or was replaced, refusing the model")
    try:
        return modelformat.loads(path.read_bytes())
    except modelformat.UntrustedModel as exc:
        raise ArtifactError(f"refusing {path}: {exc}") from None


def _check_estimator(artifact: ModelArtifact) -> None:
    estimator = artifact.estimator
    if not callable(getattr(estimator, "predict", None)):
        raise ArtifactError(f"{type(estimator).__name__} has no predict(); expected a fitted scikit-learn model")
    fitted = getattr(estimator, "n_features_in_", None)
    if fitted is not None and fitted != len(artifact.feature_names):
        raise ArtifactError(
            f"model was fitted on {fitted} features; metadata.json schema lists {len(artifact.feature_names)}"
        )
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None and tuple(names) != artifact.feature_names:
        raise ArtifactError(
            f"model was fitted on features {list(names)}; metadata.json lists {list(artifact.feature_names)}"
        )
    if artifact.task == "classification" and not callable(getattr(estimator, "predict_proba", None)):
        raise ArtifactError(f"task is classification but {type(estimator).__name__} has no predict_proba()")


def _forget_input_feature_names(estimator: Any) -> None:
    """Drop column names a DataFrame fit recorded at the model's input.

    The server passes positional float arrays in schema order (checked above against those
    names); scikit-learn would otherwise warn "X does not have valid feature names" on
    every predict. Only the input side is touched: inner steps see what their predecessor emits.
    """
    while estimator is not None:
        vars(estimator).pop("feature_names_in_", None)
        steps = getattr(estimator, "steps", None)
        estimator = steps[0][1] if steps else None


def storage_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """AWS_* settings for kserve_storage (which reads only those) from the project's MINIO_* ones.

    Empty when MINIO_ENDPOINT is unset or AWS_ENDPOINT_URL is already given.

    Args:
        environ: the environment to read (default: os.environ).

    Returns:
        AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, or {}.
    """
    env = os.environ if environ is None else environ
    if not env.get(ENDPOINT_ENV) or env.get("AWS_ENDPOINT_URL"):
        return {}
    settings = StoreSettings.from_env(env=env)
    return {
        "AWS_ENDPOINT_URL": settings.url,
        "AWS_ACCESS_KEY_ID": settings.access_key,
        "AWS_SECRET_ACCESS_KEY": settings.secret_key,
        "AWS_DEFAULT_REGION": settings.region,
    }


def download(uri: str, out_dir: Path | str | None = None) -> Path:
    """Fetch a storage URI (s3://, gs://, a local path...) into a folder through kserve_storage.

    Args:
        uri: the storage URI.
        out_dir: the folder to fill (default: a new temporary one).

    Returns:
        The folder holding the model; ArtifactError when the download fails.
    """
    from kserve_storage import Storage  # imports boto3 and friends: only when a URI is used

    try:
        os.environ.update(storage_env())
    except ObjectStoreError as exc:
        raise ArtifactError(f"cannot download {uri}: {exc}") from None
    target = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="model-"))
    try:
        return Path(Storage.download(uri, out_dir=str(target)))
    except Exception as exc:  # kserve_storage raises bare Exception / RuntimeError / boto errors
        raise ArtifactError(f"cannot download {uri}: {type(exc).__name__}: {exc}") from None
