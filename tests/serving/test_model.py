"""The kserve.Model subclass: loading, readiness, and predictions equal to scikit-learn's."""

from __future__ import annotations

import asyncio
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest
from kserve.errors import ModelNotReady
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from serving import v2
from serving.batching import BatchingConfig
from serving.engine import describe
from serving.model import SklearnModel

# Predictions go through serving.engine; where it computes what scikit-learn computes the
# numbers agree to the last bit, and this is the bound issue 5 allows.


def run(coro):
    return asyncio.run(coro)


def loaded(folder: Path) -> SklearnModel:
    model = SklearnModel("diabetes-rf", folder)
    assert model.load(), model.load_error
    return model


def infer(model: SklearnModel, rows: np.ndarray, datatype: str = "FP64", outputs=None, **extra) -> dict:
    tensor = {"name": "input-0", "datatype": datatype, "shape": list(rows.shape), "data": rows.tolist()}
    request = {"inputs": [tensor], **extra}
    if outputs:
        request["outputs"] = [{"name": name} for name in outputs]
    body, header_length = run(model.infer_json(orjson.dumps(request)))
    assert header_length is None  # JSON asked, JSON answered
    response = orjson.loads(body)
    return {out["name"]: np.array(out["data"]).reshape(out["shape"]) for out in response["outputs"]} | {
        "_response": response}


@pytest.mark.parametrize("batch", [1, 7, 442])
def test_regressor_predictions_equal_sklearn(regressor_dir, regressor, diabetes, batch: int) -> None:
    x = diabetes[0][:batch]
    got = infer(loaded(regressor_dir), x)
    np.testing.assert_array_equal(got["predict"], regressor.predict(x))
    response = got["_response"]
    assert response["model_name"] == "diabetes-rf" and response["model_version"] == "3"
    assert response["outputs"][0]["datatype"] == "FP64" and response["outputs"][0]["shape"] == [batch]


def test_every_row_of_the_data_matches_one_request_per_row(regressor_dir, regressor, diabetes) -> None:
    model, x = loaded(regressor_dir), diabetes[0][:40]
    singles = np.concatenate([infer(model, x[i:i + 1])["predict"] for i in range(len(x))])
    np.testing.assert_array_equal(singles, regressor.predict(x))


def test_fp32_request_equals_sklearn_on_float32_rounded_rows(regressor_dir, regressor, diabetes) -> None:
    x = diabetes[0][:5]
    rounded = x.astype(np.float32).astype(np.float64)
    got = infer(loaded(regressor_dir), x, datatype="FP32")
    np.testing.assert_array_equal(got["predict"], regressor.predict(rounded))


def test_classifier_answers_labels_and_probabilities_when_asked(classifier_dir, classifier, diabetes) -> None:
    model, x = loaded(classifier_dir), diabetes[0][:25]
    default = infer(model, x)
    assert set(default) == {"predict", "_response"}
    np.testing.assert_array_equal(default["predict"], classifier.predict(x))
    assert default["_response"]["outputs"][0]["datatype"] == "INT64"
    both = infer(model, x, outputs=["predict_proba", "predict"], id="abc")
    np.testing.assert_array_equal(both["predict_proba"], classifier.predict_proba(x))
    np.testing.assert_array_equal(both["predict"], classifier.predict(x))
    assert [o["name"] for o in both["_response"]["outputs"]] == ["predict_proba", "predict"]
    assert both["_response"]["id"] == "abc"


def test_regressor_refuses_predict_proba(regressor_dir, diabetes) -> None:
    with pytest.raises(v2.InvalidRequest, match="this model offers predict$"):
        infer(loaded(regressor_dir), diabetes[0][:1], outputs=["predict_proba"])


def test_metadata_reports_real_tensors_and_schema(classifier_dir, diabetes) -> None:
    meta = loaded(classifier_dir).metadata()
    names = diabetes[2]
    assert meta["name"] == "diabetes-rf" and meta["versions"] == ["1"] and meta["platform"] == "sklearn"
    (tensor,) = meta["inputs"]
    assert tensor["name"] == "input-0" and tensor["datatype"] == "FP64" and tensor["shape"] == [-1, len(names)]
    assert tensor["parameters"]["feature_names"] == names
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
    assert meta["outputs"][1]["shape"] == [-1, 2]
    assert meta["outputs"][0]["parameters"]["target"]["classes"] == [0, 1]
    assert meta["parameters"]["task"] == "classification" and len(meta["parameters"]["sha256"]) == 64


