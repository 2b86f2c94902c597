"""Model folders (as push writes them), published copies in the loopback store, and input tables."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from components.objectstore import ObjectStore
from components.push import build_metadata, skops_bytes

MODEL_NAME = "diabetes-rf"


def write_model_folder(folder: Path, estimator, frame: pd.DataFrame, task: str, version: int = 1,
                       classes: list | None = None) -> Path:
    """model.joblib, model.skops and metadata.json exactly as components.push builds them."""
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, folder / "model.joblib")
    skops = skops_bytes(folder)
    (folder / "model.skops").write_bytes(skops)
    target = {"name": "target", "type": "continuous"} if task == "regression" else \
        {"name": "target", "type": "binary", "classes": classes}
    schema = {"features": [{"name": c, "dtype": "float64", "min": float(frame[c].min()), "max": float(frame[c].max())}
                           for c in frame.columns], "target": target}
    metric = "r2" if task == "regression" else "f1_macro"
    metadata = build_metadata(
        MODEL_NAME, version, (folder / "model.joblib").read_bytes(),
        {"sklearn_version": sklearn.__version__, "estimator": "random_forest", "hyperparameters": {},
         "training_seconds": 0.1, "task": task},
        schema,
        {"metrics": {metric: 0.5}, "primary_metric": {"name": metric, "value": 0.5, "higher_is_better": True},
         "data_source": "sklearn", "threshold": 0.1, "task": task},
        "test-run", dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc), skops=skops)
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return folder


@pytest.fixture(scope="session")
def diabetes_frame() -> pd.DataFrame:
    return load_diabetes(as_frame=True).frame


@pytest.fixture(scope="session")
def regressor(diabetes_frame):
    x = diabetes_frame.drop(columns="target")
    return RandomForestRegressor(n_estimators=25, random_state=0).fit(x, diabetes_frame["target"])


@pytest.fixture(scope="session")
def regressor_dir(tmp_path_factory, regressor, diabetes_frame) -> Path:
    return write_model_folder(tmp_path_factory.mktemp("regressor"), regressor,
                              diabetes_frame.drop(columns="target"), "regression")


@pytest.fixture(scope="session")
def regressor_v2_dir(tmp_path_factory, diabetes_frame) -> Path:
    x = diabetes_frame.drop(columns="target")
    other = RandomForestRegressor(n_estimators=10, random_state=1).fit(x, diabetes_frame["target"])
    return write_model_folder(tmp_path_factory.mktemp("regressor_v2"), other, x, "regression", version=2)


@pytest.fixture(scope="session")
def cancer_frame() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.copy()
    # String labels: the output's predict_proba_<class> columns are named after them.
    frame["target"] = np.asarray(data.target_names)[data.target]
    return frame


@pytest.fixture(scope="session")
def classifier(cancer_frame):
    x = cancer_frame.drop(columns="target")
    return RandomForestClassifier(n_estimators=25, random_state=0).fit(x, cancer_frame["target"])


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory, classifier, cancer_frame) -> Path:
    return write_model_folder(tmp_path_factory.mktemp("classifier"), classifier,
                              cancer_frame.drop(columns="target"), "classification",
                              classes=list(classifier.classes_))


@pytest.fixture
def bucket() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(s3_env) -> ObjectStore:
    return ObjectStore.from_env()


def publish(store: ObjectStore, bucket: str, folder: Path, *prefixes: str) -> None:
    """Copy a model folder to s3://bucket/<prefix>/ for each prefix (model.joblib first, as push does)."""
    store.ensure_bucket(bucket)
    for prefix in prefixes:
        for name in ("model.joblib", "model.skops", "metadata.json"):
            store.put_bytes(bucket, f"{prefix}/{name}", (folder / name).read_bytes())


def features_only(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="target")
