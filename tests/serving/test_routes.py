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

from serving.model import SklearnModel
from serving.routes import FAST_ROUTE_ENV, InferFirst, RouteConfigError, fast_route_enabled
from serving.server import TRACE_LOGGER, DataPlane, RESTServer

MAX_BODY = 4096
INFER = "/v2/models/diabetes-rf/infer"


def build_app(*models: SklearnModel, max_body_bytes: int = MAX_BODY, fast_route: bool = True) -> tuple:
    """(the ASGI app uvicorn would serve, the FastAPI app behind it)."""
    registry = ModelRepository()
    for model in models:
        registry.update(model)
    rest = RESTServer(DataPlane(model_registry=registry), ModelRepositoryExtension(registry), 0,
                      host="127.0.0.1", max_body_bytes=max_body_bytes, fast_route=fast_route)
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
    np.testing.assert_allclose(response.json()["outputs"][0]["data"], regressor.predict(x), rtol=1e-9, atol=0)


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


def test_binary_tensor_extension_is_refused(client) -> None:
    response = client.post(INFER, content=row_body(np.zeros((1, 10))),
                           headers={"Inference-Header-Content-Length": "10"})
    assert response.status_code == 400 and "binary tensor extension" in response.json()["error"]


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
    assert isinstance(served, InferFirst) and served.app is app
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
    assert served is app
    x = diabetes[0][:5]
    client, json_type = TestClient(served), {"content-type": "application/json"}  # kserve parses JSON only then
    before = count("diabetes-rf", 200)
    response = client.post(INFER, content=row_body(x), headers=json_type)
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["outputs"][0]["data"], regressor.predict(x), rtol=1e-9, atol=0)
    assert count("diabetes-rf", 200) == before  # kserve's handler, not ours, answered
    bad = client.post(INFER, content=row_body(np.zeros((1, 9))), headers=json_type)
    assert bad.status_code == 400 and "this model takes 10" in bad.json()["error"]


@pytest.mark.parametrize("raw, expected", [(None, True), ("1", True), ("0", False), ("off", False)])
def test_fast_route_switch(raw, expected) -> None:
    assert fast_route_enabled({} if raw is None else {FAST_ROUTE_ENV: raw}) is expected


def test_bad_fast_route_switch_names_variable_and_value() -> None:
    with pytest.raises(RouteConfigError, match=r"SERVING_FAST_ROUTE='fast' is not a boolean: expected 0/1/true/false"):
        fast_route_enabled({FAST_ROUTE_ENV: "fast"})


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
