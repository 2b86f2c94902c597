"""The server image run as the cluster runs it: under the rendered pod's security context.

The `docker run` arguments come from the rendered manifests (every kustomize overlay and Helm
mode whose predictor runs this project's server image, through tests/images/podspec.py), the
model mounted read-only at /mnt/models as KServe's storage initializer leaves it. The answers over
V2 REST and gRPC must equal scikit-learn's, /metrics must count them, and SIGTERM must end the
container cleanly within the pod's grace period.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from pathlib import Path

import numpy as np
import pytest
from kserve.inference_client import InferenceGRPCClient
from kserve.protocol.infer_type import InferInput, InferRequest
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor

from pipelines.local.s3server import free_port
from tests.deploy import podsecurity, render
from tests.deploy.tools import copy_manifests, find_tool, makefile_image
from tests.serving.conftest import write_model_folder

from . import podspec
from .conftest import CONTAINER_PREFIX, container_name, docker, report

pytestmark = [pytest.mark.integration, pytest.mark.images]

MODEL = "diabetes-rf"
MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts the model
READY_TIMEOUT_S = 60  # the stand-in measured about 7 s; the 2-core machine is shared
ROWS = 25
# What a compiler, a test suite or a source tree would leave in the image.
IMAGE_AUDIT = r"""
import glob, importlib.metadata as md, json, os, shutil
compilers = sorted({p for name in ("gcc", "cc", "c++", "g++", "clang", "make") if (p := shutil.which(name))}
                   | set(glob.glob("/usr/lib/gcc/*/*/cc1*")))
ours = md.distribution("sklearn-kserve-mlops")
installed = [str(f) for f in ours.files]
tests = [f for f in installed if f.split("/")[0] == "tests" or "/tests/" in f]
editable = [f for f in installed if f.endswith(".pth") or "__editable__" in f]
trees = []
for root, dirs, files in os.walk("/"):
    # Installed distributions (pandas ships its pyproject.toml and tests) are not a source tree.
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")
               and d not in ("site-packages", "dist-packages")]
    if "pyproject.toml" in files and ("serving" in dirs or "tests" in dirs):
        trees.append(root)
    if root.endswith("/tests") and "conftest.py" in files and os.path.isdir(os.path.join(root, "images")):
        trees.append(root)
print(json.dumps({"compilers": compilers, "tests": tests, "editable": editable, "trees": trees,
                  "serving_at": __import__("serving").__file__}))
"""


def server_pods(work: Path) -> dict[tuple, tuple[dict, list[str]]]:
    """{docker arguments: (pod, renders)} over every render whose predictor runs our server image."""
    kubectl = find_tool("kubectl", "run `make helm` (installs kubectl next to helm in .tools/bin)")
    helm = find_tool("helm", "run `make helm` (installs helm 3.18 into .tools/bin)")
    manifests = copy_manifests(work / "manifests")
    renders = {f"kustomize:{name}": render.kustomize(kubectl, name, manifests) for name in render.overlay_names()}
    renders |= {f"helm:{mode.name}": render.helm_template(helm, mode.values, namespace=mode.release_namespace)
                for mode in render.CHART_MODES}
    image = makefile_image("SERVING_IMAGE")
    found: dict[tuple, tuple[dict, list[str]]] = {}
    for label, docs in renders.items():
        for isvc in render.find(docs, "InferenceService"):
            pod = podsecurity.inference_service_pod(isvc, docs)
            if pod["containers"][0].get("image") != image:
                continue  # KServe's stock runtime: not our image
            key = (*podspec.run_args(pod), *podspec.container_args(pod, MODEL), podspec.grace_seconds(pod))
            found.setdefault(key, (pod, []))[1].append(label)
    assert found, f"no render runs {image}: the chart or overlays no longer use the server image"
    return found


class Container:
    """One `docker run -d` of the server image, its ports published on loopback."""

    def __init__(self, image: str, pod: dict, model_dir: Path) -> None:
        self.pod = pod
        self.args = podspec.container_args(pod, MODEL)
        self.http_port, self.grpc_port = free_port(), free_port()
        self.name = container_name("server")
        self.started = time.monotonic()
        docker("run", "-d", "--name", self.name, "--label", f"{CONTAINER_PREFIX}=server",
               *podspec.run_args(pod), "-v", f"{model_dir}:{MODEL_DIR}:ro",
               "-p", f"127.0.0.1:{self.http_port}:{podspec.flag(self.args, 'http_port')}",
               "-p", f"127.0.0.1:{self.grpc_port}:{podspec.flag(self.args, 'grpc_port')}",
               image, *self.args)

    def logs(self) -> str:
        done = docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def state(self) -> dict:
        return json.loads(docker("inspect", "--format", "{{json .State}}", self.name).stdout)

    def get(self, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            conn.request("POST" if body else "GET", path, body=body,
                         headers={"content-type": "application/json"} if body else {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def wait_ready(self) -> float:
        """Seconds from `docker run` to the pod's readiness probe answering 200."""
        probe = self.pod["containers"][0]["readinessProbe"]["httpGet"]
        assert str(probe["port"]) == podspec.flag(self.args, "http_port"), probe
        deadline = self.started + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.state()["Running"], f"the server exited:\n{self.logs()}"
            try:
                if self.get(probe["path"])[0] == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"not ready within {READY_TIMEOUT_S}s:\n{self.logs()}")

    def remove(self) -> None:
        docker("rm", "-f", self.name, check=False)


