"""A loopback stand-in of the Kubernetes API for one resource: InferenceServices (serving.kserve.io/v1beta1).

It answers GET and PATCH on /apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices/{name}
the way the API server does for a CRD with a status subresource:
  - a bearer token is required (401 without it); verbs can be forbidden (403, the API server's wording),
    one by one or by an RBAC Role (only what its rules grant, as the API server's authorizer does);
  - an unknown name is a 404 Status; only application/merge-patch+json is taken here (415 otherwise);
  - a patch carrying metadata.resourceVersion is refused with 409 when the object has moved on;
  - status in a patch of the main resource is ignored; every change bumps resourceVersion, and a
    change of spec bumps metadata.generation; a patch that changes nothing bumps neither.
A controller (Serverless or Raw below) plays KServe: on each GET it moves the status the way the
test scripts it. Every request is recorded, so tests can assert what the client sent.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import yaml

from components import deploy

GROUP, RESOURCE = deploy.GROUP, deploy.PLURAL
PREFIX = f"/apis/{deploy.GROUP}/{deploy.API_VERSION}/namespaces/"
MERGE_PATCH = "application/merge-patch+json"
TOKEN = "stand-in-token"
SUBJECT = "system:serviceaccount:kubeflow:pipeline-runner"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, written here independently of the code under test."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def condition(kind: str, status: str, reason: str = "", message: str = "") -> dict:
    found = {"type": kind, "status": status, "lastTransitionTime": "2026-12-02T08:00:00Z"}
    found.update({k: v for k, v in (("reason", reason), ("message", message)) if v})
    return found


@dataclass
class Request:
    method: str
    path: str
    content_type: str | None
    body: Any
    status: int


class Controller:
    """Plays KServe's part: tick() runs on every GET, before the object is read."""

    def tick(self, obj: dict) -> None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Serverless(Controller):
    """Knative mode: each new generation stamps a revision; it becomes ready after `ready_after` GETs
    (None: never - the revision fails, and traffic stays on the last ready one)."""

    ready_after: int | None = 2
    seen_generation: int = 0
    revision: int = 0
    waited: int = 0

    def tick(self, obj: dict) -> None:
        status = obj.setdefault("status", {})
        predictor = status.setdefault("components", {}).setdefault("predictor", {})
        generation = obj["metadata"]["generation"]
        name = obj["metadata"]["name"]
        if generation != self.seen_generation:
            self.seen_generation, self.revision, self.waited = generation, self.revision + 1, 0
            predictor["latestCreatedRevision"] = f"{name}-predictor-{self.revision:05d}"
            # KServe copies the Knative Service's counter, not the InferenceService's (kserve#6081).
            status["observedGeneration"] = self.revision
            status["conditions"] = [condition("PredictorReady", "Unknown", "RevisionMissing"),
                                    condition("Ready", "Unknown", "RevisionMissing",
                                              "Configuration is waiting for a Revision to become ready.")]
            return
        self.waited += 1
        created = predictor["latestCreatedRevision"]
        if self.ready_after is not None and self.waited >= self.ready_after and \
                predictor.get("latestReadyRevision") != created:
            predictor["latestReadyRevision"] = created
            status["conditions"] = [condition("PredictorReady", "True"), condition("IngressReady", "True"),
                                    condition("Ready", "True")]
        elif self.ready_after is None and self.waited == 1:
            status["conditions"] = [condition("PredictorReady", "False", "RevisionFailed",
                                              f'Revision "{created}" failed with message: Container failed.'),
                                    condition("Ready", "False", "RevisionFailed")]


@dataclass
class Raw(Controller):
    """RawDeployment: no revisions; observedGeneration is the Deployment's counter (starting far
    from the InferenceService's), and PredictorReady is Unknown while the new ReplicaSet rolls out."""

    ready_after: int | None = 2
    deployment_generation: int = 40
    seen_generation: int = 0
    waited: int = 0

    def tick(self, obj: dict) -> None:
        status = obj.setdefault("status", {})
        generation = obj["metadata"]["generation"]
        if generation != self.seen_generation:
            self.seen_generation, self.waited = generation, 0
            self.deployment_generation += 1
            status["observedGeneration"] = self.deployment_generation
            status["conditions"] = [condition("PredictorReady", "Unknown", "ReplicaSetUpdated"),
                                    condition("Ready", "Unknown", "ReplicaSetUpdated")]
            return
        self.waited += 1
        if self.ready_after is not None and self.waited >= self.ready_after:
            status["conditions"] = [condition("PredictorReady", "True", "NewReplicaSetAvailable"),
                                    condition("IngressReady", "True"), condition("Ready", "True")]


def settled(obj: dict, controller: Controller) -> dict:
    """obj as the cluster shows it once the controller has reconciled its spec and it is Ready."""
    obj = copy.deepcopy(obj)
    obj.setdefault("metadata", {}).update(generation=1, resourceVersion="100")
    ready_after = controller.ready_after
    controller.ready_after = 0
    controller.tick(obj)
    controller.tick(obj)
    controller.ready_after = ready_after
    return obj


