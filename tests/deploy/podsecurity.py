"""The Kubernetes "restricted" Pod Security Standard (which includes "baseline"), checked on
rendered pod specs, plus this project's rule of a read-only root filesystem in every container.

For an InferenceService the pod is what KServe builds: the runtime's container merged with the
predictor's model container (the predictor wins), the predictor's pod-level fields and volumes.
"""

from __future__ import annotations

from typing import Iterator

from .render import Doc

# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (restricted)
ALLOWED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
ALLOWED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})
HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")
WORKLOAD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge, override wins (how KServe lays the predictor over the runtime)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def inference_service_pod(isvc: Doc, docs: list[Doc]) -> dict:
    """The predictor pod KServe would create; a runtime not in `docs` (a stock one) adds nothing."""
    predictor = isvc["spec"]["predictor"]
    model = predictor.get("model", {})
    runtimes = [d for d in docs if d["kind"] in ("ServingRuntime", "ClusterServingRuntime")
                and d["metadata"]["name"] == model.get("runtime")]
    runtime_spec = runtimes[0]["spec"] if runtimes else {}
    runtime_container = (runtime_spec.get("containers") or [{}])[0]
    # Volumes merge by name, the predictor's winning (KServe's strategic merge of the pod specs).
    volumes = {volume["name"]: volume for volume in runtime_spec.get("volumes", [])}
    volumes.update({volume["name"]: volume for volume in predictor.get("volumes", [])})
    return dict(
        predictor,
        containers=[merge(runtime_container, model), *predictor.get("containers", [])],
        volumes=list(volumes.values()),
    )


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, dict]]:
    """(label, pod spec) for every workload in a rendered set."""
    for doc in docs:
        label = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "InferenceService":
            yield label, inference_service_pod(doc, docs)
        elif doc["kind"] in WORKLOAD_TEMPLATE_PATHS:
            spec = doc
            for key in WORKLOAD_TEMPLATE_PATHS[doc["kind"]]:
                spec = spec[key]
            yield label, spec


def violations(pod: dict) -> list[str]:
    """Every rule the pod spec breaks, one readable line each (empty: compliant)."""
    found: list[str] = []
    pod_context = pod.get("securityContext") or {}
    found += [f"{field} is true" for field in HOST_NAMESPACES if pod.get(field)]
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            found.append(f"volume {volume.get('name')} uses {sorted(kinds - ALLOWED_VOLUME_TYPES)}")
    if pod_context.get("runAsUser") == 0:
        found.append("pod runAsUser is 0")
    if pod_context.get("seccompProfile", {}).get("type") == "Unconfined":
        found.append("pod seccompProfile is Unconfined")
    containers = [*pod.get("initContainers", []), *pod.get("containers", [])]
    if not containers:
        found.append("no containers")
    for container in containers:
        found += [f"container {container.get('name')}: {problem}"
                  for problem in _container_violations(container, pod_context)]
    return found


def _container_violations(container: dict, pod_context: dict) -> list[str]:
    context = container.get("securityContext") or {}
    effective = merge(pod_context, context)
    found = []
    if context.get("privileged"):
        found.append("privileged")
    if context.get("allowPrivilegeEscalation") is not False:
        found.append("allowPrivilegeEscalation is not false")
    if effective.get("runAsNonRoot") is not True:
        found.append("runAsNonRoot is not true")
    if effective.get("runAsUser") == 0:
        found.append("runAsUser is 0")
    if effective.get("seccompProfile", {}).get("type") not in ALLOWED_SECCOMP:
        found.append("seccompProfile is not RuntimeDefault or Localhost")
    capabilities = context.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        found.append("capabilities do not drop ALL")
    added = set(capabilities.get("add") or []) - ALLOWED_ADDED_CAPABILITIES
    if added:
        found.append(f"adds capabilities {sorted(added)}")
    if any(port.get("hostPort") for port in container.get("ports", [])):
        found.append("uses a hostPort")
    if context.get("readOnlyRootFilesystem") is not True:
        found.append("readOnlyRootFilesystem is not true")
    return found
