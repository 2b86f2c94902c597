"""Render the kustomize overlays and the Helm chart's documented modes into parsed documents."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from .tools import CHART, OVERLAYS, run

Doc = dict

RELEASE = "demo"
NAMESPACE = "sklearn-kserve-mlops"


@dataclass(frozen=True)
class ChartMode:
    """A documented way to install the chart, and the overlay that must render the same."""

    name: str
    values: tuple[str, ...]  # helm --set arguments
    overlay: str | None = None


# The README's "Deploy on a cluster" section documents each of these.
CHART_MODES = (
    ChartMode("default", (), overlay="serverless"),
    ChartMode("raw", ("mode=raw",), overlay="raw"),
    ChartMode("stock-runtime", ("runtime.kind=stock",), overlay="stock-runtime"),
    ChartMode("with-minio", ("minio.enabled=true",), overlay="with-minio"),
    ChartMode("scale-to-zero", ("autoscaling.minReplicas=0",)),
    ChartMode("rps", ("autoscaling.serverless.scaleMetric=rps", "autoscaling.serverless.scaleTarget=50")),
    ChartMode("canary", ("canaryTrafficPercent=10",)),
    ChartMode("existing-secret", ("objectStore.existingSecret=my-s3-credentials",)),
)


def parse_documents(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def overlay_names() -> list[str]:
    return sorted(path.parent.name for path in OVERLAYS.glob("*/kustomization.yaml"))


def kustomize(kubectl: str, overlay: str) -> list[Doc]:
    return parse_documents(run([kubectl, "kustomize", str(OVERLAYS / overlay)]))


def set_args(values: tuple[str, ...]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def helm_template(helm: str, values: tuple[str, ...]) -> list[Doc]:
    argv = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *set_args(values)]
    return parse_documents(run(argv))


def helm_lint(helm: str, values: tuple[str, ...]) -> str:
    return run([helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE, *set_args(values)])


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def only(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    matches = find(docs, kind, name)
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]
