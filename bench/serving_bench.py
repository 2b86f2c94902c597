"""Serving benchmark: this project's V2 server next to the usual ways of serving the same model.

    .venv/bin/python bench/serving_bench.py            # all servers, 5 s per load (about 6 minutes)
    .venv/bin/python bench/serving_bench.py --quick    # 2 s per load, no repeated start-up timing
    .venv/bin/python bench/serving_bench.py --only ours,kserve-predict
    .venv/bin/python bench/serving_bench.py load [--url http://127.0.0.1:8080]   # what `make load` runs

The model: RandomForestRegressor(n_estimators=100) on sklearn's diabetes data, built by the
project's own ingest/train/evaluate steps, with metadata.json from the push step's builder.
Every server gets that same model.joblib. One after another, each server runs pinned to core 0
(taskset -c 0) on a free loopback port, and hey, pinned to core 1, sends V2 REST bodies of 1 and
32 rows at concurrency 1 and 16 for a fixed time, after a short warm-up. The table gives req/s,
latency percentiles, errors (non-2xx answers and transport errors) and the ratio to server 1 (a
plain kserve.Model calling predict, which is what KServe's sklearn runtime does) for the same
load. ``ab`` re-measures one load as a cross-check. Also measured: our server's start-to-ready
time, our server with 2 workers on both cores (req/s and RSS per process), and the prediction
engine in-process against scikit-learn's predict. The table goes to bench/out/serving.md (--out DIR;
--update-results also rewrites the committed bench/results/serving.md) with the machine and the date. Heavy modules are imported only where needed, so ``load`` runs
on the standard library alone.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from components.artifacts import DEFAULT_MODEL_NAME

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".data" / "bench"  # git-ignored: model folder, bodies, MLServer venv and configs
OUT = REPO / "bench" / "out"  # git-ignored: where a run's table goes unless --out says otherwise
RESULTS = REPO / "bench" / "results" / "serving.md"  # the committed table: written only with --update-results
REPORT_FILE = "serving.md"
SERVERS_DIR = REPO / "bench" / "servers"
PYTHON = sys.executable

MODEL_NAME = DEFAULT_MODEL_NAME
DATA_SOURCE = "sklearn:diabetes"
N_TREES = 100
SERVER_CORE, LOAD_CORE = "0", "1"
ROWS = (1, 32)
CONCURRENCY = (1, 16)
SECONDS, QUICK_SECONDS = 5, 2
WARMUP_REQUESTS = 300
READY_TIMEOUT_S = 90.0
REQUEST_TIMEOUT_S = 10  # hey -t / ab -s: one request
TOOL_GRACE_S = 60  # a load run may take this much longer than asked before it is killed
START_REPEATS = 3
GRPC_INFER_PATH = "inference.GRPCInferenceService/ModelInfer"
LOAD_DEFAULTS = {"url": "http://127.0.0.1:8080", "requests": 2000, "concurrency": 16}

MLSERVER_VENV = WORK / "mlserver-venv"
# uvloop 0.23 leaves MLServer 1.7.1's inference worker without its model (SeldonIO/MLServer#2286).
MLSERVER_PINS = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0", "scikit-learn==1.9.1",
                 "joblib==1.6.0", "numpy==2.4.6")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Load generators


@dataclass
class Load:
    tool: str
    rows: int
    concurrency: int  # connections for hey/ab; concurrent streams on one connection for h2load
    rps: float = float("nan")
    p50: float = float("nan")  # milliseconds
    p90: float = float("nan")
    p99: float = float("nan")
    requests: int = 0
    errors: int = 0
    note: str = ""
    protocol: str = "REST"


class ToolMissing(RuntimeError):
    pass


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} is not installed: run `make apt-tools` (apt-get install -y hey apache2-utils)")
    return path


def _pinned(core: str | None, argv: list[str]) -> list[str]:
    return argv if core is None else ["taskset", "-c", core, *argv]


def _run_tool(argv: list[str], budget_s: float) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=budget_s + TOOL_GRACE_S)
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout + done.stderr


def run_hey(url: str, body: Path, rows: int, concurrency: int, *, seconds: float | None = None,
            requests: int | None = None, core: str | None = LOAD_CORE) -> Load:
    """hey for a fixed time (-z) or count (-n); keep-alive connections, as clients normally use."""
    bound = ["-z", f"{seconds}s"] if seconds else ["-n", str(requests)]
    argv = _pinned(core, [_tool("hey"), *bound, "-c", str(concurrency), "-t", str(REQUEST_TIMEOUT_S),
                          "-m", "POST", "-T", "application/json", "-D", str(body), url])
    text = _run_tool(argv, seconds or REQUEST_TIMEOUT_S * 6)
    # hey -n N -c C sends C workers N // C requests each
    return parse_hey(text, rows, concurrency, expected=requests and requests // concurrency * concurrency)


def parse_hey(text: str, rows: int, concurrency: int, expected: int | None = None) -> Load:
    load = Load("hey", rows, concurrency)
    if "Requests/sec" not in text:
        load.note = "hey did not finish"
        return load
    load.rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    for pct, attr in (("50", "p50"), ("90", "p90"), ("99", "p99")):
        found = re.search(rf"\s{pct}% in ([\d.]+) secs", text)
        setattr(load, attr, float(found.group(1)) * 1000 if found else float("nan"))
    if load.p99 != load.p99:
        load.note = "hey printed no 99th percentile (too few requests in the run)"
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    transport = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s+(?:Get|Post|dial|read)", text, re.M))
    load.requests = sum(codes.values()) + transport
    load.errors = sum(n for c, n in codes.items() if not 200 <= c < 300) + transport
    if expected is not None and load.requests < expected:
        load.errors += expected - load.requests
    return load


def run_ab(url: str, body: Path, rows: int, concurrency: int, requests: int, core: str | None = LOAD_CORE) -> Load:
    argv = _pinned(core, [_tool("ab"), "-q", "-k", "-n", str(requests), "-c", str(concurrency),
                          "-s", str(REQUEST_TIMEOUT_S), "-p", str(body), "-T", "application/json", url])
    return parse_ab(_run_tool(argv, REQUEST_TIMEOUT_S * 6), rows, concurrency)


def parse_ab(text: str, rows: int, concurrency: int) -> Load:
    load = Load("ab", rows, concurrency)
    found = re.search(r"Requests per second:\s+([\d.]+)", text)
    if not found:
        load.note = "ab did not finish: " + (text.strip().splitlines() or ["no output"])[-1]
        return load
    load.rps = float(found.group(1))
    load.requests = int(re.search(r"Complete requests:\s+(\d+)", text).group(1))
    failed = re.search(r"Failed requests:\s+(\d+)", text)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", text)
    load.errors = int(failed.group(1) if failed else 0) + int(non2xx.group(1) if non2xx else 0)
    for pct, attr in (("50", "p50"), ("90", "p90"), ("99", "p99")):
        hit = re.search(rf"^\s+{pct}%\s+(\d+)", text, re.M)
        setattr(load, attr, float(hit.group(1)) if hit else float("nan"))
    keep_alive = re.search(r"Keep-Alive requests:\s+(\d+)", text)
    load.note = f"{int(keep_alive.group(1)) if keep_alive else 0} of {load.requests} on kept-alive connections"
    return load


def run_h2load(port: int, frame: Path, rows: int, streams: int, seconds: float, log_path: Path,
               core: str | None = LOAD_CORE) -> Load:
    """h2load posting one serialized gRPC ModelInfer frame over ``streams`` concurrent streams of one
    HTTP/2 connection (how a gRPC channel carries concurrent calls), for a fixed time.

    h2load sees HTTP statuses only; a gRPC error travels in the trailers with HTTP 200, so the
    caller counts gRPC errors from the server's Prometheus series (``grpc_status_counts``).
    """
    log_path.unlink(missing_ok=True)
    argv = _pinned(core, [_tool("h2load"), "-c", "1", "-m", str(streams), "-D", f"{seconds:g}", "--warm-up-time", "1",
                          "-d", str(frame), "-H", "content-type: application/grpc", "-H", "te: trailers",
                          f"--log-file={log_path}", f"http://127.0.0.1:{port}/{GRPC_INFER_PATH}"])
    load = parse_h2load(_run_tool(argv, seconds + 1), rows, streams)
    if log_path.exists():
        _percentiles(load, [int(line.split("\t")[2]) / 1000 for line in log_path.read_text().splitlines()
                            if line.count("\t") >= 2])
    if load.p99 != load.p99 and not load.note:
        load.note = "h2load wrote no per-request log: no percentiles"
    return load


def parse_h2load(text: str, rows: int, streams: int) -> Load:
    load = Load("h2load", rows, streams, protocol="gRPC")
    found = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text)
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                     r"(\d+) errored, (\d+) timeout", text)
    if not (found and done):
        load.note = "h2load did not finish: " + (text.strip().splitlines() or ["no output"])[-1][:200]
        return load
    load.rps = float(found.group(1))
    load.requests = int(done.group(2))
    load.errors = int(done.group(4)) + int(done.group(5)) + int(done.group(6))
    return load


def _percentiles(load: Load, latencies_ms: list[float]) -> None:
    if not latencies_ms:
        return
    ordered = sorted(latencies_ms)
    for fraction, attr in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
        setattr(load, attr, ordered[min(len(ordered) - 1, int(len(ordered) * fraction))])


def grpc_status_counts(http_port: int) -> dict[str, float]:
    """The server's gRPC ModelInfer calls so far, by status name (its Prometheus series)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for labels, value in re.findall(r'^serving_infer_requests_total\{([^}]*)\} ([\d.e+]+)$', text, re.M):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if fields.get("protocol") == "grpc":
            counts[fields["status"]] = counts.get(fields["status"], 0) + float(value)
    return counts


