"""The measurements: each server's REST (and gRPC) loads, the gRPC ceiling, start-up, two workers, and
the engine in-process; all collected in a ``Report``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .common import CONCURRENCY, MODEL_NAME, ROWS, WARMUP_REQUESTS, WORK, ms, rss_text, say
from .loadtools import Load, grpc_status_counts, run_ab, run_h2load, run_hey
from .models import answer_problem, grpc_answer_problem
from .processes import Ports, free_ports, rss_by_process, running
from .servers import GRPC_CEILING, Server, ours_command

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
                        f"p50 {ms(load.p50)} ms  p99 {ms(load.p99)} ms  errors {load.errors}"
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
        say(f"    gRPC  1 row(s), c=16: {load.rps:8.0f} req/s  p99 {ms(load.p99)} ms  errors {load.errors}")


def measure_start(model_dir: Path, repeats: int) -> list[float]:
    times = []
    for i in range(repeats):
        ports = free_ports()
        with running(ours_command(ports, model_dir), ports, {}, WORK / "logs" / f"ours-start-{i}.log") as (_, ready_s):
            times.append(ready_s)
    return times


def measure_two_workers(model_dir: Path, bodies: dict[int, Path], seconds: float, report: Report) -> None:
    """Both cores, no pinning: the server's two workers and hey share them, as on a 2-core node."""
    ports = free_ports()
    url = f"http://127.0.0.1:{ports.http}/v2/models/{MODEL_NAME}/infer"
    argv = ours_command(ports, model_dir, "--workers", "2")
    with running(argv, ports, {}, WORK / "logs" / "ours-2-workers.log", core=None) as (process, ready_s):
        say(f"    ready in {ready_s:.2f} s; warm-up")
        run_hey(url, bodies[1], 1, 4, requests=WARMUP_REQUESTS, core=None)
        for rows in ROWS:
            load = run_hey(url, bodies[rows], rows, 32, seconds=seconds, core=None)
            rss = rss_by_process(process.pid)
            report.workers.append((f"{rows} row(s), c=32", load, rss))
            say(f"    {rows:>2} row(s), c=32: {load.rps:8.0f} req/s  p99 {ms(load.p99)} ms  "
                f"RSS MiB {rss_text(rss)}")


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
