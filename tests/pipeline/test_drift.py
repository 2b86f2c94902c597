"""The training data profile (components.profile) and drift against it (components.drift)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from components import drift, evaluate, profile, push
from components.errors import DriftError
from components.registry import Registry

from .memstore import MemStore

NAMES = [f"f{i}" for i in range(6)]
SHIFTED = {"f1", "f3"}
NOW = dt.datetime(2026, 12, 2, 20, 0, tzinfo=dt.timezone.utc)


def synthetic(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Five normal features and one coded 0/1 feature (ties, as a category code or "sex" has)."""
    x = rng.normal(size=(rows, len(NAMES)))
    x[:, 5] = rng.integers(0, 2, rows)
    return x


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(7)
    x = synthetic(rng, 2000)
    y = 2 * x[:, 0] + x[:, 2]
    schema = {"features": [{"name": n} for n in NAMES], "target": {"name": "y", "type": "continuous"}}
    return x, y, profile.of_training(x, y, y, schema)


def test_profile_summarises_each_feature_in_schema_order(trained):
    x, _, prof = trained
    assert list(prof["features"]) == NAMES and prof["rows"] == 2000
    f0 = prof["features"]["f0"]
    assert f0["mean"] == pytest.approx(x[:, 0].mean()) and f0["std"] == pytest.approx(x[:, 0].std())
    assert (f0["min"], f0["max"]) == (x[:, 0].min(), x[:, 0].max())
    assert len(f0["quantiles"]) == 101 and f0["quantiles"][50] == pytest.approx(np.median(x[:, 0]))
    assert len(f0["bin_shares"]) == len(f0["bin_edges"]) + 1 == 10 and sum(f0["bin_shares"]) == pytest.approx(1)
    coded = prof["features"]["f5"]  # the decile edges of a 0/1 column collapse into one, between the values
    assert coded["bin_edges"] == [0.5] and coded["bin_shares"] == [np.mean(x[:, 5] == 0), np.mean(x[:, 5] == 1)]
    assert json.loads(json.dumps(prof, allow_nan=False)) == prof  # valid JSON, as metadata.json must be


def test_profile_counts_missing_values_and_class_balance():
    column = profile.numeric([1.0, None, 3.0, np.nan])
    assert column["missing_fraction"] == 0.5 and column["mean"] == 2.0
    schema = {"features": [{"name": "a"}], "target": {"name": "y", "type": "categorical", "classes": [0, 1, 2]}}
    labels = np.array([0, 0, 1, 1, 1, 2, 0, 1])
    prof = profile.of_training(np.ones((8, 1)), labels, labels, schema)
    assert prof["target"]["shares"] == [3 / 8, 4 / 8, 1 / 8] and prof["target"]["unknown_fraction"] == 0


def test_two_shifted_features_are_flagged_and_no_other(trained):
    _, _, prof = trained
    new = synthetic(np.random.default_rng(11), 1000)
    new[:, 1] += 0.5  # a shift of half a standard deviation
    new[:, 3] *= 1.8  # a wider spread, same mean
    report = drift.compare(prof, NAMES, new)
    assert set(report["drifting_features"]) == SHIFTED
    assert report["retrain_recommended"] and "2 of 6 features drift (f1, f3)" in report["reason"]
    for name in NAMES:
        result = report["features"][name]
        assert result["drifting"] == (name in SHIFTED), (name, result)
        assert (result["psi"] >= 0.2) == (name in SHIFTED), (name, result["psi"])


def test_a_resample_of_the_training_data_does_not_drift(trained):
    x, y, prof = trained
    rows = np.random.default_rng(3).integers(0, len(x), 500)
    report = drift.compare(prof, NAMES, x[rows], predictions=list(y[rows]))
    assert report["drifting_features"] == [] and not report["retrain_recommended"]
    assert not report["prediction"]["drifting"] and report["reason"].startswith("no drift")
    assert max(r["psi"] for r in report["features"].values()) < 0.1


def test_a_float_step_of_noise_moves_no_row_and_nothing_drifts(trained):
    x, _, prof = trained
    rows = x[np.random.default_rng(4).integers(0, len(x), 500)]
    noisy = np.nextafter(rows, np.where(np.arange(rows.size).reshape(rows.shape) % 2, np.inf, -np.inf))
    assert (noisy != rows).all()  # every value one float step up or down, as another parser may read it
    clean, jittered = drift.compare(prof, NAMES, rows), drift.compare(prof, NAMES, noisy)
    for name in NAMES:
        assert jittered["features"][name]["psi"] == pytest.approx(clean["features"][name]["psi"])
        assert jittered["features"][name]["out_of_range_share"] == clean["features"][name]["out_of_range_share"] == 0
    assert jittered["drifting_features"] == []