def v2_body(name: str, rows: list[list[float]]) -> str:
    flat = [value for row in rows for value in row]
    return json.dumps({"inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])],
                                   "datatype": "FP64", "data": flat}]})


# ----------------------------------------------------------------------------------------------
# Servers


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int


@dataclass(frozen=True)
class Server:
    key: str
    label: str
    command: Callable[[Ports, Path], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    missing: Callable[[], str | None] = lambda: None  # why it cannot run here, or None
    grpc: bool = False  # also measured over gRPC ModelInfer (h2load), beside its REST rows
    cwd: Path = REPO  # where it starts: a REST baseline runs another commit's serving/ from its folder


def free_ports() -> Ports:
    from pipelines.local.s3server import free_port

    return Ports(free_port(), free_port(), free_port())


def _ours_missing() -> str | None:
    if not (REPO / "serving" / "__main__.py").exists():
        return "serving/__main__.py does not exist yet (the V2 server is being written)"
    return None


def _ours(ports: Ports, model_dir: Path, *extra: str) -> list[str]:
    return [PYTHON, "-m", "serving", "--model_dir", str(model_dir), "--model_name", MODEL_NAME,
            "--http_port", str(ports.http), "--grpc_port", str(ports.grpc), "--host", "127.0.0.1", *extra]


def _kserve(ports: Ports, model_dir: Path, *extra: str) -> list[str]:
    return [PYTHON, str(SERVERS_DIR / "kserve_predict.py"), "--model_dir", str(model_dir),
            "--model_name", MODEL_NAME, "--http_port", str(ports.http), *extra]


def _fastapi(ports: Ports, model_dir: Path) -> list[str]:
    return [PYTHON, str(SERVERS_DIR / "fastapi_predict.py"), "--model_dir", str(model_dir),
            "--model_name", MODEL_NAME, "--http_port", str(ports.http)]


def _mlserver_missing() -> str | None:
    return None if (MLSERVER_VENV / ".installed").exists() else "its venv could not be built (see above)"


def _mlserver(parallel_workers: int | None, batch: bool) -> Callable[[Ports, Path], list[str]]:
    """Write an MLServer repository for this variant, return the command that serves it."""

    def command(ports: Ports, model_dir: Path) -> list[str]:
        variant = WORK / "mlserver" / f"pw{parallel_workers}-batch{int(batch)}"
        model_folder = variant / MODEL_NAME
        model_folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / "model.joblib", model_folder / "model.joblib")
        settings = {"host": "127.0.0.1", "http_port": ports.http, "grpc_port": ports.grpc,
                    "metrics_port": ports.metrics}
        if parallel_workers is not None:
            settings["parallel_workers"] = parallel_workers
        model_settings = {"name": MODEL_NAME, "implementation": "mlserver_sklearn.SKLearnModel",
                          "parameters": {"uri": "./model.joblib"}}
        if batch:
            model_settings.update(max_batch_size=32, max_batch_time=0.005)
        (variant / "settings.json").write_text(json.dumps(settings, indent=2))
        (model_folder / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        return [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(variant)]

    return command


BASELINE = "kserve-predict"
OURS = "ours"
KSERVE_ROUTE = "ours-kserve-route"  # same engine and batcher behind kserve's own REST handler
REST_BASELINE = "ours-at-"  # + a git ref (--rest-baseline): this server's REST as that commit had it
# Issue 5's targets for OURS, checked in every report.
TARGET_RATIO, TARGET_P99_MS, TARGET_C1_P50_MS, TARGET_READY_S = 10.0, 25.0, 2.0, 3.0
# Issue 9's: gRPC against REST on the same server and core, 1 row, 16 streams / connections.
TARGET_GRPC_RATIO, TARGET_GRPC_P99_MS = 0.8, 5.0
SERVERS = [
    Server(BASELINE, "1. kserve.Model + predict (KServe sklearn runtime)", _kserve),
    Server("mlserver-default", "2a. MLServer 1.7.1, default settings", _mlserver(None, False),
           missing=_mlserver_missing),
    Server("mlserver-pw0", "2b. MLServer, parallel_workers=0", _mlserver(0, False), missing=_mlserver_missing),
    Server("mlserver-batch", "2c. MLServer, adaptive batching 32 / 5 ms", _mlserver(None, True),
           missing=_mlserver_missing),
    Server("mlserver-batch-pw0", "2d. MLServer, batching 32 / 5 ms, parallel_workers=0", _mlserver(0, True),
           missing=_mlserver_missing),
    Server("fastapi", "3. FastAPI + uvicorn + predict", _fastapi),
    Server("kserve-noop", "4. kserve.Model, no predict (framework floor)", lambda p, m: _kserve(p, m, "--noop")),
    Server("ours-plain", "5a. this server, engine, route and batching off", _ours,
           env={"SERVING_FAST_PATH": "0", "SERVING_FAST_ROUTE": "0", "SERVING_BATCHING": "0"}, missing=_ours_missing),
    Server("ours-no-batching", "5b. this server, batching off", _ours, env={"SERVING_BATCHING": "0"},
           missing=_ours_missing),
    Server(KSERVE_ROUTE, "5c. this server, fast route off (kserve's V2 REST handler)", _ours,
           env={"SERVING_FAST_ROUTE": "0"}, missing=_ours_missing),
    Server(OURS, "5. this server, default configuration", _ours, missing=_ours_missing, grpc=True),
]


GRPC_CEILING = Server("grpc-ceiling", "6. grpcio threaded server answering a constant (gRPC ceiling)",
                      lambda p, m: [PYTHON, str(SERVERS_DIR / "grpc_constant.py"), "--http_port", str(p.http),
                                    "--grpc_port", str(p.grpc)], grpc=True)
EXTRAS = ("start", "workers", "engine", GRPC_CEILING.key)  # --only keys beside the servers'


class ServerFailed(RuntimeError):
    pass


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


@contextlib.contextmanager
def running(argv: list[str], ports: Ports, env: dict[str, str], log_path: Path,
            core: str | None = SERVER_CORE, cwd: Path = REPO) -> Iterator[tuple[subprocess.Popen, float]]:
    """Start a server in its own process group; yield it with its start-to-ready seconds; stop it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    ready_url = f"http://127.0.0.1:{ports.http}/v2/health/ready"
    with log_path.open("w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(_pinned(core, argv), stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                   env={**os.environ, **env}, start_new_session=True)
        try:
            while _get(ready_url, timeout=1.0) != 200:
                if process.poll() is not None:
                    raise ServerFailed(f"exited with code {process.returncode}: {_last_line(log_path)}")
                if time.perf_counter() - started > READY_TIMEOUT_S:
                    raise ServerFailed(f"not ready after {READY_TIMEOUT_S:.0f} s: {_last_line(log_path)}")
                time.sleep(0.02)
            yield process, time.perf_counter() - started
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # the group this harness created: server and its workers
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def rss_by_process(root: int) -> list[tuple[str, float]]:
    """(role, MiB resident) for a process and its descendants, read from Linux /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    result, todo = [], [root]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError, AttributeError):
            mib = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            role = "parent" if pid == root else "worker" if b"spawn_main" in cmdline else "helper"
            result.append((role, mib))
        todo.extend(children.get(pid, []))
    return sorted(result, key=lambda item: ("parent", "worker", "helper").index(item[0]))


