"""Strict schema validation: built-in kinds with kubernetes-validate, KServe kinds with the CRD schemas.

kubernetes-validate only warns for kinds it has no schema for (every CRD), so KServe kinds go
through the CRD's openAPIV3Schema here, made strict the way the API server is with
--validate=strict: every object that lists properties and does not preserve unknown fields
rejects other fields.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

import jsonschema
from kubernetes_validate import utils as k8s

# Kubernetes releases to check against: the oldest we support and the newest the validator knows.
K8S_VERSIONS = ("1.29.0", k8s.latest_version())

KSERVE_GROUP = "serving.kserve.io"
CRD_SCHEMA_FILES = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice_v1beta1.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "servingruntime_v1alpha1.json",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "clusterservingruntime_v1alpha1.json",
}


def strictify(schema: dict) -> dict:
    """A copy where every object listing properties rejects unknown ones (unless it preserves them)."""
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return schema


class CrdValidator:
    """Validates KServe custom resources against the strict CRD schemas in one folder."""

    def __init__(self, folder: Path):
        missing = [name for name in CRD_SCHEMA_FILES.values() if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"KServe CRD schemas missing in {folder}: {', '.join(missing)}")
        self.folder = folder
        self._validators = {
            key: jsonschema.Draft7Validator(strictify(json.loads((folder / name).read_text())))
            for key, name in CRD_SCHEMA_FILES.items()
        }

    def errors(self, doc: dict) -> list[str]:
        validator = self._validators.get((doc.get("apiVersion"), doc.get("kind")))
        if validator is None:
            return [f"{describe(doc)}: no KServe CRD schema for {doc.get('apiVersion')} {doc.get('kind')}"]
        found = [f"{describe(doc)}: {_path(e)}: {e.message}" for e in validator.iter_errors(doc)]
        # The CRD schemas leave metadata open; check it as the API server does, as ObjectMeta.
        found += builtin_errors({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata", {})},
                                K8S_VERSIONS[-1], label=f"{describe(doc)} metadata")
        return found


def describe(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "<root>"


def builtin_errors(doc: dict, version: str, label: str | None = None) -> list[str]:
    return list(_builtin_errors(json.dumps(doc, sort_keys=True), version, label or describe(doc)))


@lru_cache(maxsize=None)  # the renders share most objects; validate each distinct one once
def _builtin_errors(doc_json: str, version: str, label: str) -> tuple[str, ...]:
    try:
        k8s.validate(json.loads(doc_json), version, strict=True)
    except k8s.ValidationError as error:
        return (f"{label} (k8s {error.version}): {_path(error)}: {error.message}",)
    except k8s.SchemaNotFoundError as error:  # the CLI only warns here; a silent pass is a miss
        return (f"{label}: {error.message}",)
    return ()


def is_kserve(doc: dict) -> bool:
    return doc.get("apiVersion", "").split("/")[0] == KSERVE_GROUP


def builtin_document_errors(docs: list[dict]) -> list[str]:
    """Problems of every non-KServe object, for each Kubernetes version checked."""
    return [error for doc in docs if not is_kserve(doc) for version in K8S_VERSIONS
            for error in builtin_errors(doc, version)]


def kserve_document_errors(docs: list[dict], crds: CrdValidator) -> list[str]:
    """Problems of every KServe object against the strict CRD schemas."""
    return [error for doc in docs if is_kserve(doc) for error in crds.errors(doc)]
