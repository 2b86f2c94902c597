"""The V2 REST routes this server answers itself, placed ahead of kserve's on its FastAPI app.

- ``POST .../infer``: the hot path, JSON or the binary tensor extension both ways. A bare Starlette route (no pydantic, no dependency
  injection, no per-request logging): bytes -> orjson -> numpy -> model -> orjson -> bytes.
  ``InferFirst`` hands it requests before the FastAPI app sees them. SERVING_FAST_ROUTE=0
  leaves inference to kserve's own V2 handler (slower; for comparison).
- ``POST /v1/models/{name}:predict``: V1 (``instances`` -> ``predictions``), same validation.
- ``GET /v2/models/{name}/config`` (and ``/versions/{v}/config``): Triton's model configuration
  extension, which perf_analyzer and tritonclient's ``get_model_config`` ask for.
- ``GET /v2/models/{name}`` (and ``/versions/{v}``): metadata with the real tensors and schema;
  kserve's own handler drops ``versions`` and ``parameters``.
- ``GET /v2/models/{name}/ready`` (and ``/versions/{v}/ready``), ``GET /v2/health/ready``: the
  reason a model is not ready goes into the 503 body; kserve answers 501 for any version and
  logs a traceback for every not-ready probe.

Everything else (server metadata, health, gRPC, /metrics, /openapi.json, /docs) stays kserve's.
Every client mistake is answered with ``{"error": ...}`` and the connection kept open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus

import orjson
from fastapi.exceptions import RequestValidationError
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, UnsupportedProtocol
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from serving import v2
from serving.metrics import UNKNOWN_MODEL, InferMetrics
from serving.limits import DEFAULT_MAX_BODY_BYTES
from serving.model import SklearnModel
from serving.offload import Offloader

log = logging.getLogger(__name__)

JSON = "application/json"
BINARY = "application/octet-stream"
BINARY_HEADER_OUT = "Inference-Header-Content-Length"
CLIENT_CLOSED = 499

def _json(status: int, content: bytes) -> Response:
    return Response(content, status_code=status, media_type=JSON)


def _error(status: int, message: str) -> Response:
    return _json(status, v2.error_body(message))


_MODEL = "/v2/models/{model_name}"
_VERSIONED = _MODEL + "/versions/{model_version}"


class V2Routes:
    def __init__(self, dataplane: DataPlane, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 offload: Offloader | None = None) -> None:
        self.dataplane = dataplane
        self.offload = offload  # large bodies are decoded and predicted off the event loop
        self.registry = dataplane.model_registry
        self.max_body_bytes = max_body_bytes
        self.metrics = InferMetrics("rest")

    def _model(self, request: Request) -> SklearnModel:
        """The model a path names, at the version it names (if any); else ModelNotFound."""
        name = request.path_params["model_name"]
        model = self.registry.get_model(name)
        if not isinstance(model, SklearnModel):
            raise ModelNotFound(name)
        version = request.path_params.get("model_version")
        if version is not None and version != model.version:
            raise ModelNotFound(f"{name} version {version} (serving version {model.version})")
        return model

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise v2.PayloadTooLarge(
                f"request body is {declared} bytes; the limit is {self.max_body_bytes} (--max_body_bytes)"
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise v2.PayloadTooLarge(f"request body exceeds the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def infer(self, request: Request) -> Response:
        """POST .../infer: V2 inference over JSON (or JSON + binary tensors).

        Args:
            request: the Starlette request (model name, and version when given, in its path).

        Returns:
            The V2 response, or a JSON error (400, 404, 413, 503).
        """
        return await self._answer(request, self._infer_v2)

    async def predict_v1(self, request: Request) -> Response:
        """POST /v1/models/{name}:predict: V1 inference, {"instances": [...]}.

        Args:
            request: the Starlette request (model name, and version when given, in its path).

        Returns:
            {"predictions": [...]}, or a JSON error.
        """
        return await self._answer(request, self._infer_v1)

    async def _infer_v2(self, model: SklearnModel, request: Request) -> Response:
        body, header = await self._body(request), request.headers.get(v2.BINARY_HEADER)
        if self.offload is not None and self.offload.wants(body):
            body, header_length = await self.offload.infer_json(model, body, header)
        else:
            body, header_length = await model.infer_json(body, header)
        if header_length is None:
            return _json(HTTPStatus.OK, body)
        return Response(body, media_type=BINARY, headers={BINARY_HEADER_OUT: str(header_length)})

    async def _infer_v1(self, model: SklearnModel, request: Request) -> Response:
        body = await self._body(request)
        if self.offload is not None and self.offload.wants(body):
            return _json(HTTPStatus.OK, await self.offload.infer_v1(model, body))
        return _json(HTTPStatus.OK, await model.infer_v1(body))

    async def _answer(self, request: Request, handle: Callable[[SklearnModel, Request], Awaitable[Response]]) -> Response:
        """Run one inference; every client mistake is a JSON error, never a traceback in the log."""
        started = time.perf_counter()
        label = UNKNOWN_MODEL
        try:
            model = self._model(request)
            label = model.name
            response = await handle(model, request)
        except v2.InvalidRequest as exc:
            response = _error(exc.status, str(exc))
        except ModelNotFound as exc:
            response = _error(HTTPStatus.NOT_FOUND, str(exc))
        except ModelNotReady as exc:
            response = _error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        except ClientDisconnect:
            response = Response(status_code=CLIENT_CLOSED)
        except Exception:  # a server bug: say so, keep serving, keep the connection
            log.exception("inference failed", extra={"model": label})
            response = _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error during inference; see server log")
        self.metrics.observe(label, response.status_code, time.perf_counter() - started)
        return response

    async def model_metadata(self, request: Request) -> Response:
        """GET /v2/models/{name}[/versions/{v}]: V2 model metadata.

        Args:
            request: the Starlette request (model name, and version when given, in its path).

        Returns:
            200 with the metadata, or 404 for an unknown model or version.
        """
        try:
            return _json(HTTPStatus.OK, orjson.dumps(self._model(request).metadata()))
        except ModelNotFound as exc:
            return _error(HTTPStatus.NOT_FOUND, str(exc))

    async def model_config(self, request: Request) -> Response:
        """GET .../config: Triton's model configuration.

        Args:
            request: the Starlette request (model name, and version when given, in its path).

        Returns:
            200 with the config, 404 for an unknown model, 503 before it is ready.
        """
        try:
            return _json(HTTPStatus.OK, orjson.dumps(self._model(request).config()))
        except ModelNotFound as exc:
            return _error(HTTPStatus.NOT_FOUND, str(exc))
        except ModelNotReady as exc:
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))

    async def model_ready(self, request: Request) -> Response:
        """GET .../ready: whether the model is loaded.

        Args:
            request: the Starlette request (model name, and version when given, in its path).

        Returns:
            200 {name, ready: true}, 404 for an unknown model, 503 with the load error when not ready.
        """
        try:
            model = self._model(request)
        except ModelNotFound as exc:
            return _error(HTTPStatus.NOT_FOUND, str(exc))
        if not model.ready:
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(ModelNotReady(model.name, model.load_error)))
        return _json(HTTPStatus.OK, orjson.dumps({"name": model.name, "ready": True}))

    async def server_ready(self, request: Request) -> Response:
        """GET /v2/health/ready: whether every model is ready.

        Args:
            request: the Starlette request.

        Returns:
            200 {ready: true}, or 503 naming each model that is not ready and why.
        """
        if await self.dataplane.ready():
            return _json(HTTPStatus.OK, b'{"ready":true}')
        reasons = [str(ModelNotReady(m.name, getattr(m, "load_error", None)))
                   for m in self.registry.get_models().values() if not m.ready]
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, " ".join(["Server is not ready.", *reasons]))

    async def repository_load(self, request: Request) -> Response:
        """kserve's repository load, except that a name this server does not serve is a 404 (kserve: 503).

        Args:
            request: the Starlette request (model name in its path).

        Returns:
            200 when loaded, 404 for a name this server does not serve, else kserve's answer.
        """
        name = request.path_params["model_name"]
        if self.registry.get_model(name) is None:
            return _error(HTTPStatus.NOT_FOUND, str(ModelNotFound(name)))
        try:
            await ModelRepositoryExtension(model_registry=self.registry).load(name)
        except ModelNotReady as exc:
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        return _json(HTTPStatus.OK, orjson.dumps({"name": name, "load": True}))

    # Out of the OpenAPI document: serving.openapi describes them.
    def infer_routes(self) -> list[Route]:
        """The inference routes (V2 infer, with and without a version, and V1 predict).

        Returns:
            Starlette routes, hidden from the OpenAPI schema.
        """
        return [
            Route(_MODEL + "/infer", self.infer, methods=["POST"], include_in_schema=False),
            Route(_VERSIONED + "/infer", self.infer, methods=["POST"], include_in_schema=False),
            Route("/v1/models/{model_name}:predict", self.predict_v1, methods=["POST"], include_in_schema=False),
        ]

    def other_routes(self) -> list[Route]:
        """Metadata, config, readiness and repository-load routes, answered without kserve's per-request overhead.

        Returns:
            Starlette routes, hidden from the OpenAPI schema.
        """
        return [
            Route(_MODEL, self.model_metadata, methods=["GET"], include_in_schema=False),
            Route(_VERSIONED, self.model_metadata, methods=["GET"], include_in_schema=False),
            Route(_MODEL + "/config", self.model_config, methods=["GET"], include_in_schema=False),
            Route(_VERSIONED + "/config", self.model_config, methods=["GET"], include_in_schema=False),
            Route(_MODEL + "/ready", self.model_ready, methods=["GET"], include_in_schema=False),
            Route(_VERSIONED + "/ready", self.model_ready, methods=["GET"], include_in_schema=False),
            Route("/v2/health/ready", self.server_ready, methods=["GET"], include_in_schema=False),
            Route("/v2/repository/models/{model_name}/load", self.repository_load, methods=["POST"],
                  include_in_schema=False),
        ]


class InferFirst:
    """The ASGI app uvicorn serves: inference goes straight to its route, the rest to ``app``.

    In front of any route, FastAPI checks per request whether OpenTelemetry is configured
    (environment lookups), then runs its exception middleware and scans the router: 12 µs of
    a 1-row request's 93 µs in the app, measured in process on one core. The infer route needs
    none of it: it answers every error itself and keeps its own Prometheus metrics. (FastAPI's
    OpenTelemetry instrumentation, when configured, sees every other request.)
    """

    def __init__(self, app: ASGIApp, infer_routes: Sequence[Route]) -> None:
        self.app = app
        self.infer_routes = tuple(infer_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for route in self.infer_routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 for a body kserve's handlers cannot parse (fast route off) -> 400, as on our routes.

    Args:
        request: the request that failed validation.
        exc: FastAPI's RequestValidationError.

    Returns:
        A 400 JSON error listing each problem (where, what, the value).
    """
    problems = [f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')} (got {v2._show(e.get('input'))})"
                for e in getattr(exc, "errors", lambda: [])()]
    return _error(HTTPStatus.BAD_REQUEST, "invalid request: " + ("; ".join(problems) or str(exc)))