def test_ks_from_the_profile_agrees_with_scipys_two_sample_test(trained):
    x, _, prof = trained
    sample = synthetic(np.random.default_rng(5), 800)[:, 1] + 0.2
    statistic, pvalue = drift.ks_against_profile(prof["features"]["f1"]["quantiles"], 2000, sample)
    exact = stats.ks_2samp(x[:, 1], sample, method="asymp")
    assert statistic == pytest.approx(exact.statistic, abs=0.011)  # percentiles: about 1 % resolution
    assert np.log10(pvalue) == pytest.approx(np.log10(exact.pvalue), abs=1.0)


def test_ks_is_right_on_a_column_of_atoms_and_scattered_values():
    """Like diabetes' s4: most rows on a few rounded values, the rest spread between them."""
    rng = np.random.default_rng(8)
    atoms = rng.choice([-0.04, -0.0026, 0.0343, 0.071], size=1600, p=[0.3, 0.3, 0.25, 0.15])
    column = np.concatenate([atoms, rng.uniform(-0.08, 0.19, 400)])
    reference = profile.numeric(column)
    resample = column[rng.integers(0, len(column), 400)]
    statistic, pvalue = drift.ks_against_profile(reference["quantiles"], len(column), resample)
    assert statistic == pytest.approx(stats.ks_2samp(column, resample).statistic, abs=0.015) and pvalue > 0.05
    assert not drift.numeric_drift(reference, resample, drift.Thresholds(), 0.2)["drifting"]


def test_out_of_range_rows_and_prediction_drift_are_flagged(trained):
    _, _, prof = trained
    new = synthetic(np.random.default_rng(9), 400)
    new[:40, 4] = 50.0  # 10 % of rows far outside what training saw
    report = drift.compare(prof, NAMES, new, predictions=list(2 * new[:, 0] + new[:, 2] + 3))
    assert report["features"]["f4"]["out_of_range_share"] == pytest.approx(0.1)
    assert report["drifting_features"] == ["f4"]
    assert report["prediction"]["drifting"] and "predictions drift" in report["reason"]


def test_class_shares_drift_and_unknown_labels_count():
    reference = profile.classes([0] * 50 + [1] * 50, [0, 1])
    assert not drift.class_drift(reference, [0] * 48 + [1] * 52, 0.2)["drifting"]
    assert drift.class_drift(reference, [0] * 90 + [1] * 10, 0.2)["drifting"]
    unseen = drift.class_drift(reference, [0] * 40 + [1] * 40 + [7] * 20, 0.2)
    assert unseen["unknown_fraction"] == 0.2 and unseen["drifting"]


def test_too_few_rows_decide_nothing(trained):
    _, _, prof = trained
    new = synthetic(np.random.default_rng(1), 20) + 3
    report = drift.compare(prof, NAMES, new)
    assert not report["retrain_recommended"] and "only 20 rows" in report["reason"]


@pytest.mark.parametrize("field, value, expected", [
    ("psi", -1, "a number >= 0"), ("ks_pvalue", 2, "p-value in 0..1"), ("min_rows", 0, "whole number >= 1"),
    ("min_drifting_features", 1.5, "whole number >= 1"), ("psi", float("nan"), "a number >= 0"),
])
def test_bad_thresholds_name_the_field(field, value, expected):
    with pytest.raises(DriftError, match=rf"{field}={value!r} is invalid: expected .*{expected}"):
        drift.Thresholds(**{field: value})


def test_rows_that_do_not_match_the_profile_are_refused(trained):
    _, _, prof = trained
    with pytest.raises(DriftError, match="rows have 5 values, expected 6"):
        drift.compare(prof, NAMES, np.zeros((3, 5)))
    with pytest.raises(DriftError, match="no feature 'bmi'"):
        drift.compare(prof, ["bmi"], np.zeros((3, 1)))


