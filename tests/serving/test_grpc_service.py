"""serving.grpc_service on both its servers in this process (no subprocess, so fast): serving.grpc_core's
loop and grpcio's public threaded server (the fallback).

Small ModelInfer requests are computed on the calling thread (on the core loop, those that arrived
together in one model call), larger ones on the event loop's batcher: every path must give
scikit-learn's answers, in the form asked, with the same errors.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
from kserve.model_repository import ModelRepository
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from prometheus_client import REGISTRY
from sklearn.ensemble import RandomForestClassifier

from serving import grpc_core, grpc_service, triton_config_pb2 as triton
from serving.model import SklearnModel
from serving.server import DataPlane

MODEL_NAME = "diabetes-rf"  # what conftest.write_model_folder names the model

RTOL = 1e-9


SERVERS = ["core", "grpcio"]


class Served:
    """One model behind a gRPC server (core loop or grpcio's), an event loop on its own thread (as in the server)."""

    def __init__(self, model: SklearnModel, server: str = "core") -> None:
        self.model = model
        self.loop = asyncio.new_event_loop()
        self.loop_thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.loop_thread.start()
        registry = ModelRepository()
        registry.update(model)
        self.servicer = grpc_service.Servicer(DataPlane(model_registry=registry), ModelRepositoryExtension(registry),
                                              self.loop)
        pool = futures.ThreadPoolExecutor(max_workers=4)
        if server == "core":
            self.server = grpc_core.CoreServer(grpc_service.GRPC_SERVICE, grpc_service.MESSAGES, self.servicer.answer,
                                               grpc_service.BATCHED_METHOD, self.servicer.answer_together, pool)
        else:
            self.server = grpc.server(pool, handlers=(self.servicer.handler(),))
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.config = self.channel.unary_unary(
            f"/{grpc_service.GRPC_SERVICE}/ModelConfig", request_serializer=triton.ModelConfigRequest.SerializeToString,
            response_deserializer=triton.ModelConfigResponse.FromString)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(grace=None).wait()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.loop_thread.join(timeout=5)
        self.loop.close()


def _serve(folder, server):
    model = SklearnModel(MODEL_NAME, folder)
    assert model.load(), model.load_error
    served = Served(model, server)
    try:
        yield served
    finally:
        served.close()


@pytest.fixture(params=SERVERS)
def regressor_server(regressor_dir, request):
    yield from _serve(regressor_dir, request.param)


@pytest.fixture(params=SERVERS)
def labels_server(tmp_path, write_model, diabetes, request):
    """A classifier whose classes are strings: its ``predict`` output is BYTES."""
    x, y, names = diabetes
    labels = np.where(y > np.median(y), "high", "low")
    estimator = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, labels)
    folder = write_model(tmp_path / "labels", estimator, "classification", names, x, classes=["high", "low"])
    yield from _serve(folder, request.param)


def raw_request(x: np.ndarray, **fields) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=list(x.shape))
    return pb.ModelInferRequest(**{"model_name": MODEL_NAME, **fields}, inputs=[tensor],
                                raw_input_contents=[x.astype("<f8").tobytes()])


def typed_request(x: np.ndarray, **fields) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=list(x.shape))
    tensor.contents.fp64_contents.extend(x.ravel().tolist())
    return pb.ModelInferRequest(model_name=MODEL_NAME, inputs=[tensor], **fields)


class PathSpy:
    """Counts which ModelInfer path each request took: computed at once on the gRPC thread, or the event loop's."""

    def __init__(self, model: SklearnModel, monkeypatch) -> None:
        self.now = self.loop = 0
        direct, batched = model.infer_grpc_together, model.infer_grpc

        def now(messages):
            self.now += len(messages)
            return direct(messages)

        async def on_loop(message):
            self.loop += 1
            assert threading.current_thread() is not threading.main_thread()  # the loop's own thread
            return await batched(message)

        monkeypatch.setattr(model, "infer_grpc_together", now)
        monkeypatch.setattr(model, "infer_grpc", on_loop)


