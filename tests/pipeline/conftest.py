"""Fixtures for the pipeline tests: ingested and trained artifacts made once per session."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest

from components import evaluate, push, train
from components.objectstore import ObjectStore

from .helpers import Ingested, run_ingest
from .memstore import MemStore

PUSHED_AT = dt.datetime(2026, 12, 2, 20, 0, tzinfo=dt.timezone.utc)  # when production_store's v1 was pushed


@pytest.fixture(scope="session")
def diabetes(tmp_path_factory) -> Ingested:
    return run_ingest(tmp_path_factory.mktemp("diabetes"), "sklearn:diabetes")


@pytest.fixture(scope="session")
def breast_cancer(tmp_path_factory) -> Ingested:
    return run_ingest(tmp_path_factory.mktemp("breast_cancer"), "sklearn:breast_cancer")


@pytest.fixture(scope="session")
def diabetes_rf(diabetes, tmp_path_factory) -> Path:
    """The default model (100-tree random forest, seed 42) trained on the diabetes train split."""
    folder = tmp_path_factory.mktemp("diabetes_rf")
    train.run(train_path=diabetes.train, schema_path=diabetes.schema, model_dir=folder, estimator="random_forest",
              hyperparameters="{}", seed=42)
    return folder


@pytest.fixture(scope="session")
def breast_cancer_rf(breast_cancer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("breast_cancer_rf")
    train.run(train_path=breast_cancer.train, schema_path=breast_cancer.schema, model_dir=folder,
              estimator="random_forest", hyperparameters="{}", seed=42)
    return folder


@pytest.fixture(scope="session")
def ridge_models(diabetes, tmp_path_factory) -> list[Path]:
    """Three small models that differ byte for byte (ridge, alpha 1.0, 0.5, 0.1: fast to train)."""
    folders = []
    for alpha in (1.0, 0.5, 0.1):
        folder = tmp_path_factory.mktemp(f"ridge-{alpha}")
        train.run(train_path=diabetes.train, schema_path=diabetes.schema, model_dir=folder, estimator="ridge",
                  hyperparameters=json.dumps({"alpha": alpha}), seed=42)
        folders.append(folder)
    return folders


@pytest.fixture(scope="session")
def evaluated(diabetes, diabetes_rf, tmp_path_factory) -> Path:
    """An evaluation of model "m" that says deploy (made without a store: no production to compare with).

    Push re-checks its recorded score against production's; every push of these tests carries the
    same score, so each one is "not worse" and moves production unless a test changes the score.
    """
    folder = tmp_path_factory.mktemp("evaluation")
    evaluate.run(test_path=diabetes.test, schema_path=diabetes.schema, model_dir=diabetes_rf, threshold=0.2,
                 model_name="m", bucket="models", store=None, data_source=diabetes.source, seed=42, test_fraction=0.2,
                 evaluation_path=folder / "evaluation.json", report_path=folder / "report.md")
    return folder / "evaluation.json"


@pytest.fixture
def production_store(diabetes, diabetes_rf, evaluated) -> MemStore:
    """An in-memory store whose model "m" (bucket "models") has production v1: diabetes_rf with its training profile."""
    memory = MemStore()
    push.run(model_dir=diabetes_rf, schema_path=diabetes.schema, evaluation_path=evaluated, model_name="m",
             bucket="models", store=memory, run_id="run-1", now=PUSHED_AT)
    return memory


@pytest.fixture
def bucket() -> str:
    """A fresh bucket name per test: the S3 server is shared by the whole session."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(s3_env, s3_server) -> ObjectStore:
    return ObjectStore.from_env()
