"""Loading a model folder per the artifact contract (serving.artifact)."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import Ridge

from serving.artifact import ArtifactError, load_artifact, storage_env


@pytest.fixture
def folder(tmp_path: Path, regressor_dir: Path) -> Path:
    """A private copy of the good regressor folder, free to break."""
    return Path(shutil.copytree(regressor_dir, tmp_path / "model"))


def edit_metadata(folder: Path, **changes) -> None:
    path = folder / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata.update(changes)
    path.write_text(json.dumps(metadata))


class _TouchOnUnpickle:
    """A pickle that leaves a marker file when loaded: proves whether unpickling happened."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_good_folder_loads(regressor_dir: Path, regressor, diabetes) -> None:
    artifact = load_artifact(regressor_dir)
    x, _, names = diabetes
    assert artifact.version == "3" and artifact.task == "regression"
    assert artifact.feature_names == tuple(names)
    np.testing.assert_array_equal(artifact.estimator.predict(x[:5]), regressor.predict(x[:5]))


def test_checksum_is_verified_before_unpickling(folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    with (folder / "model.joblib").open("wb") as handle:
        pickle.dump(_TouchOnUnpickle(marker), handle)
    with pytest.raises(ArtifactError, match=r"sha256 of model.joblib is [0-9a-f]{64}; metadata.json says"):
        load_artifact(folder)
    assert not marker.exists(), "the model file was unpickled despite a checksum mismatch"


def test_sklearn_version_mismatch_is_refused(folder: Path) -> None:
    edit_metadata(folder, sklearn_version="0.24.2")
    with pytest.raises(ArtifactError, match=f"trained with scikit-learn 0.24.2; this server has {sklearn.__version__}"):
        load_artifact(folder)


@pytest.mark.parametrize(
    "breakage, expected",
    [
        pytest.param(lambda f: (f / "metadata.json").unlink(), "metadata.json is missing", id="no-metadata"),
        pytest.param(lambda f: (f / "model.joblib").unlink(), "holds no model files (.joblib/.pkl/.pickle); expected exactly one .joblib",
                     id="no-model-file"),
        pytest.param(lambda f: shutil.copy(f / "model.joblib", f / "other.joblib"),
                     "holds ['model.joblib', 'other.joblib'] model files (.joblib/.pkl/.pickle); expected exactly one .joblib",
                     id="two-model-files"),
        pytest.param(lambda f: (f / "stray.pkl").write_bytes(b"x"),
                     "holds ['model.joblib', 'stray.pkl'] model files (.joblib/.pkl/.pickle); expected exactly one .joblib",
                     id="stray-pickle-the-stock-runtime-would-refuse"),
        pytest.param(lambda f: (f / "metadata.json").write_text("{not json"), "is not readable JSON", id="metadata-not-json"),
        pytest.param(lambda f: (f / "metadata.json").write_text("[1]"), "holds a JSON list; expected an object",
                     id="metadata-not-object"),
        pytest.param(lambda f: edit_metadata(f, format_version=2), "format_version is 2; expected 1", id="format-version"),
        pytest.param(lambda f: edit_metadata(f, sha256="abc"), "sha256 is 'abc'; expected 64 hex digits", id="short-sha"),
        pytest.param(lambda f: edit_metadata(f, task="clustering"), "task is 'clustering'; expected regression or",
                     id="unknown-task"),
        pytest.param(lambda f: edit_metadata(f, version="3"), "version is '3'; expected an integer", id="version-string"),
        pytest.param(lambda f: edit_metadata(f, schema={"features": []}), "schema.features is []", id="no-features"),
        pytest.param(lambda f: edit_metadata(f, model_file="other.joblib"),
                     "names model_file 'other.joblib'; the folder holds 'model.joblib'", id="model-file-name"),
        pytest.param(lambda f: edit_metadata(f, sha256="0" * 64), "metadata.json says 0000", id="wrong-sha"),
        pytest.param(lambda f: shutil.rmtree(f), "does not exist", id="no-folder"),
    ],
)
def test_broken_folder_is_refused_with_the_reason(folder: Path, breakage, expected: str) -> None:
    breakage(folder)
    with pytest.raises(ArtifactError) as caught:
        load_artifact(folder)
    assert expected in str(caught.value)


def test_schema_and_model_feature_counts_must_agree(tmp_path: Path, regressor, diabetes, write_model) -> None:
    x, _, names = diabetes
    folder = write_model(tmp_path / "m", regressor, "regression", names[:9], x[:, :9])
    with pytest.raises(ArtifactError, match="fitted on 10 features; metadata.json schema lists 9"):
        load_artifact(folder)


def test_classification_needs_predict_proba(tmp_path: Path, diabetes, write_model) -> None:
    x, y, names = diabetes
    folder = write_model(tmp_path / "m", Ridge().fit(x, y), "classification", names, x, classes=[0, 1])
    with pytest.raises(ArtifactError, match="task is classification but Ridge has no predict_proba"):
        load_artifact(folder)


def test_a_checksum_valid_file_that_is_no_skops_is_refused(tmp_path: Path, diabetes, write_model) -> None:
    x, y, names = diabetes
    folder = write_model(tmp_path / "m", Ridge().fit(x, y), "regression", names, x)
    (folder / "model.skops").write_bytes(b"not a zip")
    edit_metadata(folder, skops_sha256=hashlib.sha256(b"not a zip").hexdigest())
    with pytest.raises(ArtifactError, match="model.skops: not a skops file"):
        load_artifact(folder)


def test_dataframe_fitted_model_predicts_on_arrays_without_warnings(tmp_path: Path, diabetes, write_model) -> None:
    x, y, names = diabetes
    model = Ridge().fit(pd.DataFrame(x, columns=names), y)
    folder = write_model(tmp_path / "m", model, "regression", names, x)
    artifact = load_artifact(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn would warn "X does not have valid feature names"
        prediction = artifact.estimator.predict(x[:3])
    np.testing.assert_allclose(prediction, joblib.load(folder / "model.joblib").predict(pd.DataFrame(x[:3], columns=names)))


def test_dataframe_fitted_model_with_other_column_order_is_refused(tmp_path: Path, diabetes, write_model) -> None:
    x, y, names = diabetes
    model = Ridge().fit(pd.DataFrame(x, columns=names[::-1]), y)
    folder = write_model(tmp_path / "m", model, "regression", names, x)
    with pytest.raises(ArtifactError, match="fitted on features"):
        load_artifact(folder)


def test_storage_env_maps_minio_settings_for_kserve_storage() -> None:
    env = {"MINIO_ENDPOINT": "127.0.0.1:9", "MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "s", "MINIO_SECURE": "1"}
    assert storage_env(env) == {"AWS_ENDPOINT_URL": "https://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "a",
                                "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1"}
    assert storage_env({**env, "AWS_ENDPOINT_URL": "http://elsewhere"}) == {}
    assert storage_env({}) == {}