@pytest.mark.parametrize("rows, path", [(1, "now"), (grpc_service.DIRECT_MAX_ROWS, "now"),
                                        (grpc_service.DIRECT_MAX_ROWS + 1, "loop"), (64, "loop")])
def test_raw_answers_equal_sklearn_on_either_path(regressor_server, regressor, diabetes, monkeypatch, rows, path):
    spy = PathSpy(regressor_server.model, monkeypatch)
    x = diabetes[0][:rows]
    response = regressor_server.stub.ModelInfer(raw_request(x, id="r-1"), timeout=10)
    assert (spy.now, spy.loop) == ((1, 0) if path == "now" else (0, 1))
    assert response.id == "r-1" and response.model_version == "3"
    assert [o.name for o in response.outputs] == ["predict"] and list(response.outputs[0].shape) == [rows]
    assert not response.outputs[0].HasField("contents")  # raw in, raw out
    np.testing.assert_allclose(np.frombuffer(response.raw_output_contents[0], "<f8"), regressor.predict(x), rtol=RTOL)


@pytest.mark.parametrize("rows", [1, 40])
def test_typed_request_gets_typed_answer(regressor_server, regressor, diabetes, rows):
    x = diabetes[0][:rows]
    response = regressor_server.stub.ModelInfer(typed_request(x), timeout=10)
    assert not response.raw_output_contents
    np.testing.assert_allclose(response.outputs[0].contents.fp64_contents, regressor.predict(x), rtol=RTOL)


@pytest.mark.parametrize("rows", [2, 30])
def test_string_labels_are_bytes_in_both_forms(labels_server, diabetes, rows):
    x = diabetes[0][:rows]
    want = labels_server.model.artifact.estimator.predict(x).tolist()
    typed = labels_server.stub.ModelInfer(typed_request(x), timeout=10)
    assert typed.outputs[0].datatype == "BYTES"
    assert [v.decode() for v in typed.outputs[0].contents.bytes_contents] == want
    raw = labels_server.stub.ModelInfer(raw_request(x), timeout=10).raw_output_contents[0]
    got, at = [], 0
    while at < len(raw):  # BYTES raw: each element a 4-byte little-endian length, then its bytes
        size = int.from_bytes(raw[at:at + 4], "little")
        got.append(raw[at + 4:at + 4 + size].decode())
        at += 4 + size
    assert got == want


def _counter(status: str) -> float:
    return REGISTRY.get_sample_value("serving_infer_requests_total",
                                     {"protocol": "grpc", "model": MODEL_NAME, "status": status}) or 0.0


@pytest.mark.parametrize("rows", [1, 32])
@pytest.mark.parametrize("message, code, says", [
    (lambda x: raw_request(x, model_version="99"), grpc.StatusCode.NOT_FOUND, "version 99 (serving version 3)"),
    (lambda x: raw_request(x[:, :5]), grpc.StatusCode.INVALID_ARGUMENT, "inputs[0]"),
    (lambda x: pb.ModelInferRequest(model_name=MODEL_NAME, inputs=raw_request(x).inputs,
                                    raw_input_contents=[b"\0" * 7]), grpc.StatusCode.INVALID_ARGUMENT, "inputs[0]"),
], ids=["unknown-version", "wrong-shape", "short-raw"])
def test_client_mistakes_are_statuses_naming_them_on_either_path(regressor_server, diabetes, rows, message, code,
                                                                 says, caplog):
    before = _counter(code.name)
    with pytest.raises(grpc.RpcError) as refused:
        regressor_server.stub.ModelInfer(message(diabetes[0][:rows]), timeout=10)
    assert refused.value.code() == code and says in refused.value.details()
    if code != grpc.StatusCode.NOT_FOUND:  # an unknown version is counted under the model's label too
        assert _counter(code.name) == before + 1
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # a client mistake logs no traceback


