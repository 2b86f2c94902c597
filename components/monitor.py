"""Monitor: compare a window of logged traffic with the production model's training profile.

The server's inference log (serving/inference_log.py) writes gzip JSON lines, one object per row,
    {"ts": ISO UTC, "model": name, "version": "3", "inputs": [floats in schema order], "outputs": {"predict": ...}}
under s3://<bucket>/<prefix>/model=<name>/date=<YYYY-MM-DD>/<host>-<pid>-<token>-<seq>.jsonl.gz.
An object exists only once complete; this reads every object of the window's date partitions.

The production model is the version production.json names (components.registry); its metadata's
"profile" (components.profile) is the reference. A version pushed before profiles were recorded
has none: the monitor then says so and decides nothing.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import re
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from components import drift
from components.artifacts import feature_names, write_json
from components.errors import DriftError, ObjectNotFound
from components.registry import Registry, check_location

log = logging.getLogger(__name__)

LOG_SUFFIX = ".jsonl.gz"
MAX_ROWS = 200_000  # a window's rows held in memory at most (floats: about 1.6 MB per 10 features and 10k rows)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Window:
    start: dt.date
    end: dt.date  # inclusive

    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    @classmethod
    def of(cls, start: str = "", end: str = "", last_days: int = 0, today: dt.date | None = None) -> "Window":
        """start..end (YYYY-MM-DD, end defaults to today) or the last_days days up to today (UTC)."""
        today = today or dt.datetime.now(dt.timezone.utc).date()

        def day(name: str, text: str) -> dt.date:
            if not _DATE.fullmatch(text):
                raise DriftError(f"{name}={text!r} is invalid: expected a date YYYY-MM-DD")
            try:
                return dt.date.fromisoformat(text)
            except ValueError as exc:
                raise DriftError(f"{name}={text!r} is invalid: {exc}") from None

        if isinstance(last_days, bool) or not isinstance(last_days, int) or last_days < 0:
            raise DriftError(f"last_days={last_days!r} is invalid: expected a whole number of days >= 0")
        if start and last_days:
            raise DriftError("give start_date (with end_date) or last_days, not both")
        if not start and not last_days:
            raise DriftError("no window: give start_date (YYYY-MM-DD, end_date defaults to today) or last_days >= 1")
        last = day("end_date", end) if end else today
        first = day("start_date", start) if start else last - dt.timedelta(days=last_days - 1)
        if first > last:
            raise DriftError(f"start_date {first} is after end_date {last}")
        return cls(first, last)


def parse_log_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/prefix/ -> (bucket, "prefix/"); the prefix may be empty."""
    match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?", uri or "")
    if not match:
        raise DriftError(f"log_uri={uri!r} is invalid: expected s3://bucket/prefix/ (SERVING_INFERENCE_LOG's value)")
    prefix = match.group(2) or ""
    return match.group(1), prefix if not prefix or prefix.endswith("/") else prefix + "/"


def partition(prefix: str, model_name: str, day: dt.date) -> str:
    return f"{prefix}model={model_name}/date={day:%Y-%m-%d}/"


@dataclass
class Traffic:
    """The logged rows of a window: inputs in schema order, the predictions that were returned."""

    inputs: list[list[float]] = field(default_factory=list)
    predictions: list = field(default_factory=list)
    objects: int = 0
    skipped_rows: int = 0  # rows that do not fit the schema (another version's inputs) or are not JSON
    bad_objects: list[str] = field(default_factory=list)  # objects that are not gzip JSON lines
    versions: Counter = field(default_factory=Counter)
    truncated: bool = False

    def matrix(self, width: int) -> np.ndarray:
        if not self.inputs:
            return np.empty((0, width))
        return np.array([[np.nan if v is None else v for v in row] for row in self.inputs], dtype=np.float64)


