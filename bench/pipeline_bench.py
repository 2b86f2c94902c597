"""Pipeline benchmark: the compiled pipeline on kfp.local vs the same steps in this process.

    .venv/bin/python bench/pipeline_bench.py [--repeat 3]

Both sides run ingest -> plan -> cross-validate (the default candidates) -> train -> evaluate
(with the HTML report) -> push on sklearn:diabetes against one local S3
server (a temporary folder, a free loopback port), each into its own model name. The in-process
side calls the same logic functions the KFP components call, with the libraries already
imported, so the ratio is what kfp.local adds: a fresh interpreter, imports and executor
bookkeeping per step. Figures are medians over --repeat runs. cross-validate is the whole fan-out
(first start to last end): kfp.local runs the candidates side by side, the in-process side one
after another. Target: a local run under 20 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from components import candidates, evaluate, ingest, push, selection
from components.artifacts import schema_task
from components.objectstore import ObjectStore
from pipelines import params
from pipelines.local.runner import run_compiled
from pipelines.local.s3server import LocalS3Server
from pipelines.training_pipeline import PACKAGE_PATH

STEPS = ("ingest", "plan-candidates", "cross-validate", "train", "evaluate", "push")
TARGET_S = 20.0


def in_process(values: dict, work: Path, store: ObjectStore) -> dict[str, float]:
    """One run of the four steps without KFP; seconds per step."""
    timings: dict[str, float] = {}
    paths = {name: work / name for name in ("train.csv", "test.csv", "schema.json", "model", "evaluation.json",
                                            "report.md", "selection.json", "report.html", "plots")}

    def timed(step: str, fn, *args) -> object:
        started = time.perf_counter()
        result = fn(*args)
        timings[step] = time.perf_counter() - started
        return result

    config = ingest.IngestConfig.from_params(values["target"], values["task"], values["test_fraction"],
                                             values["seed"], values["missing_values"], values["categorical_features"])
    timed("ingest", lambda: ingest.run(source=values["source"], config=config, train_path=paths["train.csv"],
                                       test_path=paths["test.csv"], schema_path=paths["schema.json"]))
    task = schema_task(json.loads(paths["schema.json"].read_text()))
    plan = timed("plan-candidates", candidates.plan, task, values["candidates"], values["estimator"],
                 values["hyperparameters"])
    results = timed("cross-validate", lambda: [selection.run(train_path=paths["train.csv"],
                                                             schema_path=paths["schema.json"],
                                                             candidate=json.loads(c), seed=values["seed"],
                                                             k=values["cv_folds"]) for c in plan])
    timed("train", selection.refit, paths["train.csv"], paths["schema.json"], paths["model"], results,
          values["seed"], paths["selection.json"])
    result = timed("evaluate", lambda: evaluate.run(
        test_path=paths["test.csv"], schema_path=paths["schema.json"], model_dir=paths["model"],
        threshold=values["threshold"], model_name=values["model_name"], bucket=values["bucket"], store=store,
        data_source=values["source"], seed=values["seed"], test_fraction=values["test_fraction"],
        evaluation_path=paths["evaluation.json"], report_path=paths["report.md"],
        selection_path=paths["selection.json"], html_path=paths["report.html"], plots_dir=paths["plots"]))
    if not result["deploy"]:
        raise SystemExit(f"in-process gate said no ({result['reason']}): the benchmark needs a deploying run")
    timed("push", lambda: push.run(model_dir=paths["model"], schema_path=paths["schema.json"],
                                   evaluation_path=paths["evaluation.json"], model_name=values["model_name"],
                                   bucket=values["bucket"], store=store, run_id="bench"))
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per side (default: %(default)s)")
    args = parser.parse_args(argv)
    # threshold=-inf-like: every run must reach push so that all four steps are timed.
    base = params.effective({"threshold": -1e9}, PACKAGE_PATH)

    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp, LocalS3Server(Path(tmp) / "s3") as server:
        os.environ.update(server.env())  # the KFP steps are subprocesses and inherit these
        store = ObjectStore.from_env(server.endpoint, False)
        local_runs: list[dict[str, float]] = []
        totals: list[float] = []
        for i in range(args.repeat):
            print(f"kfp.local run {i + 1}/{args.repeat} ...", flush=True)
            values = dict(base, model_name="bench-kfp", minio_endpoint=server.endpoint, minio_secure=False)
            run = run_compiled(PACKAGE_PATH, values, Path(tmp) / "kfp")
            if not run.ok:
                print(f"kfp.local run failed in {run.failed_step}: {run.error} (log: {run.log_path})")
                return 1
            local_runs.append(run.phases)
            totals.append(run.seconds)
        direct_runs: list[dict[str, float]] = []
        for i in range(args.repeat):
            values = dict(base, model_name="bench-direct")
            direct_runs.append(in_process(values, Path(tmp) / f"direct-{i}", store))

    print()
    print(f"{'step':<16} {'kfp.local s':>12} {'in-process s':>13} {'ratio':>7}")
    for step in STEPS:
        kfp_s = statistics.median(r[step] for r in local_runs)
        direct_s = statistics.median(r[step] for r in direct_runs)
        print(f"{step:<16} {kfp_s:>12.2f} {direct_s:>13.3f} {kfp_s / max(direct_s, 1e-6):>6.0f}x")
    kfp_total = statistics.median(totals)
    direct_total = statistics.median(sum(r.values()) for r in direct_runs)
    print(f"{'total':<16} {kfp_total:>12.2f} {direct_total:>13.3f} {kfp_total / direct_total:>6.0f}x")
    verdict = "meets" if kfp_total < TARGET_S else "MISSES"
    print(f"\nlocal pipeline end to end: {kfp_total:.1f} s (median of {args.repeat}) {verdict} "
          f"the {TARGET_S:.0f} s target; "
          f"kfp.local adds {kfp_total - direct_total:.1f} s over the in-process steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
