"""The gRPC V2 service: kserve's servicer with inference on our lean path, and Triton's ModelConfig.

ModelInfer skips kserve's InferRequest/InferResponse round trip: the protobuf goes straight to
``SklearnModel.infer_grpc`` (raw contents read in place by numpy, the same batcher as REST),
which answers raw when asked raw.

No server interceptors. grpc_interceptor's wrappers (kserve adds a logging and an
exception-to-status one; we had a metrics one too) each rebuild the method handler on every
call; at 16 streams on one core they cost more than the decode and encode together. Instead each
method maps errors to a status itself (``guard``), and ModelInfer keeps its Prometheus series
inline, as the REST route does.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf import json_format
from grpc import ServicerContext, StatusCode, aio
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
# kserve's servicer methods other than ModelInfer (which answers its own errors).
GUARDED_METHODS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
                   "RepositoryModelLoad", "RepositoryModelUnload")


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


async def _abort(exc: Exception, context: ServicerContext, method: str) -> NoReturn:
    """Answer ``exc`` as a gRPC status: a known error without a log line, a bug with its traceback."""
    known = status_of(exc)
    if known is None:
        log.error("gRPC method failed", exc_info=exc, extra={"grpc_method": method})
        known = StatusCode.INTERNAL, "internal error; see server log"
    await context.abort(*known)  # raises AbortError, which grpc turns into the status


def guard(method: Callable[[Any, ServicerContext], Awaitable[Any]]) -> Callable[[Any, ServicerContext], Awaitable[Any]]:
    @functools.wraps(method)
    async def guarded(request: Any, context: ServicerContext) -> Any:
        try:
            return await method(request, context)
        except aio.AbortError:
            raise
        except Exception as exc:
            await _abort(exc, context, method.__name__)

    return guarded


class Servicer(InferenceServicer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = InferMetrics("grpc")
        for name in GUARDED_METHODS:
            setattr(self, name, guard(getattr(self, name)))
        self.ModelConfig = guard(self.ModelConfig)

    def _model(self, name: str) -> SklearnModel:
        model = self._data_plane.model_registry.get_model(name)
        if not isinstance(model, SklearnModel):
            raise ModelNotFound(name)
        return model

    async def ModelInfer(self, request: pb.ModelInferRequest, context: ServicerContext) -> pb.ModelInferResponse:
        started = time.perf_counter()
        label = UNKNOWN_MODEL  # client-chosen names stay out of the metric labels
        try:
            model = self._model(request.model_name)
            label = model.name
            response = await model.infer_grpc(request)
        except Exception as exc:
            status = status_of(exc)
            code = status[0] if status else StatusCode.INTERNAL
            self.metrics.observe(UNKNOWN_MODEL if code == StatusCode.NOT_FOUND else label, code.name,
                                 time.perf_counter() - started)
            await _abort(exc, context, "ModelInfer")
        self.metrics.observe(label, "OK", time.perf_counter() - started)
        return response

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: ServicerContext) -> pb.ModelMetadataResponse:
        """kserve's answer leaves out ``versions``; the REST metadata has them."""
        meta = self._model(request.name).metadata()
        tensors = [{key: t[key] for key in ("name", "datatype", "shape")} for t in meta["inputs"]]
        outputs = [{key: t[key] for key in ("name", "datatype", "shape")} for t in meta["outputs"]]
        return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                                        inputs=tensors, outputs=outputs)

    async def ModelConfig(self, request: triton.ModelConfigRequest,
                          context: ServicerContext) -> triton.ModelConfigResponse:
        model = self._model(request.name)
        if request.version and request.version != model.version:
            raise ModelNotFound(f"{model.name} version {request.version} (serving version {model.version})")
        return triton.ModelConfigResponse(config=json_format.ParseDict(model.config(), triton.ModelConfig()))

    def config_handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(GRPC_SERVICE, {"ModelConfig": grpc.unary_unary_rpc_method_handler(
            self.ModelConfig, request_deserializer=triton.ModelConfigRequest.FromString,
            response_serializer=triton.ModelConfigResponse.SerializeToString,
        )})