# ----------------------------------------------------------------------------------------------
# Model and bodies


def build_model_folder(dest: Path) -> Path:
    """The bench model, made by the project's own pipeline steps (no object store needed)."""
    from components import evaluate, ingest, push, train
    from components.artifacts import METADATA_FILE, MODEL_FILE, SKOPS_FILE, TRAINING_FILE, read_json, write_json

    steps = dest.parent / "steps"
    shutil.rmtree(dest, ignore_errors=True)
    steps.mkdir(parents=True, exist_ok=True)
    config = ingest.IngestConfig()
    schema, train_set, test_set = steps / "schema.json", steps / "train.csv", steps / "test.csv"
    ingest.run(source=DATA_SOURCE, config=config, train_path=train_set, test_path=test_set, schema_path=schema)
    train.run(train_path=train_set, schema_path=schema, model_dir=dest, estimator="random_forest",
              hyperparameters={"n_estimators": N_TREES}, seed=config.seed)
    evaluation = evaluate.run(test_path=test_set, schema_path=schema, model_dir=dest, threshold=0.0,
                              model_name=MODEL_NAME, bucket="models", store=None, data_source=DATA_SOURCE,
                              seed=config.seed, test_fraction=config.test_fraction,
                              evaluation_path=steps / "evaluation.json", report_path=steps / "report.md")
    training = read_json(dest / TRAINING_FILE, "training record")
    skops = push.skops_bytes(dest)  # what this project's server loads (it never unpickles)
    (dest / SKOPS_FILE).write_bytes(skops)
    metadata = push.build_metadata(MODEL_NAME, 1, (dest / MODEL_FILE).read_bytes(), training,
                                   read_json(schema, "schema"), evaluation, "serving-bench",
                                   dt.datetime.now(dt.timezone.utc), skops=skops)
    write_json(dest / METADATA_FILE, metadata)
    (dest / TRAINING_FILE).unlink()  # the served folder: model.joblib, model.skops, metadata.json
    return dest