@pytest.fixture(scope="module")
def model(shared_dir) -> tuple[Path, object, np.ndarray]:
    """A model folder as the pipeline's push step writes it, readable by the pod's non-root user."""
    data = load_diabetes()
    x, names = data.data, list(data.feature_names)
    regressor = RandomForestRegressor(n_estimators=50, random_state=0).fit(x, data.target)
    folder = write_model_folder(shared_dir() / "model", regressor, "regression", names, x, version=3)
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder, regressor, np.ascontiguousarray(x[:ROWS])


@pytest.fixture(scope="module")
def pods(tmp_path_factory) -> dict[tuple, tuple[dict, list[str]]]:
    return server_pods(tmp_path_factory.mktemp("renders"))


@pytest.fixture(scope="module")
def servers(images, model, pods) -> list[Container]:
    """One container per distinct security context among the renders (today: one for all)."""
    started: list[Container] = []
    try:
        for pod, labels in pods.values():
            container = Container(images["server"], pod, model[0])
            container.labels = labels
            started.append(container)
            container.ready_s = container.wait_ready()
        yield started
    finally:
        for container in started:
            container.remove()


def test_the_mapped_security_context_is_the_restricted_one(pods):
    # Guards the mapping itself: the pod must be restricted, and every field must reach docker.
    for pod, labels in pods.values():
        assert podsecurity.violations(pod) == [], labels
        args = podspec.run_args(pod)
        for expected in ("--read-only", "no-new-privileges", "ALL", "/tmp:size="):
            assert any(expected in arg for arg in args), (expected, args, labels)
        context = podsecurity.merge(pod.get("securityContext", {}), pod["containers"][0]["securityContext"])
        assert args[args.index("--user") + 1] == f"{context['runAsUser']}:{context['runAsGroup']}", labels


def test_ready_under_the_pod_security_context(servers):
    for server in servers:
        state = server.state()
        assert state["Running"] and not state["Restarting"], server.labels
        assert server.get("/v2/health/live")[0] == 200
        status, body = server.get(f"/v2/models/{MODEL}")
        assert status == 200, body
        assert json.loads(body)["name"] == MODEL


def test_rest_answers_equal_scikit_learn(servers, model):
    _, estimator, x = model
    tensor = {"name": "input-0", "datatype": "FP64", "shape": list(x.shape), "data": x.tolist()}
    for server in servers:
        status, body = server.get(f"/v2/models/{MODEL}/infer", json.dumps({"inputs": [tensor]}).encode())
        assert status == 200, body
        outputs = {out["name"]: out for out in json.loads(body)["outputs"]}
        np.testing.assert_array_equal(np.array(outputs["predict"]["data"]), estimator.predict(x))


def test_grpc_answers_equal_scikit_learn(servers, model):
    _, estimator, x = model

    async def call(port: int):
        client = InferenceGRPCClient(f"127.0.0.1:{port}", timeout=10)
        try:
            tensor = InferInput("input-0", list(x.shape), "FP64")
            tensor.set_data_from_numpy(x)
            return await client.infer(InferRequest(model_name=MODEL, infer_inputs=[tensor]))
        finally:
            await client.close()

    for server in servers:
        response = asyncio.run(call(server.grpc_port))
        answers = {out.name: out.as_numpy() for out in response.outputs}
        np.testing.assert_array_equal(answers["predict"], estimator.predict(x))