def test_unknown_model_is_not_found(regressor_server, diabetes):
    with pytest.raises(grpc.RpcError) as refused:
        regressor_server.stub.ModelInfer(raw_request(diabetes[0][:1], model_name="nope"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_bug_is_internal_and_logged(regressor_server, diabetes, monkeypatch, caplog):
    def broken(messages):
        raise RuntimeError("boom")

    monkeypatch.setattr(regressor_server.model, "infer_grpc_together", broken)
    with pytest.raises(grpc.RpcError) as failed:
        regressor_server.stub.ModelInfer(raw_request(diabetes[0][:1]), timeout=10)
    assert failed.value.code() == grpc.StatusCode.INTERNAL and "boom" not in failed.value.details()
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)


def test_other_methods_answer_from_the_data_plane(regressor_server):
    stub = regressor_server.stub
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME), timeout=10).ready
    assert "model_configuration" in stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=10).extensions
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL_NAME), timeout=10)
    assert list(meta.versions) == ["3"] and list(meta.inputs[0].shape) == [-1, 10]
    config = regressor_server.config(triton.ModelConfigRequest(name=MODEL_NAME), timeout=10).config
    assert config.input[0].dims == [10] and config.max_batch_size > 0
    regressor_server.model.ready = False
    assert not stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME), timeout=10).ready
    with pytest.raises(grpc.RpcError) as unready:
        stub.ModelInfer(raw_request(np.zeros((1, 10))), timeout=10)
    assert unready.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as missing:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as versioned:
        regressor_server.config(triton.ModelConfigRequest(name=MODEL_NAME, version="7"), timeout=10)
    assert versioned.value.code() == grpc.StatusCode.NOT_FOUND


def test_concurrent_calls_on_both_paths_get_their_own_answers(regressor_server, regressor, diabetes):
    x = diabetes[0]
    sizes = [1, 3, 16, 17, 40] * 8
    with futures.ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda i: regressor_server.stub.ModelInfer(
            raw_request(x[i:i + sizes[i]]), timeout=20), range(len(sizes))))
    for i, response in enumerate(answers):
        np.testing.assert_allclose(np.frombuffer(response.raw_output_contents[0], "<f8"),
                                   regressor.predict(x[i:i + sizes[i]]), rtol=RTOL)
    assert len(answers) == 40


def test_requests_that_arrive_together_share_one_model_call(regressor_dir, regressor, diabetes, monkeypatch):
    """On the core loop: the requests that came in while it computed are answered by one call."""
    served = Served(SklearnModel(MODEL_NAME, regressor_dir), "core")
    assert served.model.load()
    sizes, first_call_done = [], threading.Event()
    together = served.model.infer_grpc_together

    def slow_first(messages):
        sizes.append(len(messages))
        if not first_call_done.is_set():
            time.sleep(0.3)  # holds the loop while the other calls arrive
            first_call_done.set()
        return together(messages)

    monkeypatch.setattr(served.model, "infer_grpc_together", slow_first)
    x = diabetes[0]
    try:
        with futures.ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(lambda i: served.stub.ModelInfer(raw_request(x[i:i + 1]), timeout=20), range(12)))
    finally:
        served.close()
    for i, response in enumerate(answers):
        np.testing.assert_allclose(np.frombuffer(response.raw_output_contents[0], "<f8"), regressor.predict(x[i:i + 1]),
                                   rtol=RTOL)
    assert sum(sizes) == 12 and max(sizes) > 1
    stats = served.model.batch_stats["predict"]
    assert stats.requests == 12 and stats.batches < 12


@pytest.mark.parametrize("server", SERVERS)
def test_an_unknown_method_is_unimplemented_and_bytes_that_are_no_request_are_internal(regressor_dir, server):
    served = Served(SklearnModel(MODEL_NAME, regressor_dir), server)
    try:
        for method, code, says in ((f"/{grpc_service.GRPC_SERVICE}/Nope", grpc.StatusCode.UNIMPLEMENTED, "not found"),
                                   ("/other.Service/ModelInfer", grpc.StatusCode.UNIMPLEMENTED, "not found"),
                                   (f"/{grpc_service.GRPC_SERVICE}/ModelInfer", grpc.StatusCode.INTERNAL,
                                    "deserializing"),
                                   (f"/{grpc_service.GRPC_SERVICE}/ModelMetadata", grpc.StatusCode.INTERNAL,
                                    "deserializing")):
            with pytest.raises(grpc.RpcError) as refused:
                served.channel.unary_unary(method)(b"\xff\xff\xff", timeout=10)
            assert refused.value.code() == code and says in refused.value.details(), method
    finally:
        served.close()


