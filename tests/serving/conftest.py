"""Models and model folders for the serving tests, written per the artifact contract."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from contract import modelformat

MODEL_NAME = "diabetes-rf"


def write_model_folder(folder: Path, estimator, task: str, feature_names: list[str], x: np.ndarray,
                       version: int = 1, classes: list | None = None) -> Path:
    """model.joblib, model.skops, then metadata.json, as the pipeline's push step writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / "model.joblib"
    joblib.dump(estimator, model_path)
    skops = modelformat.dumps(estimator)
    (folder / "model.skops").write_bytes(skops)
    features = [{"name": n, "dtype": "float64", "min": float(lo), "max": float(hi)}
                for n, lo, hi in zip(feature_names, x.min(axis=0), x.max(axis=0), strict=True)]
    target_type = "continuous" if task == "regression" else ("binary" if len(classes) == 2 else "multiclass")
    metadata = {
        "format_version": 1, "model_name": MODEL_NAME, "version": version, "framework": "scikit-learn",
        "sklearn_version": sklearn.__version__, "model_file": "model.joblib",
        "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "skops_file": "model.skops", "skops_sha256": hashlib.sha256(skops).hexdigest(),
        "task": task, "estimator": "random_forest", "hyperparameters": {"n_estimators": 100},
        "schema": {"features": features, "target": {"name": "target", "type": target_type, "classes": classes}},
        "metrics": {"r2": 0.4}, "primary_metric": {"name": "r2", "value": 0.4, "higher_is_better": True},
        "data_source": "sklearn:diabetes", "run_id": "test", "created_at": "2026-11-25T17:40:00Z",
        "training_seconds": 0.5,
    }
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return folder


@pytest.fixture(scope="session")
def diabetes() -> tuple[np.ndarray, np.ndarray, list[str]]:
    data = load_diabetes()
    return data.data, data.target, list(data.feature_names)


@pytest.fixture(scope="session")
def regressor(diabetes) -> Pipeline:
    x, y, _ = diabetes
    # 20 trees: every answer is compared with this model's own predict, which needs no more; the
    # mutation runs (make mutate) fit it again for every mutant.
    return Pipeline([("scale", StandardScaler()),
                     ("model", RandomForestRegressor(n_estimators=20, random_state=0))]).fit(x, y)


@pytest.fixture(scope="session")
def classifier(diabetes) -> Pipeline:
    x, y, _ = diabetes
    labels = (y > np.median(y)).astype(np.int64)
    return Pipeline([("scale", StandardScaler()),
                     ("model", RandomForestClassifier(n_estimators=20, random_state=0))]).fit(x, labels)


@pytest.fixture(scope="session")
def regressor_dir(tmp_path_factory, regressor, diabetes) -> Path:
    x, _, names = diabetes
    return write_model_folder(tmp_path_factory.mktemp("regressor"), regressor, "regression", names, x, version=3)


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory, classifier, diabetes) -> Path:
    x, _, names = diabetes
    return write_model_folder(tmp_path_factory.mktemp("classifier"), classifier, "classification", names, x,
                              version=1, classes=[0, 1])


@pytest.fixture(scope="session")
def write_model():
    """write_model_folder, for tests that build their own (often broken) folders."""
    return write_model_folder