def _add_rows(traffic: Traffic, lines: list[bytes], width: int, max_rows: int) -> None:
    for line in lines:
        if not line.strip():
            continue
        if len(traffic.inputs) >= max_rows:
            traffic.truncated = True
            return
        try:
            row = json.loads(line)
            inputs = row["inputs"]
            ok = isinstance(inputs, list) and len(inputs) == width and all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in inputs)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            traffic.skipped_rows += 1
            continue
        traffic.inputs.append(inputs)
        traffic.versions[str(row.get("version"))] += 1
        outputs = row.get("outputs")
        if isinstance(outputs, dict) and "predict" in outputs:
            traffic.predictions.append(outputs["predict"])


def read_traffic(store, log_uri: str, model_name: str, window: Window, width: int,
                 max_rows: int = MAX_ROWS) -> Traffic:
    """Every logged row of model_name in the window (at most max_rows, oldest day first)."""
    bucket, prefix = parse_log_uri(log_uri)
    traffic = Traffic()
    for day in window.days():
        for key in store.list_keys(bucket, partition(prefix, model_name, day)):
            if not key.endswith(LOG_SUFFIX) or traffic.truncated:
                continue
            try:
                lines = gzip.decompress(store.get_bytes(bucket, key)).splitlines()
            except ObjectNotFound:  # listed, then removed (a lifecycle rule): nothing to read
                continue
            except (OSError, EOFError, zlib.error) as exc:
                log.warning("skipped %s: not a gzip file (%s)", store.uri(bucket, key), exc)
                traffic.bad_objects.append(key)
                continue
            traffic.objects += 1
            _add_rows(traffic, lines, width, max_rows)
    if traffic.truncated:
        log.warning("the window holds more than %d rows: the first %d (oldest first) were compared", max_rows,
                    max_rows)
    return traffic


def _no_profile(version, rows: int, thresholds: drift.Thresholds) -> dict:
    return {"rows": rows, "reference_rows": None, "thresholds": asdict(thresholds), "features": {},
            "drifting_features": [], "prediction": None, "target": None, "retrain_recommended": False,
            "reason": f"production v{version} has no training profile (pushed before profiles were recorded): "
                      "no decision; the next version pushed records one"}


def run(store, log_uri: str, model_name: str, bucket: str, window: Window, thresholds: drift.Thresholds,
        report_path: str | Path, html_path: str | Path | None = None, plots_dir: str | Path | None = None,
        markdown_path: str | Path | None = None, max_rows: int = MAX_ROWS) -> dict:
    """The monitor step: read the window, compare it with production's profile, write the reports."""
    check_location(bucket, model_name)
    production = Registry(store, bucket, model_name).production_metadata()
    if production is None:
        raise DriftError(f"no production model at s3://{bucket}/{model_name}/: nothing to compare traffic with "
                         "(push a model first)")
    names = feature_names(production["schema"])
    traffic = read_traffic(store, log_uri, model_name, window, len(names), max_rows)
    x = traffic.matrix(len(names))
    profile = production.get("profile")
    report = (drift.compare(profile, names, x, thresholds, predictions=traffic.predictions) if profile
              else _no_profile(production.get("version"), len(x), thresholds))
    result = {"model_name": model_name, "production_version": production.get("version"), "log_uri": log_uri,
              "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
              "objects": traffic.objects, "skipped_rows": traffic.skipped_rows, "bad_objects": traffic.bad_objects,
              "served_versions": dict(traffic.versions), "truncated": traffic.truncated, **report}
    write_json(report_path, result)
    from components import drift_report  # matplotlib: only when the reports are written

    title = f"Drift: {model_name} traffic {window.start}..{window.end} vs production v{production.get('version')}"
    if markdown_path is not None:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_path).write_text(drift_report.markdown(report, title))
    if html_path is not None:
        facts = [("traffic", f"{log_uri} ({traffic.objects} objects, {traffic.skipped_rows} rows skipped)"),
                 ("served versions", ", ".join(f"v{v}: {n}" for v, n in sorted(traffic.versions.items())) or "none")]
        drift_report.write_html(report, profile or {}, names, x, html_path,
                                plots_dir or Path(html_path).with_suffix(".plots"), title, facts)
    log.info("%s: %s", "retrain recommended" if report["retrain_recommended"] else "no retraining", report["reason"])
    return result
