"""The model as a library: load_model verifies like the server, takes DataFrames and arrays, predicts like it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring import load_model
from scoring.library import split_s3
from scoring.errors import BadRow, ModelLoadError, SchemaMismatch, ScoringError
from serving import v2
from serving.artifact import ArtifactError, load_artifact
from serving.engine import describe
from tests.pipeline.memstore import MemStore

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


# ---------------------------------------------------------------- edges that mutation testing found unpinned

class FolderStore(MemStore):
    """The loopback store's stand-in in memory, plus download_file: all load_model uses of a store."""

    def download_file(self, bucket, key, path):
        Path(path).write_bytes(self.get_bytes(bucket, key))  # load_model's target folder is flat


def test_load_from_a_store_reads_only_that_folder_and_logs_what_it_loaded(regressor_dir, regressor_v2_dir,
                                                                          diabetes_frame, regressor, caplog):
    store = FolderStore()
    publish(store, "models", regressor_dir, f"{MODEL_NAME}/production")
    publish(store, "models", regressor_v2_dir, f"{MODEL_NAME}/v2", f"{MODEL_NAME}/production/old")
    store.put_bytes("models", f"{MODEL_NAME}/productionX/metadata.json", b"{}")  # a sibling sharing the prefix
    uri = f"s3://models/{MODEL_NAME}/production"  # no trailing slash: the folder all the same
    with caplog.at_level("INFO", logger="scoring.library"):
        model = load_model(uri, store=store)
    np.testing.assert_array_equal(model.predict(features_only(diabetes_frame)),
                                  regressor.predict(features_only(diabetes_frame)))
    assert model.version == 1 and model.source == uri
    read = {key for op, key in store.calls if op == "get"}
    assert read == {f"{MODEL_NAME}/production/{name}" for name in ("model.joblib", "model.skops", "metadata.json")}
    assert f"loaded {MODEL_NAME} v1 (sha256 {model.sha256[:12]}) from {uri}" in caplog.messages


@pytest.mark.parametrize("uri", ["s3://models", "s3://models/", "s3://models//", "s3://models/archive/X",
                                 "s3://models/archive/X/"])
def test_a_model_at_the_bucket_root_or_in_any_folder_loads(regressor_dir, uri):
    store = FolderStore()
    store.ensure_bucket("models")
    prefix = uri[len("s3://models"):].strip("/")
    publish(store, "models", regressor_dir, *([prefix] if prefix else []))
    if not prefix:  # publish writes under a prefix: the root's files by hand
        for name in ("model.joblib", "model.skops", "metadata.json"):
            store.put_bytes("models", name, (regressor_dir / name).read_bytes())
    assert load_model(uri, store=store).version == 1


def test_a_folder_without_metadata_or_a_failing_store_is_a_load_error_naming_it(regressor_dir):
    store = FolderStore()
    store.ensure_bucket("models")
    store.put_bytes("models", "m/production/model.joblib", b"x")
    store.put_bytes("models", "m/production/sub/metadata.json", b"{}")  # a subfolder's does not count
    with pytest.raises(ModelLoadError, match=r"^no model at s3://models/m/production/: no metadata.json there "
                                             r"\(found 1 object\(s\)\); push a model first"):
        load_model("s3://models/m/production/", store=store)
    publish(store, "models", regressor_dir, "m/v1")
    store.fail("get", "m/v1/metadata.json")
    with pytest.raises(ModelLoadError, match=r"^cannot fetch the model s3://models/m/v1/: injected: connection lost"):
        load_model("s3://models/m/v1/", store=store)


@pytest.mark.parametrize("uri, says", [("http://models/m/", "'http://models/m/' is not an s3:// URI"),
                                       ("s3:///m/", "'s3:///m/' names no bucket: expected s3://bucket/key")])
def test_a_uri_that_is_not_s3_bucket_key_is_refused(uri, says):
    with pytest.raises(ScoringError) as caught:
        split_s3(uri)
    assert str(caught.value) == says


def test_the_fast_path_is_the_default_and_can_be_turned_off(regressor_dir, monkeypatch):
    # The only difference is speed (the answers are the same), so the compiled method's description tells.
    monkeypatch.delenv("SERVING_FAST_PATH", raising=False)
    assert describe(load_model(regressor_dir)._methods["predict"]).startswith("flat tree walk")
    assert describe(load_model(regressor_dir, fast=True)._methods["predict"]).startswith("flat tree walk")
    assert not describe(load_model(regressor_dir, fast=False)._methods["predict"]).startswith("flat tree walk")
    monkeypatch.setenv("SERVING_FAST_PATH", "false")
    assert not describe(load_model(regressor_dir)._methods["predict"]).startswith("flat tree walk")


def test_array_rows_name_the_refused_row_and_a_square_array_is_many_rows(regressor_dir, regressor, diabetes_frame):
    model = load_model(regressor_dir)
    x = features_only(diabetes_frame).to_numpy()[:10].copy()  # 10 rows of 10 features
    np.testing.assert_array_equal(model.predict(x), regressor.predict(features_only(diabetes_frame).iloc[:10]))
    x[3, 2] = np.nan
    with pytest.raises(BadRow, match=r"array.data holds nan at row 3, feature 'bmi'") as caught:
        model.predict(x)
    assert caught.value.row == 3


