"""The real server process on loopback, serving the model the pipeline pushed to the local S3 server.

Runs the training pipeline (kfp.local) into the test S3 server, starts
``python -m serving --model_uri s3://...`` on free ports and talks to it over plain HTTP,
kserve's V2 REST and gRPC clients, and ``hey``; then a tampered model (never ready) and
``python -m pipelines.local.serve --demo`` (make run's last step).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import joblib
import numpy as np
import orjson
import pytest
from kserve.inference_client import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest

from components.objectstore import ObjectStore, StoreSettings
from pipelines.local.s3server import free_port
from tests.processes import MARKER_ENV, default_sigint, end_group, new_marker, wait_gone

pytestmark = pytest.mark.integration

BUCKET = "serving-tests"  # not the pipeline's bucket: other test folders push there
MODEL = "diabetes-rf"
MODEL_URI = f"s3://{BUCKET}/{MODEL}/production"
START_TIMEOUT_S = 30.0
DEMO_TIMEOUT_S = 90.0  # serving.local checks the store, starts the server, waits for ready, demos: load 15+ here
PIPELINE_TIMEOUT_S = 240
PIPELINE_YAML = Path(__file__).resolve().parents[2] / "pipelines" / "training_pipeline.yaml"


class Server:
    """A ``python -m ...`` server process with its log in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.log = log
        self.marker = new_marker()  # on its workers too: teardown finds them all
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving", *args, "--host", "127.0.0.1",
             "--http_port", str(self.http_port), "--grpc_port", str(self.grpc_port), "--enable_docs_url", "true"],
            env={**os.environ, **env, MARKER_ENV: self.marker}, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
            cwd=cwd, start_new_session=True,
        )

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited early:\n{self.log.read_text()}"
            try:
                urllib.request.urlopen(f"{self.base}/v2/health/live", timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server not listening after {START_TIMEOUT_S}s:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        end_group(self.proc.pid, self.marker)  # workers, and the server itself if it hung
        return self.proc.wait()


def get(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
        headers: dict | None = None) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read()


def rows_body(rows: np.ndarray, datatype: str = "FP64") -> bytes:
    tensor = {"name": "input-0", "datatype": datatype, "shape": list(rows.shape), "data": rows.tolist()}
    return orjson.dumps({"inputs": [tensor]})


@pytest.fixture(scope="module")
def pushed(s3_server, tmp_path_factory) -> dict:
    """Train and push with the real pipeline (kfp.local, `make run`'s first half) into the test S3 server."""
    work = tmp_path_factory.mktemp("pipeline")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.local.run", "--package", str(PIPELINE_YAML), "--param", f"bucket={BUCKET}",
         "--param", f"model_name={MODEL}", "--pipeline-root", str(work / "outputs")],
        env={**os.environ, **s3_server.env()}, cwd=work, capture_output=True, text=True, timeout=PIPELINE_TIMEOUT_S,
    )
    assert result.returncode == 0 and "decision: DEPLOYED" in result.stdout, result.stdout + result.stderr
    store = ObjectStore(StoreSettings.from_env(env=s3_server.env()))
    folder = work / "production"
    folder.mkdir()
    for name in ("model.joblib", "model.skops", "metadata.json"):
        (folder / name).write_bytes(store.get_bytes(BUCKET, f"{MODEL}/production/{name}"))
    metadata = json.loads((folder / "metadata.json").read_text())
    return {"version": str(metadata["version"]), "sha256": metadata["sha256"], "folder": folder,
            "estimator": joblib.load(folder / "model.joblib")}


@pytest.fixture(scope="module")
def regressor(pushed):
    """The very estimator the pipeline pushed: the server's answers must equal its predict."""
    return pushed["estimator"]


