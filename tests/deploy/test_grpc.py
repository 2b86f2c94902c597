"""The runtime declares the port the cluster routes to as KServe and Knative expect it: REST by
default, V2 over gRPC in the gRPC renders, and always the port the server really binds.

The server's ports are read by running its own argument parser over the runtime's args, so a
renamed flag or a port that differs between manifest and server fails here, not in a cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache

import pytest

from . import render
from .conftest import ALL_RENDERS, RENDER_IDS
from .podsecurity import inference_service_pod
from .tools import REPO_ROOT

# Knative: one port across the pod's containers, named "", "http1" or "h2c" (gRPC needs h2c).
KNATIVE_PORT_NAMES = frozenset({"", "http1", "h2c"})
# Raw mode: Istio reads the protocol from the name's prefix (<protocol>[-<suffix>]).
RAW_GRPC_PORT_NAME = "grpc-port"
GRPC_RENDERS = {("kustomize", "serverless-grpc"), ("kustomize", "raw-grpc"), ("helm", "grpc"), ("helm", "raw-grpc")}
PARSE_TIMEOUT_S = 60

# Runs serving's real parser in a fresh interpreter: kserve parses sys.argv when imported.
_PARSE = """
import json, sys
sys.argv = ["serving", *json.loads(sys.argv[1])]
from serving.__main__ import build_parser
args = build_parser().parse_args(sys.argv[1:])
print(json.dumps({"http_port": args.http_port, "grpc_port": args.grpc_port, "enable_grpc": args.enable_grpc}))
"""


@lru_cache(maxsize=None)
def server_ports(args: tuple[str, ...]) -> dict:
    """The ports `python -m serving` binds with these args ({{.Name}} filled in as KServe does)."""
    argv = [arg.replace("{{.Name}}", "diabetes-rf") for arg in args]
    done = subprocess.run([sys.executable, "-c", _PARSE, json.dumps(argv)], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=PARSE_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"python -m serving rejects the runtime's args {argv}:\n{done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def knative_port_errors(pod: dict) -> list[str]:
    """What Knative's webhook would reject about the pod's ports (empty: accepted)."""
    ports = [port for container in pod["containers"] for port in container.get("ports", [])]
    if len(ports) > 1:
        return [f"{len(ports)} ports; Knative allows one across all containers"]
    return [f"port name {port.get('name')!r} is not one of {sorted(KNATIVE_PORT_NAMES)}"
            for port in ports if port.get("name", "") not in KNATIVE_PORT_NAMES]


def _deployment_mode(isvc: dict) -> str:
    return isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"]


def _project_runtime(docs):
    isvc = render.only(docs, "InferenceService")
    runtimes = render.find(docs, "ServingRuntime", isvc["spec"]["predictor"]["model"]["runtime"])
    return isvc, (runtimes[0] if runtimes else None)


PROJECT_RENDERS = [(s, n) for s, n in ALL_RENDERS if (s, n) not in {("kustomize", "stock-runtime"), ("helm", "stock-runtime")}]


def test_grpc_renders_exist():
    assert GRPC_RENDERS <= set(ALL_RENDERS)


@pytest.mark.parametrize(("source", "name"), PROJECT_RENDERS, ids=[f"{s}:{n}" for s, n in PROJECT_RENDERS])
def test_runtime_declares_the_port_the_server_binds(rendered, source, name):
    isvc, runtime = _project_runtime(rendered(source, name))
    assert runtime is not None
    container = runtime["spec"]["containers"][0]
    bound = server_ports(tuple(container["args"]))
    assert bound["enable_grpc"] is True  # the server always listens on both
    [port] = container["ports"]
    assert port.get("protocol", "TCP") == "TCP"
    model = isvc["spec"]["predictor"]["model"]
    if (source, name) in GRPC_RENDERS:
        assert port["containerPort"] == bound["grpc_port"]
        assert model["protocolVersion"] == "grpc-v2"
        expected_name = "h2c" if _deployment_mode(isvc) == "Serverless" else RAW_GRPC_PORT_NAME
        assert port["name"] == expected_name
    else:  # the default stays REST
        assert port["containerPort"] == bound["http_port"]
        assert model["protocolVersion"] == "v2"
        assert "grpc" not in port.get("name", "") and "h2c" not in port.get("name", "")
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    # Probes and metrics stay on the REST port, which the server serves in both protocols.
    assert model["readinessProbe"]["httpGet"]["port"] == bound["http_port"]
    assert model["livenessProbe"]["httpGet"]["port"] == bound["http_port"]
    assert runtime["spec"]["annotations"]["prometheus.kserve.io/port"] == str(bound["http_port"])


@pytest.mark.parametrize(("source", "name"), ALL_RENDERS, ids=RENDER_IDS)
def test_knative_renders_declare_one_allowed_port(rendered, source, name):
    docs = rendered(source, name)
    isvc = render.only(docs, "InferenceService")
    if _deployment_mode(isvc) != "Serverless":
        pytest.skip("raw mode: a plain Deployment has no Knative port rule")
    assert knative_port_errors(inference_service_pod(isvc, docs)) == []


@pytest.mark.parametrize(
    ("ports", "expected"),
    [([{"containerPort": 8080}, {"name": "h2c", "containerPort": 8081}], "2 ports"),
     ([{"name": "grpc-port", "containerPort": 8081}], "'grpc-port'")],
    ids=["two-ports", "raw-name-under-knative"],
)
def test_knative_port_check_catches(rendered, ports, expected):
    docs = rendered("kustomize", "serverless-grpc")
    isvc, runtime = _project_runtime(docs)
    runtime["spec"]["containers"][0]["ports"] = ports
    assert expected in " ".join(knative_port_errors(inference_service_pod(isvc, [runtime])))


def test_a_misspelt_server_flag_fails_the_check():
    with pytest.raises(AssertionError, match="unrecognized arguments: --grpc_prot=8081"):
        server_ports(("--model_dir=/mnt/models", "--grpc_prot=8081"))


@pytest.mark.parametrize("mode", ["serverless", "raw"])
def test_chart_grpc_agrees_with_its_overlay_on_the_port(rendered, mode):
    chart = "grpc" if mode == "serverless" else "raw-grpc"
    overlay = "serverless-grpc" if mode == "serverless" else "raw-grpc"
    ports = [_project_runtime(rendered(source, name))[1]["spec"]["containers"][0]["ports"]
             for source, name in (("helm", chart), ("kustomize", overlay))]
    assert ports[0] == ports[1]