def test_no_rows_give_no_predictions_of_the_right_shape(regressor_dir, classifier_dir, diabetes_frame, cancer_frame):
    assert load_model(regressor_dir).predict(features_only(diabetes_frame).head(0)).shape == (0,)
    classifier = load_model(classifier_dir)
    empty = features_only(cancer_frame).head(0)
    assert classifier.predict(empty).shape == (0,)
    assert classifier.predict_proba(empty).shape == (0, 2)


def test_predict_checked_gives_every_output(classifier_dir, classifier, cancer_frame):
    model = load_model(classifier_dir)
    frame = features_only(cancer_frame).head(7)
    outputs = model.predict_checked(model.features(frame))
    assert list(outputs) == ["predict", "predict_proba"]
    np.testing.assert_array_equal(outputs["predict"], classifier.predict(frame))
    np.testing.assert_array_equal(outputs["predict_proba"], classifier.predict_proba(frame))


def test_dataframe_messages_name_the_frame_and_the_chunk_s_first_row(regressor_dir, diabetes_frame):
    model = load_model(regressor_dir)
    x = features_only(diabetes_frame).head(3)
    with pytest.raises(SchemaMismatch, match=r"^the DataFrame lacks feature column\(s\) bmi"):
        model.predict(x.drop(columns="bmi"))
    # A text column is parsed per row; a boolean column after it is still refused, by check_columns.
    text_then_bool = x.astype({"age": object}).assign(sex=True)
    with pytest.raises(SchemaMismatch, match=r"^the DataFrame: column 'sex' has type bool; expected numbers"):
        model.predict(text_then_bool)
    # check_frame alone (batch scoring, chunk by chunk) names the chunk's first row in the file.
    with pytest.raises(SchemaMismatch, match=r"^chunk: column 'sex' has type bool at rows from 0; expected numbers"):
        model.check_frame(x.assign(sex=True), "chunk")
    with pytest.raises(SchemaMismatch, match=r"^chunk: column 'sex' has type bool at rows from 500;"):
        model.check_frame(x.assign(sex=True), "chunk", first_row=500)


def test_complex_columns_are_refused_not_cut_to_their_real_part(regressor_dir, diabetes_frame):
    # Cast to float, 1+2j became 1.0 with only a warning (a bug); arrays of complex were refused already.
    frame = features_only(diabetes_frame).head(2).astype({"bmi": complex})
    with pytest.raises(SchemaMismatch, match="column 'bmi' has type complex128; expected numbers"):
        load_model(regressor_dir).predict(frame)
    with pytest.raises(SchemaMismatch, match="column 'bmi' has type complex128 at rows from 0"):
        load_model(regressor_dir).check_frame(frame, "chunk")


def test_nullable_string_and_long_double_columns_are_read_like_the_server_reads_numbers(regressor_dir, regressor,
                                                                                       diabetes_frame):
    model = load_model(regressor_dir)
    x = features_only(diabetes_frame).head(4)
    want = regressor.predict(x)
    np.testing.assert_array_equal(model.predict(x.astype({"age": "Float64", "sex": np.longdouble})), want)
    np.testing.assert_array_equal(model.predict(x.astype({"age": "string"})), want)
    nullable = x.astype({"bmi": "Float64"})
    nullable.loc[2, "bmi"] = pd.NA
    with pytest.raises(BadRow, match=r"^row 2: feature 'bmi' holds nan \(NaN, Inf, or out of FP64 range\); expected"):
        model.predict(nullable)
    text = x.astype({"age": "string"})
    text.loc[1, "age"] = "forty"
    with pytest.raises(BadRow, match="^row 1: feature 'age' is 'forty'; expected a number"):
        model.predict(text)


def test_a_range_refusal_in_a_dataframe_reads_as_the_server_s(regressor_dir, diabetes_frame):
    row = features_only(diabetes_frame).head(1).copy()
    row["age"] = 1e300
    with pytest.raises(BadRow) as caught:
        load_model(regressor_dir).predict(row)
    assert str(caught.value) == ("row 0: feature 'age' holds 1e+300; this model takes 'age' in [-3.402823e+38, "
                                 "3.402823e+38] (RandomForestRegressor computes in float32)")


def test_long_text_cells_are_cut_in_messages(regressor_dir, diabetes_frame):
    model = load_model(regressor_dir)
    for cell, shown in (("x" * 58, repr("x" * 58)),  # repr: 60 characters, the limit, shown whole
                        ("x" * 59, repr("x" * 59)[:57] + "...")):
        text = features_only(diabetes_frame).head(1).astype({"age": object})
        text.loc[0, "age"] = cell
        with pytest.raises(BadRow) as caught:
            model.predict(text)
        assert str(caught.value) == f"row 0: feature 'age' is {shown}; expected a number"
