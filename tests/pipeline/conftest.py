"""Fixtures for the pipeline tests: ingested and trained artifacts made once per session."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from components import train
from components.objectstore import ObjectStore

from .helpers import Ingested, run_ingest


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
    train.run(diabetes.train, diabetes.schema, folder, "random_forest", "{}", 42)
    return folder


@pytest.fixture(scope="session")
def breast_cancer_rf(breast_cancer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("breast_cancer_rf")
    train.run(breast_cancer.train, breast_cancer.schema, folder, "random_forest", "{}", 42)
    return folder


@pytest.fixture
def bucket() -> str:
    """A fresh bucket name per test: the S3 server is shared by the whole session."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(s3_env, s3_server) -> ObjectStore:
    return ObjectStore.from_env()
