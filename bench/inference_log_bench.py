"""Inference log benchmark: requests/s with SERVING_INFERENCE_LOG on against off, in the same run.

    .venv/bin/python bench/inference_log_bench.py [--rounds 8] [--seconds 3] [--concurrency 16] [--rows 1] [--sample 1]

Two ``python -m serving`` processes serve the same 100-tree forest side by side: one with the
inference log off, one logging a sample of the requests (``--sample``, every one by default) into
a loopback rclone S3 server. hey
drives them in alternating rounds (off on, on off, ...), so load from elsewhere on the machine
hits both alike. Printed: each round's requests/s and the server's CPU time per request, that
the rows logged equal the rows sampled (nothing lost while measuring), and one RESULT line: the
median of the rounds' throughput ratios on/off against the target (>= 0.90, met or NOT met) and
the median of the rounds' CPU-per-request ratios (less sensitive to the machine's other load).
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from contract.files import DEFAULT_MODEL_NAME  # noqa: E402 (after the sys.path line)

MODEL = DEFAULT_MODEL_NAME
TARGET_RATIO = 0.90


def make_model(folder: Path) -> np.ndarray:
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor

    from tests.serving.conftest import write_model_folder

    data = load_diabetes()
    model = RandomForestRegressor(n_estimators=100, random_state=0).fit(data.data, data.target)
    write_model_folder(folder, model, "regression", list(data.feature_names), data.data)
    return data.data


class Server:
    def __init__(self, model_dir: Path, env: dict[str, str]) -> None:
        from pipelines.local.s3server import free_port

        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "--model_dir", str(model_dir), "--model_name", MODEL,
             "--host", "127.0.0.1", "--http_port", str(self.port), "--grpc_port", str(free_port())],
            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "server exited during start-up"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("server not ready")

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def hey_round(hey: str, server: Server, body: Path, seconds: int, concurrency: int) -> tuple[float, float]:
    """One hey run: (requests/s, the server's CPU seconds per request: user + system, all its threads)."""
    process = psutil.Process(server.proc.pid)
    before = sum(process.cpu_times()[:2])
    out = subprocess.run(
        [hey, "-z", f"{seconds}s", "-c", str(concurrency), "-t", "10", "-m", "POST", "-T", "application/json",
         "-D", str(body), f"http://127.0.0.1:{server.port}/v2/models/{MODEL}/infer"],
        capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    cpu = sum(process.cpu_times()[:2]) - before
    answered = re.search(r"\[200\]\s+(\d+) responses", out)
    if "Error distribution" in out or not answered:
        raise RuntimeError(f"errors during the round:\n{out}")
    return float(re.search(r"Requests/sec:\s+(\S+)", out).group(1)), cpu / int(answered.group(1))


def logged_rows(data_dir: Path) -> int:
    return sum(len(gzip.decompress(path.read_bytes()).splitlines()) for path in data_dir.rglob("*.jsonl.gz"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--sample", default="1", help="SERVING_INFERENCE_LOG_SAMPLE of the logging server")
    args = parser.parse_args()
    hey = shutil.which("hey")
    if hey is None:
        print("hey is not installed (`make apt-tools`)", file=sys.stderr)
        return 2
    from pipelines.local.s3server import LocalS3Server

    with tempfile.TemporaryDirectory(prefix="inference-log-bench-") as tmp:
        folder = Path(tmp)
        x = make_model(folder / "model")
        body = folder / "body.json"
        rows = x[:args.rows]
        body.write_bytes(orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(rows.shape),
                                                   "data": rows.tolist()}]}))
        (folder / "s3" / "logs").mkdir(parents=True)
        with LocalS3Server(folder / "s3") as store:
            servers = {
                "off": Server(folder / "model", {}),
                "on": Server(folder / "model", {**store.env(), "SERVING_INFERENCE_LOG": "s3://logs/bench/",
                                                  "SERVING_INFERENCE_LOG_SAMPLE": args.sample}),
            }
            try:
                for server in servers.values():
                    server.wait_ready()
                for server in servers.values():  # warm-up: first requests build caches, connections
                    hey_round(hey, server, body, 1, args.concurrency)
                rates: dict[str, list[float]] = {"off": [], "on": []}
                cpu: dict[str, list[float]] = {"off": [], "on": []}
                for round_ in range(args.rounds):
                    # ABBA order: a trend in the machine's load hits both sides alike.
                    for name in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                        rate, cpu_per_request = hey_round(hey, servers[name], body, args.seconds, args.concurrency)
                        rates[name].append(rate)
                        cpu[name].append(cpu_per_request)
                    print(f"round {round_ + 1}: off {rates['off'][-1]:8.1f} req/s {cpu['off'][-1] * 1e6:6.0f} µs CPU/req"
                          f"   on {rates['on'][-1]:8.1f} req/s {cpu['on'][-1] * 1e6:6.0f} µs CPU/req"
                          f"   on/off {rates['on'][-1] / rates['off'][-1]:.3f}")
                sampled = servers["on"].metric("serving_inference_log_sampled_rows_total")
            finally:
                codes = {name: server.stop() for name, server in servers.items()}
            written = logged_rows(folder / "s3" / "logs")
    # Each round's pair ran back to back under the same outside load: the median of the per-round
    # ratios is the robust figure (a ratio of medians mixes rounds run under different loads).
    ratio = statistics.median(b / a for a, b in zip(rates["off"], rates["on"], strict=True))
    cpu_ratio = statistics.median(b / a for a, b in zip(cpu["off"], cpu["on"], strict=True))
    met = ratio >= TARGET_RATIO
    print(f"medians: off {statistics.median(rates['off']):.1f} req/s, on {statistics.median(rates['on']):.1f} req/s "
          f"(ratio of medians {statistics.median(rates['on']) / statistics.median(rates['off']):.3f}); server CPU per "
          f"request off {statistics.median(cpu['off']) * 1e6:.0f} µs, on {statistics.median(cpu['on']) * 1e6:.0f} µs")
    print(f"rows: {sampled:.0f} sampled, {written} in the store after shutdown "
          f"({'all logged' if written == sampled else 'MISMATCH'}); exit codes {codes}")
    print(f"load: {os.getloadavg()[0]:.2f} (1 min average) on {os.cpu_count()} cores; "
          f"{args.rows} row(s) per request, sample {args.sample}, c={args.concurrency}, {args.rounds} x {args.seconds} s per side")
    print(f"RESULT: throughput on/off {ratio:.3f} (median of {args.rounds} interleaved rounds' ratios; target >= "
          f"{TARGET_RATIO:.2f}: {'met' if met else 'NOT met'}); CPU per request on/off {cpu_ratio:.3f} "
          f"({(cpu_ratio - 1) * 100:+.0f} %, median of the rounds' ratios)")
    return 0 if written == sampled else 1


if __name__ == "__main__":
    sys.exit(main())