@dataclass
class KubeApiStandIn:
    """The server: objects by (namespace, name), a controller, forbidden verbs and a request log."""

    controller: Controller | None = None
    forbidden: set[str] = field(default_factory=set)
    # An RBAC Role (a rendered manifest): when set, only the verbs and names its rules grant pass.
    role: dict | None = None
    # Run (under the lock) after a GET was answered: how a test makes the object move under the client.
    after_get: list[Callable[[dict], None]] = field(default_factory=list)
    objects: dict[tuple[str, str], dict] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._rv = 100

    # ---- fixtures ------------------------------------------------------------------------------
    def add(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = self._next_rv()
        self.objects[(meta["namespace"], meta["name"])] = obj
        return obj

    def get(self, namespace: str, name: str) -> dict:
        with self.lock:
            return copy.deepcopy(self.objects[(namespace, name)])

    def patches(self) -> list[Request]:
        return [r for r in self.requests if r.method == "PATCH"]

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # ---- serving -------------------------------------------------------------------------------
    def __enter__(self) -> "KubeApiStandIn":
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                stand_in._handle(self, "GET")

            def do_PATCH(self):  # noqa: N802
                stand_in._handle(self, "PATCH")

            def log_message(self, *args):  # quiet
                pass

        # Port 0: the kernel picks a free loopback port, with no window for another process to take it.
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, folder: Path, token: str = TOKEN) -> Path:
        """A kubeconfig for this server, as kubectl would use it."""
        path = folder / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "deployer", "user": {"token": token}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "deployer"}}],
        }))
        return path

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        content_type = handler.headers.get("Content-Type")
        with self.lock:
            code, answer = self._answer(handler, method, content_type, raw)
            body = json.loads(raw) if raw else None
            self.requests.append(Request(method, handler.path, content_type, body, code))
        data = json.dumps(answer).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, handler, method: str, content_type: str | None, raw: bytes) -> tuple[int, dict]:
        if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, _status(401, "Unauthorized", "Unauthorized")
        path = handler.path.split("?", 1)[0]
        parts = path[len(PREFIX):].split("/") if path.startswith(PREFIX) else []
        if len(parts) != 3 or parts[1] != "inferenceservices":
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        namespace, _, name = parts
        verb = request_verb(method, handler.path)
        if verb in self.forbidden or (self.role is not None and not role_allows(self.role, verb, name)):
            return 403, _status(403, "Forbidden",
                                f'inferenceservices.serving.kserve.io "{name}" is forbidden: User "{SUBJECT}" cannot '
                                f'{verb} resource "inferenceservices" in API group "serving.kserve.io" in the '
                                f'namespace "{namespace}"', name)
        obj = self.objects.get((namespace, name))
        if obj is None:
            return 404, _status(404, "NotFound", f'inferenceservices.serving.kserve.io "{name}" not found', name)
        if method == "GET":
            if self.controller is not None:
                before = copy.deepcopy(obj.get("status"))
                self.controller.tick(obj)
                if obj.get("status") != before:  # a status write is a write: it moves resourceVersion
                    obj["metadata"]["resourceVersion"] = self._next_rv()
            answer = copy.deepcopy(obj)
            for hook in self.after_get:
                hook(obj)
            return 200, answer
        if content_type != MERGE_PATCH:
            return 415, _status(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                                                             f"accepted media types include: {MERGE_PATCH}")
        try:
            patch = json.loads(raw)
        except ValueError as exc:
            return 400, _status(400, "BadRequest", f"error decoding patch: {exc}")
        wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted_rv is not None and wanted_rv != obj["metadata"]["resourceVersion"]:
            return 409, _status(409, "Conflict",
                                f'Operation cannot be fulfilled on inferenceservices.serving.kserve.io "{name}": '
                                "the object has been modified; please apply your changes to the latest version "
                                "and try again", name)
        patch = {key: value for key, value in patch.items() if key != "status"}  # the status subresource
        patched = merge_patch(obj, patch)
        patched["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
        if patched != obj:
            if patched.get("spec") != obj.get("spec"):
                patched["metadata"]["generation"] = obj["metadata"]["generation"] + 1
            patched["metadata"]["resourceVersion"] = self._next_rv()
            self.objects[(namespace, name)] = patched
        return 200, copy.deepcopy(patched)


def request_verb(method: str, path: str) -> str:
    """The RBAC verb the API server's authorizer sees for a request on one named object."""
    if method == "GET":
        return "watch" if "watch=true" in path.partition("?")[2].split("&") else "get"
    return {"PATCH": "patch", "PUT": "update", "DELETE": "delete", "POST": "create"}[method]


def role_allows(role: dict, verb: str, name: str, group: str = GROUP, resource: str = RESOURCE) -> bool:
    """Whether one of the Role's rules grants verb on group/resource named name (RBAC's matching)."""
    def matches(values, value) -> bool:
        return "*" in values or value in values

    return any(matches(rule.get("apiGroups", []), group) and matches(rule.get("resources", []), resource)
               and matches(rule.get("verbs", []), verb)
               and (not rule.get("resourceNames") or name in rule["resourceNames"])
               for rule in role.get("rules") or [])


def _status(code: int, reason: str, message: str, name: str | None = None) -> dict:
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
              "reason": reason, "code": code}
    if name:
        status["details"] = {"name": name, "group": "serving.kserve.io", "kind": "inferenceservices"}
    return status
