"""`make models`, `make promote VERSION=N`, `make rollback` (pipelines.models) on the session's rclone
store: what they print, what they move, and the exit status of each refusal and failure."""

from __future__ import annotations

import datetime as dt

import pytest

from components import cli, push
from components.registry import Registry
from pipelines import models
from pipelines.local.s3server import free_port

NOW = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def three_versions(s3_env, bucket, diabetes, ridge_models, evaluated):
    store = models.ObjectStore.from_env()
    for index, folder in enumerate(ridge_models):
        push.run(model_dir=folder, schema_path=diabetes.schema, evaluation_path=evaluated, model_name="m",
                 bucket=bucket, store=store, run_id=f"run-{index + 1}", now=NOW)
    return Registry(store, bucket, "m")


def run(capsys, bucket, *args) -> tuple[int, str, str]:
    code = models.main([*args, "--bucket", bucket, "--model-name", "m"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.integration
def test_list_promote_and_rollback(capsys, bucket, three_versions):
    code, out, _ = run(capsys, bucket, "list")
    assert code == cli.EXIT_OK
    lines = out.splitlines()
    assert lines[0] == f"s3://{bucket}/m/"
    rows = [line.split() for line in lines[2:5]]
    assert [row[:2] for row in rows] == [["v1", "complete"], ["v2", "complete"], ["*", "v3"]]
    assert all("r2" in line and "run-" in line for line in lines[2:5])
    assert lines[5].startswith("production: v3 (seq 3, push by run run-3")

    assert run(capsys, bucket, "promote", "1")[:2] == (
        cli.EXIT_OK, f"production: v3 -> v1 (promote, history seq 4); s3://{bucket}/m/production/ serves it\n")
    code, out, _ = run(capsys, bucket, "promote", "1")
    assert code == cli.EXIT_OK and "production: v1 already, nothing moved" in out
    assert three_versions.current().seq == 4  # nothing written
    code, out, _ = run(capsys, bucket, "rollback")
    assert code == cli.EXIT_OK and out.startswith("production: v1 -> v3 (rollback, history seq 5)")
    assert three_versions.current().version == 3 and three_versions.production_state()[0]


@pytest.mark.integration
def test_refusals_exit_2_naming_what_is_wrong(capsys, bucket, three_versions):
    code, _, err = run(capsys, bucket, "promote", "9")
    assert code == cli.EXIT_BAD_INPUT
    assert err == f"error: v9 does not exist in s3://{bucket}/m/ (complete versions: v1, v2, v3)\n"
    for text in ("0", "x"):
        with pytest.raises(SystemExit) as refused:
            run(capsys, bucket, "promote", text)
        assert refused.value.code == cli.EXIT_BAD_INPUT
        assert f"VERSION='{text}' is invalid: expected a version number >= 1" in capsys.readouterr().err
    code, _, err = run(capsys, bucket, "promote")
    assert code == cli.EXIT_BAD_INPUT and "make promote VERSION=N" in err
    assert three_versions.current().seq == 3  # none of them moved anything


@pytest.mark.integration
def test_a_model_with_no_versions_says_so(capsys, s3_env, bucket):
    code, out, _ = models.main(["list", "--bucket", bucket, "--model-name", "nothing-here"]), *capsys.readouterr()
    assert code == cli.EXIT_OK
    assert out.startswith(f"no versions of nothing-here in s3://{bucket}/nothing-here/ yet")
    assert models.main(["rollback", "--bucket", bucket, "--model-name", "nothing-here"]) == cli.EXIT_BAD_INPUT
    assert "nothing-here has no production model: nothing to roll back" in capsys.readouterr().err


def test_an_unreachable_store_is_a_failure_not_a_refusal(capsys, monkeypatch):
    port = free_port()
    monkeypatch.setenv("MINIO_ENDPOINT", f"127.0.0.1:{port}")
    monkeypatch.setenv("MINIO_ACCESS_KEY", "local-only-a")
    monkeypatch.setenv("MINIO_SECRET_KEY", "local-only-b")
    assert models.main(["list"]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the object store at http://127.0.0.1:{port}")
    assert "MINIO_ENDPOINT" in err
