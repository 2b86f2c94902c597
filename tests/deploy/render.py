"""Render the kustomize overlays and the Helm chart's documented modes into parsed documents."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .tools import CHART, MANIFESTS, TEST_CREDENTIALS, run

Doc = dict

RELEASE = "demo"
NAMESPACE = "sklearn-kserve-mlops"  # where every namespaced object goes, in every render
# The chart refuses CHANGE-ME credentials by default; renders of its modes use the placeholders.
ALLOW_PLACEHOLDERS = ("allowPlaceholderCredentials=true",)
# The chart's credential values, set to what the kustomize copies' *.local.env files hold, so the
# chart's modes and the overlays render the same Secrets (test_agreement.py).
TEST_CREDENTIAL_VALUES = tuple(f"{field}={TEST_CREDENTIALS[key]}" for field, key in (
    ("objectStore.accessKey", "AWS_ACCESS_KEY_ID"),
    ("objectStore.secretKey", "AWS_SECRET_ACCESS_KEY"),
    ("minio.rootUser", "MINIO_ROOT_USER"),
    ("minio.rootPassword", "MINIO_ROOT_PASSWORD"),
    ("minio.writer.accessKey", "accesskey"),
    ("minio.writer.secretKey", "secretkey"),
))
# Kinds without a namespace; every other rendered object must carry NAMESPACE.
CLUSTER_SCOPED_KINDS = frozenset(
    {"Namespace", "ClusterServingRuntime", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
)


@dataclass(frozen=True)
class ChartMode:
    """A documented way to install the chart, and the overlay that must render the same."""

    name: str
    values: tuple[str, ...]  # helm --set arguments
    overlay: str | None = None
    release_namespace: str = NAMESPACE  # helm -n; the objects still go to NAMESPACE


# The README's "Deploy on a cluster" section documents each of these.
CHART_MODES = (
    ChartMode("default", (), overlay="serverless"),
    ChartMode("raw", ("mode=raw",), overlay="raw"),
    ChartMode("stock-runtime", ("runtime.kind=stock",), overlay="stock-runtime"),
    ChartMode("with-minio", ("minio.enabled=true",), overlay="with-minio"),
    # The chart creates the namespace with its Pod Security labels, as kustomize does; the
    # release itself lives in another namespace (Helm stores it before creating objects).
    ChartMode("own-namespace", ("namespace.create=true", f"namespace.name={NAMESPACE}"), overlay="serverless",
              release_namespace="default"),
    # V2 over gRPC instead of REST: one h2c port under Knative, a grpc-* port in raw mode.
    ChartMode("grpc", ("protocol=grpc",), overlay="serverless-grpc"),
    ChartMode("raw-grpc", ("mode=raw", "protocol=grpc"), overlay="raw-grpc"),
    ChartMode("scale-to-zero", ("autoscaling.minReplicas=0",)),
    ChartMode("rps", ("autoscaling.serverless.scaleMetric=rps", "autoscaling.serverless.scaleTarget=50")),
    ChartMode("canary", ("model.storageUri=s3://models/diabetes-rf/v4/", "canaryTrafficPercent=10")),
    ChartMode("existing-secret", ("objectStore.existingSecret=my-s3-credentials",)),
    # The inference log on (README "Inference log"); off in every other mode.
    ChartMode("inference-log", ("inferenceLog.uri=s3://inference-logs/diabetes-rf/",), overlay="serverless-inference-log"),
    # ... with the chart's MinIO, whose bucket Job makes the log's bucket and write policy.
    ChartMode("with-minio-inference-log", ("minio.enabled=true", "inferenceLog.uri=s3://inference-logs/diabetes-rf/"),
              overlay="with-minio-inference-log"),
)


def parse_documents(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def overlay_names(manifests: Path = MANIFESTS) -> list[str]:
    return sorted(path.parent.name for path in (manifests / "overlays").glob("*/kustomization.yaml"))


def kustomize(kubectl: str, overlay: str, manifests: Path) -> list[Doc]:
    """Build one overlay of a manifests folder (a copy with its *.local.env files: tools.copy_manifests)."""
    return parse_documents(run([kubectl, "kustomize", str(manifests / "overlays" / overlay)]))


def set_args(values: tuple[str, ...]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def helm_args(values: tuple[str, ...], namespace: str, allow_placeholders: bool) -> list[str]:
    return ["--namespace", namespace, *set_args((ALLOW_PLACEHOLDERS if allow_placeholders else ()) + values)]


def helm_template(helm: str, values: tuple[str, ...], namespace: str = NAMESPACE,
                  allow_placeholders: bool = True) -> list[Doc]:
    return parse_documents(run([helm, "template", RELEASE, str(CHART),
                                *helm_args(values, namespace, allow_placeholders)]))


def helm_lint(helm: str, values: tuple[str, ...], namespace: str = NAMESPACE,
              allow_placeholders: bool = True) -> str:
    """helm lint --strict's report (stdout, then stderr); CommandFailed when it finds an error."""
    return run([helm, "lint", "--strict", str(CHART), *helm_args(values, namespace, allow_placeholders)],
               with_stderr=True)


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def only(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    matches = find(docs, kind, name)
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]