@pytest.fixture(scope="module")
def server(s3_server, pushed, tmp_path_factory):
    server = Server(["--model_uri", MODEL_URI, "--model_name", MODEL], s3_server.env(),
                    tmp_path_factory.mktemp("server") / "server.log")
    try:
        server.wait_listening()
        yield server
    finally:
        code = server.stop()
    log = server.log.read_text()
    assert code == 0, f"server exit code {code}:\n{log}"
    for noise in ("Traceback", "Warning", "deprecated"):
        assert noise not in log, f"{noise!r} in the server log:\n{log}"


@pytest.fixture
def conn(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    yield connection
    connection.close()


def test_every_endpoint(conn, pushed, diabetes) -> None:
    expect = {
        "/v2": lambda b: json.loads(b)["name"] == "kserve",
        "/v2/health/live": lambda b: json.loads(b) == {"live": True},
        "/v2/health/ready": lambda b: json.loads(b) == {"ready": True},
        "/v2/models": lambda b: json.loads(b) == {"models": [MODEL]},
        f"/v2/models/{MODEL}/ready": lambda b: json.loads(b) == {"name": MODEL, "ready": True},
        f"/v2/models/{MODEL}/versions/{pushed['version']}/ready": lambda b: json.loads(b)["ready"] is True,
        f"/v2/models/{MODEL}": lambda b: json.loads(b)["inputs"][0]["shape"] == [-1, 10],
        f"/v2/models/{MODEL}/versions/{pushed['version']}": lambda b: json.loads(b)["versions"] == [pushed["version"]],
        "/metrics": lambda b: b"python_info" in b,
        "/openapi.json": lambda b: "/v2/models/{model_name}/infer" in json.loads(b)["paths"],
        "/docs": lambda b: b"swagger" in b.lower(),
    }
    for path, check in expect.items():
        status, body = get(conn, "GET", path)
        assert status == 200 and check(body), (path, status, body[:300])
    meta = json.loads(get(conn, "GET", f"/v2/models/{MODEL}")[1])
    assert meta["inputs"][0]["parameters"]["feature_names"] == diabetes[2]
    assert meta["parameters"]["sha256"] == pushed["sha256"]
    for path in (f"/v2/models/{MODEL}/infer", f"/v2/models/{MODEL}/versions/{pushed['version']}/infer"):
        status, body = get(conn, "POST", path, rows_body(diabetes[0][:1]))
        assert status == 200 and json.loads(body)["model_version"] == pushed["version"]


def test_plain_http_answers_equal_sklearn(conn, regressor, diabetes) -> None:
    x = diabetes[0][:50]
    status, body = get(conn, "POST", f"/v2/models/{MODEL}/infer", rows_body(x), {"Content-Type": "application/json"})
    assert status == 200
    np.testing.assert_array_equal(json.loads(body)["outputs"][0]["data"], regressor.predict(x))
    # Single rows, bit for bit: test_single_row_answers_equal_sklearn_on_that_row_bit_for_bit.


def single_rows(conn, x: np.ndarray) -> list[float]:
    return [json.loads(get(conn, "POST", f"/v2/models/{MODEL}/infer", rows_body(row[None], "FP64"))[1])
            ["outputs"][0]["data"][0] for row in x]


def test_single_row_answers_equal_sklearn_on_that_row_bit_for_bit(conn, regressor, diabetes) -> None:
    """Each single-row answer is bit for bit scikit-learn's predict on that one row, as the server parsed it.

    Not predict on the 10-row batch: the pushed model is the pipeline's winner (today StandardScaler +
    Ridge on diabetes), and Ridge.predict is ``X @ coef_``. numpy hands a (1, 10) matrix to BLAS's dot kernel and a
    (10, 10) one to gemv, which add the 10 products in different orders, so scikit-learn itself answers
    one row and the same row inside a batch up to 1 ulp apart (4 of these 10 rows, OpenBLAS 0.3.31 here).
    Trees add leaf values in tree order whatever the batch, so forests are bit-identical either way.
    """
    x = diabetes[0][:10]
    sent = np.array([orjson.loads(rows_body(row[None]))["inputs"][0]["data"][0] for row in x])
    assert sent.dtype == np.float64 and np.array_equal(sent, x)  # the JSON round trip loses no bit
    np.testing.assert_array_equal(single_rows(conn, x), [regressor.predict(row[None])[0] for row in x])


def v2_request(rows: np.ndarray) -> InferRequest:
    tensor = InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=False)
    return InferRequest(MODEL, [tensor], request_id="it-1")