def test_a_client_mistake_is_a_400(servers):
    tensor = {"name": "input-0", "datatype": "FP64", "shape": [1, 3], "data": [1.0, 2.0, 3.0]}
    for server in servers:
        status, body = server.get(f"/v2/models/{MODEL}/infer", json.dumps({"inputs": [tensor]}).encode())
        assert status == 400, body


def test_metrics_count_both_protocols(servers):
    # After the REST and gRPC tests (file order), on the same containers.
    for server in servers:
        status, body = server.get("/metrics")
        assert status == 200
        text = body.decode()
        for protocol, code in (("rest", "200"), ("grpc", "OK")):
            line = f'serving_infer_requests_total{{model="{MODEL}",protocol="{protocol}",status="{code}"}}'
            assert line in text, f"{line} missing from /metrics:\n{text[:2000]}"


def helm_test_pod(protocol: str) -> dict:
    helm = find_tool("helm", "run `make helm` (installs helm 3.18 into .tools/bin)")
    pods = [doc for doc in render.find(render.helm_template(helm, (f"protocol={protocol}",)), "Pod")
            if doc["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert len(pods) == 1, f"expected one `helm test` pod with protocol={protocol}, found {len(pods)}"
    return pods[0]["spec"]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_the_helm_test_pod_passes_against_the_server(servers, images, protocol):
    # The test pod's own command, under its own security context, in the server pod's network: the
    # predictor Service's port 80 forwards to the routed container port, so that is what it gets here.
    pod = helm_test_pod(protocol)
    container = pod["containers"][0]
    command = list(container["command"])
    service = f"{MODEL}-predictor.{render.NAMESPACE}.svc.cluster.local"
    for server in servers:
        port = podspec.flag(server.args, "grpc_port" if protocol == "grpc" else "http_port")
        args = [arg.replace(f"{service}:80", f"127.0.0.1:{port}").replace(f"http://{service}/",
                                                                        f"http://127.0.0.1:{port}/")
                for arg in command]
        assert args != command, f"the test pod no longer targets {service}: {command[-2:]}"
        # REST's testImage (python:3.11-slim) cannot be pulled here; any image with python3 will do,
        # so the server image stands in. With gRPC the pod runs the server image itself.
        if protocol == "grpc":
            assert container["image"] == makefile_image("SERVING_IMAGE"), container["image"]
        done = docker("run", "--rm", "--network", f"container:{server.name}", *podspec.run_args(pod),
                      "--entrypoint", args[0], images["server"], *args[1:], timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        # The gRPC script prints "ready" only for ModelReadyResponse{ready: true}.
        assert (f"{MODEL} ready" if protocol == "grpc" else " 200") in done.stdout, done.stdout


def test_sigterm_exits_cleanly_within_the_grace_period(servers):
    # Last on these containers: it stops them.
    for server in servers:
        grace = podspec.grace_seconds(server.pod)
        started = time.monotonic()
        docker("kill", "--signal", "TERM", server.name)
        # `docker wait` blocks until the container stops; the kubelet would SIGKILL it after `grace`.
        done = docker("wait", server.name, timeout=grace + 5, check=False)
        elapsed = time.monotonic() - started
        logs = server.logs()
        assert done.returncode == 0 and done.stdout.strip() == "0", f"exit {done.stdout!r} {done.stderr!r}:\n{logs}"
        assert elapsed < grace, f"took {elapsed:.1f}s, grace is {grace}s"
        assert "Traceback" not in logs, logs
        report(f"server image ({len(server.labels)} renders): ready in {server.ready_s:.1f}s, "
               f"stopped by SIGTERM in {elapsed:.1f}s (grace {grace}s)")


def test_the_image_holds_no_compiler_no_tests_no_source_tree(images):
    done = docker("run", "--rm", "--network", "none", "--entrypoint", "python", images["server"], "-c", IMAGE_AUDIT,
                  timeout=120)
    audit = json.loads(done.stdout)
    assert audit["compilers"] == [], audit["compilers"]
    assert audit["tests"] == [] and audit["editable"] == [], audit
    assert audit["trees"] == [], f"source trees in the image: {audit['trees']}"
    assert "site-packages" in audit["serving_at"], audit["serving_at"]  # installed from the wheel
