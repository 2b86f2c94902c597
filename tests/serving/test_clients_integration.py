"""Clients this project did not write, at their defaults and with JSON, against ``python -m serving``.

tritonclient (HTTP and gRPC, sync and asyncio) and kserve's REST and gRPC clients, for a regressor,
an integer-label classifier and a string-label classifier trained here on a small CSV. The
answers must equal scikit-learn's bit for bit (the engine is exact for these forests).
"""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
import tritonclient.http.aio as triton_http_aio
from kserve.inference_client import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from sklearn.ensemble import RandomForestClassifier

from tests.serving.test_server_integration import Server

pytestmark = pytest.mark.integration

MODEL = "diabetes-rf"
SIZES = ("small", "medium", "large")
TRITON_GRPC_CLIENT = Path(__file__).with_name("triton_grpc_client.py")


def write_csv(path: Path, rows: int = 90) -> Path:
    """A small labelled table: parcels sized by length, width and weight."""
    rng = np.random.default_rng(7)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["length", "width", "weight", "size"])
        for i in range(rows):
            label = SIZES[i % 3]
            scale = 1 + SIZES.index(label)
            writer.writerow([*(np.round(rng.normal(10 * scale, 3, 3), 3)), label])
    return path


@pytest.fixture(scope="module")
def parcels(tmp_path_factory):
    path = write_csv(tmp_path_factory.mktemp("parcels") / "parcels.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    names = ["length", "width", "weight"]
    x = np.array([[float(r[n]) for n in names] for r in rows])
    y = np.array([r["size"] for r in rows])
    return x, y, names


@pytest.fixture(scope="module", params=["regressor", "int-classifier", "str-classifier"])
def case(request, regressor, regressor_dir, classifier, classifier_dir, diabetes, parcels, write_model,
         tmp_path_factory):
    """(server, estimator, rows, task) for each kind of model."""
    if request.param == "regressor":
        estimator, folder, x = regressor, regressor_dir, diabetes[0]
    elif request.param == "int-classifier":
        estimator, folder, x = classifier, classifier_dir, diabetes[0]
    else:
        x, y, names = parcels
        estimator = RandomForestClassifier(n_estimators=15, random_state=0).fit(x, y)
        folder = write_model(tmp_path_factory.mktemp("str-classifier"), estimator, "classification", names, x,
                             version=2, classes=list(estimator.classes_))
    server = Server(["--model_dir", str(folder), "--model_name", MODEL], {},
                    tmp_path_factory.mktemp("server") / "server.log")
    try:
        server.wait_listening()
        yield server, estimator, np.ascontiguousarray(x[:25]), request.param
    finally:
        code = server.stop()
    log = server.log.read_text()
    assert code == 0, log
    assert "Traceback" not in log, log


def _outputs(task: str) -> list[str]:
    return ["predict"] if task == "regressor" else ["predict", "predict_proba"]


def _check(answers: dict[str, np.ndarray], estimator, x: np.ndarray) -> None:
    labels = answers["predict"]
    if labels.dtype == object:  # BYTES come back as bytes
        labels = labels.astype(str)
    np.testing.assert_array_equal(labels, estimator.predict(x))
    if "predict_proba" in answers:
        np.testing.assert_array_equal(answers["predict_proba"], estimator.predict_proba(x))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_http(case, binary) -> None:
    server, estimator, x, task = case
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    try:
        assert client.is_model_ready(MODEL)
        config = client.get_model_config(MODEL)
        assert config["input"][0]["dims"] == [x.shape[1]] and config["max_batch_size"] > 0
        tensor = triton_http.InferInput("input-0", list(x.shape), "FP64")
        tensor.set_data_from_numpy(x, binary_data=binary)
        outputs = [triton_http.InferRequestedOutput(name, binary_data=binary) for name in _outputs(task)]
        result = client.infer(MODEL, [tensor], outputs=outputs)
        _check({name: result.as_numpy(name) for name in _outputs(task)}, estimator, x)
        # Defaults: no outputs named, binary everywhere (tritonclient asks binary_data_output).
        default = triton_http.InferInput("input-0", list(x.shape), "FP64")
        default.set_data_from_numpy(x)
        np.testing.assert_array_equal(
            client.infer(MODEL, [default]).as_numpy("predict").astype(str if task == "str-classifier" else None),
            estimator.predict(x))
    finally:
        client.close()


def test_tritonclient_http_aio(case) -> None:
    server, estimator, x, task = case

    async def call():
        client = triton_http_aio.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        try:
            tensor = triton_http_aio.InferInput("input-0", list(x.shape), "FP64")
            tensor.set_data_from_numpy(x)
            outputs = [triton_http_aio.InferRequestedOutput(name) for name in _outputs(task)]
            result = await client.infer(MODEL, [tensor], outputs=outputs)
            return {name: result.as_numpy(name) for name in _outputs(task)}
        finally:
            await client.close()

    _check(asyncio.run(call()), estimator, x)


@pytest.mark.parametrize("mode", ["sync", "aio"])
def test_tritonclient_grpc(case, mode, tmp_path) -> None:
    """Raw contents in, raw contents out (tritonclient reads only those), in a process of its own."""
    server, estimator, x, task = case
    np.save(tmp_path / "rows.npy", x)
    result = subprocess.run(
        [sys.executable, str(TRITON_GRPC_CLIENT), str(server.grpc_port), MODEL, str(tmp_path / "rows.npy"),
         str(tmp_path / "out.npz"), mode, *_outputs(task)], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    answers = dict(np.load(tmp_path / "out.npz", allow_pickle=True))
    _check({name: answers[name] for name in _outputs(task)}, estimator, x)
    if mode == "sync":
        assert list(answers["dims"]) == [x.shape[1]] and int(answers["max_batch_size"]) > 0
        _check({"predict": answers["versioned"]}, estimator, x)
        assert str(answers["wrong_version"]).startswith("StatusCode.NOT_FOUND"), answers["wrong_version"]
        assert "version 999" in str(answers["wrong_version"])


def _kserve_request(x: np.ndarray, task: str, binary: bool) -> InferRequest:
    tensor = InferInput("input-0", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [RequestedOutput(name, parameters={"binary_data": binary}) for name in _outputs(task)]
    return InferRequest(MODEL, [tensor], request_id="k-1", request_outputs=outputs)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_kserve_rest_client(case, binary) -> None:
    server, estimator, x, task = case

    async def call():
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=10))
        try:
            return await client.infer(server.base, _kserve_request(x, task, binary), model_name=MODEL)
        finally:
            await client.close()

    response = asyncio.run(call())
    assert response.id == "k-1"
    _check({out.name: out.as_numpy() for out in response.outputs}, estimator, x)


@pytest.mark.parametrize("binary", [True, False], ids=["raw", "typed"])
def test_kserve_grpc_client(case, binary) -> None:
    server, estimator, x, task = case

    async def call():
        client = InferenceGRPCClient(f"127.0.0.1:{server.grpc_port}", timeout=10)
        try:
            return await client.infer(_kserve_request(x, task, binary))
        finally:
            await client.close()

    response = asyncio.run(call())
    _check({out.name: out.as_numpy() for out in response.outputs}, estimator, x)