def test_kserve_rest_client(server, regressor, diabetes) -> None:
    x = diabetes[0][100:130]

    async def call():
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=10))
        try:
            ready = await client.is_model_ready(server.base, MODEL)
            response = await client.infer(server.base, v2_request(x), model_name=MODEL)
        finally:
            await client.close()
        return ready, response

    ready, response = asyncio.run(call())
    assert ready is True and response.id == "it-1"
    np.testing.assert_array_equal(response.outputs[0].as_numpy(), regressor.predict(x))


def test_kserve_grpc_client(server, regressor, diabetes) -> None:
    x = diabetes[0][200:205]
    before = _counter(server, "OK", "grpc"), _counter(server, "INVALID_ARGUMENT", "grpc")

    async def call():
        client = InferenceGRPCClient(f"127.0.0.1:{server.grpc_port}", timeout=10, retries=2)
        try:
            ready = await client.is_server_ready(), await client.is_model_ready(MODEL)
            response = await client.infer(v2_request(x))
            with pytest.raises(grpc.RpcError) as refused:
                await client.infer(v2_request(x[:, :3]))
            return ready, response, refused.value
        finally:
            await client.close()

    ready, response, refused = asyncio.run(call())
    assert ready == (True, True)
    np.testing.assert_array_equal(response.outputs[0].as_numpy(), regressor.predict(x))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "3 features per row; this model takes 10" in refused.details()
    # gRPC inference lands in the same Prometheus series as REST, labelled protocol="grpc".
    after = _counter(server, "OK", "grpc"), _counter(server, "INVALID_ARGUMENT", "grpc")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


def test_client_mistakes_get_errors_on_one_kept_alive_connection(conn, server) -> None:
    infer = f"/v2/models/{MODEL}/infer"
    good = rows_body(np.zeros((1, 10)))
    mistakes = [
        ("POST", infer, b"{bad", 400, "malformed JSON"),
        ("POST", infer, b'{"inputs": []}', 400, "'inputs' is []"),
        ("POST", infer, rows_body(np.zeros((1, 3))), 400, "3 features per row"),
        ("POST", infer, b'{"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [2, 10], "data": [1]}]}',
         400, "needs 20 values"),
        ("POST", infer, good.replace(b"FP64", b"BYTES"), 400, "datatype is 'BYTES'"),
        ("POST", infer, good.replace(b"0.0", b'"a"', 1), 400, "expected only numbers"),
        ("POST", infer, rows_body(np.full((1, 10), 1e300), "FP32"), 400, "expected finite numbers"),
        ("POST", infer, b"x" * (9 * 1024 * 1024), 413, "the limit is"),
        ("POST", "/v2/models/nope/infer", good, 404, "does not exist"),
        ("GET", "/v2/models/nope", None, 404, "does not exist"),
    ]
    for method, path, body, status, message in mistakes:
        got_status, got_body = get(conn, method, path, body)
        assert (got_status, message in json.loads(got_body)["error"]) == (status, True), (path, got_body[:200])
        assert get(conn, "POST", infer, good)[0] == 200  # same connection still serves


