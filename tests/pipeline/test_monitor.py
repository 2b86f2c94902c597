"""The monitor: logged traffic (the inference log's format, written here) against production's profile; its pipeline."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import numpy as np
import pytest
import yaml

from components import drift, monitor, push
from components.datasets import read_dataset
from components.errors import DriftError
from components.kfp_components import PIPELINE_IMAGE
from components.objectstore import ObjectStore
from pipelines import monitor_pipeline, params
from pipelines.local import drift as make_drift

from .memstore import MemStore

NOW = dt.datetime(2026, 12, 2, 20, 0, tzinfo=dt.timezone.utc)
TODAY = NOW.date()
LOG_URI = "s3://logs/inference/"
SHIFTED = ["bmi", "s5"]


def write_log(store, day: dt.date, rows: np.ndarray, predictions, model: str = "m", seq: int = 1,
              version: str = "1") -> str:
    """One object as serving/inference_log.py writes it: gzip JSON lines under model=<m>/date=<d>/."""
    key = f"inference/model={model}/date={day:%Y-%m-%d}/host-7-0a1b2c3d-{seq:06d}.jsonl.gz"
    lines = [json.dumps({"ts": f"{day:%Y-%m-%d}T12:00:00.000000Z", "model": model, "version": version,
                         "inputs": [float(v) for v in row], "outputs": {"predict": float(p)}})
             for row, p in zip(rows, predictions, strict=True)]
    store.ensure_bucket("logs")
    store.put_bytes("logs", key, gzip.compress(("\n".join(lines) + "\n").encode()), "application/x-ndjson")
    return key


@pytest.fixture(scope="module")
def served(diabetes, diabetes_rf, evaluated):
    """(train rows, model) of production v1 of "m", pushed with its profile."""
    import joblib

    x, _ = read_dataset(diabetes.train, json.loads(diabetes.schema.read_text()))
    return x, joblib.load(diabetes_rf / "model.joblib")


def measure(store, tmp_path, days: int = 2, **thresholds):
    return monitor.run(store, LOG_URI, "m", "models", monitor.Window.of(last_days=days, today=TODAY),
                       drift.Thresholds(**thresholds), tmp_path / "report.json", tmp_path / "report.html",
                       tmp_path / "plots", tmp_path / "report.md")


def test_traffic_like_the_training_data_does_not_drift(production_store, served, tmp_path):
    x, model = served
    rows = x[np.random.default_rng(0).integers(0, len(x), 300)]
    write_log(production_store, TODAY, rows[:150], model.predict(rows[:150]), seq=1)
    write_log(production_store, TODAY - dt.timedelta(days=1), rows[150:], model.predict(rows[150:]), seq=2)
    result = measure(production_store, tmp_path)
    assert (result["rows"], result["objects"], result["production_version"]) == (300, 2, 1)
    assert result["drifting_features"] == [] and not result["retrain_recommended"]
    assert not result["prediction"]["drifting"]
    assert json.loads((tmp_path / "report.json").read_text())["reason"] == result["reason"]
    assert list((tmp_path / "plots").glob("*.png")) == []  # a plot per drifting feature: none


def test_two_shifted_features_are_flagged_plotted_and_recommend_retraining(production_store, served, diabetes,
                                                                          tmp_path):
    x, model = served
    rows = x[np.random.default_rng(1).integers(0, len(x), 300)].copy()
    names = [f["name"] for f in json.loads(diabetes.schema.read_text())["features"]]
    for name in SHIFTED:
        column = names.index(name)
        rows[:, column] += x[:, column].std()
    write_log(production_store, TODAY, rows, model.predict(rows))
    result = measure(production_store, tmp_path)
    assert result["drifting_features"] == SHIFTED and result["retrain_recommended"]
    assert sorted(p.name for p in (tmp_path / "plots").glob("*.png")) == ["drift_bmi.png", "drift_s5.png"]
    page = (tmp_path / "report.html").read_text()
    assert page.count("<img ") == 2 and "RETRAIN RECOMMENDED" in page
    flat = drift.metrics(result)
    assert flat["retrain_recommended"] == 1.0 and flat["drifting_features"] == 2.0 and flat["bmi_psi"] >= 0.2
    assert "| ⚠ | bmi |" in (tmp_path / "report.md").read_text()


def test_only_the_window_the_model_and_well_formed_rows_are_read(production_store, served, tmp_path):
    x, model = served
    rows = x[:120]
    write_log(production_store, TODAY, rows, model.predict(rows))
    write_log(production_store, TODAY - dt.timedelta(days=5), rows + 1, model.predict(rows))  # outside the window
    write_log(production_store, TODAY, rows + 1, model.predict(rows), model="other")  # another model's partition
    not_gzip = f"inference/model=m/date={TODAY}/host-7-0a1b2c3d-000009.jsonl.gz"
    production_store.put_bytes("logs", not_gzip, b"not gzip")
    bad = gzip.compress(b'{"inputs": [1, 2], "outputs": {}}\nnot json\n')  # another schema's row, a broken line
    production_store.put_bytes("logs", f"inference/model=m/date={TODAY}/host-7-0a1b2c3d-000010.jsonl.gz", bad)
    result = measure(production_store, tmp_path)
    assert (result["rows"], result["objects"], result["skipped_rows"]) == (120, 2, 2)
    assert result["bad_objects"] == [f"inference/model=m/date={TODAY}/host-7-0a1b2c3d-000009.jsonl.gz"]
    assert result["served_versions"] == {"1": 120} and result["drifting_features"] == []


def test_max_rows_bounds_what_is_held(production_store, served, tmp_path):
    x, model = served
    write_log(production_store, TODAY, x[:200], model.predict(x[:200]))
    window = monitor.Window(TODAY, TODAY)
    traffic = monitor.read_traffic(production_store, LOG_URI, "m", window, x.shape[1], max_rows=50)
    assert len(traffic.inputs) == 50 and traffic.truncated


def test_a_production_version_without_a_profile_decides_nothing(production_store, served, tmp_path):
    for key in ("m/v1/metadata.json", "m/production/metadata.json"):  # as pushed before profiles existed
        metadata = json.loads(production_store.get_bytes("models", key))
        del metadata["profile"]
        production_store.put_bytes("models", key, json.dumps(metadata).encode())
    x, model = served
    write_log(production_store, TODAY, x[:100] + 1, model.predict(x[:100]))
    result = measure(production_store, tmp_path)
    assert not result["retrain_recommended"] and "v1 has no training profile" in result["reason"]
    assert result["rows"] == 100


def test_no_production_model_is_a_clear_error(tmp_path):
    with pytest.raises(DriftError, match="no production model at s3://models/m/"):
        measure(MemStore(), tmp_path)


@pytest.mark.parametrize("kwargs, expected", [
    ({"last_days": 3}, (TODAY - dt.timedelta(days=2), TODAY)),
    ({"start": "2026-11-30"}, (dt.date(2026, 11, 30), TODAY)),
    ({"start": "2026-11-01", "end": "2026-11-02"}, (dt.date(2026, 11, 1), dt.date(2026, 11, 2))),
    ({"last_days": 2, "end": "2026-11-10"}, (dt.date(2026, 11, 9), dt.date(2026, 11, 10))),
])
def test_windows(kwargs, expected):
    window = monitor.Window.of(today=TODAY, **kwargs)
    assert (window.start, window.end) == expected and len(window.days()) == (expected[1] - expected[0]).days + 1


@pytest.mark.parametrize("kwargs, expected", [
    ({}, "no window"), ({"last_days": -1}, "last_days=-1 is invalid"),
    ({"start": "2026-13-01"}, "start_date='2026-13-01' is invalid"), ({"start": "yesterday"}, "expected a date"),
    ({"start": "2026-12-01", "last_days": 2}, "not both"), ({"start": "2026-12-05"}, "is after end_date"),
])
def test_bad_windows_name_the_field(kwargs, expected):
    with pytest.raises(DriftError, match=expected):
        monitor.Window.of(today=TODAY, **kwargs)


@pytest.mark.parametrize("uri, expected", [
    ("s3://logs/inference/", ("logs", "inference/")), ("s3://logs/inference", ("logs", "inference/")),
    ("s3://logs", ("logs", "")),
])
def test_log_uris(uri, expected):
    assert monitor.parse_log_uri(uri) == expected


@pytest.mark.parametrize("uri", ["logs/inference/", "http://logs/x", "s3://"])
def test_bad_log_uris_are_refused(uri):
    with pytest.raises(DriftError, match=r"log_uri=.* is invalid: expected s3://bucket/prefix/"):
        monitor.parse_log_uri(uri)


# ----------------------------------------------------------------------------- the pipeline

def test_committed_monitor_yaml_matches_a_fresh_compile(tmp_path):
    fresh = monitor_pipeline.compile_pipeline(tmp_path / "fresh.yaml")
    assert monitor_pipeline.PACKAGE_PATH.read_text() == fresh.read_text(), "run `make compile` and commit the YAML"


def test_training_starts_only_when_drift_recommends_it_and_retrain_allows_it():
    spec, platform = yaml.safe_load_all(monitor_pipeline.PACKAGE_PATH.read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {PIPELINE_IMAGE} and len(executors) == 2
    drifted = spec["root"]["dag"]["tasks"]["condition-1"]
    assert drifted["triggerPolicy"]["condition"] == \
        "inputs.parameter_values['pipelinechannel--monitor-retrain_recommended'] == true"
    retrain = spec["components"]["comp-condition-1"]["dag"]["tasks"]["condition-2"]
    assert retrain["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--retrain'] == true"
    assert set(spec["components"]["comp-condition-2"]["dag"]["tasks"]) == {"start-training"}
    secret = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-monitor"]["secretAsEnv"][0]
    assert {k["envVar"] for k in secret["keyToEnv"]} == {"MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"}
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["retrain"]["defaultValue"] is False  # reporting only, unless asked


def test_the_pipeline_parameters_are_checked_before_upload():
    values = params.effective({}, monitor_pipeline.PACKAGE_PATH)
    monitor_pipeline.check(values)
    with pytest.raises(Exception, match="training_parameters='\\[1\\]' is invalid: expected a JSON object"):
        monitor_pipeline.check({**values, "training_parameters": "[1]"})
    with pytest.raises(DriftError, match="psi=-0.1 is invalid"):
        monitor_pipeline.check({**values, "psi_threshold": -0.1})


# ----------------------------------------------------------------------------- make drift

@pytest.mark.integration
def test_make_drift_reads_the_store_and_retrains_only_when_asked(s3_env, bucket, diabetes, diabetes_rf, evaluated,
                                                                 served, tmp_path, capsys, monkeypatch):
    real = ObjectStore.from_env()
    push.run(model_dir=diabetes_rf, schema_path=diabetes.schema,
             evaluation_path=evaluated, model_name="m", bucket=bucket, store=real, run_id="run-1", now=NOW)
    x, model = served
    shifted = x[:200].copy()
    shifted[:, 2] += 1.0
    today = dt.datetime.now(dt.timezone.utc).date()
    write_log(real, today, shifted, model.predict(shifted))
    started = []
    monkeypatch.setattr("pipelines.local.run.main", lambda argv: started.append(argv) or 0)
    args = ["--log-uri", LOG_URI, "--model-name", "m", "--bucket", bucket, "--output-dir", str(tmp_path)]
    assert make_drift.main(args) == 0
    out = capsys.readouterr().out
    assert "decision: RETRAIN RECOMMENDED - 1 of 10 features drift (bmi)" in out and started == []
    assert "! bmi" in out and "report: " in out
    assert make_drift.main([*args, "--retrain", "--train-param", "threshold=0.3"]) == 0
    assert started == [["--param", "threshold=0.3"]]
    assert make_drift.main([*args, "--psi", "-1"]) == 2
    assert "psi=-1.0 is invalid" in capsys.readouterr().err
