"""A stand-in of the KFP v2beta1 REST API, enough for kfp 2.17's Client: pipelines, versions, experiments, runs, recurring runs.

It keeps its objects in memory and records every call as (method, path), so a test can check
what the real kfp.Client sent. Paths and JSON field names are those of kfp_server_api 2.17
(snake_case bodies; the recurring-run list answers under "recurringRuns"; int64 fields as strings,
as the real server's grpc-gateway writes them). Filters: display_name EQUALS, as the project uses.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Iterator
from urllib.parse import parse_qs, urlparse

from .helpers import loopback_http


@dataclass
class KfpState:
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, list[dict]] = field(default_factory=dict)  # pipeline id -> versions, oldest first
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    recurring_runs: dict[str, dict] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: int = 0

    def stamp(self) -> str:
        self.clock += 1
        return f"2026-12-02T20:{self.clock // 60:02d}:{self.clock % 60:02d}Z"

    def writes(self, path_prefix: str) -> list[str]:
        """The non-GET calls whose path starts with path_prefix, as 'METHOD path'."""
        return [f"{m} {p}" for m, p in self.calls if m != "GET" and p.startswith(path_prefix)]


def _named(items, query: dict) -> list[dict]:
    text = (query.get("filter") or [""])[0]
    if not text:
        return list(items)
    wanted = [p["stringValue"] for p in json.loads(text).get("predicates", []) if p.get("key") == "display_name"]
    return [item for item in items if all(item.get("display_name") == name for name in wanted)]


def handler_for(state: KfpState) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict) -> None:
            # HTTP/1.0 (http.server's default): the body ends when the connection closes.
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            path, query = url.path, parse_qs(url.query)
            body = self._body() if method == "POST" else b""
            with state.lock:
                state.calls.append((method, path))
                status, answer = self._answer(method, path, query, body)
            self._send(status, answer)

        def _answer(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, dict]:
            api = "/apis/v2beta1"
            if method == "GET" and path == f"{api}/healthz":
                return 200, {"multi_user": False}
            if path == f"{api}/pipelines":
                if method == "GET":
                    return 200, {"pipelines": _named(state.pipelines.values(), query)}
                pipeline = {**json.loads(body), "pipeline_id": uuid.uuid4().hex, "created_at": state.stamp()}
                state.pipelines[pipeline["pipeline_id"]] = pipeline
                state.versions[pipeline["pipeline_id"]] = []
                return 200, pipeline
            if method == "POST" and path == f"{api}/pipelines/upload_version":
                pipeline_id = query["pipelineid"][0]
                version = {"pipeline_id": pipeline_id, "pipeline_version_id": uuid.uuid4().hex,
                           "display_name": query["name"][0], "created_at": state.stamp()}
                state.versions[pipeline_id].append(version)
                return 200, version
            match = re.fullmatch(rf"{api}/pipelines/([^/]+)/versions", path)
            if match and method == "GET":
                newest_first = list(reversed(state.versions.get(match.group(1), [])))
                found = _named(newest_first, query)
                return 200, {"pipeline_versions": found[:int((query.get("page_size") or ["100"])[0])]}
            if path == f"{api}/experiments":
                if method == "GET":
                    return 200, {"experiments": _named(state.experiments.values(), query)}
                experiment = {**json.loads(body), "experiment_id": uuid.uuid4().hex}
                state.experiments[experiment["experiment_id"]] = experiment
                return 200, experiment
            if path == f"{api}/runs" and method == "POST":
                run = {**json.loads(body), "run_id": uuid.uuid4().hex, "state": "PENDING"}
                state.runs[run["run_id"]] = run
                return 200, run
            if path == f"{api}/recurringruns":
                if method == "GET":
                    return 200, {"recurringRuns": _named(state.recurring_runs.values(), query),
                                 "next_page_token": ""}
                posted = json.loads(body)
                run = {**posted, "recurring_run_id": uuid.uuid4().hex, "created_at": state.stamp(),
                       "max_concurrency": str(posted.get("max_concurrency")), "status": "ENABLED"}
                state.recurring_runs[run["recurring_run_id"]] = run
                return 200, run
            match = re.fullmatch(rf"{api}/recurringruns/([^/:]+)", path)
            if match and method == "DELETE":
                if state.recurring_runs.pop(match.group(1), None) is None:
                    return 404, {"error": "not found", "code": 5}
                return 200, {}
            return 404, {"error": f"stand-in: no route {method} {path}", "code": 5}

        def do_GET(self):  # noqa: N802 (http.server's naming)
            self._route("GET")

        def do_POST(self):  # noqa: N802
            self._route("POST")

        def do_DELETE(self):  # noqa: N802
            self._route("DELETE")

    return Handler


@contextlib.contextmanager
def kfp_standin() -> Iterator[tuple[str, KfpState]]:
    """("http://127.0.0.1:PORT", its state) for the duration of the block."""
    state = KfpState()
    with loopback_http(handler_for(state)) as address:
        yield f"http://{address}", state
