"""Rollout: point a KServe InferenceService at one immutable model version, wait for Ready, roll back if not.

    python -m components.deploy --version N [--model-name diabetes-rf] [--bucket models]
                                [--isvc diabetes-rf] [--namespace sklearn-kserve-mlops]
                                [--canary-percent P] [--timeout-s S]
    python -m components.deploy --storage-uri s3://models/diabetes-rf/vN/ ...

The steps, and why in this order:
  1. GET the InferenceService; remember what it serves (spec.predictor.model.storageUri and
     spec.predictor.canaryTrafficPercent), its resourceVersion and the rollout marks in its status.
  2. One JSON merge patch (RFC 7386) of those two fields that carries metadata.resourceVersion:
     the API server refuses it (409) when anything changed the object since step 1, and then
     step 1 is done again. No change made by someone else is overwritten.
  3. GET until the status shows the new spec rolled out and Ready=True (rolled_out()).
  4. Past the timeout: the two fields are patched back, again only while the spec still holds
     what step 2 wrote, and RolloutFailed says what the InferenceService serves now.

Credentials: in a pod, its ServiceAccount (the Role model-deployer: get and patch on
inferenceservices in the serving namespace, manifests/components/deployer or the chart's
deployer.* values); elsewhere KUBECONFIG or ~/.kube/config, as kubectl.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from components import cli
from components.artifacts import DEFAULT_MODEL_NAME
from components.errors import (
    DeployConfigError,
    DeployConflict,
    DeployError,
    DeployForbidden,
    DeployNotFound,
    RolloutFailed,
)
from components.registry import version_prefix

log = logging.getLogger(__name__)

GROUP, API_VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
DEFAULT_ISVC = DEFAULT_MODEL_NAME  # the InferenceService is named after the model it serves
DEFAULT_NAMESPACE = "sklearn-kserve-mlops"
DEFAULT_BUCKET = "models"
# The Role that manifests/components/deployer and the chart ship; named in every 403.
ROLE_NAME = "model-deployer"
# KServe's storage initializer downloads the model before the server starts; Knative's own
# progress deadline is 600 s. A cold start here takes well under a minute.
DEFAULT_TIMEOUT_S = 300
POLL_INTERVAL_S = 2.0
REQUEST_TIMEOUT_S = 30
# Each 409 means another writer changed the object between our GET and PATCH; a few in a row
# mean something keeps rewriting it (a GitOps loop), which a retry will not outrun.
MAX_CONFLICTS = 5

# A DNS-1123 label: what KServe accepts for an InferenceService name, and a namespace name.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# The immutable version folder that push writes (components.registry.version_prefix), with the
# trailing slash: KServe downloads every key under the prefix, so .../v4 would also pull v40-v49.
_VERSION_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/"
                          r"(?P<model>[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?)/v[1-9][0-9]*/$")


@dataclass(frozen=True)
class Served:
    """What an InferenceService's spec says it serves: the two fields a rollout changes."""

    storage_uri: str | None
    canary_percent: int | None  # None: the field is absent (all traffic to the latest ready revision)

    def __str__(self) -> str:
        canary = "" if self.canary_percent is None else f" with canaryTrafficPercent={self.canary_percent}"
        return f"{self.storage_uri or '(no storageUri)'}{canary}"


@dataclass(frozen=True)
class Marks:
    """What in the status moves once KServe has acted on a new spec (see rolled_out)."""

    observed_generation: int | None
    latest_created_revision: str | None


@dataclass(frozen=True)
class RolloutResult:
    isvc: str
    namespace: str
    served: Served  # what it serves now
    previous: Served  # what it served before
    changed: bool  # False: it already served this; nothing was patched
    revision: str | None  # serverless: the predictor's latestReadyRevision
    seconds: float


def version_uri(bucket: str, model_name: str, version: int) -> str:
    """s3://bucket/model_name/v<N>/, as push reports it in model_uri.

    Args:
        bucket: the bucket.
        model_name: the model's folder.
        version: the N.

    Returns:
        The URI, slash-terminated.
    """
    return f"s3://{bucket}/{version_prefix(model_name, version)}"


