"""HTTP behaviour of the wired app (our routes + kserve's), in process: statuses, errors, metrics."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from kserve.model_repository import ModelRepository
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from prometheus_client import REGISTRY
from starlette.testclient import TestClient
from timing_asgi import TimingMiddleware

from serving import v2
from serving.limits import Admission, Limits
from serving.model import SklearnModel
from serving.routes import InferFirst
from serving.server import TRACE_LOGGER, DataPlane, RESTServer

MAX_BODY = 4096
INFER = "/v2/models/diabetes-rf/infer"


def build_app(*models: SklearnModel, max_body_bytes: int = MAX_BODY, fast_route: bool = True) -> tuple:
    """(the ASGI app uvicorn would serve, the FastAPI app behind it)."""
    registry = ModelRepository()
    for model in models:
        registry.update(model)
    rest = RESTServer(DataPlane(model_registry=registry), ModelRepositoryExtension(registry), 0,
                      host="127.0.0.1", limits=Limits(max_body_bytes=max_body_bytes), fast_route=fast_route)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # kserve's own app is built this way
        app = FastAPI(default_response_class=ORJSONResponse)
    return rest.configure(app), app


def build_client(*models: SklearnModel, max_body_bytes: int = MAX_BODY, fast_route: bool = True) -> TestClient:
    return TestClient(build_app(*models, max_body_bytes=max_body_bytes, fast_route=fast_route)[0])


@pytest.fixture(scope="module")
def model(regressor_dir) -> SklearnModel:
    model = SklearnModel("diabetes-rf", regressor_dir)
    assert model.load()
    return model


@pytest.fixture(scope="module")
def client(model) -> TestClient:
    return build_client(model)


def row_body(rows: np.ndarray, **extra) -> bytes:
    tensor = {"name": "input-0", "datatype": "FP64", "shape": list(rows.shape), "data": rows.tolist()}
    return orjson.dumps({"inputs": [tensor], **extra})


def count(model: str, status: int) -> float:
    return REGISTRY.get_sample_value("serving_infer_requests_total", {"model": model, "protocol": "rest", "status": str(status)}) or 0.0


def test_infer_equals_sklearn(client, regressor, diabetes) -> None:
    x = diabetes[0][:12]
    response = client.post(INFER, content=row_body(x))
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    np.testing.assert_array_equal(response.json()["outputs"][0]["data"], regressor.predict(x))


def test_versioned_paths(client) -> None:
    body = row_body(np.zeros((1, 10)))
    assert client.post("/v2/models/diabetes-rf/versions/3/infer", content=body).status_code == 200
    assert client.get("/v2/models/diabetes-rf/versions/3").json()["versions"] == ["3"]
    assert client.get("/v2/models/diabetes-rf/versions/3/ready").json() == {"name": "diabetes-rf", "ready": True}
    for path in ("/v2/models/diabetes-rf/versions/4/infer",):
        response = client.post(path, content=body)
        assert response.status_code == 404 and "version 4 (serving version 3)" in response.json()["error"]
    assert client.get("/v2/models/diabetes-rf/versions/4").status_code == 404
    assert client.get("/v2/models/diabetes-rf/versions/4/ready").status_code == 404


@pytest.mark.parametrize(
    "content, expected",
    [
        pytest.param(b"{bad", "malformed JSON", id="malformed"),
        pytest.param(b'{"inputs": []}', "'inputs' is []", id="no-inputs"),
        pytest.param(row_body(np.zeros((1, 9))), "9 features per row; this model takes 10", id="feature-count"),
        pytest.param(orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [2, 10],
                                               "data": [0.0] * 10}]}), "needs 20 values; data holds 10", id="shape-data"),
        pytest.param(orjson.dumps({"inputs": [{"name": "input-0", "datatype": "BYTES", "shape": [1, 10],
                                               "data": ["a"] * 10}]}), "datatype is 'BYTES'", id="datatype"),
        pytest.param(orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10],
                                               "data": ["x"] * 10}]}), "expected only numbers", id="non-numeric"),
        pytest.param(orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 10],
                                               "data": [1e300] * 10}]}), "expected finite numbers", id="overflow-inf"),
        # The forest computes in float32 (scikit-learn raised "value too large", a 500, before).
        pytest.param(row_body(np.full((1, 10), 1e300)), "inputs[0].data holds 1e+300 at row 0, feature 'age'; "
                     "this model takes 'age' in [", id="fp64-beyond-float32"),
        pytest.param(row_body(np.array([[0.0] * 9 + [-1e38]])), "holds -1e+38 at row 0, feature 's6'; this model "
                     "takes 's6' in [-1.", id="inside-float32-beyond-scaling"),
    ],
)
def test_bad_input_is_a_400_with_an_error(client, content: bytes, expected: str) -> None:
    before = count("diabetes-rf", 400)
    response = client.post(INFER, content=content)
    assert response.status_code == 400
    assert expected in response.json()["error"]
    assert count("diabetes-rf", 400) == before + 1


def test_values_at_the_accepted_bounds_are_answered(client, model, regressor) -> None:
    x = np.stack([model.spec.low, model.spec.high])
    response = client.post(INFER, content=row_body(x))
    assert response.status_code == 200, response.text
    assert "RandomForestRegressor computes in float32 after StandardScaler" == model.spec.range_reason
    np.testing.assert_array_equal(response.json()["outputs"][0]["data"], regressor.predict(x))


def binary_body(rows: np.ndarray, datatype: str = "FP64", **extra) -> tuple[bytes, dict]:
    """The binary tensor extension as tritonclient sends it: JSON header, then the raw rows."""
    raw = rows.astype(v2.NUMERIC_DATATYPES[datatype]).tobytes()
    tensor = {"name": "input-0", "datatype": datatype, "shape": list(rows.shape),
              "parameters": {"binary_data_size": len(raw)}}
    header = orjson.dumps({"inputs": [tensor], **extra})
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def split_answer(response) -> tuple[dict, bytes]:
    size = int(response.headers["inference-header-content-length"])
    return orjson.loads(response.content[:size]), response.content[size:]


def test_binary_tensor_extension_both_ways(client, regressor, diabetes) -> None:
    x = diabetes[0][:9]
    body, headers = binary_body(x, parameters={"binary_data_output": True})
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    header, raw = split_answer(response)
    assert header["outputs"][0] == {"name": "predict", "datatype": "FP64", "shape": [9],
                                    "parameters": {"binary_data_size": 72}}
    np.testing.assert_array_equal(np.frombuffer(raw, "<f8"), regressor.predict(x))
    # Binary in, JSON out (nothing asked binary), and an FP32 tensor rounded as sent.
    body, headers = binary_body(x, "FP32")
    response = client.post(INFER, content=body, headers=headers)
    assert "inference-header-content-length" not in response.headers
    np.testing.assert_array_equal(response.json()["outputs"][0]["data"],
                                  regressor.predict(x.astype(np.float32).astype(np.float64)))


def test_json_body_with_header_length_equal_to_its_size_is_plain_json(client, regressor, diabetes) -> None:
    body = row_body(diabetes[0][:2])
    response = client.post(INFER, content=body, headers={"Inference-Header-Content-Length": str(len(body))})
    assert response.status_code == 200
    np.testing.assert_array_equal(response.json()["outputs"][0]["data"], regressor.predict(diabetes[0][:2]))


def test_string_labels_travel_as_length_prefixed_bytes() -> None:
    raw = v2.raw_bytes(np.array(["no", "yes"], dtype=object))
    assert raw == b"\x02\x00\x00\x00no\x03\x00\x00\x00yes"


def _binary_case(header: dict, raw: bytes, header_length: int | None = None) -> tuple[bytes, dict]:
    encoded = orjson.dumps(header)
    return encoded + raw, {"Inference-Header-Content-Length": str(len(encoded) if header_length is None else header_length)}


def _tensor(size, **extra) -> dict:
    return {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10],
                        "parameters": {"binary_data_size": size}, **extra}]}


@pytest.mark.parametrize(
    "case, expected",
    [
        pytest.param(_binary_case(_tensor(80), bytes(80), header_length=10_000),
                     "Inference-Header-Content-Length is 10000 but the body has only", id="header-beyond-body"),
        pytest.param((b"{}", {"Inference-Header-Content-Length": "ten"}), "Inference-Header-Content-Length is 'ten'",
                     id="header-not-a-number"),
        pytest.param(_binary_case(_tensor(80), bytes(40)), "binary_data_size is 80 but only 40 bytes", id="size-beyond-data"),
        pytest.param(_binary_case(_tensor(80), bytes(88)), "88 bytes of binary data follow the JSON header; the inputs' "
                     "binary_data_size add up to 80", id="sizes-do-not-add-up"),
        pytest.param(_binary_case(_tensor(72), bytes(72)), "has 72 bytes of data; its shape and datatype FP64 need "
                     "10 x 8 = 80", id="size-vs-shape"),
        pytest.param(_binary_case(_tensor(-1), b""), "binary_data_size is -1; expected a byte count", id="negative-size"),
        pytest.param(_binary_case(_tensor(80, data=[0.0] * 10), bytes(80)), "has both 'data' and "
                     "parameters.binary_data_size", id="data-and-size"),
        pytest.param(_binary_case({**_tensor(80), "parameters": {"binary_data_output": "yes"}}, bytes(80)),
                     "parameters.binary_data_output is 'yes'; expected true or false", id="bad-output-flag"),
        pytest.param((row_body(np.zeros((1, 10))), {}), None, id="control-json-is-fine"),
    ],
)
def test_binary_inconsistencies_are_400s_naming_them(client, case, expected) -> None:
    body, headers = case
    response = client.post(INFER, content=body, headers=headers)
    if expected is None:
        assert response.status_code == 200
        return
    assert response.status_code == 400, response.text
    assert expected in response.json()["error"]


def test_pandas_codec_one_input_per_feature_in_any_order(client, regressor, diabetes) -> None:
    x, _, names = diabetes
    rows = x[:4]
    inputs = [{"name": name, "datatype": "FP64", "shape": [4] if i % 2 else [4, 1], "data": rows[:, i].tolist()}
              for i, name in reversed(list(enumerate(names)))]
    response = client.post(INFER, content=orjson.dumps({"inputs": inputs, "parameters": {"content_type": "pd"}}))
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(response.json()["outputs"][0]["data"], regressor.predict(rows))
    bad = [dict(t) for t in inputs[1:]] + [{**inputs[0], "name": "height"}]
    response = client.post(INFER, content=orjson.dumps({"inputs": bad}))
    assert response.status_code == 400
    assert "missing features: 's6'; unknown inputs: 'height'" in response.json()["error"]


def test_a_single_input_is_taken_under_any_name(client, regressor, diabetes) -> None:
    body = orjson.dumps({"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 10],
                                     "data": diabetes[0][0].tolist()}]})
    response = client.post(INFER, content=body)
    assert response.status_code == 200
    np.testing.assert_array_equal(response.json()["outputs"][0]["data"], regressor.predict(diabetes[0][:1]))


def test_v1_predict_rows_as_lists_or_objects(client, regressor, diabetes) -> None:
    x, _, names = diabetes
    for instances in (x[:3].tolist(), [dict(zip(names, row)) for row in x[:3].tolist()]):
        response = client.post("/v1/models/diabetes-rf:predict", content=orjson.dumps({"instances": instances}))
        assert response.status_code == 200, response.text
        np.testing.assert_array_equal(response.json()["predictions"], regressor.predict(x[:3]))


@pytest.mark.parametrize(
    "body, expected",
    [
        pytest.param({"instances": []}, "'instances' is []; expected a non-empty list", id="empty"),
        pytest.param({"rows": [[0.0] * 10]}, "'instances' is None", id="no-instances"),
        pytest.param({"instances": [[0.0] * 9]}, "instances[0] is [0.0, 0.0", id="short-row"),
        pytest.param({"instances": [{"age": 0.0}]}, "instances[0] keys do not match the model's features; missing: sex",
                     id="missing-keys"),
        pytest.param({"instances": [[0.0] * 9 + ["x"]]}, "instances.data holds 'x'; expected only numbers", id="string"),
        pytest.param({"instances": [[0.0] * 9 + [1e300]]}, "holds 1e+300 at row 0, feature 's6'", id="range"),
    ],
)
def test_v1_mistakes_are_400s(client, body, expected) -> None:
    response = client.post("/v1/models/diabetes-rf:predict", content=orjson.dumps(body))
    assert response.status_code == 400
    assert expected in response.json()["error"]


def test_v1_unknown_model_is_a_404(client) -> None:
    response = client.post("/v1/models/nope:predict", content=b'{"instances": [[0]]}')
    assert response.status_code == 404 and "nope" in response.json()["error"]


def test_model_config_describes_the_real_tensors(client, model) -> None:
    for path in ("/v2/models/diabetes-rf/config", f"/v2/models/diabetes-rf/versions/{model.version}/config"):
        config = client.get(path).json()
        assert config["input"] == [{"name": "input-0", "data_type": "TYPE_FP64", "format": "FORMAT_NONE", "dims": [10]}]
        assert config["output"] == [{"name": "predict", "data_type": "TYPE_FP64", "dims": [1], "reshape": {"shape": []}}]
        assert config["max_batch_size"] == model.batching.max_batch_rows and config["platform"] == "sklearn"
    assert client.get("/v2/models/diabetes-rf/versions/99/config").status_code == 404
    assert client.get("/v2/models/nope/config").status_code == 404


def test_server_metadata_lists_the_extensions(client) -> None:
    extensions = client.get("/v2").json()["extensions"]
    assert {"binary_tensor_data", "model_configuration"} <= set(extensions)


def test_body_over_the_limit_is_a_413(client) -> None:
    big = row_body(np.full((200, 10), 0.123456789))
    assert len(big) > MAX_BODY
    response = client.post(INFER, content=big)
    assert response.status_code == 413 and f"the limit is {MAX_BODY}" in response.json()["error"]
    chunked = client.post(INFER, content=iter([big[:2000], big[2000:]]))  # no Content-Length
    assert chunked.status_code == 413 and "exceeds the limit" in chunked.json()["error"]


def test_unknown_model_is_a_404_counted_under_one_label(client) -> None:
    before = count("_unknown", 404)
    response = client.post("/v2/models/nope/infer", content=row_body(np.zeros((1, 10))))
    assert response.status_code == 404 and response.json() == {"error": "Model with name nope does not exist."}
    assert client.get("/v2/models/nope").status_code == 404
    assert count("_unknown", 404) == before + 1


def test_metrics_count_and_time_requests_by_model_and_status(client) -> None:
    before = count("diabetes-rf", 200)
    for _ in range(3):
        assert client.post(INFER, content=row_body(np.zeros((1, 10)))).status_code == 200
    assert count("diabetes-rf", 200) == before + 3
    labels = {"model": "diabetes-rf", "protocol": "rest", "status": "200"}
    assert REGISTRY.get_sample_value("serving_infer_request_duration_seconds_count", labels) >= 3
    assert REGISTRY.get_sample_value("serving_infer_request_duration_seconds_sum", labels) > 0
    assert "serving_infer_requests_total" in client.get("/metrics").text


def test_server_bug_is_a_500_json_and_the_server_goes_on(model, monkeypatch) -> None:
    client = build_client(model)

    async def broken(request):
        raise RuntimeError("boom")

    monkeypatch.setattr(model, "_results", broken)
    response = client.post(INFER, content=row_body(np.zeros((1, 10))))
    assert response.status_code == 500 and "internal error" in response.json()["error"]
    monkeypatch.undo()
    assert client.post(INFER, content=row_body(np.zeros((1, 10)))).status_code == 200


def test_not_ready_model_makes_the_server_not_ready(tmp_path, regressor_dir) -> None:
    folder = Path(shutil.copytree(regressor_dir, tmp_path / "m"))
    (folder / "model.joblib").write_bytes(b"tampered")
    broken = SklearnModel("diabetes-rf", folder)
    assert not broken.load()
    client = build_client(broken)
    assert client.get("/v2/health/live").status_code == 200
    server_ready = client.get("/v2/health/ready")
    assert server_ready.status_code == 503 and "sha256" in server_ready.json()["error"]
    ready = client.get("/v2/models/diabetes-rf/ready")
    assert ready.status_code == 503 and "sha256" in ready.json()["error"]
    infer = client.post(INFER, content=row_body(np.zeros((1, 10))))
    assert infer.status_code == 503 and "is not ready" in infer.json()["error"]


def test_kserve_endpoints_answer_without_deprecation_warnings(client) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert client.get("/v2").json()["name"] == "kserve"
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert client.get("/v2/models/diabetes-rf/ready").json() == {"name": "diabetes-rf", "ready": True}
        assert client.get("/v2/models").json() == {"models": ["diabetes-rf"]}
        assert json.loads(client.get("/openapi.json").text)["paths"]["/v2/models/{model_name}/infer"]


def test_inference_bypasses_the_fastapi_app_and_the_rest_does_not(model, regressor, diabetes) -> None:
    served, app = build_app(model)
    assert isinstance(served, Admission) and isinstance(served.app, InferFirst) and served.app.app is app
    x = diabetes[0][:3]
    for path in (INFER, "/v2/models/diabetes-rf/versions/3/infer"):
        response = TestClient(served).post(path, content=row_body(x))
        assert response.status_code == 200
        np.testing.assert_array_equal(response.json()["outputs"][0]["data"], regressor.predict(x))
    client = TestClient(served)
    assert client.get("/v2/models/diabetes-rf").json()["versions"] == ["3"]  # GET: through FastAPI
    assert client.get(INFER).status_code == 405


def test_fast_route_off_leaves_inference_to_kserves_handler(model, regressor, diabetes) -> None:
    served, app = build_app(model, fast_route=False)
    assert isinstance(served, Admission) and served.app is app
    x = diabetes[0][:5]
    client, json_type = TestClient(served), {"content-type": "application/json"}  # kserve parses JSON only then
    before = count("diabetes-rf", 200)
    response = client.post(INFER, content=row_body(x), headers=json_type)
    assert response.status_code == 200
    np.testing.assert_array_equal(response.json()["outputs"][0]["data"], regressor.predict(x))
    assert count("diabetes-rf", 200) == before  # kserve's handler, not ours, answered
    bad = client.post(INFER, content=row_body(np.zeros((1, 9))), headers=json_type)
    assert bad.status_code == 400 and "this model takes 10" in bad.json()["error"]




@pytest.mark.parametrize("trace_level, timed", [(logging.WARNING, False), (logging.INFO, True)])
def test_kserve_timing_middleware_only_when_its_trace_is_logged(model, trace_level, timed) -> None:
    trace = logging.getLogger(TRACE_LOGGER)
    previous = trace.level
    trace.setLevel(trace_level)  # setLevel, not .level: it also clears isEnabledFor's cache
    try:
        _, app = build_app(model)
    finally:
        trace.setLevel(previous)
    assert any(m.cls is TimingMiddleware for m in app.user_middleware) is timed
