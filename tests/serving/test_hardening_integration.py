"""The real server against hostile clients and faults (issue 10): each case on a `python -m serving` process.

- saturation: maximum-size bodies of tiny rows while probes are timed;
- slow or lying clients: a Content-Length larger than the body, a chunked body that never ends,
  headers a byte at a time (one and a hundred connections), a silent connection;
- too many requests at once: 503 with Retry-After, and the slots come back;
- SIGTERM under load: readiness 503 at once, every request sent before the signal answered, exit 0;
- kill -9 of the workers: the restarted ones log, count and limit like the first;
- bad settings: a clear line and exit 2, never a traceback.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import psutil
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pipelines.local.s3server import free_port
from serving_process import MODEL, ServingProcess

pytestmark = pytest.mark.integration

INFER = f"/v2/models/{MODEL}/infer"
PROBES = ("/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}")
SHORT = ["--header_timeout_s", "1", "--body_timeout_s", "1", "--idle_timeout_s", "1"]


def get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes, dict]:
    conn.request("POST", INFER, body, {"content-type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read(), dict(response.getheaders())


def rows_body(x: np.ndarray) -> bytes:
    return orjson.dumps({"inputs": [{"name": "input-0", "shape": list(x.shape), "datatype": "FP64",
                                     "data": x.tolist()}]})


def tiny_rows_body(limit: int = 8 * 1024 * 1024 - 64 * 1024) -> tuple[bytes, int]:
    """The most rows a body under ``limit`` holds (zeros): the costliest request per byte. (body, rows)"""
    row = b"[" + b",".join([b"0"] * 10) + b"],"
    head = b'{"inputs":[{"name":"input-0","shape":[%d,10],"datatype":"FP64","data":['
    rows = (limit - len(head) - 16) // len(row)
    return head % rows + (row * rows)[:-1] + b"]}]}", rows


def raw(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def read_to_close(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return out


@pytest.fixture(scope="module")
def small_forest_dir(tmp_path_factory, diabetes, write_model) -> Path:
    """10 trees: prediction is cheap, so a maximum-size body costs mostly its JSON decoding."""
    x, y, names = diabetes
    model = Pipeline([("scale", StandardScaler()),
                      ("model", RandomForestRegressor(n_estimators=10, random_state=0))]).fit(x, y)
    return write_model(tmp_path_factory.mktemp("small-forest"), model, "regression", names, x, version=1)


@pytest.fixture(scope="module")
def server(small_forest_dir):
    server = ServingProcess(small_forest_dir, *SHORT, "--max_concurrency", "8")
    try:
        server.wait_ready()
        server.wait_for_line("offload pool started")
        yield server
    finally:
        server.kill()


# -- saturation ----------------------------------------------------------------------------


def test_probes_stay_fast_while_maximum_size_bodies_are_served(server, small_forest_dir, diabetes) -> None:
    body, rows = tiny_rows_body()
    answers: list[tuple[int, bytes]] = []

    def send_big() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        status, content, _ = post(conn, body)
        answers.append((status, content))

    senders = [threading.Thread(target=send_big) for _ in range(4)]
    for sender in senders:
        sender.start()
    latencies = []
    small = rows_body(diabetes[0][:2])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        for path in PROBES:
            started = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
            assert response.status == 200, path
        started = time.perf_counter()
        assert post(conn, small)[0] == 200
        latencies.append(time.perf_counter() - started)  # a small inference is as quick as a probe
        time.sleep(0.05)
    for sender in senders:
        sender.join(timeout=240)
    latencies.sort()
    p99, worst = latencies[int(len(latencies) * 0.99)], latencies[-1]
    print(f"\n{len(latencies)} probes under 4 bodies of {len(body) / 2**20:.1f} MiB ({rows} rows): "
          f"median {np.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {worst * 1000:.1f} ms")
    # Kubernetes' probe timeout is >= 1 s; 100 ms is the goal. The worst single one allows a
    # scheduling hiccup on this shared 2-core machine.
    assert p99 < 0.1 and worst < 1.0, (p99, worst)
    assert [status for status, _ in answers] == [200] * 4
    assert all(len(orjson.loads(content)["outputs"][0]["data"]) == rows for _, content in answers)


# -- slow and lying clients ----------------------------------------------------------------

HEADERS = f"POST {INFER} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n".encode()


@pytest.mark.parametrize("opening, part", [
    pytest.param(HEADERS + b"Content-Length: 1000\r\n\r\n" + b'{"inputs"', "body", id="content-length-larger-than-body"),
    pytest.param(HEADERS + b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"inp\r\n", "body", id="chunked-never-ends"),
    pytest.param(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n", "headers", id="headers-never-end"),
    pytest.param(b"", "headers", id="silent-connection"),
])
def test_slow_or_lying_client_gets_408_and_is_closed_others_unaffected(server, diabetes, opening: bytes,
                                                                       part: str) -> None:
    started = time.monotonic()
    sock = raw(server.port, opening)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    quick = time.monotonic()
    assert post(conn, rows_body(diabetes[0][:3]))[0] == 200  # meanwhile, another client is served at once
    assert time.monotonic() - quick < 0.5
    answer = read_to_close(sock, timeout=5)
    took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert f"request {part} not received within 1 s".encode() in answer
    assert 0.9 < took < 3.0, took  # the 1 s timeout, not forever


def test_a_hundred_slowloris_connections_are_dropped_and_cost_others_nothing(server, diabetes) -> None:
    socks = [raw(server.port, b"G") for _ in range(100)]
    started = time.monotonic()
    dropped: set[int] = set()
    slowest = 0.0
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = rows_body(diabetes[0][:3])
    while len(dropped) < len(socks) and time.monotonic() - started < 5:
        for i, sock in enumerate(socks):  # a byte at a time, as slowloris does
            if i not in dropped:
                try:
                    sock.send(b"E")
                except OSError:
                    dropped.add(i)
        quick = time.perf_counter()
        assert post(conn, body)[0] == 200
        slowest = max(slowest, time.perf_counter() - quick)
        time.sleep(0.2)
    took = time.monotonic() - started
    for sock in socks:
        sock.close()
    assert len(dropped) == len(socks) and took < 3.0, (len(dropped), took)
    assert slowest < 0.5, slowest


def test_idle_kept_alive_connection_is_closed_after_the_idle_timeout(server) -> None:
    sock = raw(server.port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    answer = read_to_close(sock, timeout=5)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"408" not in answer
    assert 0.9 < time.monotonic() - started < 3.0


# -- concurrency limit ---------------------------------------------------------------------


def test_beyond_max_concurrency_503_with_retry_after_then_slots_return(server, diabetes) -> None:
    # 8 requests held in flight: headers sent, body still coming.
    held = [raw(server.port, HEADERS + b"Content-Length: 100\r\n\r\n{") for _ in range(8)]
    time.sleep(0.3)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    status, content, headers = post(conn, rows_body(diabetes[0][:3]))
    assert status == 503 and headers.get("retry-after") == "1", (status, content, headers)
    assert b"SERVING_MAX_CONCURRENCY" in content
    for path in PROBES:  # never refused
        assert get(server.port, path)[0] == 200
    assert all(read_to_close(sock, 5).startswith(b"HTTP/1.1 408 ") for sock in held)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    assert post(conn, rows_body(diabetes[0][:3]))[0] == 200  # the held slots were given back
    metrics = get(server.port, "/metrics")[1].decode()
    assert 'serving_refused_requests_total{reason="concurrency"}' in metrics
    assert 'serving_refused_requests_total{reason="body_timeout"}' in metrics


# -- graceful drain ------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_answers_every_request_sent_before_it(small_forest_dir, diabetes, workers: int) -> None:
    server = ServingProcess(small_forest_dir, "--workers", str(workers), "--drain_delay_s", "1", "--grace_s", "15")
    try:
        server.wait_ready()
        server.wait_for_line("Application startup complete", count=workers)
        server.wait_for_line("offload pool started", count=workers)  # the machine is quiet again
        body = rows_body(diabetes[0][:5])
        slow_body, _ = tiny_rows_body(2 * 1024 * 1024)  # offloaded: seconds in flight when SIGTERM lands
        signalled = threading.Event()
        signal_time = [0.0]
        outcomes: list[tuple[float, str]] = []  # (time the request was sent, "200" or the error)
        lock = threading.Lock()

        def client(payload: bytes) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            while True:
                sent = time.monotonic()
                try:
                    status, _, _ = post(conn, payload)
                    outcome = str(status)
                except (OSError, http.client.HTTPException) as exc:
                    outcome = type(exc).__name__
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                with lock:
                    outcomes.append((sent, outcome))
                if signalled.is_set() and outcome != "200" or payload is slow_body:
                    return
                if time.monotonic() > signal_time[0] + 5 and signalled.is_set():
                    return

        clients = [threading.Thread(target=client, args=(body,)) for _ in range(8)]
        clients += [threading.Thread(target=client, args=(slow_body,)) for _ in range(2)]
        for thread in clients:
            thread.start()
        time.sleep(2)
        signal_time[0] = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        signalled.set()
        ready_503 = None
        while time.monotonic() - signal_time[0] < 1.0:
            try:
                if get(server.port, "/v2/health/ready", timeout=1)[0] == 503:
                    ready_503 = time.monotonic() - signal_time[0]
                    break
            except OSError:
                pass
            time.sleep(0.02)
        for thread in clients:
            thread.join(timeout=60)
        assert server.proc.wait(timeout=30) == 0, server.log
        before = [outcome for sent, outcome in outcomes if sent < signal_time[0]]
        failed = [outcome for outcome in before if outcome != "200"]
        print(f"\n{len(before)} requests sent before SIGTERM, {len(failed)} failed; "
              f"{len(outcomes) - len(before)} after; readiness 503 after {ready_503}s")
        assert len(before) >= len(clients) and not failed, failed
        assert ready_503 is not None, "readiness never answered 503 while draining"
        deadline = time.monotonic() + 10
        while server.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = server.alive()
        assert not left, [" ".join(psutil.Process(pid).cmdline())[:120] for pid in left]
    finally:
        server.kill()


# -- worker restart ------------------------------------------------------------------------


def test_restarted_workers_log_count_and_limit_like_the_first(small_forest_dir, diabetes) -> None:
    server = ServingProcess(small_forest_dir, "--workers", "2", "--max_body_bytes", "4096", *SHORT,
                    env={"SERVING_OFFLOAD_BYTES": "0"})
    try:
        server.wait_ready()
        server.wait_for_line("Application startup complete", count=2)
        parent = psutil.Process(server.proc.pid)
        workers = [child for child in parent.children() if "spawn_main" in " ".join(child.cmdline())]
        assert len(workers) == 2
        for worker in workers:
            worker.kill()
        server.wait_for_line("Started new child process", count=2)
        server.wait_for_line("Application startup complete", count=4)
        server.wait_ready()
        restarted_from = len(server.lines)
        new = {child.pid for child in parent.children() if "spawn_main" in " ".join(child.cmdline())}
        assert not new & {worker.pid for worker in workers}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        for _ in range(20):
            assert post(conn, rows_body(diabetes[0][:3]))[0] == 200
            conn.close()  # a new connection each time: both workers answer
        status, content, _ = post(conn, rows_body(diabetes[0][:200]))  # > 4096 bytes
        assert status == 413 and b"4096" in content
        assert read_to_close(raw(server.port, b"GET / HTTP/1.1\r\n"), 5).startswith(b"HTTP/1.1 408 ")
        metrics = get(server.port, "/metrics")[1].decode()
        assert 'serving_infer_requests_total{model="diabetes-rf",protocol="rest",status="200"}' in metrics
        time.sleep(0.5)
        # Quiet: kserve's own set-up in a restarted worker logged a plain-text access line and a
        # kserve.trace line per request. Every line since the restart is JSON, and none is per request.
        restart = next(i for i, line in enumerate(server.lines) if "Started new child process" in line)
        since = server.lines[restart:]
        assert sum("Application startup complete" in line for line in since) == 2
        for line in since:
            entry = json.loads(line)
            assert entry["logger"] not in ("uvicorn.access", "kserve.trace"), line
        assert server.lines[restarted_from:] == [], "a line per request"
    finally:
        server.kill()


# -- bad settings --------------------------------------------------------------------------


@pytest.mark.parametrize("args, env, expected", [
    pytest.param([], {"SERVING_LOG_LEVEL": "LOUD"}, "SERVING_LOG_LEVEL='LOUD' is invalid", id="log-level"),
    pytest.param([], {"SERVING_ACCESS_LOG": "perhaps"}, "SERVING_ACCESS_LOG='perhaps'", id="access-log"),
    pytest.param(["--workers", "0"], {}, "--workers 0 is invalid", id="workers-0"),
    pytest.param([], {"SERVING_MAX_CONCURRENCY": "0"}, "SERVING_MAX_CONCURRENCY='0' is invalid", id="concurrency"),
    pytest.param(["--body_timeout_s", "soon"], {}, "--body_timeout_s='soon' is invalid", id="body-timeout-flag"),
    pytest.param([], {"SERVING_FAST_PATH": "maybe"}, "SERVING_FAST_PATH='maybe'", id="fast-path"),
    pytest.param(["--grpc_port", "{busy}"], {}, "gRPC port {busy} on 127.0.0.1 is already in use", id="busy-grpc-port"),
])
def test_bad_setting_is_one_clear_line_and_exit_2(small_forest_dir, args, env, expected) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        args = [arg.replace("{busy}", port) for arg in args]
        command = [sys.executable, "-m", "serving", "--model_dir", str(small_forest_dir), "--host", "127.0.0.1",
                   "--http_port", str(free_port()), *(["--grpc_port", str(free_port())] if "--grpc_port" not in args else []),
                   *args]
        done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert expected.replace("{busy}", port) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