async def _client_error(request: Request, exc: Exception) -> Response:
    status = HTTPStatus.NOT_FOUND if isinstance(exc, ModelNotFound) else \
        HTTPStatus.SERVICE_UNAVAILABLE if isinstance(exc, ModelNotReady) else \
        HTTPStatus.NOT_IMPLEMENTED if isinstance(exc, NotImplementedError) else HTTPStatus.BAD_REQUEST
    return _error(status, getattr(exc, "reason", None) or str(exc))


def quiet_client_errors(app: Starlette) -> None:
    """Answer client mistakes from kserve's own handlers without a logged traceback.

    kserve's own handlers answer a client mistake in the same ``{"error": ...}`` form, but log an
    ERROR with a traceback for each (an unknown model on V1 ready, repository unload, explain ...).
    Installed after kserve's, these answer it without a log line; server bugs keep kserve's handler.

    Args:
        app: kserve's FastAPI app.
    """
    for error in (InvalidInput, UnsupportedProtocol, ModelNotFound, ModelNotReady, NotImplementedError):
        app.add_exception_handler(error, _client_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def register(app: Starlette, dataplane: DataPlane, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
             fast_route: bool = True, offload: Offloader | None = None) -> ASGIApp:
    """Put our routes first on ``app``; return the ASGI app to serve (``app``, or InferFirst over it).

    Args:
        app: kserve's app.
        dataplane: kserve's DataPlane (its model registry).
        max_body_bytes: larger request bodies get a 413.
        fast_route: answer inference on our routes (False: kserve's own V2 handler answers it; versioned paths are
            still checked here).
        offload: decodes and predicts large bodies in a helper process (None: all in the server process).

    Returns:
        The ASGI app to serve.
    """
    v2_routes = V2Routes(dataplane, max_body_bytes, offload)
    app.router.routes[0:0] = v2_routes.other_routes()
    if not fast_route:  # kserve's V2 handler answers 501 to any model version: ours checks it
        app.router.routes[0:0] = [r for r in v2_routes.infer_routes() if "{model_version}" in r.path]

    return InferFirst(app, v2_routes.infer_routes()) if fast_route else app