def write_bodies(folder: Path) -> dict[int, Path]:
    from sklearn.datasets import load_diabetes

    x = load_diabetes().data
    bodies = {}
    for rows in ROWS:
        path = folder / f"body-{rows}-rows.json"
        path.write_text(v2_body(MODEL_NAME, x[:rows].tolist()))
        bodies[rows] = path
    return bodies


def grpc_request(rows: int):
    """A ModelInferRequest of the first ``rows`` diabetes rows as raw contents (tritonclient's default)."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from sklearn.datasets import load_diabetes

    x = load_diabetes().data[:rows]
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=list(x.shape))
    return pb.ModelInferRequest(model_name=MODEL_NAME, inputs=[tensor], raw_input_contents=[x.astype("<f8").tobytes()])


def write_grpc_frames(folder: Path) -> dict[int, Path]:
    """Each request as one gRPC length-prefixed message (flag 0 = uncompressed, 4-byte big-endian size)."""
    frames = {}
    for rows in ROWS:
        message = grpc_request(rows).SerializeToString()
        path = folder / f"frame-{rows}-rows.grpc"
        path.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
        frames[rows] = path
    return frames


def grpc_answer_problem(port: int, expected: dict[int, list[float]]) -> str | None:
    """None when gRPC ModelInfer answers raw contents equal to scikit-learn's (1e-9 relative), else what differs."""
    import grpc
    import numpy as np
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        for rows, want in expected.items():
            try:
                response = stub.ModelInfer(grpc_request(rows), timeout=REQUEST_TIMEOUT_S)
            except grpc.RpcError as exc:
                return f"{rows}-row gRPC request failed: {exc.code().name} {exc.details()}"
            if not response.raw_output_contents:
                return f"{rows}-row gRPC answer has no raw_output_contents (the request was raw)"
            got = np.frombuffer(response.raw_output_contents[0], "<f8").tolist()
            if len(got) != len(want) or any(abs(g - w) > 1e-9 * abs(w) for g, w in zip(got, want)):
                return f"{rows}-row gRPC answer {got[:3]}… differs from scikit-learn's {want[:3]}…"
    return None


