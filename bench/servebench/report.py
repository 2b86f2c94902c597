"""The markdown report: the table, the issues' targets checked against it, the machine it ran on."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import statistics
from pathlib import Path

from .common import DATA_SOURCE, LOAD_CORE, N_TREES, ROWS, SERVER_CORE, WARMUP_REQUESTS, ms, rss_text
from .loadtools import Load
from .measure import Report
from .servers import BASELINE, GRPC_CEILING, KSERVE_ROUTE, OURS, REST_BASELINE

# The serving targets for OURS, checked in every report.
TARGET_RATIO, TARGET_P99_MS, TARGET_C1_P50_MS, TARGET_READY_S = 10.0, 25.0, 2.0, 3.0
# Issue 9's: gRPC against REST on the same server and core, 1 row, 16 streams / connections.
TARGET_GRPC_RATIO, TARGET_GRPC_P99_MS = 0.8, 5.0


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
                     f"{ms(load.p50)} | {ms(load.p90)} | {ms(load.p99)} | {load.errors} | {ratio} |")
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
            lines.append(f"| {label} | {hey.rps:,.0f} | {ab.rps:,.0f} | {ms(ab.p50)} | {ms(ab.p99)} | {ab.errors} | "
                         f"{ab.note} |")
    if report.start_seconds:
        times = report.start_seconds
        lines += ["", f"Start to ready, this server (process start to 200 on /v2/health/ready, {len(times)} starts): "
                  f"median {statistics.median(times):.2f} s, max {max(times):.2f} s."]
    if report.workers:
        lines += ["", "This server with `--workers 2`, unpinned (both cores, shared with hey):", "",
                  "| load | req/s | p50 ms | p99 ms | errors | RSS per process, MiB |", "|---|---:|---:|---:|---:|---|"]
        for what, load, rss in report.workers:
            lines.append(f"| {what} | {load.rps:,.0f} | {ms(load.p50)} | {ms(load.p99)} | {load.errors} | "
                         + rss_text(rss) + " |")
    if report.engine:
        lines += ["", f"Prediction engine in-process ({report.engine[0]['engine']}), best of 5:", "",
                  "| rows | scikit-learn µs/call | engine µs/call | engine µs/row | speed-up |", "|---:|---:|---:|---:|---:|"]
        for e in report.engine:
            lines.append(f"| {e['rows']} | {e['sklearn_us']:,.0f} | {e['engine_us']:,.1f} | "
                         f"{e['engine_us'] / e['rows']:.2f} | {e['sklearn_us'] / e['engine_us']:.0f}× |")
    return "\n".join(lines) + "\n"


def targets(report: Report) -> list[str]:
    """The serving targets against this run's figures, one line each (none if OURS was not measured)."""
    def load(key: str, rows: int, concurrency: int, protocol: str = "REST") -> Load | None:
        return next((r.load for r in report.rows if r.server.key == key and (r.load.rows, r.load.concurrency)
                     == (rows, concurrency) and r.load.protocol == protocol), None)

    ours, base = load(OURS, 1, 16), load(BASELINE, 1, 16)
    if ours is None:
        return []
    mark = {True: "met", False: "**missed**"}
    lines = ["", "The serving targets for server 5 (default configuration), from the figures above:", ""]
    if base is not None:
        ratio = ours.rps / base.rps
        ok = ratio >= TARGET_RATIO and ours.p99 <= TARGET_P99_MS and ours.errors == 0
        lines.append(f"- 1 row, c=16: {ratio:.1f}× server 1 (target ≥ {TARGET_RATIO:g}×), p99 {ms(ours.p99)} ms "
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
            lines.append(f"- {rows} row(s), c=1: p50 {ms(single.p50)} ms (target ≤ {TARGET_C1_P50_MS:g} ms): "
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
                  f"server (target ≥ {TARGET_GRPC_RATIO:g}×), p99 {ms(grpc.p99)} ms (target ≤ {TARGET_GRPC_P99_MS:g} "
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