def test_tampered_model_never_becomes_ready(tmp_path, regressor_dir, diabetes, caplog) -> None:
    folder = Path(shutil.copytree(regressor_dir, tmp_path / "m"))
    metadata = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**metadata, "sha256": "f" * 64}))
    model = SklearnModel("diabetes-rf", folder)
    assert model.load() is False
    model.start()  # kserve's default would set ready here
    assert model.ready is False
    assert "sha256 of model.joblib" in model.load_error
    assert "sha256 of model.joblib" in caplog.text and "stays not ready" in caplog.text
    with pytest.raises(ModelNotReady, match="is not ready. sha256"):
        infer(model, diabetes[0][:1])
    assert model.metadata()["inputs"] == [] and model.metadata()["versions"] == []


def test_kserve_path_grpc_style_request(classifier_dir, classifier, diabetes) -> None:
    model, x = loaded(classifier_dir), diabetes[0][:3]
    request = InferRequest("diabetes-rf", [InferInput("input-0", [3, 10], "FP64", x.ravel().tolist())],
                           request_id="g1", request_outputs=[RequestedOutput("predict_proba")])
    response = run(model.predict(request))
    (output,) = response.outputs
    assert response.id == "g1" and response.model_version == "1" and output.name == "predict_proba"
    assert output.shape == [3, 2] and output.datatype == "FP64"
    np.testing.assert_array_equal(np.array(output.data).reshape(3, 2), classifier.predict_proba(x))


def test_kserve_path_refuses_v1_bodies(regressor_dir) -> None:
    with pytest.raises(v2.InvalidRequest, match="expected a V2 request: POST /v2/models/diabetes-rf/infer"):
        run(loaded(regressor_dir).predict({"instances": [[0.0] * 10]}))


def test_model_survives_pickling_for_worker_processes(regressor_dir, regressor, diabetes) -> None:
    copy = pickle.loads(pickle.dumps(loaded(regressor_dir)))
    assert copy.ready
    np.testing.assert_array_equal(infer(copy, diabetes[0][:4])["predict"], regressor.predict(diabetes[0][:4]))


@pytest.mark.parametrize("enabled", [True, False], ids=["batching-on", "batching-off"])
def test_concurrent_requests_each_get_their_own_rows_answer(regressor_dir, regressor, diabetes, enabled) -> None:
    model = SklearnModel("diabetes-rf", regressor_dir, BatchingConfig(enabled=enabled))
    assert model.load()
    x = diabetes[0][:24]
    bodies = [orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10],
                                        "data": row.tolist()}]}) for row in x]

    async def all_at_once():
        return await asyncio.gather(*(model.infer_json(body) for body in bodies))

    answers = [orjson.loads(raw)["outputs"][0]["data"][0] for raw, _ in run(all_at_once())]
    np.testing.assert_array_equal(answers, regressor.predict(x))
    stats = model.batch_stats["predict"]
    assert stats.requests == 24
    assert (stats.batches < 24) if enabled else (stats.batches == 24)


def test_batching_is_on_by_default(regressor_dir, monkeypatch) -> None:
    monkeypatch.delenv("SERVING_BATCHING", raising=False)
    assert SklearnModel("m", regressor_dir).batching.enabled
    monkeypatch.setenv("SERVING_BATCHING", "0")
    assert not SklearnModel("m", regressor_dir).batching.enabled


@pytest.mark.parametrize("env, argument, fast", [
    (None, None, True),       # the default: the engine
    ("0", None, False),       # SERVING_FAST_PATH=0
    ("0", True, True),        # what `python -m serving` read at start wins over a later environment
    (None, False, False),
])
def test_fast_path_setting_reaches_the_compiled_predictor(regressor_dir, monkeypatch, env, argument, fast) -> None:
    monkeypatch.delenv("SERVING_FAST_PATH", raising=False)
    if env is not None:
        monkeypatch.setenv("SERVING_FAST_PATH", env)
    model = SklearnModel("m", regressor_dir, fast_path=argument)
    assert model.load()
    path = describe(model._batchers["predict"]._predict)
    assert path.startswith("flat tree walk") if fast else path.startswith("scikit-learn"), path