def export_baseline(ref: str) -> Path:
    """The serving code at git ``ref`` (and the packages it imports), in a folder to start it from."""
    sha = subprocess.run(["git", "rev-parse", "--short", f"{ref}^{{commit}}"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    folder = WORK / f"baseline-{sha}"
    if not (folder / "serving" / "__main__.py").exists():
        folder.mkdir(parents=True, exist_ok=True)
        tree = subprocess.run(["git", "ls-tree", "--name-only", sha], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.split()
        packages = [name for name in ("serving", "components", "pipelines", "scoring") if name in tree]
        archive = subprocess.run(["git", "archive", sha, *packages], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def expected_answers(model_dir: Path) -> dict[int, list[float]]:
    """scikit-learn's own predictions for the rows in each body."""
    import joblib
    from sklearn.datasets import load_diabetes

    model, x = joblib.load(model_dir / "model.joblib"), load_diabetes().data
    return {rows: model.predict(x[:rows]).tolist() for rows in ROWS}


def answer_problem(url: str, bodies: dict[int, Path], expected: dict[int, list[float]]) -> str | None:
    """None when the server's V2 answers equal scikit-learn's to 1e-9 relative, else what differs."""
    for rows, body in bodies.items():
        request = urllib.request.Request(url, data=body.read_bytes(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                got = json.load(response)["outputs"][0]["data"]
        except (urllib.error.URLError, OSError, KeyError, IndexError, ValueError) as exc:
            return f"{rows}-row request failed: {exc}"
        want = expected[rows]
        if len(got) != len(want) or any(abs(g - w) > 1e-9 * abs(w) for g, w in zip(got, want)):
            return f"{rows}-row answer {got[:3]}… differs from scikit-learn's {want[:3]}…"
    return None


def ensure_mlserver_venv() -> None:
    stamp = MLSERVER_VENV / ".installed"
    if stamp.exists() and stamp.read_text() == " ".join(MLSERVER_PINS):
        return
    say(f"==> building MLServer's venv in {MLSERVER_VENV.relative_to(REPO)} (about a minute, once)")
    try:
        subprocess.run([PYTHON, "-m", "venv", "--clear", str(MLSERVER_VENV)], check=True)
        subprocess.run([str(MLSERVER_VENV / "bin" / "pip"), "install", "--progress-bar", "on", *MLSERVER_PINS],
                       check=True, stdout=sys.stderr)
    except (subprocess.CalledProcessError, OSError) as exc:
        say(f"    MLServer venv failed ({exc}); the MLServer rows are skipped")
        return
    stamp.write_text(" ".join(MLSERVER_PINS))


# ----------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Row:
    server: Server
    load: Load


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    skipped: list[tuple[Server, str]] = field(default_factory=list)
    cross_checks: list[tuple[str, Load, Load]] = field(default_factory=list)
    start_seconds: list[float] = field(default_factory=list)
    workers: list[tuple[str, Load, list[tuple[str, float]]]] = field(default_factory=list)
    engine: list[dict] = field(default_factory=list)
    answers: list[tuple[str, str | None]] = field(default_factory=list)  # (server, problem or None)


def measure_server(server: Server, model_dir: Path, bodies: dict[int, Path], seconds: float,
                   report: Report, cross_check: bool, expected: dict[int, list[float]] | None,
                   frames: dict[int, Path] | None = None) -> float:
    """REST loads (hey); with ``server.grpc``, each followed by the same load over gRPC (h2load)."""
    ports = free_ports()
    url = f"http://127.0.0.1:{ports.http}/v2/models/{MODEL_NAME}/infer"
    log = WORK / "logs" / f"{server.key}.log"
    grpc = server.grpc and frames is not None
    with running(server.command(ports, model_dir), ports, server.env, log, cwd=server.cwd) as (_, ready_s):
        say(f"    ready in {ready_s:.2f} s")
        if expected is not None:  # the no-op floor answers zeros by design
            problem = answer_problem(url, bodies, expected)
            if problem is None and grpc:
                problem = grpc_answer_problem(ports.grpc, expected)
            report.answers.append((server.label, problem))
            say(f"    answers {'match scikit-learn' if problem is None else 'WRONG: ' + problem}; warm-up")
        run_hey(url, bodies[1], 1, 4, requests=WARMUP_REQUESTS)
        for rows in ROWS:
            for concurrency in CONCURRENCY:
                loads = [run_hey(url, bodies[rows], rows, concurrency, seconds=seconds)]
                if grpc:
                    loads.append(_grpc_load(ports, frames[rows], rows, concurrency, seconds, log.with_suffix(".h2")))
                for load in loads:
                    report.rows.append(Row(server, load))
                    say(f"    {load.protocol:<4} {rows:>2} row(s), c={concurrency:<2}: {load.rps:8.0f} req/s  "
                        f"p50 {_ms(load.p50)} ms  p99 {_ms(load.p99)} ms  errors {load.errors}"
                        + (f" ({load.note})" if load.note else ""))
        if cross_check:
            hey = next(r.load for r in report.rows if r.server is server and r.load.rows == 1
                       and r.load.concurrency == 16 and r.load.protocol == "REST")
            count = max(500, min(20000, int(hey.rps * seconds))) if hey.rps == hey.rps else 2000
            ab = run_ab(url, bodies[1], 1, 16, count)
            report.cross_checks.append((server.label, hey, ab))
            say(f"    ab cross-check 1 row c=16: {ab.rps:.0f} req/s (hey {hey.rps:.0f})")
    return ready_s


def _grpc_load(ports: Ports, frame: Path, rows: int, streams: int, seconds: float, log_path: Path) -> Load:
    """One h2load run; gRPC errors (HTTP 200 with a non-OK grpc-status) counted from the server's metrics."""
    before = grpc_status_counts(ports.http)
    load = run_h2load(ports.grpc, frame, rows, streams, seconds, log_path)
    after = grpc_status_counts(ports.http)
    failed = sum(after.get(status, 0) - before.get(status, 0) for status in after if status != "OK")
    load.errors += int(failed)
    if load.requests and after.get("OK", 0) - before.get("OK", 0) + failed < load.requests:
        load.note = "server counted fewer calls than h2load finished"
    return load


def measure_grpc_ceiling(frames: dict[int, Path], seconds: float, report: Report) -> None:
    """grpcio's threaded server answering a constant, same core and load as OURS's gRPC rows: the ceiling."""
    ports = free_ports()
    log = WORK / "logs" / f"{GRPC_CEILING.key}.log"
    with running(GRPC_CEILING.command(ports, WORK), ports, {}, log) as (_, ready_s):
        say(f"    ready in {ready_s:.2f} s")
        load = run_h2load(ports.grpc, frames[1], 1, 16, seconds, log.with_suffix(".h2"))
        report.rows.append(Row(GRPC_CEILING, load))
        say(f"    gRPC  1 row(s), c=16: {load.rps:8.0f} req/s  p99 {_ms(load.p99)} ms  errors {load.errors}")


def measure_start(model_dir: Path, repeats: int) -> list[float]:
    times = []
    for i in range(repeats):
        ports = free_ports()
        with running(_ours(ports, model_dir), ports, {}, WORK / "logs" / f"ours-start-{i}.log") as (_, ready_s):
            times.append(ready_s)
    return times


def measure_two_workers(model_dir: Path, bodies: dict[int, Path], seconds: float, report: Report) -> None:
    """Both cores, no pinning: the server's two workers and hey share them, as on a 2-core node."""
    ports = free_ports()
    url = f"http://127.0.0.1:{ports.http}/v2/models/{MODEL_NAME}/infer"
    argv = _ours(ports, model_dir, "--workers", "2")
    with running(argv, ports, {}, WORK / "logs" / "ours-2-workers.log", core=None) as (process, ready_s):
        say(f"    ready in {ready_s:.2f} s; warm-up")
        run_hey(url, bodies[1], 1, 4, requests=WARMUP_REQUESTS, core=None)
        for rows in ROWS:
            load = run_hey(url, bodies[rows], rows, 32, seconds=seconds, core=None)
            rss = rss_by_process(process.pid)
            report.workers.append((f"{rows} row(s), c=32", load, rss))
            say(f"    {rows:>2} row(s), c=32: {load.rps:8.0f} req/s  p99 {_ms(load.p99)} ms  "
                f"RSS MiB {_rss_text(rss)}")


def measure_engine(model_dir: Path) -> list[dict]:
    """In-process: µs per call of scikit-learn's predict and of the compiled predictor."""
    import joblib
    from sklearn.datasets import load_diabetes

    from serving.engine import compile_predictor, describe

    model = joblib.load(model_dir / "model.joblib")
    fast = compile_predictor(model, "predict", fast=True)
    x = load_diabetes().data
    results = []
    for rows in (1, 32, 512):
        batch = x[:rows].copy()
        sk = _best_us(model.predict, batch, calls=20)
        ours = _best_us(fast, batch, calls=200 if rows < 100 else 20)
        results.append({"rows": rows, "sklearn_us": sk, "engine_us": ours, "engine": describe(fast)})
    return results


def _best_us(function: Callable, x, calls: int, repeats: int = 5) -> float:
    function(x)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            function(x)
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


# ----------------------------------------------------------------------------------------------
# Report


def _ms(value: float) -> str:
    """Milliseconds, or n/a when the tool gave none (the row's note says why)."""
    return "n/a" if value != value else (f"{value:.2f}" if value < 10 else f"{value:.1f}")


def _rss_text(rss: list[tuple[str, float]]) -> str:
    return ", ".join(f"{role} {mib:.0f}" for role, mib in rss)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 1024 ** 2
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def render(report: Report, seconds: float, started: dt.datetime, load_avg: tuple[float, ...]) -> str:
    baseline = {(r.load.rows, r.load.concurrency): r.load.rps for r in report.rows if r.server.key == BASELINE}
    lines = [
        "# Serving benchmark",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; machine: {machine()}; load average at start: "
        + ", ".join(f"{v:.2f}" for v in load_avg),
        f"- model: RandomForestRegressor({N_TREES} trees) on {DATA_SOURCE}, built by the project's pipeline steps; "
        "every server loads the same model.joblib",
        f"- method: server pinned to core {SERVER_CORE} (`taskset`), hey pinned to core {LOAD_CORE}, loopback, "
        f"keep-alive, {seconds:g} s per load after {WARMUP_REQUESTS} warm-up requests; V2 REST bodies of 1 and 32 "
        "rows; `vs 1` = req/s over server 1's for the same load (REST)",
        f"- gRPC rows: h2load pinned to core {LOAD_CORE}, posting a serialized ModelInfer frame (the same rows as "
        "raw_input_contents, tritonclient's default) on c concurrent streams of one HTTP/2 connection, right after "
        "the REST load of the same size on the same server process; gRPC errors counted from the server's "
        "Prometheus series (h2load sees HTTP statuses only)",
        "",
        "| server | protocol | rows | c | req/s | p50 ms | p90 ms | p99 ms | errors | vs 1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report.rows:
        load = row.load
        base = baseline.get((load.rows, load.concurrency)) if load.protocol == "REST" else None
        ratio = f"{load.rps / base:.1f}×" if base and load.rps == load.rps else "–"
        note = f" ({load.note})" if load.note else ""
        lines.append(f"| {row.server.label}{note} | {load.protocol} | {load.rows} | {load.concurrency} | {load.rps:,.0f} | "
                     f"{_ms(load.p50)} | {_ms(load.p90)} | {_ms(load.p99)} | {load.errors} | {ratio} |")
    for server, reason in report.skipped:
        lines.append(f"| {server.label}: skipped, {reason} | | | | | | | | | |")
    lines += targets(report)
    if report.answers:
        wrong = [f"{label}: {problem}" for label, problem in report.answers if problem]
        lines += ["", "Answers (1- and 32-row bodies) checked against scikit-learn's predict on the same rows, "
                  "1e-9 relative: " + ("all servers above match (the no-op floor excepted)." if not wrong
                                       else "MISMATCH — " + "; ".join(wrong))]
    if report.cross_checks:
        lines += ["", "Cross-check with ab (1 row, c=16, same server, right after hey). ab speaks HTTP/1.0 and asks "
                  "for keep-alive (-k); a server that closes HTTP/1.0 connections makes ab open one per request, "
                  "which the last column shows. ab's percentiles are whole milliseconds.", "",
                  "| server | hey req/s | ab req/s | ab p50 ms | ab p99 ms | ab errors | ab keep-alive |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for label, hey, ab in report.cross_checks:
            lines.append(f"| {label} | {hey.rps:,.0f} | {ab.rps:,.0f} | {_ms(ab.p50)} | {_ms(ab.p99)} | {ab.errors} | "
                         f"{ab.note} |")
    if report.start_seconds:
        times = report.start_seconds
        lines += ["", f"Start to ready, this server (process start to 200 on /v2/health/ready, {len(times)} starts): "
                  f"median {statistics.median(times):.2f} s, max {max(times):.2f} s."]
    if report.workers:
        lines += ["", "This server with `--workers 2`, unpinned (both cores, shared with hey):", "",
                  "| load | req/s | p50 ms | p99 ms | errors | RSS per process, MiB |", "|---|---:|---:|---:|---:|---|"]
        for what, load, rss in report.workers:
            lines.append(f"| {what} | {load.rps:,.0f} | {_ms(load.p50)} | {_ms(load.p99)} | {load.errors} | "
                         + _rss_text(rss) + " |")
    if report.engine:
        lines += ["", f"Prediction engine in-process ({report.engine[0]['engine']}), best of 5:", "",
                  "| rows | scikit-learn µs/call | engine µs/call | engine µs/row | speed-up |", "|---:|---:|---:|---:|---:|"]
        for e in report.engine:
            lines.append(f"| {e['rows']} | {e['sklearn_us']:,.0f} | {e['engine_us']:,.1f} | "
                         f"{e['engine_us'] / e['rows']:.2f} | {e['sklearn_us'] / e['engine_us']:.0f}× |")
    return "\n".join(lines) + "\n"


def targets(report: Report) -> list[str]:
    """Issue 5's targets against this run's figures, one line each (none if OURS was not measured)."""
    def load(key: str, rows: int, concurrency: int, protocol: str = "REST") -> Load | None:
        return next((r.load for r in report.rows if r.server.key == key and (r.load.rows, r.load.concurrency)
                     == (rows, concurrency) and r.load.protocol == protocol), None)

    ours, base = load(OURS, 1, 16), load(BASELINE, 1, 16)
    if ours is None:
        return []
    mark = {True: "met", False: "**missed**"}
    lines = ["", "Issue 5's targets for server 5 (default configuration), from the figures above:", ""]
    if base is not None:
        ratio = ours.rps / base.rps
        ok = ratio >= TARGET_RATIO and ours.p99 <= TARGET_P99_MS and ours.errors == 0
        lines.append(f"- 1 row, c=16: {ratio:.1f}× server 1 (target ≥ {TARGET_RATIO:g}×), p99 {_ms(ours.p99)} ms "
                     f"(target ≤ {TARGET_P99_MS:g} ms), {ours.errors} errors (target 0): {mark[ok]}")
    mlserver = [r for r in report.rows if r.server.key.startswith("mlserver") and (r.load.rows, r.load.concurrency)
                == (1, 16) and r.load.rps == r.load.rps]
    if mlserver:
        best = max(mlserver, key=lambda r: r.load.rps)
        lines.append(f"- ahead of MLServer's best configuration ({best.server.label}: {best.load.rps:,.0f} req/s at "
                     f"1 row, c=16): {ours.rps / best.load.rps:.1f}× its req/s: {mark[ours.rps > best.load.rps]}")
    for rows in ROWS:
        single = load(OURS, rows, 1)
        if single is not None:
            lines.append(f"- {rows} row(s), c=1: p50 {_ms(single.p50)} ms (target ≤ {TARGET_C1_P50_MS:g} ms): "
                         f"{mark[single.p50 <= TARGET_C1_P50_MS]}")
    if report.start_seconds:
        slowest = max(report.start_seconds)
        lines.append(f"- start to ready: {slowest:.2f} s at the slowest of {len(report.start_seconds)} starts "
                     f"(target ≤ {TARGET_READY_S:g} s): {mark[slowest <= TARGET_READY_S]}")
    grpc = load(OURS, 1, 16, "gRPC")
    if grpc is not None:
        ratio = grpc.rps / ours.rps
        ok = ratio >= TARGET_GRPC_RATIO and grpc.p99 <= TARGET_GRPC_P99_MS and grpc.errors == 0
        lines += ["", "Issue 9's targets, from the figures above:", "",
                  f"- gRPC, 1 row, 16 streams: {grpc.rps:,.0f} req/s = {ratio:.2f}× REST's {ours.rps:,.0f} on the same "
                  f"server (target ≥ {TARGET_GRPC_RATIO:g}×), p99 {_ms(grpc.p99)} ms (target ≤ {TARGET_GRPC_P99_MS:g} "
                  f"ms), {grpc.errors} errors: {mark[ok]}"]
        ceiling = load(GRPC_CEILING.key, 1, 16, "gRPC")
        if ceiling is not None and ceiling.rps == ceiling.rps:
            lines.append(f"- gRPC ceiling (server 6, grpcio answering a constant, same core): {ceiling.rps:,.0f} req/s; "
                         f"this server's gRPC reaches {grpc.rps / ceiling.rps:.2f}× of it, REST stands at "
                         f"{ours.rps / ceiling.rps:.2f}× of it")
    for key in dict.fromkeys(r.server.key for r in report.rows if r.server.key == KSERVE_ROUTE
                             or r.server.key.startswith(REST_BASELINE)):
        other = load(key, 1, 16)
        if other is not None:
            ratio = ours.rps / other.rps
            lines.append(f"- REST, 1 row, c=16, against `{key}` in the same run: {ratio:.2f}× its "
                         f"{other.rps:,.0f} req/s (not slower: ≥ 0.95×, the run-to-run noise): {mark[ratio >= 0.95]}")
    return lines


# ----------------------------------------------------------------------------------------------
# Entry points


def bench(args: argparse.Namespace) -> int:
    started = dt.datetime.now(dt.timezone.utc)
    load_avg = os.getloadavg()
    seconds = QUICK_SECONDS if args.quick else args.seconds
    wanted = set(args.only.split(",")) if args.only else {s.key for s in SERVERS} | set(EXTRAS)
    unknown = wanted - {s.key for s in SERVERS} - set(EXTRAS)
    if unknown:
        say(f"--only {args.only!r}: unknown {', '.join(sorted(unknown))}; expected some of "
            + ", ".join([s.key for s in SERVERS] + list(EXTRAS)))
        return 2
    try:
        _tool("hey"), _tool("ab"), _tool("taskset")
    except ToolMissing as exc:
        say(str(exc))
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    say("==> building the model with the project's ingest/train/evaluate steps")
    model_dir = build_model_folder(WORK / "model")
    bodies = write_bodies(WORK)
    expected = expected_answers(model_dir)
    frames: dict[int, Path] | None = write_grpc_frames(WORK)
    if shutil.which("h2load") is None:
        say("h2load is not installed (`make apt-tools`: Debian's nghttp2-client): the gRPC rows are left out")
        frames = None
    if any(key.startswith("mlserver") for key in wanted):
        ensure_mlserver_venv()

    report = Report()
    chosen = [s for s in SERVERS if s.key in wanted]
    if args.rest_baseline:
        folder = export_baseline(args.rest_baseline)
        key = REST_BASELINE + folder.name.removeprefix("baseline-")
        chosen.insert(next((i for i, s in enumerate(chosen) if s.key == OURS), len(chosen)), Server(
            key, f"5r. this server at {args.rest_baseline} ({folder.name.removeprefix('baseline-')}), REST baseline",
            _ours, cwd=folder))
    for i, server in enumerate(chosen, 1):
        say(f"[{i}/{len(chosen)}] {server.label}")
        reason = server.missing()
        if reason is None:
            try:
                ready_s = measure_server(server, model_dir, bodies, seconds, report,
                                         cross_check=server.key in (OURS, BASELINE),
                                         expected=None if server.key == "kserve-noop" else expected, frames=frames)
                if server.key == OURS:
                    report.start_seconds.append(ready_s)
            except ServerFailed as exc:
                reason = f"failed to start: {exc}"
        if reason is not None:
            say(f"    skipped: {reason}")
            report.skipped.append((server, reason))
    if GRPC_CEILING.key in wanted and frames is not None:
        say(f"[{GRPC_CEILING.key}] {GRPC_CEILING.label}")
        measure_grpc_ceiling(frames, seconds, report)
    ours_missing = _ours_missing()
    if "start" in wanted and not args.quick and ours_missing is None:
        say(f"[start] this server, {START_REPEATS - len(report.start_seconds)} more starts")
        report.start_seconds += measure_start(model_dir, max(0, START_REPEATS - len(report.start_seconds)))
    if "workers" in wanted and ours_missing is None:
        say("[workers] this server with --workers 2 on both cores")
        measure_two_workers(model_dir, bodies, seconds, report)
    if "engine" in wanted:
        say("[engine] in-process microbenchmark")
        report.engine = measure_engine(model_dir)

    text = render(report, seconds, started, load_avg)
    print(text)
    written = [Path(args.out) / REPORT_FILE] + ([RESULTS] if args.update_results else [])
    for out in written:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        say(f"==> written to {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


def load(args: argparse.Namespace) -> int:
    """`make load`: bounded hey then ab against a server that is already running."""
    base = args.url.rstrip("/")
    if _get(f"{base}/v2/health/ready") != 200:
        say(f"no ready V2 server answers at {base}/v2/health/ready: start one with `make serve` "
            "(or point URL=http://host:port at one)")
        return 1
    try:
        with urllib.request.urlopen(f"{base}/v2/models/{args.model}", timeout=5) as response:
            n_features = json.load(response)["inputs"][0]["shape"][1]
    except (urllib.error.URLError, OSError, KeyError, IndexError, ValueError) as exc:
        say(f"model {args.model!r} has no usable metadata at {base}/v2/models/{args.model} ({exc}): "
            "set MODEL_NAME to the served model's name")
        return 1
    body = Path(os.environ.get("TMPDIR", "/tmp")) / f"v2-load-body-{os.getpid()}.json"
    body.write_text(v2_body(args.model, [[0.01 * (i % 7) for i in range(n_features)]]))
    url = f"{base}/v2/models/{args.model}/infer"
    say(f"==> {args.requests} requests, c={args.concurrency}, 1-row V2 body, against {url}")
    try:
        results = [run_hey(url, body, 1, args.concurrency, requests=args.requests, core=None),
                   run_ab(url, body, 1, args.concurrency, args.requests, core=None)]
    except ToolMissing as exc:
        say(str(exc))
        return 2
    finally:
        body.unlink(missing_ok=True)
    print("| tool | requests | req/s | p50 ms | p90 ms | p99 ms | errors | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r.tool} | {r.requests} | {r.rps:,.0f} | {_ms(r.p50)} | {_ms(r.p90)} | {_ms(r.p99)} | {r.errors} "
              f"| {r.note} |")
    return 0 if all(r.errors == 0 and r.rps == r.rps for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS} s per load, fewer extras")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="seconds per load (default %(default)s)")
    parser.add_argument("--only", help="comma-separated server keys and/or start, workers, engine")
    parser.add_argument("--out", metavar="DIR", default=str(OUT),
                        help=f"folder for {REPORT_FILE} (default %(default)s, git-ignored)")
    parser.add_argument("--update-results", action="store_true",
                        help=f"also overwrite the committed {RESULTS.relative_to(REPO)}")
    parser.add_argument("--rest-baseline", metavar="REF",
                        help="also measure this server's REST as git REF has it (e.g. main), to show no regression")
    sub = parser.add_subparsers(dest="command")
    load_parser = sub.add_parser("load", help="bounded hey and ab against a running server")
    load_parser.add_argument("--url", default=os.environ.get("URL", LOAD_DEFAULTS["url"]))
    load_parser.add_argument("--model", default=os.environ.get("MODEL_NAME", MODEL_NAME))
    load_parser.add_argument("--requests", type=int, default=LOAD_DEFAULTS["requests"])
    load_parser.add_argument("--concurrency", type=int, default=LOAD_DEFAULTS["concurrency"])
    args = parser.parse_args(argv)
    return load(args) if args.command == "load" else bench(args)


if __name__ == "__main__":
    sys.exit(main())