def test_metrics_are_flat_scalars(trained):
    _, _, prof = trained
    flat = drift.metrics(drift.compare(prof, NAMES, synthetic(np.random.default_rng(2), 300)))
    assert {"rows", "drifting_features", "retrain_recommended", "f0_psi", "f0_ks_pvalue"} <= set(flat)
    assert all(isinstance(v, float) for v in flat.values())


# ------------------------------------------------------------------ the profile reaches metadata.json

def test_push_records_the_training_profile_in_the_versions_metadata(production_store, diabetes_rf):
    metadata = Registry(production_store, "models", "m").production_metadata()
    training = json.loads((diabetes_rf / "training.json").read_text())
    assert metadata["version"] == 1 and metadata["profile"] == training["profile"]
    features = [f["name"] for f in metadata["schema"]["features"]]
    assert list(metadata["profile"]["features"]) == features
    assert metadata["profile"]["rows"] == training["train_rows"]
    assert metadata["profile"]["predictions"]["kind"] == "numeric"


def test_a_model_folder_without_a_profile_still_pushes(diabetes, diabetes_rf, evaluated, tmp_path):
    older = tmp_path / "older"
    older.mkdir()
    (older / "model.joblib").write_bytes((diabetes_rf / "model.joblib").read_bytes())
    training = json.loads((diabetes_rf / "training.json").read_text())
    del training["profile"]
    (older / "training.json").write_text(json.dumps(training))
    store = MemStore()
    push.run(model_dir=older, schema_path=diabetes.schema,
             evaluation_path=evaluated, model_name="m", bucket="models", store=store, run_id="run-1", now=NOW)
    assert "profile" not in Registry(store, "models", "m").production_metadata()


# ------------------------------------------------------------- evaluate: new data vs production's profile

def evaluate_against(store, diabetes, model_dir, test_path, folder, threshold=0.2, **options):
    return evaluate.run(test_path=test_path, schema_path=diabetes.schema, model_dir=model_dir, threshold=threshold,
                        model_name="m", bucket="models", store=store, data_source=diabetes.source, seed=42,
                        test_fraction=0.2, evaluation_path=folder / "evaluation.json", report_path=folder / "report.md",
                        html_path=folder / "report.html", plots_dir=folder / "plots", **options)


def shifted_test_split(diabetes, folder, names=("bmi", "s5")):
    frame = pd.read_csv(diabetes.test)
    train = pd.read_csv(diabetes.train)
    for name in names:
        frame[name] += train[name].std()
    path = folder / "shifted.csv"
    frame.to_csv(path, index=False)
    return path


def test_evaluate_reports_no_drift_for_new_rows_of_the_same_data(production_store, diabetes, ridge_models, tmp_path):
    result = evaluate_against(production_store, diabetes, ridge_models[0], diabetes.test, tmp_path)
    section = result["drift"]
    assert section["against_version"] == 1 and section["drifting_features"] == []
    assert section["rows"] == result["test_rows"] and section["target"]["drifting"] is False
    assert "Drift of this run's data (test split) from production v1's training data" in (
        tmp_path / "report.md").read_text()


def test_evaluate_flags_shifted_features_and_gates_only_when_asked(production_store, diabetes, ridge_models,
                                                                  tmp_path):
    shifted = shifted_test_split(diabetes, tmp_path)
    reported = evaluate_against(production_store, diabetes, ridge_models[0], shifted, tmp_path)
    assert reported["drift"]["drifting_features"] == ["bmi", "s5"]
    report = (tmp_path / "report.md").read_text()
    assert "**The data drifted** — 2 of 10 features drift (bmi, s5)" in report
    assert sorted(p.name for p in (tmp_path / "plots").glob("drift_*.png")) == ["drift_bmi.png", "drift_s5.png"]
    # Shifted features spoil the score; let the score pass so only the drift gate can say no.
    rewrite_production(production_store, lambda m: m["primary_metric"].update(value=-1e9))
    scored = evaluate_against(production_store, diabetes, ridge_models[0], shifted, tmp_path, threshold=-1e9)
    assert scored["deploy"] and scored["drift"]["drifting_features"] == ["bmi", "s5"]
    gated = evaluate_against(production_store, diabetes, ridge_models[0], shifted, tmp_path, threshold=-1e9,
                             drift_gate=True)
    assert not gated["deploy"] and "drifted from production v1" in gated["reason"] and "drift_gate" in gated["reason"]