def test_core_stop_lets_calls_in_flight_finish_and_refuses_new_ones(regressor_dir, diabetes, monkeypatch):
    served = Served(SklearnModel(MODEL_NAME, regressor_dir), "core")
    assert served.model.load()
    together, started = served.model.infer_grpc_together, threading.Event()

    def slow(messages):
        started.set()
        time.sleep(0.5)
        return together(messages)

    monkeypatch.setattr(served.model, "infer_grpc_together", slow)
    with futures.ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(served.stub.ModelInfer, raw_request(diabetes[0][:1]), timeout=10)
        assert started.wait(5)
        stopped = served.server.stop(grace=5)
        assert in_flight.result().raw_output_contents  # answered, within the grace
        assert stopped.wait(5)
    with pytest.raises(grpc.RpcError) as refused:
        served.stub.ModelInfer(raw_request(diabetes[0][:1]), timeout=2)
    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    served.close()


def test_core_stop_cancels_what_outlives_the_grace(regressor_dir, diabetes, monkeypatch):
    served = Served(SklearnModel(MODEL_NAME, regressor_dir), "core")
    assert served.model.load()
    release = threading.Event()

    def stuck(message):  # a large request waits on the event loop, off the polling thread
        release.wait(10)
        raise RuntimeError("released")

    monkeypatch.setattr(served.model, "infer_grpc", lambda message: asyncio.to_thread(stuck, message))
    with futures.ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(served.stub.ModelInfer, raw_request(diabetes[0][:40]), timeout=10)
        time.sleep(0.3)
        began = time.monotonic()
        stopped = served.server.stop(grace=0.2)
        with pytest.raises(grpc.RpcError) as cancelled:
            in_flight.result()
        # what grpcio's own server answers then too
        assert cancelled.value.code() == grpc.StatusCode.UNAVAILABLE and "Cancelling" in cancelled.value.details()
        assert time.monotonic() - began < 5
        release.set()
        assert stopped.wait(5)
    served.close()


def test_the_pinned_grpcio_has_the_core_loop_and_its_absence_means_grpcios_server(monkeypatch):
    from serving.server import GRPCServer

    assert grpc_core.available()  # else every deployment silently runs the slower fallback
    assert GRPCServer(8081, None, None, kwargs={}, host="127.0.0.1").core
    assert not GRPCServer(8081, None, None, kwargs={}, host="127.0.0.1", core=False).core  # SERVING_GRPC_CORE=0
    monkeypatch.setattr(grpc_core, "cygrpc", None)
    assert not grpc_core.available()
    assert not GRPCServer(8081, None, None, kwargs={}, host="127.0.0.1").core


def test_core_loop_answers_internal_for_a_failing_batch_and_goes_on_serving(caplog):
    """serving.grpc_core alone, with stand-in answers: a bug in a batch fails that batch's calls only."""
    batches = []

    def together(payloads, started):
        batches.append(payloads)
        if len(batches) == 1:
            raise RuntimeError("bug")
        return [grpc_core.Answer(payload[::-1]) for payload in payloads]

    server = grpc_core.CoreServer("test.Service", ["Echo", "Other"], lambda method, payload: grpc_core.Answer(payload),
                                  "Echo", together, futures.ThreadPoolExecutor(max_workers=2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo = channel.unary_unary("/test.Service/Echo")
            with pytest.raises(grpc.RpcError) as failed:
                echo(b"ab", timeout=10)
            assert failed.value.code() == grpc.StatusCode.INTERNAL and "bug" not in failed.value.details()
            assert echo(b"ab", timeout=10) == b"ba"  # batched
            assert channel.unary_unary("/test.Service/Other")(b"ab", timeout=10) == b"ab"  # on the pool
    finally:
        assert server.stop(grace=None).wait(5)
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)
