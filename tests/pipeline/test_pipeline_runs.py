"""The compiled pipeline, end to end on kfp.local against the local S3 server.

One story per model, run once per module (each run costs 6-10 s) and checked by several tests:
    1. a weak ridge (no threshold, margin) -> deployed as v1
    2. the default forest, via the CLI     -> better: v2, production moves
    3. the weak ridge again                -> worse than production: nothing pushed
    4. the forest, threshold 0.99 (CLI)    -> below threshold: nothing pushed, exit 0
    5. a source without the target (CLI)  -> ingest fails, exit 1, nothing pushed
and breast_cancer end to end as a classification model.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.candidates import DEFAULT_CANDIDATES
from pipelines import params
from pipelines.local import run
from pipelines.local.runner import LocalRun, run_compiled
from pipelines.training_pipeline import PACKAGE_PATH

pytestmark = pytest.mark.integration

BUCKET = "story"
MODEL = "diabetes-rf"
# Barely better than predicting the mean: no threshold and no margin over that baseline to clear.
WEAK = {"estimator": "ridge", "hyperparameters": '{"alpha": 100000}', "threshold": -1.0,
        "min_gain_over_baseline": 0.0}


@dataclass
class CliRun:
    code: int
    out: str
    err: str


def snapshot(s3_server, bucket: str, model: str) -> dict[str, bytes]:
    root = s3_server.data_dir / bucket / model
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def compiled_run(s3_server, tmp: Path, **overrides) -> LocalRun:
    values = params.effective(overrides, PACKAGE_PATH)
    values.update(minio_endpoint=s3_server.endpoint, minio_secure=False)
    return run_compiled(PACKAGE_PATH, values, tmp / "runs")


def cli_run(tmp: Path, *pairs: str) -> CliRun:
    out, err = io.StringIO(), io.StringIO()
    argv = ["--pipeline-root", str(tmp / "runs"), "--param", f"bucket={BUCKET}"]
    for pair in pairs:
        argv += ["--param", pair]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run.main(argv)
    return CliRun(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def story(s3_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("story")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in s3_server.env().items():  # MINIO_ENDPOINT set: the CLI uses this server as is
            patch.setenv(key, value)
        results = {"weak": compiled_run(s3_server, tmp, bucket=BUCKET, **WEAK)}
        results["after_weak"] = snapshot(s3_server, BUCKET, MODEL)
        results["default"] = cli_run(tmp)
        results["after_default"] = snapshot(s3_server, BUCKET, MODEL)
        results["weak_again"] = compiled_run(s3_server, tmp, bucket=BUCKET, **WEAK)
        results["after_weak_again"] = snapshot(s3_server, BUCKET, MODEL)
        # Another model (a retrain of the same one would be "nothing new to learn" first).
        results["impossible"] = cli_run(tmp, "threshold=0.99", "estimator=random_forest",
                                        'hyperparameters={"n_estimators": 20}')
        results["after_impossible"] = snapshot(s3_server, BUCKET, MODEL)
        # Preflight only checks that the file exists; its columns are ingest's to check.
        (tmp / "bad-row.csv").write_text("a,target\n1,2\noops,4\n")  # a good header: preflight passes it
        results["broken"] = cli_run(tmp, f"source={tmp / 'bad-row.csv'}")
        results["after_broken"] = snapshot(s3_server, BUCKET, MODEL)
        results["same_again"] = cli_run(tmp)
        results["after_same_again"] = snapshot(s3_server, BUCKET, MODEL)
        narrow = tmp / "three-features.csv"
        from sklearn.datasets import load_diabetes

        frame = load_diabetes(as_frame=True).frame[["age", "bmi", "bp", "target"]]
        frame.to_csv(narrow, index=False)
        results["narrow"] = cli_run(tmp, f"source={narrow}", "threshold=0.0")
        results["after_narrow"] = snapshot(s3_server, BUCKET, MODEL)
        results["runs"] = tmp / "runs"
    return results


def metadata(files: dict[str, bytes], folder: str) -> dict:
    return json.loads(files[f"{folder}/metadata.json"])


def test_first_run_creates_the_bucket_and_v1(story):
    weak = story["weak"]
    # estimator= is a list of one: a single cross-validate step.
    assert weak.ok and list(weak.steps) == ["ingest", "plan-candidates", "cross-validate", "train", "evaluate", "push"]
    assert weak.parameters("push")["model_uri"] == f"s3://{BUCKET}/{MODEL}/v1/"
    assert weak.parameters("push")["promoted"] is True
    assert sorted(story["after_weak"]) == ["history/00000001.json", "production.json", "production/metadata.json",
                                           "production/model.joblib", "production/model.skops", "v1/claim.json",
                                           "v1/metadata.json", "v1/model.joblib", "v1/model.skops"]
    assert metadata(story["after_weak"], "v1")["estimator"] == "ridge"


def test_model_artifact_metadata_names_features_and_hyperparameters(story):
    output = json.loads((story["weak"].run_dir / "train" / "executor_output.json").read_text())
    (model,) = output["artifacts"]["model"]["artifacts"]
    assert model["metadata"]["feature_names"][:3] == ["age", "sex", "bmi"]
    assert model["metadata"]["hyperparameters"] == {"alpha": 100000, "random_state": 42}


def test_default_run_reports_metrics_decision_and_uri(story):
    default = story["default"]
    assert default.code == 0, default.out + default.err
    assert "decision: DEPLOYED - r2 " in default.out and "not worse than production v1" in default.out
    assert f"production: s3://{BUCKET}/{MODEL}/production/" in default.out
    assert f"model:      s3://{BUCKET}/{MODEL}/v2" in default.out
    for step in ("ingest", "plan-candidates", "train", "evaluate", "push"):
        assert re.search(rf"^  {step} +\.\.\. ok \d", default.out, re.M), default.out
    # The ParallelFor's tasks, one line each under their step.
    assert re.search(r"^  cross-validate +\.\.\. in parallel:$", default.out, re.M), default.out
    assert {int(i) for i in re.findall(r"^    cross-validate \[(\d)\] ok \d", default.out, re.M)} == {0, 1, 2, 3}
    # One table of the four default candidates, the winner marked.
    table = default.out.split("candidates (cross-validated on the training split):\n")[1].split("metrics (")[0]
    for estimator in ("ridge", "kernel_ridge", "random_forest", "hist_gradient_boosting"):
        assert re.search(rf"^[ *] {estimator} .* 0\.\d{{4}} ± 0\.\d{{4}} +\d+\.\d{{3}} +\d+\.\d$", table, re.M), table
    assert len(re.findall(r"^\* ", table, re.M)) == 2  # the winner's row and the "* winner:" line
    # Quiet by default: KFP's executor dumps went to the log file, not the terminal.
    assert "executor_input" not in default.out


def test_better_run_becomes_v2_and_production_with_matching_sha(story):
    files = story["after_default"]
    production = metadata(files, "production")
    winner = re.search(r"^\* winner: (\S+)", story["default"].out, re.M).group(1)
    assert production["version"] == 2 and production["estimator"] == winner
    assert production["sha256"] == hashlib.sha256(files["production/model.joblib"]).hexdigest()
    assert files["production/model.joblib"] == files["v2/model.joblib"]
    assert production["metrics"]["r2"] > 0.2  # held-out R² of the best default candidate
    assert production["primary_metric"] == {"name": "r2", "value": production["metrics"]["r2"],
                                            "higher_is_better": True}
    defaults = {c["estimator"]: c["hyperparameters"] for c in DEFAULT_CANDIDATES["regression"]}
    assert {k: v for k, v in production["hyperparameters"].items() if k != "random_state"} == defaults[winner]
    assert files["v1/model.joblib"] == story["after_weak"]["v1/model.joblib"]  # v1 never rewritten


def test_worse_run_is_not_deployed_and_production_stays(story):
    weak_again = story["weak_again"]
    assert weak_again.ok and weak_again.parameters("push") is None
    assert "not-deployed" in weak_again.steps
    evaluation = json.loads(weak_again.artifact("evaluate", "evaluation").read_text())
    assert not evaluation["deploy"] and "worse than production v2" in evaluation["reason"]
    assert story["after_weak_again"] == story["after_default"]


def test_impossible_threshold_pushes_nothing_and_says_so(story):
    impossible = story["impossible"]
    assert impossible.code == 0, impossible.out + impossible.err
    assert "decision: NOT DEPLOYED - r2 " in impossible.out and "below the threshold 0.9900" in impossible.out
    assert f"s3://{BUCKET}/{MODEL}/production/ unchanged (v2)" in impossible.out
    assert "NOT deployed" in impossible.out  # the not-deployed step's own warning
    assert story["after_impossible"] == story["after_default"]


def test_failed_step_exits_1_with_its_error_and_pushes_nothing(story):
    broken = story["broken"]
    assert broken.code == 1
    assert "error: ingest failed: DataError: column 'a' is not numeric: data row 2 has value 'oops'" in broken.err
    assert "nothing was pushed" in broken.err and "full log: " in broken.err
    assert story["after_broken"] == story["after_default"]


def test_classification_end_to_end_on_breast_cancer(s3_server, tmp_path, monkeypatch):
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    result = compiled_run(s3_server, tmp_path, source="sklearn:breast_cancer", model_name="bc-rf", bucket=BUCKET,
                          threshold=0.8)
    assert result.ok, result.error
    files = snapshot(s3_server, BUCKET, "bc-rf")
    production = metadata(files, "production")
    assert production["task"] == "classification" and production["version"] == 1
    assert production["schema"]["target"] == {"name": "target", "type": "binary", "classes": [0, 1]}
    assert set(production["metrics"]) == {"accuracy", "f1_macro", "roc_auc", "baseline_f1_macro"}
    assert production["metrics"]["accuracy"] > 0.9
    # The gate's baseline (the majority class), in metadata.json and in the KFP Metrics alike.
    assert production["metrics"]["f1_macro"] - production["metrics"]["baseline_f1_macro"] > 0.5
    executor_output = json.loads((result.run_dir / "evaluate" / "executor_output.json").read_text())
    (matrix,) = executor_output["artifacts"]["classification_metrics"]["artifacts"]
    (logged,) = executor_output["artifacts"]["metrics"]["artifacts"]
    assert logged["metadata"]["baseline_f1_macro"] == pytest.approx(production["metrics"]["baseline_f1_macro"])
    assert matrix["metadata"]["confusionMatrix"]["annotationSpecs"] == [{"displayName": "0"}, {"displayName": "1"}]


def test_the_same_data_and_parameters_again_push_nothing(story):
    same = story["same_again"]
    assert same.code == 0, same.out + same.err
    assert "decision: NOTHING NEW TO LEARN - nothing new to learn: production v2" in same.out
    assert f"s3://{BUCKET}/{MODEL}/production/ unchanged (v2)" in same.out
    assert story["after_same_again"] == story["after_default"]


def test_a_schema_changing_csv_does_not_replace_production(story):
    narrow = story["narrow"]
    assert narrow.code == 0, narrow.out + narrow.err
    assert "decision: NOT DEPLOYED - input schema differs from production v2 (3 features instead of 10" in narrow.out
    assert "allow_schema_change=true" in narrow.out
    assert story["after_narrow"] == story["after_default"]


def test_a_failing_candidate_does_not_stop_the_run_and_all_failing_fails_it(s3_server, tmp_path, monkeypatch):
    # compiled_run skips the CLI's early check, as a run started from the Kubeflow UI does.
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    mixed = ('[{"estimator": "ridge", "hyperparameters": {"alpha": -1}}, {"estimator": "ridge"}, '
             '{"estimator": "svm"}]')
    result = compiled_run(s3_server, tmp_path, bucket=BUCKET, model_name="mixed", candidates=mixed, threshold=-1.0)
    assert result.ok, result.error
    chosen = json.loads(result.artifact("train", "selection").read_text())
    assert [r["status"] for r in chosen["results"]] == ["failed", "ok", "failed"]
    assert chosen["winner"]["label"] == "ridge" and "2 of 3 candidates failed" in chosen["reason"]
    assert "bad hyperparameter for ridge" in chosen["results"][0]["error"]
    assert result.parameters("push")["promoted"] is True

    broken = compiled_run(s3_server, tmp_path, bucket=BUCKET, model_name="broken",
                          candidates='[{"estimator": "svm"}, {"estimator": "ridge", "hyperparameters": {"alpha": "x"}}]')
    assert not broken.ok and broken.failed_step == "train"
    assert broken.error.startswith("SelectionError: all 2 candidates failed: svm: estimator 'svm' is not available")
    assert "ridge alpha=x: bad hyperparameter for ridge" in broken.error
    assert broken.parameters("push") is None