def check_target(isvc: str, namespace: str, canary_percent: int | None, timeout_s: float) -> None:
    """Validate what names the rollout (also run early by pipelines.params.check).

    Args:
        isvc: the InferenceService's name.
        namespace: its namespace.
        canary_percent: 0-100, or None.
        timeout_s: seconds to wait for Ready (> 0).
    """
    for field, value in (("isvc", isvc), ("namespace", namespace)):
        if not isinstance(value, str) or not _DNS_LABEL.match(value):
            raise DeployConfigError(f"{field}={value!r} is invalid: expected a Kubernetes name (DNS-1123 label: "
                                    "lowercase letters, digits and '-', at most 63)")
    if canary_percent is not None and (isinstance(canary_percent, bool) or not isinstance(canary_percent, int)
                                       or not 0 <= canary_percent <= 100):
        raise DeployConfigError(f"canary_percent={canary_percent!r} is invalid: expected an integer from 0 to 100 "
                                "(or none to leave canaryTrafficPercent as it is)")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise DeployConfigError(f"timeout_s={timeout_s!r} is invalid: expected a number of seconds > 0")


def check_storage_uri(storage_uri: str) -> re.Match:
    """Refuse a storageUri that is not an immutable version folder.

    Args:
        storage_uri: the URI to roll out.

    Returns:
        The match (bucket, model, version); DeployConfigError otherwise.
    """
    match = _VERSION_URI.match(storage_uri or "")
    if not match:
        raise DeployConfigError(
            f"storage_uri={storage_uri!r} is invalid: expected an immutable version folder "
            "s3://<bucket>/<model>/v<N>/ (with the trailing slash), as push reports in model_uri")
    return match


# ---- reading an InferenceService -------------------------------------------------------------

def _predictor(obj: dict) -> dict:
    return ((obj.get("spec") or {}).get("predictor")) or {}


def served(obj: dict) -> Served:
    """What the spec serves.

    Args:
        obj: the InferenceService as the API returns it.

    Returns:
        Served: the predictor's storageUri and canaryTrafficPercent.
    """
    predictor = _predictor(obj)
    return Served((predictor.get("model") or {}).get("storageUri"), predictor.get("canaryTrafficPercent"))


def marks(obj: dict) -> Marks:
    """The status fields that move once KServe acts on a new spec.

    Args:
        obj: the InferenceService as the API returns it.

    Returns:
        Marks: observedGeneration and the predictor's latest created revision.
    """
    status = obj.get("status") or {}
    component = (status.get("components") or {}).get("predictor") or {}
    return Marks(status.get("observedGeneration"), component.get("latestCreatedRevision"))