def test_hey_short_run_has_no_errors(server, tmp_path) -> None:
    hey = shutil.which("hey")
    if hey is None:
        pytest.skip("hey is not installed (Debian package 'hey'; `make test` installs it)")
    body = tmp_path / "row.json"
    body.write_bytes(rows_body(np.zeros((1, 10))))
    before = _counter(server, "200")
    out = subprocess.run(
        [hey, "-n", "200", "-c", "4", "-t", "10", "-m", "POST", "-T", "application/json", "-D", str(body),
         f"{server.base}/v2/models/{MODEL}/infer"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert re.search(r"\[200\]\s+200 responses", out), out
    assert "Error distribution" not in out, out
    assert _counter(server, "200") - before == 200


def _counter(server: Server, status: str, protocol: str = "rest") -> float:
    text = urllib.request.urlopen(f"{server.base}/metrics", timeout=5).read().decode()
    match = re.search(rf'serving_infer_requests_total{{model="{MODEL}",protocol="{protocol}",status="{status}"}} (\S+)', text)
    return float(match.group(1)) if match else 0.0


def test_tampered_model_is_never_ready(pushed, tmp_path) -> None:
    folder = Path(shutil.copytree(pushed["folder"], tmp_path / "model"))
    (folder / "model.joblib").write_bytes((folder / "model.joblib").read_bytes()[:-1] + b"\0")
    server = Server(["--model_dir", str(folder), "--model_name", MODEL], {}, tmp_path / "server.log")
    try:
        server.wait_listening()
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=5)
        for _ in range(3):  # it stays so: nothing retries its way to ready
            assert get(conn, "GET", "/v2/health/live")[0] == 200
            status, body = get(conn, "GET", "/v2/health/ready")
            assert status == 503 and b"sha256" in body
            status, body = get(conn, "GET", f"/v2/models/{MODEL}/ready")
            assert status == 503 and b"sha256 of model.joblib" in body
            assert get(conn, "POST", f"/v2/models/{MODEL}/infer", rows_body(np.zeros((1, 10))))[0] == 503
            time.sleep(0.3)
        conn.close()
    finally:
        server.stop()
    log = server.log.read_text()
    assert "model not loaded, it stays not ready" in log and "refusing the model" in log


def _read_until(stream, marker: str, timeout: float) -> str:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.2))
        except queue.Empty:
            continue
        if marker in seen[-1]:
            return "".join(seen)
    raise AssertionError(f"{marker!r} not printed within {timeout}s:\n{''.join(seen)}")


def test_make_serve_demo_answers_then_stops_on_ctrl_c(s3_server, pushed, tmp_path) -> None:
    port, grpc_port, marker = free_port(), free_port(), new_marker()
    # As at a terminal: its own group, and Ctrl-C live even when this test inherited it ignored.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.local.serve", "--demo", "--port", str(port), "--grpc-port", str(grpc_port),
         "--model-uri", MODEL_URI],
        env={**os.environ, **s3_server.env(), MARKER_ENV: marker}, cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=default_sigint,
    )
    try:
        out = _read_until(proc.stdout, "Serving until Ctrl-C", DEMO_TIMEOUT_S)
        assert f"version {pushed['version']}" in out and "Answer (HTTP 200)" in out
        assert f"curl -s http://127.0.0.1:{port}/v2/models/{MODEL}" in out
        assert "hey -n 2000 -c 16 -m POST -T application/json -D .data/sample-request.json" in out
        sample = json.loads((tmp_path / ".data/sample-request.json").read_text())
        assert sample["inputs"][0]["shape"] == [1, 10]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert wait_gone(marker, 10) == set(), "the model server outlived serving.local"
    finally:
        end_group(proc.pid, marker)
        proc.wait(timeout=10)
    with socket_closed(port):
        pass


class socket_closed:
    """Asserts nothing listens on the port any more (the server went down with pipelines.local.serve)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def __enter__(self) -> None:
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/health/live", timeout=1)

    def __exit__(self, *exc) -> None:
        return None


def test_make_serve_without_a_model_says_so(s3_server, tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.local.serve", "--port", str(free_port()), "--grpc-port", str(free_port()),
         "--model-uri", f"s3://{BUCKET}/no-such-model/production"],
        env={**os.environ, **s3_server.env()}, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert f"no model at s3://{BUCKET}/no-such-model/production yet: run `make run` first" in result.stderr
