"""Ingest: sources, validation errors that name column/row/value, missing-value policy, schema, split."""

from __future__ import annotations

import gzip
import http.server
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from components import ingest
from components.datasets import read_dataset
from components.errors import DataError
from components.ingest import IngestConfig, prepare
from components.sources import read_source
from pipelines.local.s3server import free_port
from .helpers import loopback_http, run_ingest


def write(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_diabetes_schema_lists_features_in_order(diabetes):
    schema = json.loads(diabetes.schema.read_text())
    names = [f["name"] for f in schema["features"]]
    assert names == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert {f["dtype"] for f in schema["features"]} == {"float64"}
    assert schema["target"] == {"name": "target", "type": "continuous", "classes": None}


def test_split_is_exact_disjoint_and_complete(diabetes):
    schema = json.loads(diabetes.schema.read_text())
    x_train, y_train = read_dataset(diabetes.train, schema)
    x_test, y_test = read_dataset(diabetes.test, schema)
    assert (len(y_train), len(y_test)) == (353, 89)
    original = load_diabetes(as_frame=True).frame.to_numpy()
    together = np.vstack([np.column_stack([x_train, y_train]), np.column_stack([x_test, y_test])])
    # Same rows, bit for bit (CSV round trip), each exactly once.
    assert sorted(map(tuple, together)) == sorted(map(tuple, original))


def test_breast_cancer_is_binary_and_stratified(breast_cancer):
    schema = json.loads(breast_cancer.schema.read_text())
    assert schema["target"] == {"name": "target", "type": "binary", "classes": [0, 1]}
    assert len(schema["features"]) == 30
    _, y_train = read_dataset(breast_cancer.train, schema)
    _, y_test = read_dataset(breast_cancer.test, schema)
    assert abs(y_train.mean() - y_test.mean()) < 0.02


def test_unknown_bundled_dataset_lists_the_choices():
    with pytest.raises(DataError, match="sklearn:iris.*sklearn:diabetes, sklearn:breast_cancer"):
        read_source("sklearn:iris")


@pytest.mark.parametrize(
    "text, config, expected",
    [
        ("a,b\n1,2\n", {"target": "y"}, r"target column 'y' not found in .*data\.csv; columns are: a, b"),
        ("", {}, "is empty"),
        ("   \n", {}, "is empty"),
        ("a,target\n", {}, "has no data rows"),
        ("target\n1\n2\n", {}, "only the target column"),
        ("a,target\n1,2\nx7,3\n", {}, r"column 'a' is not numeric: data row 2 has value 'x7'.*categorical_features"),
        ("a,target\n1,2\n2,inf\n", {"task": "regression"}, r"target 'target' has an infinite value at data row 2"),
        ("a,target\n1,1.5\n,2.5\n3,3.5\n", {},
         r"column 'a' has 1 missing value\(s\) at data row 2.*'drop' or 'impute'"),
        ("a,target\n1,1.5\n2,\n3,3.5\n", {"missing_values": "impute"}, r"target 'target' is missing at data row 2"),
        ("a,b,target\n1,,1.5\n2,,2.5\n", {"missing_values": "impute"}, r"column 'b' has no values at all"),
        ("a,target\n1,0\n2,0\n3,0\n", {"task": "classification"}, r"single class \[0\]"),
        ("a,target\n1,2\n", {"categorical_features": ("c",)}, r"categorical_features names 'c'"),
        ("a,target\n1,1\n2,2\n3,3\n", {"test_fraction": 0.5}, r"leaves 1 to train on"),
    ],
)
def test_bad_data_is_rejected_with_a_named_reason(tmp_path, text, config, expected):
    with pytest.raises(DataError, match=expected):
        run_ingest(tmp_path, write(tmp_path, text), **config)
    assert not (tmp_path / "train.csv").exists() and not (tmp_path / "schema.json").exists()


def test_unreadable_csv_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_source(str(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="not a file"):
        read_source(str(tmp_path))
    with pytest.raises(DataError, match="not a readable CSV"):
        read_source(write(tmp_path, 'a,b\n1,"2\n', "bad.csv"))


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("task", "clustering", "task='clustering' is invalid: expected one of auto, regression, classification"),
        ("missing_values", "fill", "missing_values='fill' is invalid: expected one of error, drop, impute"),
        ("test_fraction", 1.0, "test_fraction=1.0 is invalid"),
        ("test_fraction", 0, "test_fraction=0 is invalid"),
        ("target", " ", "target is empty"),
    ],
)
def test_bad_parameters_are_named(field, value, expected):
    with pytest.raises(DataError, match=expected):
        IngestConfig(**{field: value})