def _condition(status: dict, kind: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def is_ready(obj: dict) -> bool:
    """Whether the Ready condition is True.

    Args:
        obj: the InferenceService as the API returns it.

    Returns:
        True or False.
    """
    ready = _condition(obj.get("status") or {}, "Ready")
    return ready is not None and ready.get("status") == "True"


def rolled_out(obj: dict, before: Marks, generation: int) -> bool:
    """True when the status shows KServe acted on the patched spec and the result is Ready.

    Serverless: Knative stamps a new revision for the new spec; it is rolled out when it is
    both the latest created and the latest ready one. RawDeployment has no revisions; there
    status.observedGeneration is what moves. KServe copies it from the child Deployment or
    Knative Service rather than from the InferenceService's own generation (kserve/kserve#6081),
    so "equal to our generation" is accepted (the fixed behaviour) and so is "moved since
    before the patch" (the copied counter); PredictorReady is Unknown while the new
    ReplicaSet rolls out, so Ready=True after the move means the new pods are available.

    Args:
        obj: the InferenceService as the API returns it. (after the patch)
        before: its Marks before the patch.
        generation: the generation the patch produced.

    Returns:
        True once rolled out and Ready.
    """
    if not is_ready(obj):
        return False
    predictor = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
    created = predictor.get("latestCreatedRevision")
    if created or before.latest_created_revision:
        return created != before.latest_created_revision and predictor.get("latestReadyRevision") == created
    observed = (obj.get("status") or {}).get("observedGeneration")
    return observed is not None and (observed == generation or observed != before.observed_generation)


def describe_status(obj: dict) -> str:
    """One line for logs and errors: the Ready condition and the predictor's revisions.

    Args:
        obj: the InferenceService as the API returns it.

    Returns:
        The line.
    """
    status = obj.get("status") or {}
    ready = _condition(status, "Ready")
    parts = ["Ready=" + (ready.get("status", "?") if ready else "(not reported)")]
    if ready and (ready.get("reason") or ready.get("message")):
        parts[0] += f" ({': '.join(p for p in (ready.get('reason'), ready.get('message')) if p)})"
    predictor = (status.get("components") or {}).get("predictor") or {}
    for key in ("latestCreatedRevision", "latestReadyRevision"):
        if predictor.get(key):
            parts.append(f"{key}={predictor[key]}")
    failure = (status.get("modelStatus") or {}).get("lastFailureInfo") or {}
    if failure.get("message"):
        parts.append(f"lastFailure={failure.get('reason', '')}: {failure['message']}")
    return ", ".join(parts)


# ---- talking to the API ------------------------------------------------------------------

def patch_body(target: Served, resource_version: str | None) -> dict:
    """The merge patch that makes the spec serve target, only if the object is still at resource_version.

    A None canary is JSON null: RFC 7386 removes the field, so all traffic goes to the new revision.

    Args:
        target: what the spec should serve.
        resource_version: the object's resourceVersion as read; None patches unconditionally.

    Returns:
        The patch body.
    """
    body: dict[str, Any] = {"spec": {"predictor": {"model": {"storageUri": target.storage_uri},
                                                   "canaryTrafficPercent": target.canary_percent}}}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    return body


def kubernetes_api():
    """A CustomObjectsApi with in-cluster credentials in a pod, else KUBECONFIG / ~/.kube/config."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            # Read now: the client reads KUBECONFIG once, when it is imported.
            config.load_kube_config(os.environ.get("KUBECONFIG") or None, client_configuration=configuration)
    except (config.ConfigException, OSError) as exc:
        raise DeployConfigError(f"no Kubernetes credentials: not in a pod and no usable kubeconfig "
                                f"(KUBECONFIG={os.environ.get('KUBECONFIG', '~/.kube/config')}): {exc}") from exc
    return client.CustomObjectsApi(client.ApiClient(configuration))


class _Api:
    """GET and PATCH of one InferenceService, with the API's failures turned into domain errors."""

    def __init__(self, api, name: str, namespace: str):
        self.api, self.name, self.namespace = api, name, namespace
        self.where = f"InferenceService {namespace}/{name}"

    def get(self) -> dict:
        return self._call("get", self.api.get_namespaced_custom_object)

    def patch(self, body: dict) -> dict:
        return self._call("patch", self.api.patch_namespaced_custom_object, body)

    def _call(self, verb: str, method: Callable, *body: dict) -> dict:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(GROUP, API_VERSION, self.namespace, PLURAL, self.name, *body,
                          _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            raise self._api_error(verb, exc) from exc
        except HTTPError as exc:  # nothing answers, TLS, timeouts (after the client's own retries)
            host = getattr(getattr(self.api, "api_client", None), "configuration", None)
            raise DeployError(f"cannot {verb} {self.where}: the Kubernetes API at "
                              f"{getattr(host, 'host', '?')} did not answer ({exc.__class__.__name__}: {exc})") from exc

    def _api_error(self, verb: str, exc) -> DeployError:
        message = _status_message(exc)
        if exc.status in (401, 403):
            return DeployForbidden(
                f"the Kubernetes API refused to {verb} {self.where} (HTTP {exc.status}: {message}). The step's "
                f"ServiceAccount needs the Role {ROLE_NAME} (get, patch on inferenceservices.{GROUP}) bound in "
                f"namespace {self.namespace}: apply manifests/components/deployer (in every overlay) or install "
                f"the chart with deployer.enabled=true, with a RoleBinding subject for the account the pipeline "
                f"runs as")
        if exc.status == 404:
            return DeployNotFound(
                f"{self.where} not found (HTTP 404: {message}): create it first (kubectl apply -k "
                f"manifests/overlays/<mode>, or helm install), or name the right one (deploy_isvc / "
                f"deploy_namespace, make deploy ISVC=... NAMESPACE=...); a 404 for every name means KServe "
                f"({GROUP}/{API_VERSION}) is not installed")
        if exc.status == 409:
            return DeployConflict(f"{self.where} changed while it was being patched (HTTP 409: {message})")
        if exc.status == 422:
            return DeployConfigError(f"the API server rejected the patch of {self.where} (HTTP 422: {message})")
        return DeployError(f"cannot {verb} {self.where}: HTTP {exc.status} {exc.reason}: {message}")


def _status_message(exc) -> str:
    """The message of the Status object the API server sends with an error, else its reason."""
    import json

    try:
        return json.loads(exc.body or "{}").get("message") or exc.reason or ""
    except (ValueError, AttributeError):
        return str(exc.reason or "")


# ---- the rollout ---------------------------------------------------------------------------

def _check_same_model(current: Served, storage_uri: str, where: str) -> None:
    """Refuse to point an endpoint that serves model A at model B (train/ev. of another model_name)."""
    match = check_storage_uri(storage_uri)
    home = f"s3://{match['bucket']}/{match['model']}/"
    if current.storage_uri and not current.storage_uri.startswith(home):
        raise DeployConfigError(
            f"{where} serves {current.storage_uri}, which is not under {home}: refusing to point it at "
            f"{storage_uri}, a version of another model (its inputs may differ). Deploy each model to its own "
            f"InferenceService, or change storageUri by hand (--allow-other-model with make deploy / "
            f"python -m components.deploy)")


def _apply(api: _Api, make_target: Callable[[Served], Served], allowed: Callable[[dict], None]
           ) -> tuple[dict, dict | None, Served]:
    """GET, then PATCH conditional on the resourceVersion read; on 409 again, up to MAX_CONFLICTS.

    Returns (object before, object after the patch or None when nothing needed changing, previous).
    """
    for _ in range(MAX_CONFLICTS):
        before = api.get()
        allowed(before)
        previous = served(before)
        target = make_target(previous)
        if target == previous:
            return before, None, previous
        try:
            after = api.patch(patch_body(target, (before.get("metadata") or {}).get("resourceVersion")))
            return before, after, previous
        except DeployConflict as conflict:
            log.warning("%s; reading it again", conflict)
    raise DeployConflict(f"{api.where} changed under every one of {MAX_CONFLICTS} patches in a row (HTTP 409): "
                         "something else keeps rewriting it (a GitOps sync, another rollout); nothing was changed "
                         "by this rollout")


def _roll_back(api: _Api, written: Served, previous: Served) -> str:
    """Put previous back if the spec still holds what this rollout wrote; a sentence saying what happened."""
    def mine(obj: dict) -> None:
        if served(obj) != written:
            raise _NotMine(served(obj))

    try:
        _, after, _ = _apply(api, lambda current: previous, mine)
    except _NotMine as other:
        return (f"NOT rolled back: the spec now says {other.now}, not what this rollout wrote ({written}); "
                "someone else changed it since, so it is left as it is")
    except DeployError as exc:
        return f"the rollback to {previous} FAILED ({exc}); the spec still says {written}"
    generation = (after or {}).get("metadata", {}).get("generation")
    return f"rolled back: the spec says {previous} again (generation {generation})"


class _NotMine(Exception):
    def __init__(self, now: Served):
        self.now = now


def _wait(api: _Api, before: Marks, generation: int, timeout_s: float, poll_s: float,
          done: Callable[[dict, Marks, int], bool]) -> tuple[dict, bool]:
    """Poll until done(obj) or the deadline; (the last object seen, whether done). Logs each new state."""
    deadline = time.monotonic() + timeout_s
    shown = None
    while True:
        obj = api.get()
        if done(obj, before, generation):
            return obj, True
        state = describe_status(obj)
        if state != shown:
            log.info("%s: waiting (%s)", api.where, state)
            shown = state
        if time.monotonic() + poll_s > deadline:
            return obj, False
        time.sleep(poll_s)


def rollout(name: str, namespace: str, storage_uri: str, canary_percent: int | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S, api=None, poll_s: float = POLL_INTERVAL_S,
            allow_other_model: bool = False) -> RolloutResult:
    """Point InferenceService namespace/name at storage_uri (and canary_percent), wait until Ready.

    Args:
        name: the InferenceService.
        namespace: its namespace.
        storage_uri: an immutable s3://bucket/model/vN/ folder.
        canary_percent: the new revision's share of traffic; None leaves canaryTrafficPercent as it is.
        timeout_s: seconds to wait for Ready.
        api: a kubernetes CustomObjectsApi (default: kubernetes_api()).
        poll_s: seconds between status reads.
        allow_other_model: roll out even when the InferenceService serves another model's folder.

    Returns:
        What it serves now and before, and the revision. Raises RolloutFailed after rolling back when
        not Ready in time.
    """
    check_target(name, namespace, canary_percent, timeout_s)
    check_storage_uri(storage_uri)
    isvc = _Api(api if api is not None else kubernetes_api(), name, namespace)
    started = time.monotonic()

    def allowed(obj: dict) -> None:
        if not (_predictor(obj).get("model") or {}):
            raise DeployConfigError(f"{isvc.where} has no spec.predictor.model: expected the predictor format "
                                    "this project's manifests use (model.modelFormat, model.storageUri)")
        if not allow_other_model:
            _check_same_model(served(obj), storage_uri, isvc.where)

    def target(current: Served) -> Served:
        return Served(storage_uri, current.canary_percent if canary_percent is None else canary_percent)

    before, after, previous = _apply(isvc, target, allowed)
    written = target(previous)
    if after is None:
        log.info("%s already serves %s: nothing to patch, checking it is Ready", isvc.where, written)
        obj, ready = _wait(isvc, marks(before), 0, timeout_s, poll_s, lambda o, _m, _g: is_ready(o))
        if not ready:
            raise RolloutFailed(f"{isvc.where} already served {written} (nothing was changed) but is not Ready "
                                f"after {timeout_s:g} s: {describe_status(obj)}")
        return _result(isvc, obj, previous, False, started)

    generation = int((after.get("metadata") or {}).get("generation") or 0)
    log.info("%s: %s -> %s (generation %d); waiting up to %g s for Ready", isvc.where, previous, written,
             generation, timeout_s)
    obj, ready = _wait(isvc, marks(before), generation, timeout_s, poll_s, rolled_out)
    if not ready:
        outcome = _roll_back(isvc, written, previous)
        log.error("%s: not Ready with %s after %g s; %s", isvc.where, written, timeout_s, outcome)
        raise RolloutFailed(f"{isvc.where} did not become Ready with {written} within {timeout_s:g} s "
                            f"(last status: {describe_status(obj)}); {outcome}")
    result = _result(isvc, obj, previous, True, started)
    log.info("%s is Ready with %s%s in %.1f s", isvc.where, written,
             f" (revision {result.revision})" if result.revision else "", result.seconds)
    return result


def _result(isvc: _Api, obj: dict, previous: Served, changed: bool, started: float) -> RolloutResult:
    predictor = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
    return RolloutResult(isvc.name, isvc.namespace, served(obj), previous, changed,
                         predictor.get("latestReadyRevision"), time.monotonic() - started)


# ---- command line: make deploy -------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """``make deploy``: roll a model version out to the InferenceService, rolling back if it is not Ready.

    Args:
        argv: the command line without the program name (default sys.argv[1:]).

    Returns:
        The exit status: 0 rolled out (or already served), cli.EXIT_BAD_INPUT for bad arguments, cli.EXIT_FAILED
        when the rollout failed.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", type=int, help="the v<N> to roll out (with --model-name and --bucket)")
    which.add_argument("--storage-uri", help="s3://bucket/model/vN/ to roll out")
    parser.add_argument("--model-name", default=DEFAULT_ISVC, help="model folder in the bucket (default: %(default)s)")
    parser.add_argument("--bucket", default=DEFAULT_BUCKET, help="bucket (default: %(default)s)")
    parser.add_argument("--isvc", default=DEFAULT_ISVC, help="InferenceService name (default: %(default)s)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="its namespace (default: %(default)s)")
    parser.add_argument("--canary-percent", type=int, default=None,
                        help="traffic share of the new revision, 0-100 (serverless only; default: leave as is)")
    parser.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S,
                        help="seconds to wait for Ready before rolling back (default: %(default)s)")
    parser.add_argument("--allow-other-model", action="store_true",
                        help="point the InferenceService at a version of another model than it serves")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def deploy() -> None:
        if args.version is not None and args.version < 1:
            raise DeployConfigError(f"version={args.version} is invalid: expected a version number >= 1")
        uri = args.storage_uri or version_uri(args.bucket, args.model_name, args.version)
        result = rollout(args.isvc, args.namespace, uri, args.canary_percent, args.timeout_s,
                         allow_other_model=args.allow_other_model)
        change = f"was {result.previous}" if result.changed else "unchanged, it already served this"
        print(f"{result.namespace}/{result.isvc}: Ready, serving {result.served} ({change})")

    return cli.run(deploy, [(DeployConfigError, cli.EXIT_BAD_INPUT, ""), (DeployError, cli.EXIT_FAILED, "")])


if __name__ == "__main__":
    sys.exit(main())
