"""The load generators: hey and ab (REST), h2load (gRPC frames), their output parsed into ``Load``."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .common import GRPC_INFER_PATH, LOAD_CORE, REQUEST_TIMEOUT_S, TOOL_GRACE_S

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


def tool_path(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} is not installed: run `make apt-tools` (apt-get install -y hey apache2-utils)")
    return path


def pinned(core: str | None, argv: list[str]) -> list[str]:
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
    argv = pinned(core, [tool_path("hey"), *bound, "-c", str(concurrency), "-t", str(REQUEST_TIMEOUT_S),
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
    argv = pinned(core, [tool_path("ab"), "-q", "-k", "-n", str(requests), "-c", str(concurrency),
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
    argv = pinned(core, [tool_path("h2load"), "-c", "1", "-m", str(streams), "-D", f"{seconds:g}", "--warm-up-time", "1",
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
