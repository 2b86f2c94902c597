"""python -m scoring (make score) and its progress bar."""

from __future__ import annotations

import io

import pandas as pd

from scoring.__main__ import main
from scoring.progress import Progress

from .conftest import MODEL_NAME, features_only, publish


def test_cli_scores_a_local_file_and_summarises(tmp_path, regressor_dir, diabetes_frame, capsys):
    features_only(diabetes_frame).to_csv(tmp_path / "x.csv", index=False)
    assert main([str(tmp_path / "x.csv"), "--model-uri", str(regressor_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "442 of 442 rows scored" in out and str(tmp_path / "x.predictions.csv") in out
    assert len(pd.read_csv(tmp_path / "x.predictions.csv")) == 442


def test_cli_schema_mismatch_is_one_error_line_and_exit_1(tmp_path, regressor_dir, diabetes_frame, capsys):
    features_only(diabetes_frame).drop(columns="age").to_csv(tmp_path / "x.csv", index=False)
    assert main([str(tmp_path / "x.csv"), "--model-uri", str(regressor_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "lacks feature column(s) age" in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]


def test_cli_reads_the_model_and_data_from_the_object_store(s3_env, store, bucket, regressor_dir, diabetes_frame,
                                                            capsys):
    publish(store, bucket, regressor_dir, f"{MODEL_NAME}/production")
    store.put_bytes(bucket, "d/x.csv", features_only(diabetes_frame).to_csv(index=False).encode())
    assert main([f"s3://{bucket}/d/x.csv", "--model-uri", f"s3://{bucket}/{MODEL_NAME}/production/",
                 "--on-bad-row", "reject"]) == 0
    assert f"-> s3://{bucket}/d/x.predictions.csv" in capsys.readouterr().out
    assert store.list_keys(bucket, "d/") == ["d/x.csv", "d/x.predictions.csv", "d/x.rejects.csv"]


def test_cli_bad_arguments_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "x.csv"), "--model-version", "latest"]) == 2
    assert "model_version 'latest' is invalid" in capsys.readouterr().err


def test_progress_shows_rows_rate_and_eta_on_a_terminal():
    clock = iter([0.0, 10.0, 20.0]).__next__
    stream = io.StringIO()
    bar = Progress("x.csv", stream, enabled=True, clock=clock)
    bar.update(50_000, 0.25)
    assert stream.getvalue() == "\rx.csv: [#######.......................]  25% 50,000 rows, 5,000 rows/s, ETA 00:30"
    bar.close()
    assert stream.getvalue().endswith("100% 50,000 rows, 2,500 rows/s, ETA 00:00\n")


def test_progress_is_silent_when_not_a_terminal():
    stream = io.StringIO()  # isatty() is False
    bar = Progress("x.csv", stream)
    bar.update(10, 0.5)
    bar.close()
    assert stream.getvalue() == "" and bar.rows == 10