def rewrite_production(store, change, bucket: str = "models") -> None:
    """Edit production v1's metadata.json in place (both copies), e.g. as an older push wrote it."""
    for key in ("m/v1/metadata.json", "m/production/metadata.json"):
        metadata = json.loads(store.get_bytes(bucket, key))
        change(metadata)
        store.put_bytes(bucket, key, json.dumps(metadata).encode())


def test_the_drift_summary_is_a_few_scalars_a_training_run_can_log(trained):
    _, y, prof = trained
    rows = synthetic(np.random.default_rng(5), 400)
    rows[:, 1] += 2.0
    report = drift.compare(prof, NAMES, rows, targets=list(2 * rows[:, 0] + rows[:, 2]))
    summary = drift.summary(report)
    assert set(summary) == {"rows", "drifting_features", "retrain_recommended", "max_psi", "max_out_of_range_share",
                            "target_psi"}
    assert (summary["rows"], summary["drifting_features"], summary["retrain_recommended"]) == (400.0, 1.0, 1.0)
    assert summary["max_psi"] == max(r["psi"] for r in report["features"].values()) == report["features"]["f1"]["psi"]
    assert summary["max_out_of_range_share"] == report["features"]["f1"]["out_of_range_share"] > 0


@pytest.mark.integration  # the KFP component reaches the store through MINIO_* (the session's S3 server)
def test_the_evaluate_component_logs_drift_metrics_and_gates_with_drift_gate(s3_env, bucket, diabetes, diabetes_rf,
                                                                             evaluated, ridge_models, tmp_path):
    from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

    from components import kfp_components
    from components.objectstore import ObjectStore

    store = ObjectStore.from_env()
    push.run(model_dir=diabetes_rf, schema_path=diabetes.schema, evaluation_path=evaluated, model_name="m",
             bucket=bucket, store=store, run_id="run-1", now=NOW)
    rewrite_production(store, lambda m: m["primary_metric"].update(value=-1e9), bucket)  # only drift may say no
    shifted = shifted_test_split(diabetes, tmp_path)
    # A baseline fitted on targets far from the test split's: only drift may say no, not the baseline rule.
    target = json.loads(open(diabetes.schema).read())["target"]["name"]
    far = pd.read_csv(diabetes.train)
    far[target] += 1e4
    far_train = tmp_path / "far-train.csv"
    far.to_csv(far_train, index=False)

    def run(drift_gate: bool) -> tuple[bool, dict]:
        folder = tmp_path / f"gate-{drift_gate}"
        outputs = {"metrics": Metrics(uri=str(folder / "metrics")),
                   "classification_metrics": ClassificationMetrics(uri=str(folder / "cm")),
                   "report": Markdown(uri=str(folder / "report.md")), "html_report": HTML(uri=str(folder / "r.html")),
                   "plots": Artifact(uri=str(folder / "plots")), "evaluation": Artifact(uri=str(folder / "e.json"))}
        gate = kfp_components.evaluate.python_func(
            train_data=Dataset(uri=str(far_train)), test_data=Dataset(uri=str(shifted)),
            schema=Artifact(uri=str(diabetes.schema)), min_gain_over_baseline=0.0,
            model=Model(uri=str(ridge_models[0])), selection=Artifact(uri=""), threshold=-1e9, model_name="m",
            bucket=bucket, minio_endpoint=s3_env["MINIO_ENDPOINT"], minio_secure=False, source=diabetes.source,
            seed=42, test_fraction=0.2, allow_schema_change=False, drift_gate=drift_gate, **outputs)
        return gate.deploy, outputs["metrics"].metadata

    deploy, metrics = run(drift_gate=False)
    assert deploy and metrics["drift_drifting_features"] == 2.0 and metrics["drift_retrain_recommended"] == 1.0
    assert metrics["drift_max_psi"] > 0.2 and {"drift_rows", "drift_target_psi", "r2"} <= set(metrics)
    deploy, _ = run(drift_gate=True)
    assert not deploy


def test_evaluate_without_a_production_profile_says_so(production_store, diabetes, ridge_models, tmp_path):
    store = production_store
    rewrite_production(store, lambda m: m.pop("profile"))
    result = evaluate_against(store, diabetes, ridge_models[0], diabetes.test, tmp_path)
    assert result["drift"] == {"against_version": 1, "reason": "production v1 has no training profile: not compared"}
    assert evaluate_against(None, diabetes, ridge_models[0], diabetes.test, tmp_path)["drift"] is None
