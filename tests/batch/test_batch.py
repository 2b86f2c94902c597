"""Batch scoring: the numbers are scikit-learn's, bad input fails before any row, nothing partial is ever visible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.errors import ObjectStoreError
from components.objectstore import ObjectStore
from scoring import batch, load_model
from scoring.batch import BatchOptions
from scoring.errors import BadRow, InputError, SchemaMismatch, ScoringError
from scoring.library import Predictor

from .conftest import MODEL_NAME, features_only, publish


@pytest.fixture(scope="module")
def predictor(regressor_dir) -> Predictor:
    return load_model(regressor_dir)


@pytest.fixture
def users(diabetes_frame) -> pd.DataFrame:
    """The diabetes rows with a customer id that looks like a number but is not one (leading zeros)."""
    return features_only(diabetes_frame).assign(customer=[f"{i:05d}" for i in range(len(diabetes_frame))])


def without_keys(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="customer")


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_csv_predictions_equal_scikit_learns_across_chunks(tmp_path, predictor, regressor, users):
    users.to_csv(tmp_path / "users.csv", index=False)
    (result,) = batch.score(predictor, str(tmp_path / "users.csv"),
                            options=BatchOptions(key_columns=("customer",), chunk_rows=37))
    out = pd.read_csv(result.output, dtype={"customer": str})
    assert result.output == str(tmp_path / "users.predictions.csv") and result.rejects is None
    assert list(out.columns) == ["customer", "predict", "model_name", "model_version", "model_sha256"]
    assert out["customer"].tolist() == users["customer"].tolist()  # "00007" stays "00007"
    np.testing.assert_array_equal(out["predict"].to_numpy(), regressor.predict(without_keys(users)))
    assert set(out["model_name"]) == {MODEL_NAME} and set(out["model_version"]) == {1}
    assert set(out["model_sha256"]) == {predictor.sha256}
    assert (result.rows, result.scored, result.rejected) == (len(users), len(users), 0)
    assert listing(tmp_path) == ["users.csv", "users.predictions.csv"]


def test_parquet_classifier_gets_a_probability_column_per_class(tmp_path, classifier_dir, classifier, cancer_frame):
    x = features_only(cancer_frame)
    x.to_parquet(tmp_path / "patients.parquet")
    (result,) = batch.score(load_model(classifier_dir), str(tmp_path / "patients.parquet"),
                            options=BatchOptions(chunk_rows=100))
    out = pd.read_parquet(result.output)
    assert out["row"].tolist() == list(range(len(x)))
    assert out["predict"].tolist() == classifier.predict(x).tolist()
    proba = classifier.predict_proba(x)
    np.testing.assert_array_equal(out["predict_proba_benign"].to_numpy(), proba[:, 0])
    np.testing.assert_array_equal(out["predict_proba_malignant"].to_numpy(), proba[:, 1])


def test_object_store_output_lands_beside_the_input_and_no_temporary_key_stays(store, bucket, regressor_dir,
                                                                              regressor, users, tmp_path):
    publish(store, bucket, regressor_dir, f"{MODEL_NAME}/production")
    users.to_parquet(tmp_path / "users.parquet")
    store.upload_file(bucket, "in/2026-12/users.parquet", tmp_path / "users.parquet")
    model = load_model(f"s3://{bucket}/{MODEL_NAME}/production/")
    (result,) = batch.score(model, f"s3://{bucket}/in/2026-12/users.parquet", options=BatchOptions(
        key_columns=("customer",), on_bad_row="reject"), store=store)
    assert result.output == f"s3://{bucket}/in/2026-12/users.predictions.parquet"
    assert result.rejects == f"s3://{bucket}/in/2026-12/users.rejects.csv"
    assert store.list_keys(bucket, "in/") == ["in/2026-12/users.parquet", "in/2026-12/users.predictions.parquet",
                                             "in/2026-12/users.rejects.csv"]
    store.download_file(bucket, "in/2026-12/users.predictions.parquet", tmp_path / "out.parquet")
    out = pd.read_parquet(tmp_path / "out.parquet")
    np.testing.assert_array_equal(out["predict"].to_numpy(), regressor.predict(without_keys(users)))
    store.download_file(bucket, "in/2026-12/users.rejects.csv", tmp_path / "rejects.csv")
    assert pd.read_csv(tmp_path / "rejects.csv").empty  # a re-run replaces an earlier run's rejects too


class Counting:
    """Counts the rows the predictor is asked to score (the engine is reached only through predict_checked)."""

    def __init__(self, predictor: Predictor, monkeypatch, fail_on_call: int | None = None) -> None:
        self.rows, self.calls = 0, 0
        original = Predictor.predict_checked

        def predict_checked(this, x):
            self.calls += 1
            if self.calls == fail_on_call:
                raise RuntimeError("injected: the node died mid-way")
            self.rows += len(x)
            return original(this, x)

        monkeypatch.setattr(Predictor, "predict_checked", predict_checked)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_schema_mismatch_is_one_clear_error_before_any_row(tmp_path, predictor, users, monkeypatch, fmt):
    path = tmp_path / f"users.{fmt}"
    frame = users.drop(columns=["s5"]).rename(columns={"bmi": "BMI"})
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path)
    counting = Counting(predictor, monkeypatch)
    with pytest.raises(SchemaMismatch, match=rf"users.{fmt} lacks feature column\(s\) bmi, s5; the model "
                                              "diabetes-rf v1 takes age, sex, bmi"):
        batch.score(predictor, str(path))
    assert counting.calls == 0 and listing(tmp_path) == [f"users.{fmt}"]


def test_parquet_text_feature_is_refused_from_its_schema(tmp_path, predictor, users, monkeypatch):
    users.assign(age=users["age"].astype(str)).astype({"sex": bool}).to_parquet(tmp_path / "users.parquet")
    counting = Counting(predictor, monkeypatch)
    with pytest.raises(SchemaMismatch, match="column 'sex' has type bool; expected numbers"):
        batch.score(predictor, str(tmp_path / "users.parquet"))
    assert counting.calls == 0


def test_missing_key_column_is_refused_before_any_row(tmp_path, predictor, users):
    users.to_csv(tmp_path / "users.csv", index=False)
    with pytest.raises(SchemaMismatch, match=r"lacks key column\(s\) user_id \(found: age, sex"):
        batch.score(predictor, str(tmp_path / "users.csv"), options=BatchOptions(key_columns=("user_id",)))


def test_bad_row_mid_file_fails_naming_it_and_leaves_no_output(tmp_path, predictor, users, monkeypatch):
    frame = users.copy()
    frame.loc[300, "bmi"] = np.nan
    frame.to_csv(tmp_path / "users.csv", index=False)
    counting = Counting(predictor, monkeypatch)
    with pytest.raises(BadRow, match=r"users.csv row 300: feature 'bmi' holds nan \(NaN, Inf, or out of FP64 "
                                     r"range\); expected finite numbers; nothing was written") as info:
        batch.score(predictor, str(tmp_path / "users.csv"), options=BatchOptions(chunk_rows=100))
    assert info.value.row == 300 and counting.rows == 300  # three chunks were scored, then the fourth refused
    assert listing(tmp_path) == ["users.csv"]


def test_bad_rows_go_to_rejects_with_row_number_and_reason(tmp_path, predictor, regressor, users):
    frame = users.astype({"age": object}).copy()
    frame.loc[5, "age"] = "forty"
    frame.loc[17, "s1"] = np.inf
    frame.loc[400, "bmi"] = 1e300  # beyond float32: the forest cannot take it
    frame.loc[401, "bmi"] = np.nan
    frame.to_csv(tmp_path / "users.csv", index=False)
    (result,) = batch.score(predictor, str(tmp_path / "users.csv"),
                            options=BatchOptions(key_columns=("customer",), on_bad_row="reject", chunk_rows=64))
    rejects = pd.read_csv(result.rejects, dtype={"customer": str})
    assert result.rejects == str(tmp_path / "users.rejects.csv")
    assert rejects["row"].tolist() == [5, 17, 400, 401]
    assert rejects["customer"].tolist() == ["00005", "00017", "00400", "00401"]
    reasons = rejects["reason"].tolist()
    assert reasons[0] == "feature 'age' is 'forty'; expected a number"
    assert reasons[1] == "feature 's1' holds inf (NaN, Inf, or out of FP64 range); expected finite numbers"
    assert reasons[2].startswith("feature 'bmi' holds 1e+300; this model takes 'bmi' in [-3.402823e+38")
    assert "NaN" in reasons[3]
    out = pd.read_csv(result.output, dtype={"customer": str})
    kept = users.drop(index=[5, 17, 400, 401])
    assert out["customer"].tolist() == kept["customer"].tolist()
    np.testing.assert_array_equal(out["predict"].to_numpy(), regressor.predict(without_keys(kept)))
    assert (result.rows, result.scored, result.rejected) == (len(users), len(users) - 4, 4)


def test_crash_mid_way_leaves_no_output_and_keeps_the_previous_one(tmp_path, predictor, users, monkeypatch):
    users.to_csv(tmp_path / "users.csv", index=False)
    (first,) = batch.score(predictor, str(tmp_path / "users.csv"), options=BatchOptions(chunk_rows=100))
    before = (tmp_path / "users.predictions.csv").read_bytes()
    Counting(predictor, monkeypatch, fail_on_call=3)
    with pytest.raises(RuntimeError, match="injected"):
        batch.score(predictor, str(tmp_path / "users.csv"), options=BatchOptions(chunk_rows=100, on_bad_row="reject"))
    assert (tmp_path / "users.predictions.csv").read_bytes() == before
    assert listing(tmp_path) == ["users.csv", "users.predictions.csv"]  # no temporary, no rejects file


def test_rerun_with_another_model_replaces_the_output_whole(store, bucket, regressor_dir, regressor_v2_dir, users,
                                                            tmp_path):
    publish(store, bucket, regressor_dir, f"{MODEL_NAME}/v1")
    publish(store, bucket, regressor_v2_dir, f"{MODEL_NAME}/v2")
    store.put_bytes(bucket, "in/users.csv", users.to_csv(index=False).encode())
    for version in (1, 2):
        model = load_model(batch.model_uri(bucket, MODEL_NAME, f"v{version}"))
        batch.score(model, f"s3://{bucket}/in/users.csv", options=BatchOptions(chunk_rows=50), store=store)
        store.download_file(bucket, "in/users.predictions.csv", tmp_path / f"v{version}.csv")
        out = pd.read_csv(tmp_path / f"v{version}.csv")
        assert len(out) == len(users) and set(out["model_version"]) == {version}
        np.testing.assert_array_equal(out["predict"].to_numpy(), model.predict(without_keys(users)))
    assert store.list_keys(bucket, "in/") == ["in/users.csv", "in/users.predictions.csv"]


class FailingCopy(ObjectStore):
    """The move into place fails, as when the store goes away between upload and copy."""

    def copy(self, bucket, source_key, target_key):
        raise ObjectStoreError(f"injected: cannot copy into s3://{bucket}/{target_key}")


def test_failed_move_removes_the_temporary_keys(s3_env, bucket, predictor, users):
    store = FailingCopy.from_env()
    store.ensure_bucket(bucket)
    store.put_bytes(bucket, "in/users.csv", users.to_csv(index=False).encode())
    with pytest.raises(ScoringError, match=rf"moving the output into s3://{bucket}/in/users.rejects.csv failed"):
        batch.score(predictor, f"s3://{bucket}/in/users.csv", options=BatchOptions(on_bad_row="reject"), store=store)
    assert store.list_keys(bucket, "") == ["in/users.csv"]


def test_prefix_scores_every_file_and_a_bad_one_publishes_none(store, bucket, predictor, users, tmp_path):
    store.ensure_bucket(bucket)
    store.put_bytes(bucket, "day/a.csv", users.head(50).to_csv(index=False).encode())
    users.head(60).to_parquet(tmp_path / "b.parquet")
    store.upload_file(bucket, "day/sub/b.parquet", tmp_path / "b.parquet")
    store.put_bytes(bucket, "day/notes.txt", b"not a table")
    results = batch.score(predictor, f"s3://{bucket}/day/", store=store)
    assert [(r.output, r.rows) for r in results] == [(f"s3://{bucket}/day/a.predictions.csv", 50),
                                                     (f"s3://{bucket}/day/sub/b.predictions.parquet", 60)]
    # Scoring the prefix again skips the outputs; with a bad row in the second file neither output moves.
    bad = users.head(60).copy()
    bad.loc[59, "age"] = np.nan
    bad.to_parquet(tmp_path / "b.parquet")
    store.upload_file(bucket, "day/sub/b.parquet", tmp_path / "b.parquet")
    store.put_bytes(bucket, "day/a.csv", users.head(10).to_csv(index=False).encode())
    with pytest.raises(BadRow, match="b.parquet row 59"):
        batch.score(predictor, f"s3://{bucket}/day/", store=store)
    store.download_file(bucket, "day/a.predictions.csv", tmp_path / "a.csv")
    assert len(pd.read_csv(tmp_path / "a.csv")) == 50  # still the first run's, whole
    assert store.list_keys(bucket, "day/") == ["day/a.csv", "day/a.predictions.csv", "day/notes.txt",
                                               "day/sub/b.parquet", "day/sub/b.predictions.parquet"]


def test_output_folder_and_file_names(tmp_path, predictor, users):
    users.head(20).to_csv(tmp_path / "users.csv", index=False)
    (result,) = batch.score(predictor, str(tmp_path / "users.csv"), str(tmp_path / "out") + "/",
                            BatchOptions(on_bad_row="reject"))
    assert (result.output, result.rejects) == (str(tmp_path / "out/users.predictions.csv"),
                                               str(tmp_path / "out/users.rejects.csv"))
    (result,) = batch.score(predictor, str(tmp_path / "users.csv"), str(tmp_path / "scores.csv"))
    assert pd.read_csv(result.output).shape == (20, 5)
    with pytest.raises(InputError, match="must have the input's format"):
        batch.score(predictor, str(tmp_path / "users.csv"), str(tmp_path / "scores.parquet"))


def test_empty_input_gets_an_output_with_its_header(tmp_path, predictor, users):
    users.head(0).to_csv(tmp_path / "empty.csv", index=False)
    (result,) = batch.score(predictor, str(tmp_path / "empty.csv"))
    assert result.rows == 0
    assert list(pd.read_csv(result.output).columns) == ["row", "predict", "model_name", "model_version",
                                                        "model_sha256"]


@pytest.mark.parametrize("kwargs, match", [
    ({"on_bad_row": "skip"}, "on_bad_row is 'skip'; expected one of fail, reject"),
    ({"chunk_rows": 0}, r"chunk_rows is 0; expected an integer in 1\.\.5000000"),
    ({"key_columns": ("predict",)}, r"key_columns \['predict'\] must be distinct"),
    ({"key_columns": ("id", "id")}, r"key_columns \['id', 'id'\] must be distinct"),
])
def test_options_are_checked(kwargs, match):
    with pytest.raises(ScoringError, match=match):
        BatchOptions(**kwargs)


@pytest.mark.parametrize("version, expected", [("production", "production/"), ("v3", "v3/"), ("4", "v4/")])
def test_model_uri(version, expected):
    assert batch.model_uri("models", MODEL_NAME, version) == f"s3://models/{MODEL_NAME}/{expected}"


def test_model_uri_refuses_a_bad_version():
    with pytest.raises(ScoringError, match="model_version 'latest' is invalid"):
        batch.model_uri("models", MODEL_NAME, "latest")


def test_nothing_to_score_says_so(tmp_path, predictor):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no CSV or Parquet file"):
        batch.score(predictor, str(tmp_path))
    with pytest.raises(InputError, match="unknown file type '.txt'"):
        batch.score(predictor, str(tmp_path / "notes.txt"))
