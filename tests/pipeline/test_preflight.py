"""Preflight: `pipelines.local.run` stops before the first step, one line with the advice, exit 2."""

from __future__ import annotations

import contextlib
import io
import uuid

import pytest

from components.objectstore import ObjectStore
from pipelines import params
from pipelines.local import run
from pipelines.local.runner import _Tap
from pipelines.local.s3server import free_port
from pipelines.training_pipeline import PACKAGE_PATH


def preflight_run(tmp_path, *pairs: str) -> tuple[int, str]:
    argv = ["--pipeline-root", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "s3")]
    for pair in pairs:
        argv += ["--param", pair]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run.main(argv)
    assert not (tmp_path / "runs").exists(), "a step ran before the preflight failure"
    return code, err.getvalue()


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in err and "MaxRetryError" not in err and "urllib3" not in err
    return lines[0]


@pytest.mark.parametrize("pairs, expected", [
    (["source=sklearn:iris"], "unknown bundled dataset 'sklearn:iris': expected one of sklearn:diabetes, "
                              "sklearn:breast_cancer"),
    (["source=sklearn:diabetes", "target=progression"], "target column 'progression' is not in sklearn:diabetes"),
    (["source=no/such/file.csv"], "no/such/file.csv does not exist: give a CSV path, s3://bucket/key.csv"),
    (["source=."], "is not a file: give a CSV path"),
    (["source=sklearn:diabetes", "estimator=logistic_regression"],
     "estimator 'logistic_regression' does not suit regression (the task of sklearn:diabetes): expected one of "
     "ridge, kernel_ridge, random_forest, hist_gradient_boosting"),
    (["source=sklearn:breast_cancer", "estimator=ridge"],
     "estimator 'ridge' does not suit classification (the task of sklearn:breast_cancer): expected one of "
     "logistic_regression"),
    (["source=sklearn:diabetes", "task=classification"],  # ingest's own check, before the first step
     "sklearn:diabetes: target 'target' has 214 distinct values, more than 100 classes: use task='regression'"),
    (["source=sklearn:diabetes", "categorical_features=sex,age2"],
     "sklearn:diabetes: categorical_features names 'age2', which is not a column of sklearn:diabetes"),
    (["source=sklearn:breast_cancer", "task=regression", "estimator=logistic_regression"],
     "estimator 'logistic_regression' is not available for regression: expected one of ridge"),
    (["source=sklearn:diabetes", 'candidates=[{"estimator": "ridge"}, {"estimator": "svc"}]'],
     "candidates[1]: estimator 'svc' is not available for regression: expected one of ridge"),
    (["source=s3://nobucket-preflight/missing.csv"], "source s3://nobucket-preflight/missing.csv does not exist "
                                                     "in the object store at http://127.0.0.1:"),
])
def test_a_bad_source_or_estimator_stops_before_the_first_step(s3_env, tmp_path, pairs, expected):
    code, err = preflight_run(tmp_path, *pairs)
    assert code == run.EXIT_BAD_INPUT
    assert expected in one_line(err)


@pytest.mark.parametrize("text, pairs, expected", [
    (b"a,b,label\n1,2,0\n", [], "target column 'target' not found in {path}; columns are: a, b, label"),
    (b"a,b,target\n1,2,0\n", ["categorical_features=a,colour"],
     "categorical_features names 'colour', which is not a column of {path}"),
    (b"target\n1\n", [], "source {path} has only the target column 'target': no features"),
    (b"", [], "source file {path} is empty: expected a CSV with a header line"),
    (b"\xff\xfe\x00a,target\n", [], "source file {path} is not a readable CSV: 'utf-8' codec can't decode"),
])
def test_a_local_csvs_header_is_checked_before_the_first_step(s3_env, tmp_path, text, pairs, expected):
    path = tmp_path / "table.csv"
    path.write_bytes(text)
    code, err = preflight_run(tmp_path, f"source={path}", *pairs)
    assert code == run.EXIT_BAD_INPUT
    assert expected.format(path=path) in one_line(err)


def test_an_unreachable_store_is_named_with_the_readme_advice(monkeypatch, tmp_path):
    port = free_port()
    monkeypatch.setenv("MINIO_ENDPOINT", f"127.0.0.1:{port}")
    monkeypatch.setenv("MINIO_ACCESS_KEY", "k")
    monkeypatch.setenv("MINIO_SECRET_KEY", "s")
    code, err = preflight_run(tmp_path)
    line = one_line(err)
    assert code == run.EXIT_BAD_INPUT
    assert line.startswith(f"error: cannot reach the object store at http://127.0.0.1:{port} ")
    assert line.endswith("check MINIO_ENDPOINT / minio_endpoint")


def test_rejected_keys_are_named_before_the_first_step(s3_env, monkeypatch, tmp_path):
    monkeypatch.setenv("MINIO_SECRET_KEY", "not-the-secret")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    code, err = preflight_run(tmp_path)
    assert code == run.EXIT_BAD_INPUT
    line = one_line(err)
    assert "check MINIO_ACCESS_KEY/MINIO_SECRET_KEY" in line and "not-the-secret" not in line


def test_a_good_setup_passes_the_preflight(s3_env, tmp_path):
    from pipelines.local import preflight

    bucket = f"t-{uuid.uuid4().hex[:8]}"
    ObjectStore.from_env().ensure_bucket(bucket)
    ObjectStore.from_env().put_bytes(bucket, "d.csv", b"a,target\n1,2\n")
    (tmp_path / "d.csv").write_bytes(b"a,target\n1,2\n")
    for source in ("sklearn:diabetes", f"s3://{bucket}/d.csv", "https://h.example/t.csv", str(tmp_path / "d.csv")):
        preflight.check(params.effective({"source": source, "estimator": "random_forest", "minio_endpoint": "",
                                          "bucket": "models-not-created-yet"}, PACKAGE_PATH))


# A step that died on the store, as the run log shows it: urllib3's chained cause comes first.
STORE_FAILURE = """\
17:44:11.502 - INFO - Executing task \x1b[96m'evaluate'\x1b[0m
    [KFP Executor 2026-12-02 16:41:00,100 WARNING]: Retrying (Retry(total=0, connect=None)) after connection broken
    Traceback (most recent call last):
      File "urllib3/util/retry.py", line 555, in increment
        raise MaxRetryError(_pool, url, reason) from reason  # type: ignore[arg-type]
    urllib3.exceptions.MaxRetryError: HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded
\x20\x20\x20\x20
    The above exception was the direct cause of the following exception:
\x20\x20\x20\x20
    Traceback (most recent call last):
      File "components/objectstore.py", line 178, in _errors
        raise translate(exc, action, self.uri(bucket, key), self.settings.url) from exc
    components.errors.ObjectStoreUnreachable: cannot reach the object store at http://127.0.0.1:9 to read s3://m/p.json: refused; check MINIO_ENDPOINT / minio_endpoint
17:44:13.013 - ERROR - Task \x1b[96m'evaluate'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m
"""


def test_a_step_failing_on_the_store_reports_the_translated_message_not_urllib3():
    events = []
    tap = _Tap(io.StringIO(), None, events.append)
    tap.write(STORE_FAILURE)
    assert tap.step_errors["evaluate"] == (
        "ObjectStoreUnreachable: cannot reach the object store at http://127.0.0.1:9 to read s3://m/p.json: refused; "
        "check MINIO_ENDPOINT / minio_endpoint")
    assert [e.kind for e in events] == ["start", "end"], "urllib3's retry warnings are noise under the step"
