"""The gRPC V2 service on grpcio's threaded server: inference on our lean path, and Triton's ModelConfig.

Why threads, not grpcio's asyncio server: at 16 streams on one core, grpcio's asyncio core took
50-70 % of the server's time; a bare asyncio server answering a constant stayed below our REST
route, while the threaded server answering the same constant went faster than REST.

ModelInfer skips kserve's InferRequest/InferResponse round trip: the protobuf goes straight to
``SklearnModel`` (raw contents read in place by numpy), which answers raw when asked raw.
- Small requests (at most ``DIRECT_MAX_ROWS`` rows) are computed on the handler's thread by the
  prediction engine directly: a 1-row call costs about 40 µs, less than a hop to the event loop
  and back, and on one core the batcher gains little for them.
- Larger ones go to the event loop and share the adaptive batcher with REST.
The other methods are kserve's (asyncio) and ours; those that touch the data plane run on the
event loop, where kserve expects them.

No server interceptors: grpc_interceptor's wrappers rebuild the method handler on every call,
which cost more than decode and encode together. Each method maps errors to a status itself
(``answer_error``), and ModelInfer keeps its Prometheus series inline, as the REST route does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

import grpc
from google.protobuf import json_format
from grpc import ServicerContext, StatusCode
from kserve.errors import (
    InferenceError, InvalidInput, ModelNotFound, ModelNotReady, ServerNotLive, ServerNotReady, UnsupportedProtocol,
)
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.servicer import InferenceServicer

from serving import triton_config_pb2 as triton
from serving.metrics import UNKNOWN_MODEL, InferMetrics
from serving.model import SklearnModel

log = logging.getLogger(__name__)

GRPC_SERVICE = "inference.GRPCInferenceService"
# At most this many rows: computed on the gRPC thread; more: through the event loop's batcher.
DIRECT_MAX_ROWS = 16
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


def answer_error(exc: Exception, context: ServicerContext, method: str) -> NoReturn:
    """Answer ``exc`` as a gRPC status: a known error without a log line, a bug with its traceback."""
    known = status_of(exc)
    if known is None:
        log.error("gRPC method failed", exc_info=exc, extra={"grpc_method": method})
        known = StatusCode.INTERNAL, "internal error; see server log"
    context.abort(*known)  # raises; grpc answers the status


def guard(name: str, method: Callable[[Any, ServicerContext], Any]) -> Callable[[Any, ServicerContext], Any]:
    def guarded(request: Any, context: ServicerContext) -> Any:
        try:
            return method(request, context)
        except Exception as exc:
            answer_error(exc, context, name)

    return guarded


class Servicer:
    """The V2 service for grpcio's threaded server; ``loop`` is the event loop the data plane runs on."""

    def __init__(self, data_plane: Any, model_repository_extension: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._data_plane = data_plane
        self._loop = loop
        self._kserve = InferenceServicer(data_plane, model_repository_extension)
        self.metrics = InferMetrics("grpc")

    def _on_loop(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _model(self, name: str) -> SklearnModel:
        model = self._data_plane.model_registry.get_model(name)
        if not isinstance(model, SklearnModel):
            raise ModelNotFound(name)
        return model

    def ModelInfer(self, request: pb.ModelInferRequest, context: ServicerContext) -> pb.ModelInferResponse:
        started = time.perf_counter()
        label = UNKNOWN_MODEL  # client-chosen names stay out of the metric labels
        try:
            model = self._model(request.model_name)
            label = model.name
            if _rows_claimed(request) <= DIRECT_MAX_ROWS:
                response = model.infer_grpc_now(request)
            else:
                response = self._on_loop(model.infer_grpc(request))
        except Exception as exc:
            status = status_of(exc)
            code = status[0] if status else StatusCode.INTERNAL
            self.metrics.observe(UNKNOWN_MODEL if code == StatusCode.NOT_FOUND else label, code.name,
                                 time.perf_counter() - started)
            answer_error(exc, context, "ModelInfer")
        self.metrics.observe(label, "OK", time.perf_counter() - started)
        return response

    def ServerMetadata(self, request: pb.ServerMetadataRequest, context: ServicerContext) -> pb.ServerMetadataResponse:
        meta = self._data_plane.metadata()
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    def ModelMetadata(self, request: pb.ModelMetadataRequest, context: ServicerContext) -> pb.ModelMetadataResponse:
        """kserve's answer leaves out ``versions``; the REST metadata has them."""
        meta = self._model(request.name).metadata()
        tensors = [{key: t[key] for key in ("name", "datatype", "shape")} for t in meta["inputs"]]
        outputs = [{key: t[key] for key in ("name", "datatype", "shape")} for t in meta["outputs"]]
        return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                                        inputs=tensors, outputs=outputs)

    def ModelConfig(self, request: triton.ModelConfigRequest, context: ServicerContext) -> triton.ModelConfigResponse:
        model = self._model(request.name)
        if request.version and request.version != model.version:
            raise ModelNotFound(f"{model.name} version {request.version} (serving version {model.version})")
        return triton.ModelConfigResponse(config=json_format.ParseDict(model.config(), triton.ModelConfig()))

    def handler(self) -> grpc.GenericRpcHandler:
        """Every method of the service, each mapping its own errors to a status."""
        methods = {}
        for name, (request_type, response_type) in MESSAGES.items():
            if name == "ModelInfer":
                method = self.ModelInfer  # answers its own errors, and counts them
            elif name in ON_LOOP_METHODS:
                method = guard(name, self._on_loop_method(getattr(self._kserve, name)))
            else:
                method = guard(name, getattr(self, name))
            methods[name] = grpc.unary_unary_rpc_method_handler(
                method, request_deserializer=request_type.FromString, response_serializer=response_type.SerializeToString)
        return grpc.method_handlers_generic_handler(GRPC_SERVICE, methods)

    def _on_loop_method(self, method: Callable[[Any, Any], Coroutine[Any, Any, Any]]) -> Callable[[Any, Any], Any]:
        return lambda request, context: self._on_loop(method(request, None))  # kserve's methods ignore the context


def _rows_claimed(request: pb.ModelInferRequest) -> int:
    """The batch size the first input's shape claims (0 when it has none: decoding then refuses it)."""
    if request.inputs and request.inputs[0].shape:
        return request.inputs[0].shape[0]
    return 0
