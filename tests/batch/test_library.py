"""The model as a library: load_model verifies like the server, takes DataFrames and arrays, predicts like it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from scoring import load_model
from scoring.errors import BadRow, ModelLoadError, SchemaMismatch, ScoringError
from serving import v2
from serving.artifact import ArtifactError, load_artifact

from .conftest import MODEL_NAME, features_only, publish


def test_dataframe_predictions_equal_scikit_learns(regressor_dir, regressor, diabetes_frame):
    model = load_model(regressor_dir)
    x = features_only(diabetes_frame)
    np.testing.assert_array_equal(model.predict(x), regressor.predict(x))
    assert (model.name, model.version, model.task) == (MODEL_NAME, 1, "regression")
    assert model.feature_names == tuple(x.columns) and model.outputs == ("predict",)


def test_dataframe_columns_are_taken_by_name_in_any_order_extra_ones_ignored(regressor_dir, regressor,
                                                                             diabetes_frame):
    model = load_model(regressor_dir)
    x = features_only(diabetes_frame)
    shuffled = x[list(reversed(x.columns))].assign(customer="c", target=diabetes_frame["target"])
    np.testing.assert_array_equal(model.predict(shuffled), regressor.predict(x))


def test_array_in_schema_order_and_a_single_row(regressor_dir, regressor, diabetes_frame):
    model = load_model(regressor_dir)
    x = features_only(diabetes_frame)
    np.testing.assert_array_equal(model.predict(x.to_numpy()), regressor.predict(x))
    np.testing.assert_array_equal(model.predict(x.to_numpy()[3]), regressor.predict(x.iloc[[3]]))
    np.testing.assert_array_equal(model.predict(x.to_numpy().astype(np.float32)),
                                  regressor.predict(x.astype(np.float32)))


def test_classifier_predict_and_predict_proba_equal_scikit_learns(classifier_dir, classifier, cancer_frame):
    model = load_model(classifier_dir)
    x = features_only(cancer_frame)
    np.testing.assert_array_equal(model.predict(x), classifier.predict(x))
    np.testing.assert_array_equal(model.predict_proba(x), classifier.predict_proba(x))
    assert model.classes == ["benign", "malignant"] and model.outputs == ("predict", "predict_proba")


def test_regressor_has_no_predict_proba(regressor_dir, diabetes_frame):
    with pytest.raises(ScoringError, match="regression model: it has no predict_proba"):
        load_model(regressor_dir).predict_proba(features_only(diabetes_frame))


def test_missing_column_is_one_error_naming_it(regressor_dir, diabetes_frame):
    with pytest.raises(SchemaMismatch, match=r"lacks feature column\(s\) bmi, s3; the model diabetes-rf v1 takes age"):
        load_model(regressor_dir).predict(features_only(diabetes_frame).drop(columns=["bmi", "s3"]))


@pytest.mark.parametrize("data, match", [
    (np.zeros((2, 9)), r"array has shape \(2, 9\); expected \(rows, 10\) with columns in schema order: age, sex"),
    (np.array([["a"] * 10]), "array has dtype <U1; expected numbers"),
    (np.ones((2, 10), bool), "array has dtype bool; expected numbers"),
])
def test_array_of_the_wrong_shape_or_type(regressor_dir, data, match):
    with pytest.raises(SchemaMismatch, match=match):
        load_model(regressor_dir).predict(data)


def test_boolean_column_is_a_schema_mismatch(regressor_dir, diabetes_frame):
    frame = features_only(diabetes_frame).assign(sex=True)
    with pytest.raises(SchemaMismatch, match="column 'sex' has type bool; expected numbers"):
        load_model(regressor_dir).predict(frame)


def test_nan_and_text_rows_are_refused_with_their_row_number(regressor_dir, diabetes_frame):
    model = load_model(regressor_dir)
    frame = features_only(diabetes_frame).head(5).copy()
    frame.loc[3, "bmi"] = np.nan
    with pytest.raises(BadRow, match=r"row 3: feature 'bmi' holds nan \(NaN, Inf, or out of FP64 range\)") as info:
        model.predict(frame)
    assert info.value.row == 3
    text = features_only(diabetes_frame).head(5).astype(object)
    text.loc[2, "age"] = "forty"
    with pytest.raises(BadRow, match="row 2: feature 'age' is 'forty'; expected a number"):
        model.predict(text)


def test_range_check_is_the_servers_own(regressor_dir, diabetes_frame):
    """A value beyond what the float32 forest computes on: the library and the V2 endpoint say the same."""
    model = load_model(regressor_dir)
    row = features_only(diabetes_frame).head(1).to_numpy().copy()
    row[0, 0] = 1e300
    body = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10],
                                   "data": row.ravel().tolist()}]}).encode()
    with pytest.raises(v2.InvalidRequest) as server:
        v2.decode_json_request(body, model.spec, ("predict",), ("predict",))
    with pytest.raises(BadRow) as array:
        model.predict(row)
    with pytest.raises(BadRow) as frame:
        model.predict(pd.DataFrame(row, columns=model.feature_names))
    tail = "; this model takes 'age' in [-3.402823e+38, 3.402823e+38] (RandomForestRegressor computes in float32)"
    assert str(server.value).endswith(tail) and str(array.value).endswith(tail) and str(frame.value).endswith(tail)
    assert str(array.value) == str(server.value).replace("inputs[0]", "array")


def test_load_from_the_object_store(store, bucket, regressor_dir, regressor_v2_dir, diabetes_frame, regressor):
    publish(store, bucket, regressor_dir, f"{MODEL_NAME}/v1", f"{MODEL_NAME}/production")
    publish(store, bucket, regressor_v2_dir, f"{MODEL_NAME}/v2")
    production = load_model(f"s3://{bucket}/{MODEL_NAME}/production/")
    np.testing.assert_array_equal(production.predict(features_only(diabetes_frame)),
                                  regressor.predict(features_only(diabetes_frame)))
    second = load_model(f"s3://{bucket}/{MODEL_NAME}/v2")
    assert (production.version, second.version) == (1, 2) and production.sha256 != second.sha256


def test_nothing_at_the_uri_says_so(store, bucket):
    store.ensure_bucket(bucket)
    with pytest.raises(ModelLoadError, match=rf"no model at s3://{bucket}/{MODEL_NAME}/production/: no metadata.json"):
        load_model(f"s3://{bucket}/{MODEL_NAME}/production/")


def _refusal(folder) -> str:
    with pytest.raises(ArtifactError) as server:
        load_artifact(folder)
    with pytest.raises(ModelLoadError) as library:
        load_model(folder)
    assert str(server.value) in str(library.value)
    return str(library.value)


def test_corrupt_model_is_refused_as_the_server_refuses_it(tmp_path, regressor_dir):
    folder = shutil.copytree(regressor_dir, tmp_path / "m")
    with (folder / "model.joblib").open("ab") as handle:
        handle.write(b"tampered")
    assert "the file is corrupt or was replaced, refusing the model" in _refusal(folder)


@pytest.mark.parametrize("field, value, says", [
    ("sklearn_version", "0.24.2", "model was trained with scikit-learn 0.24.2"),
    ("format_version", 99, "format_version is 99; expected 1"),
])
def test_metadata_the_server_refuses_is_refused(tmp_path, regressor_dir, field, value, says):
    folder = shutil.copytree(regressor_dir, tmp_path / "m")
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata[field] = value
    (folder / "metadata.json").write_text(json.dumps(metadata))
    assert says in _refusal(folder)


def test_a_code_running_pickle_with_a_valid_checksum_is_never_unpickled(tmp_path, regressor_dir):
    import hashlib
    import pickle
    from pathlib import Path

    marker = tmp_path / "pickle-ran"

    class TouchOnUnpickle:
        def __reduce__(self):
            return (Path.touch, (marker,))

    folder = Path(shutil.copytree(regressor_dir, tmp_path / "m"))
    (folder / "model.joblib").write_bytes(pickle.dumps(TouchOnUnpickle()))
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["sha256"] = hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest()
    (folder / "metadata.json").write_text(json.dumps(metadata))
    assert load_model(folder).version == 1  # scored from model.skops
    assert not marker.exists(), "batch scoring unpickled model.joblib"
