"""The gRPC V2 service: inference on our lean path, and Triton's ModelConfig.

Two servers can carry it, with the same answers: serving.grpc_core's loop on grpcio's completion
queue (the default: about 30 µs per call, and ModelInfer requests that arrive together share model
calls), and grpcio's public threaded server (``handler()``: the fallback when grpc_core is not
available, or SERVING_GRPC_CORE=0). Both speak bytes with this servicer: ``answer`` serves one
call of any method, ``answer_together`` the ModelInfer requests the core loop collected. Not
grpcio's asyncio server: at 16 streams on one core its asyncio core took 50-70 % of the server's
time, and a bare asyncio server answering a constant stayed below our REST route.

ModelInfer skips kserve's InferRequest/InferResponse round trip: the protobuf goes straight to
``SklearnModel`` (raw contents read in place by numpy), which answers raw when asked raw.
- Small requests (at most ``DIRECT_MAX_ROWS`` rows) are computed at once on the calling thread,
  those that arrived together in one model call per output: a hop to the event loop and back
  costs more than the engine's 1-row call.
- Larger ones go to the event loop and share the adaptive batcher with REST.
The other methods are kserve's (asyncio) and ours; those that touch the data plane run on the
event loop, where kserve expects them.

No server interceptors: grpc_interceptor's wrappers rebuild the method handler on every call,
which cost more than decode and encode together. Errors become statuses here (``failure``), and
ModelInfer keeps its Prometheus series inline, as the REST route does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from grpc import ServicerContext, StatusCode
from kserve.errors import (
    InferenceError, InvalidInput, ModelNotFound, ModelNotReady, ServerNotLive, ServerNotReady, UnsupportedProtocol,
)
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.servicer import InferenceServicer

from serving import triton_config_pb2 as triton
from serving.grpc_core import Answer
from serving.metrics import UNKNOWN_MODEL, InferMetrics
from serving.model import SklearnModel

log = logging.getLogger(__name__)

GRPC_SERVICE = "inference.GRPCInferenceService"
# At most this many rows: computed on the gRPC thread; more: through the event loop's batcher.
DIRECT_MAX_ROWS = 16
BATCHED_METHOD = "ModelInfer"  # the core loop answers its requests together
# grpcio's status and words for a request that is not its message type
UNPARSABLE = Answer(None, StatusCode.INTERNAL, "Exception deserializing request!")
# kserve's servicer methods that await the data plane: run on the event loop.
ON_LOOP_METHODS = ("ServerLive", "ServerReady", "ModelReady", "RepositoryModelLoad", "RepositoryModelUnload")
MESSAGES = {  # method -> (request, response) protobuf classes
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
    "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
    "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse),
    "ModelConfig": (triton.ModelConfigRequest, triton.ModelConfigResponse),
}


def status_of(exc: Exception) -> tuple[StatusCode, str] | None:
    """The status for a known error (a client mistake or a state), or None for a server bug."""
    if isinstance(exc, (InvalidInput, InferenceError, UnsupportedProtocol)):
        return StatusCode.INVALID_ARGUMENT, exc.reason
    if isinstance(exc, ModelNotFound):
        return StatusCode.NOT_FOUND, exc.reason
    if isinstance(exc, ModelNotReady):
        return StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, (ServerNotReady, ServerNotLive)):
        return StatusCode.UNAVAILABLE, exc.reason
    if isinstance(exc, NotImplementedError):
        return StatusCode.UNIMPLEMENTED, str(exc) or "not implemented"
    return None


def failure(exc: Exception, method: str) -> Answer:
    """The status answering ``exc``: a known error without a log line, a bug with its traceback."""
    known = status_of(exc)
    if known is None:
        log.error("gRPC method failed", exc_info=exc, extra={"grpc_method": method})
        known = StatusCode.INTERNAL, "internal error; see server log"
    return Answer(None, *known)


class Servicer:
    """The V2 service, bytes in and out; ``loop`` is the event loop the data plane runs on."""

    def __init__(self, data_plane: Any, model_repository_extension: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._data_plane = data_plane
        self._loop = loop
        self._kserve = InferenceServicer(data_plane, model_repository_extension)
        self.metrics = InferMetrics("grpc")
        # method -> the function answering its decoded request (ModelInfer aside)
        self._methods: dict[str, Callable[[Any], Any]] = {
            name: self._on_loop_method(getattr(self._kserve, name)) if name in ON_LOOP_METHODS else getattr(self, name)
            for name in MESSAGES if name != BATCHED_METHOD
        }

    def answer(self, method: str, payload: bytes) -> Answer:
        """One call of any method, on a thread that may wait (not the event loop's).

        Args:
            method: the method's name (a key of MESSAGES).
            payload: the serialized request.

        Returns:
            The Answer: the serialized response, or the status for the error.
        """
        if method == BATCHED_METHOD:
            started = time.perf_counter()
            (answer,) = self.answer_together([payload], [started])
            return answer or self._infer_on_loop(payload, started)
        request = _parse(MESSAGES[method][0], payload)
        if request is None:
            return UNPARSABLE
        try:
            return Answer(self._methods[method](request).SerializeToString())
        except Exception as exc:
            return failure(exc, method)

    def answer_together(self, payloads: list[bytes], started: list[float]) -> list[Answer | None]:
        """ModelInfer requests that arrived together: those of at most DIRECT_MAX_ROWS rows computed now,
        on this thread, one model call per model and output.

        Args:
            payloads: the serialized ModelInferRequests.
            started: for each, ``time.perf_counter()`` when it arrived (its latency's start).

        Returns:
            Per request, its Answer; None for a larger one, to be answered by ``answer`` on a thread
            that may wait for the event loop's batcher.
        """
        answers: list[Answer | None] = [None] * len(payloads)
        by_model: dict[int, tuple[SklearnModel, list[tuple[int, pb.ModelInferRequest]]]] = {}
        for i, payload in enumerate(payloads):
            message = _parse(pb.ModelInferRequest, payload)
            if message is None:
                answers[i] = UNPARSABLE
            elif _rows_claimed(message) <= DIRECT_MAX_ROWS:
                try:
                    model = self._model(message.model_name)
                except Exception as exc:
                    answers[i] = self._infer_failed(exc, UNKNOWN_MODEL, started[i])
                    continue
                by_model.setdefault(id(model), (model, []))[1].append((i, message))
        for model, requests in by_model.values():
            try:
                responses = model.infer_grpc_together([message for _, message in requests])
            except Exception as exc:
                responses = [exc] * len(requests)
            for (i, _), response in zip(requests, responses):
                if isinstance(response, Exception):
                    answers[i] = self._infer_failed(response, model.name, started[i])
                else:
                    self.metrics.observe(model.name, "OK", time.perf_counter() - started[i])
                    answers[i] = Answer(response.SerializeToString())
        return answers

    def _infer_on_loop(self, payload: bytes, started: float) -> Answer:
        """A large ModelInfer request, through the event loop's batcher (shared with REST)."""
        message = _parse(pb.ModelInferRequest, payload)
        if message is None:
            return UNPARSABLE
        label = UNKNOWN_MODEL  # client-chosen names stay out of the metric labels
        try:
            model = self._model(message.model_name)
            label = model.name
            response = self._on_loop(model.infer_grpc(message))
        except Exception as exc:
            return self._infer_failed(exc, label, started)
        self.metrics.observe(label, "OK", time.perf_counter() - started)
        return Answer(response.SerializeToString())

    def _infer_failed(self, exc: Exception, label: str, started: float) -> Answer:
        answer = failure(exc, BATCHED_METHOD)
        # an unknown model or version is counted under the unknown label
        self.metrics.observe(UNKNOWN_MODEL if answer.code == StatusCode.NOT_FOUND else label, answer.code.name,
                             time.perf_counter() - started)
        return answer

    def _on_loop(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _on_loop_method(self, method: Callable[[Any, Any], Coroutine[Any, Any, Any]]) -> Callable[[Any], Any]:
        return lambda request: self._on_loop(method(request, None))  # kserve's methods ignore the context

    def _model(self, name: str) -> SklearnModel:
        model = self._data_plane.model_registry.get_model(name)
        if not isinstance(model, SklearnModel):
            raise ModelNotFound(name)
        return model

    def ServerMetadata(self, request: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:
        meta = self._data_plane.metadata()
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    def ModelMetadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        """kserve's answer leaves out ``versions``; the REST metadata has them."""
        meta = self._model(request.name).metadata()
        tensors = [{key: t[key] for key in ("name", "datatype", "shape")} for t in meta["inputs"]]
        outputs = [{key: t[key] for key in ("name", "datatype", "shape")} for t in meta["outputs"]]
        return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                                        inputs=tensors, outputs=outputs)

    def ModelConfig(self, request: triton.ModelConfigRequest) -> triton.ModelConfigResponse:
        model = self._model(request.name)
        if request.version and request.version != model.version:
            raise ModelNotFound(f"{model.name} version {request.version} (serving version {model.version})")
        return triton.ModelConfigResponse(config=json_format.ParseDict(model.config(), triton.ModelConfig()))

    def handler(self) -> grpc.GenericRpcHandler:
        """Every method for grpcio's public server (the fallback), bytes in and out through ``answer``.

        Returns:
            The generic handler to give grpc.server.
        """
        return grpc.method_handlers_generic_handler(
            GRPC_SERVICE, {name: grpc.unary_unary_rpc_method_handler(self._grpcio_method(name)) for name in MESSAGES})

    def _grpcio_method(self, name: str) -> Callable[[bytes, ServicerContext], bytes]:
        def method(payload: bytes, context: ServicerContext) -> bytes:
            answer = self.answer(name, payload)
            if answer.code != StatusCode.OK:
                context.abort(answer.code, answer.details)  # raises; grpc answers the status
            return answer.response

        return method


def _parse(message_type: Any, payload: bytes) -> Any:
    """The decoded request, or None when the bytes are not one."""
    try:
        return message_type.FromString(payload)
    except DecodeError:
        return None


def _rows_claimed(request: pb.ModelInferRequest) -> int:
    """The batch size the first input's shape claims (0 when it has none: decoding then refuses it)."""
    if request.inputs and request.inputs[0].shape:
        return request.inputs[0].shape[0]
    return 0