def test_drop_policy_drops_and_counts_rows():
    frame = pd.DataFrame({"a": [1.0, None, 3.0, 4.0], "target": [1.5, 2.5, None, 4.5]})
    prepared = prepare(frame, IngestConfig(missing_values="drop"), "mem")
    assert prepared.dropped_rows == 2
    assert prepared.target.tolist() == [1.5, 4.5]


def test_impute_policy_keeps_missing_features_and_records_the_policy():
    frame = pd.DataFrame({"a": [1.0, None, 3.0], "target": [1.5, 2.5, 3.5]})
    prepared = prepare(frame, IngestConfig(missing_values="impute", task="regression"), "mem")
    assert prepared.features["a"].isna().sum() == 1
    assert prepared.schema["missing_values"] == "impute"
    assert prepared.schema["features"][0]["min"] == 1.0


def test_declared_categorical_becomes_codes_with_categories():
    frame = pd.DataFrame({"colour": ["red", "blue", "red", None], "target": [1.0, 2.0, 3.0, 4.5]})
    prepared = prepare(frame, IngestConfig(categorical_features=("colour",), missing_values="impute"), "mem")
    assert prepared.schema["features"][0]["categories"] == ["blue", "red"]
    assert prepared.features["colour"].tolist()[:3] == [1.0, 0.0, 1.0]
    assert np.isnan(prepared.features["colour"].iloc[3])


def test_from_params_splits_the_categorical_list():
    config = IngestConfig.from_params("y", "auto", "0.25", "7", "error", " a, b ,,")
    assert config.categorical_features == ("a", "b") and config.test_fraction == 0.25 and config.seed == 7


@pytest.mark.parametrize(
    "target, task, expected",
    [
        ([0, 1, 2, 1, 0, 2], "auto", "multiclass"),
        (["yes", "no", "yes", "no", "yes", "no"], "auto", "binary"),
        ([0.5, 1.25, 2.0, 3.5, 4.0, 5.5], "auto", "continuous"),
        (list(range(30, 36)), "regression", "continuous"),
    ],
)
def test_task_detection(target, task, expected):
    frame = pd.DataFrame({"a": range(6), "target": target})
    assert prepare(frame, IngestConfig(task=task), "mem").schema["target"]["type"] == expected


def test_string_classes_survive_the_csv_round_trip(tmp_path):
    source = write(tmp_path, "a,target\n" + "".join(f"{i},{'1' if i % 2 else '2'}x\n" for i in range(20)))
    result = run_ingest(tmp_path, source)
    schema = json.loads(result.schema.read_text())
    assert schema["target"]["classes"] == ["1x", "2x"]
    _, y = read_dataset(result.train, schema)
    assert set(y) == {"1x", "2x"}


def test_gzip_csv_is_read(tmp_path):
    path = tmp_path / "data.csv.gz"
    path.write_bytes(gzip.compress(b"a,target\n1,2.5\n2,3.5\n"))
    assert read_source(str(path)).shape == (2, 2)


@pytest.fixture
def http_folder(tmp_path):
    class Folder(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

    with loopback_http(Folder) as host:
        yield tmp_path, f"http://{host}"


@pytest.mark.integration
def test_http_source(http_folder):
    folder, url = http_folder
    load_diabetes(as_frame=True).frame.to_csv(folder / "diabetes.csv", index=False)
    assert read_source(f"{url}/diabetes.csv").shape == (442, 11)
    with pytest.raises(DataError, match=r"answered HTTP 404"):
        read_source(f"{url}/missing.csv")


def test_unreachable_http_source_is_named():
    url = f"http://127.0.0.1:{free_port()}/data.csv"
    with pytest.raises(DataError, match=f"cannot reach source {url}"):
        read_source(url)


@pytest.mark.integration
def test_s3_source(store, bucket, tmp_path):
    store.ensure_bucket(bucket)
    store.put_bytes(bucket, "data/diabetes.csv", load_diabetes(as_frame=True).frame.to_csv(index=False).encode())
    summary = ingest.run(source=f"s3://{bucket}/data/diabetes.csv", config=IngestConfig(), train_path=tmp_path / "a",
                         test_path=tmp_path / "b", schema_path=tmp_path / "c")
    assert (summary["rows"], summary["task"]) == (442, "regression")
    with pytest.raises(DataError, match=rf"s3://{bucket}/data/other.csv does not exist"):
        read_source(f"s3://{bucket}/data/other.csv")
    with pytest.raises(DataError, match="not s3://bucket/key"):
        read_source(f"s3://{bucket}")
