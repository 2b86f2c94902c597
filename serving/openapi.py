"""The OpenAPI document at /openapi.json: what this server really answers.

FastAPI describes kserve's routes from their signatures: a 422 validation answer on every route
with a parameter (this server answers a client mistake with 400 and ``{"error": ...}``), no
404/413/503, ``/metrics`` as JSON, and none of our own routes (versioned ones, model config),
which are plain Starlette routes. This module starts from that description and corrects it
from one table, ``ANSWERS``: per route, the statuses besides 200, each with the error schema.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

MODEL = "/v2/models/{model_name}"
VERSIONED = MODEL + "/versions/{model_version}"
V1_MODEL = "/v1/models/{model_name}"
ERROR = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {"title": "Error", "type": "object", "required": ["error"],
                "properties": {"error": {"type": "string", "description": "what was wrong, naming field and value"}}}
REASONS = {400: "The request is malformed or does not fit the model (the message names field, value and "
                "expectation)", 404: "No such model, or not at that version", 413: "The body exceeds --max_body_bytes",
           501: "Not offered by this server: it has no explainer; with SERVING_FAST_ROUTE=0, kserve's V2 handler "
                "takes no model_version query",
           503: "The model (or server) is not ready; the message says why"}
INFER = (400, 404, 413, 503)

# path -> method -> (summary, statuses besides 200). Paths FastAPI does not list are added.
ANSWERS: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {
    "/": {"get": ("Liveness (kserve)", ())},
    "/metrics": {"get": ("Prometheus metrics, text exposition format", ())},
    "/v1/models": {"get": ("Served model names (V1)", ())},
    V1_MODEL: {"get": ("Model readiness (V1)", (404,))},
    V1_MODEL + ":predict": {"post": ("V1 predict: instances -> predictions", INFER)},
    V1_MODEL + ":explain": {"post": ("V1 explain (no explainer: 501)", (404, 501))},
    "/v2": {"get": ("Server metadata and extensions", ())},
    "/v2/health/live": {"get": ("Server liveness", ())},
    "/v2/health/ready": {"get": ("Server readiness: 503 while any model is not ready", (503,))},
    "/v2/models": {"get": ("Served model names", ())},
    MODEL: {"get": ("Model metadata with the input schema", (404,))},
    VERSIONED: {"get": ("Model metadata at a version", (404,))},
    MODEL + "/ready": {"get": ("Model readiness", (404, 503))},
    VERSIONED + "/ready": {"get": ("Model readiness at a version", (404, 503))},
    MODEL + "/config": {"get": ("Model configuration (Triton's extension, for perf_analyzer)", (404, 503))},
    VERSIONED + "/config": {"get": ("Model configuration at a version", (404, 503))},
    MODEL + "/infer": {"post": ("V2 inference: JSON, or the binary tensor extension", INFER)},
    VERSIONED + "/infer": {"post": ("V2 inference at a version", INFER)},
    "/v2/repository/models/{model_name}/load": {"post": ("Load a served model again", (404, 503))},
    "/v2/repository/models/{model_name}/unload": {"post": ("Unload a served model (kserve)", (404,))},
}
V1_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["instances"],
    "properties": {"instances": {"type": "array", "description": "rows: lists of numbers in feature order, "
                                 "or objects keyed by feature name"}}}}}}
BINARY_NOTE = ("Also accepts the binary tensor extension: an `Inference-Header-Content-Length` header giving the "
               "JSON header's size, the tensors' bytes after it (`binary_data_size` per input).")


def _parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "title": name}}


def _operation(path: str, summary: str, statuses: tuple[int, ...], found: dict[str, Any] | None,
               infer_body: dict[str, Any] | None) -> dict[str, Any]:
    operation = copy.deepcopy(found) if found else {
        "parameters": [_parameter(p) for p in ("model_name", "model_version") if "{" + p + "}" in path],
        "responses": {"200": {"description": "Successful Response",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }
    operation["summary"] = summary
    responses = operation["responses"]
    responses.pop("422", None)  # FastAPI's validation answer: this server answers 400 instead
    for status in statuses:
        responses[str(status)] = {"description": REASONS[status], "content": {"application/json": {"schema": ERROR}}}
    if path.endswith("/infer"):
        if infer_body is not None:
            operation["requestBody"] = copy.deepcopy(infer_body)
        operation["description"] = BINARY_NOTE
    if path.endswith(":predict"):
        operation["requestBody"] = copy.deepcopy(V1_BODY)
    if path == "/metrics":
        responses["200"] = {"description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}}}
    return operation


def document(app: FastAPI, fast_route: bool = True) -> dict[str, Any]:
    """FastAPI's description of ``app``, corrected to this server's real routes and answers.

    With the fast route off, inference is kserve's V2 handler, which answers 501 to a
    ``?model_version=`` query (the versioned path stays ours).

    Args:
        app: kserve's FastAPI app, with every route on.
        fast_route: whether inference is on our routes (False: kserve's V2 handler).

    Returns:
        The OpenAPI document as a dict.
    """
    generated = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                            description=app.description, routes=app.routes)
    paths = generated.get("paths", {})
    infer_body = paths.get(MODEL + "/infer", {}).get("post", {}).get("requestBody")
    # A route kserve adds in a later release keeps FastAPI's description, with 400 for 422.
    table = {path: {method: ("", (400, 404) if "{model_name}" in path else (400,)) for method in methods}
             for path, methods in paths.items() if path not in ANSWERS}
    table.update(ANSWERS)
    if not fast_route:
        summary, statuses = table[MODEL + "/infer"]["post"]
        table[MODEL + "/infer"] = {"post": (summary, (*statuses, 501))}
    doc = {**generated, "paths": {}}
    for path, methods in table.items():
        doc["paths"][path] = {}
        for method, (summary, statuses) in methods.items():
            found = paths.get(path, {}).get(method)
            doc["paths"][path][method] = _operation(path, summary or found.get("summary", ""), statuses, found,
                                                    infer_body)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def install(app: FastAPI, fast_route: bool = True) -> None:
    """Serve ``document(app)`` at /openapi.json, built on the first request (after every route is on).

    Args:
        app: kserve's FastAPI app.
        fast_route: as for document().
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, fast_route)
        return app.openapi_schema

    app.openapi = openapi
