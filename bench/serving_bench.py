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
--update-results also rewrites the committed bench/results/serving.md) with the machine and the
date. Heavy modules are imported only where needed, so ``load`` runs on the standard library alone.

This file is the command line; its parts live in bench/servebench/ (not ``bench/serving/``: run as a
file, bench/ is first on sys.path and that name would hide the server's own ``serving`` package):
common (paths, constants), loadtools (hey, ab, h2load), processes (ports, start, stop, RSS), servers
(what is compared, MLServer's venv, a git ref's REST baseline), models (model, bodies, frames, answer
checks), measure (the loads, into a Report) and report (the markdown and the targets).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a file: servebench/ beside it
from servebench.common import (LOAD_DEFAULTS, MODEL_NAME, OUT, QUICK_SECONDS, REPO, REPORT_FILE, RESULTS,  # noqa: E402
                               SECONDS, START_REPEATS, WORK, ms, say)
from servebench.loadtools import ToolMissing, run_ab, run_hey, tool_path  # noqa: E402
from servebench.measure import (Report, measure_engine, measure_grpc_ceiling, measure_server,  # noqa: E402
                                measure_start, measure_two_workers)
from servebench.models import build_model_folder, expected_answers, v2_body, write_bodies, write_grpc_frames  # noqa: E402
from servebench.processes import ServerFailed, http_status  # noqa: E402
from servebench.report import render  # noqa: E402
from servebench.servers import (EXTRAS, GRPC_CEILING, OURS, BASELINE, REST_BASELINE, SERVERS, Server,  # noqa: E402
                                ensure_mlserver_venv, export_baseline, ours_command, ours_missing)


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
        tool_path("hey"), tool_path("ab"), tool_path("taskset")
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
            ours_command, cwd=folder))
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
    why_not_ours = ours_missing()
    if "start" in wanted and not args.quick and why_not_ours is None:
        say(f"[start] this server, {START_REPEATS - len(report.start_seconds)} more starts")
        report.start_seconds += measure_start(model_dir, max(0, START_REPEATS - len(report.start_seconds)))
    if "workers" in wanted and why_not_ours is None:
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
    if http_status(f"{base}/v2/health/ready") != 200:
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
        print(f"| {r.tool} | {r.requests} | {r.rps:,.0f} | {ms(r.p50)} | {ms(r.p90)} | {ms(r.p99)} | {r.errors} "
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
