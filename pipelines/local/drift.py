"""`make drift`: the monitor step against the local store (or MINIO_ENDPOINT's), then, if asked, a local training run.

    python -m pipelines.local.drift [--log-uri s3://logs/inference/] [--last-days 2 | --start-date D [--end-date D]]
                                    [--model-name M] [--bucket B] [--psi 0.2 ...] [--retrain [--train-param k=v ...]]

The traffic is what the server logged under --log-uri (default: $SERVING_INFERENCE_LOG, else
s3://logs/inference/). The reports go to local_outputs/drift-<model>-<time>/ (report.json, report.md,
report.html and plots/). With --retrain, a "retrain recommended" runs `make run`'s training
(pipelines.local.run) with the --train-param overrides. Exit status: 0 measured (either decision),
1 the store or the training run failed, 2 bad input (window, thresholds, no production model).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import sys
from pathlib import Path

from components import cli, drift, monitor
from contract.files import DEFAULT_MODEL_NAME
from components.objectstore import ObjectStore
from pipelines.local.run import _local_port, object_store
from pipelines.local.s3server import DEFAULT_DATA_DIR
from pipelines.models import EXITS

LOG_ENV = "SERVING_INFERENCE_LOG"
DEFAULT_LOG_URI = "s3://logs/inference/"
# One flag per threshold: --psi, --ks-statistic, ... --min-rows.
THRESHOLDS = [field.name for field in dataclasses.fields(drift.Thresholds)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-uri", default=os.environ.get(LOG_ENV) or DEFAULT_LOG_URI,
                        help=f"where the server logs traffic (default: ${LOG_ENV}, else {DEFAULT_LOG_URI})")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--bucket", default="models")
    parser.add_argument("--start-date", default="", help="first day, YYYY-MM-DD (UTC)")
    parser.add_argument("--end-date", default="", help="last day, YYYY-MM-DD (default: today)")
    parser.add_argument("--last-days", type=int, default=None,
                        help="the last N days up to today, UTC (default without --start-date: 2, yesterday and today)")
    defaults = drift.Thresholds()
    for name in THRESHOLDS:
        default = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default,
                            help="drift threshold (default: %(default)s; components.drift explains each)")
    parser.add_argument("--retrain", action="store_true", help="run the local training when retraining is recommended")
    parser.add_argument("--train-param", action="append", default=[], metavar="NAME=VALUE",
                        help="parameter of that training run (as make run's --param)")
    parser.add_argument("--output-dir", default="local_outputs", help="where the report folder goes")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="local S3 data folder")
    return parser


def _lines(result: dict, folder: Path) -> list[str]:
    lines = [f"traffic: {result['rows']} rows from {result['objects']} objects under {result['log_uri']} "
             f"({result['window']['start']}..{result['window']['end']}), {result['skipped_rows']} rows skipped; "
             f"production v{result['production_version']}"]
    for name, r in result["features"].items():
        if r["psi"] is not None:
            lines.append(f"  {'!' if r['drifting'] else ' '} {name:<12} PSI {r['psi']:.3f}  KS {r['ks_statistic']:.3f} "
                         f"(p {r['ks_pvalue']:.2g})  out of range {r['out_of_range_share']:.1%}")
    decision = "RETRAIN RECOMMENDED" if result["retrain_recommended"] else "NO RETRAINING"
    return lines + [f"decision: {decision} - {result['reason']}", f"report: {folder / 'report.html'}"]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = Path(args.output_dir) / f"drift-{args.model_name}-{stamp}-{os.getpid()}"
    outcome: dict = {}

    def measure() -> None:
        thresholds = drift.Thresholds(**{name: getattr(args, name) for name in THRESHOLDS})
        last_days = args.last_days if args.last_days is not None else (0 if args.start_date else 2)
        window = monitor.Window.of(args.start_date, args.end_date, last_days)
        monitor.parse_log_uri(args.log_uri)
        with object_store(Path(args.data_dir), _local_port()):
            outcome.update(monitor.run(ObjectStore.from_env(), args.log_uri, args.model_name, args.bucket, window,
                                       thresholds, folder / "report.json", folder / "report.html", folder / "plots",
                                       folder / "report.md"))
        print("\n".join(_lines(outcome, folder)))

    status = cli.run(measure, EXITS)
    if status != cli.EXIT_OK or not (args.retrain and outcome.get("retrain_recommended")):
        return status
    from pipelines.local import run  # after the store above is stopped: the training run starts its own

    print("==> retraining: make run's training pipeline")
    return run.main([arg for pair in args.train_param for arg in ("--param", pair)])


if __name__ == "__main__":
    sys.exit(main())
