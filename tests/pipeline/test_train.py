"""Train: estimator registry, hyperparameter errors, pipeline shape, the saved model folder."""

from __future__ import annotations

import json
import warnings

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler

from components import train
from components.datasets import read_dataset
from components.errors import TrainError
from components.train import ESTIMATORS, build_estimator, build_pipeline, parse_hyperparameters

REGRESSION_SCHEMA = {
    "features": [{"name": "a"}, {"name": "b"}],
    "target": {"name": "y", "type": "continuous", "classes": None},
    "missing_values": "error",
}


def schema_for(task: str, **changes) -> dict:
    target = REGRESSION_SCHEMA["target"] if task == "regression" else \
        {"name": "y", "type": "binary", "classes": [0, 1]}
    return {**REGRESSION_SCHEMA, "target": target, **changes}


@pytest.mark.parametrize(
    "task, estimator",
    [(task, name) for task, choices in ESTIMATORS.items() for name in choices],
)
def test_every_estimator_fits_and_predicts(task, estimator):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    y = x[:, 0] * 3 + rng.normal(size=60) if task == "regression" else (x[:, 0] > 0).astype(int)
    pipeline = build_pipeline(schema_for(task), estimator, {}, seed=1)
    train.fit(pipeline, x, y, estimator)
    assert pipeline.predict(x[:5]).shape == (5,)
    assert pipeline.score(x, y) > 0.5  # each learns the obvious signal


def test_a_forest_without_hyperparameters_is_a_lean_100_tree_forest_seeded():
    pipeline = build_pipeline(schema_for("regression"), "random_forest", {}, seed=42)
    assert [name for name, _ in pipeline.steps] == ["model"]
    forest = pipeline.named_steps["model"]
    assert (forest.n_estimators, forest.random_state) == (100, 42)


def test_linear_models_are_scaled_and_imputed_when_asked():
    plain = build_pipeline(schema_for("regression"), "ridge", {}, seed=0)
    assert [type(step) for _, step in plain.steps[:-1]] == [StandardScaler]
    imputed = build_pipeline(schema_for("regression", missing_values="impute"), "ridge", {}, seed=0)
    assert [type(step) for _, step in imputed.steps[:-1]] == [SimpleImputer, StandardScaler]


def test_categorical_features_are_one_hot_for_linear_and_native_for_boosting():
    schema = schema_for("classification", features=[{"name": "a"}, {"name": "c", "categories": ["x", "y"]}])
    linear = build_pipeline(schema, "logistic_regression", {}, seed=0)
    assert isinstance(linear.steps[0][1], ColumnTransformer)
    boosting = build_pipeline(schema, "hist_gradient_boosting", {}, seed=0)
    assert boosting.named_steps["model"].categorical_features == [1]
    x = np.array([[0.1, 0.0], [0.2, 1.0], [0.3, 0.0], [0.4, 1.0], [0.5, np.nan], [0.6, 1.0]] * 20)
    y = np.array([0, 1, 0, 1, 0, 1] * 20)
    for pipeline in (linear, boosting):
        train.fit(pipeline, x, y, "test")
        assert (pipeline.predict(x) == y).mean() > 0.8


@pytest.mark.parametrize(
    "task, estimator, hyperparameters, expected",
    [
        ("regression", "svm", {}, "estimator 'svm' is not available for regression: expected one of ridge, "
                                  "kernel_ridge, random_forest, hist_gradient_boosting"),
        ("classification", "ridge", {}, "not available for classification: expected one of logistic_regression"),
        ("regression", "random_forest", {"trees": 5}, r"hyperparameter 'trees' is not a parameter of random_forest "
                                                      r"\(RandomForestRegressor\): expected some of .*n_estimators"),
        ("regression", "random_forest", {"n_estimators": 0}, r"bad hyperparameter for random_forest: .*'n_estimators'"),
        ("classification", "logistic_regression", {"C": "big"}, r"bad hyperparameter for logistic_regression: .*'C'"),
    ],
)
def test_bad_estimator_or_hyperparameter_lists_valid_choices(task, estimator, hyperparameters, expected):
    with pytest.raises(TrainError, match=expected):
        build_estimator(task, estimator, hyperparameters, seed=0)


@pytest.mark.parametrize("text, expected",
                         [("{n_estimators: 5}", "not valid JSON"), ("[1, 2]", "must be a JSON object")])
def test_hyperparameters_must_be_a_json_object(text, expected):
    with pytest.raises(TrainError, match=expected):
        parse_hyperparameters(text)


def test_hyperparameters_override_defaults():
    model = build_estimator("regression", "random_forest", parse_hyperparameters('{"n_estimators": 7}'), seed=3)
    assert (model.n_estimators, model.random_state) == (7, 3)


def test_fit_failure_is_a_train_error():
    pipeline = build_pipeline(schema_for("classification"), "random_forest", {}, seed=0)
    with pytest.raises(TrainError, match=r"fitting random_forest on 3 rows x 2 features failed"):
        train.fit(pipeline, np.ones((3, 2)), np.array([np.nan, 1.0, 0.0]), "random_forest")


def test_model_folder_holds_one_joblib_and_the_training_record(diabetes, diabetes_rf):
    assert sorted(p.name for p in diabetes_rf.iterdir()) == ["model.joblib", "training.json"]
    info = json.loads((diabetes_rf / "training.json").read_text())
    assert info["framework"] == "scikit-learn" and info["sklearn_version"] == sklearn.__version__
    assert info["estimator"] == "random_forest" and info["task"] == "regression"
    assert info["hyperparameters"] == {"n_estimators": 100, "random_state": 42}
    assert info["feature_names"] == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert info["train_rows"] == 353 and info["training_seconds"] > 0


def test_model_was_fitted_on_arrays_so_serving_gets_no_feature_name_warning(diabetes, diabetes_rf):
    model = joblib.load(diabetes_rf / "model.joblib")
    assert not hasattr(model, "feature_names_in_")
    x, _ = read_dataset(diabetes.test, json.loads(diabetes.schema.read_text()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(x[:1])


def test_kfp_model_artifact_carries_feature_names_and_hyperparameters(diabetes, tmp_path):
    from kfp.dsl import Artifact, Dataset, Model

    from components import kfp_components

    model = Model(uri=str(tmp_path / "model"))
    selection = Artifact(uri=str(tmp_path / "selection.json"))
    # What the cross_validate steps hand over (dsl.Collected): one JSON result per candidate.
    cv_results = [json.dumps({"index": 0, "estimator": "random_forest", "hyperparameters": {"n_estimators": 5},
                              "label": "random_forest n_estimators=5", "metric": "r2", "folds": 5, "status": "ok",
                              "error": None, "mean": 0.4, "std": 0.01, "fit_seconds": 0.1,
                              "predict_us_per_row": 10.0})]
    kfp_components.train.python_func(train_data=Dataset(uri=str(diabetes.train)),
                                     schema=Artifact(uri=str(diabetes.schema)), cv_results=cv_results, seed=42,
                                     model=model, selection=selection)
    assert selection.metadata["winner"] == "random_forest n_estimators=5"
    training = json.loads((tmp_path / "model" / "training.json").read_text())
    assert model.metadata["feature_names"] == training["feature_names"] == [
        "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert model.metadata["hyperparameters"] == {"n_estimators": 5, "random_state": 42}
    assert {"framework", "sklearn_version", "estimator", "task", "training_seconds"} <= set(model.metadata)
    json.dumps(model.metadata)  # KFP stores it as JSON


class Offset(RegressorMixin, BaseEstimator):
    """An estimator as a scikit-learn without the private _validate_params would build it: checked in fit()."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    @property
    def _validate_params(self):
        raise AttributeError("_validate_params")

    def fit(self, x, y) -> "Offset":
        if not isinstance(self.offset, (int, float)):
            raise ValueError(f"offset must be a number, got {self.offset!r}")
        self.mean_ = float(np.mean(y)) + self.offset
        return self

    def predict(self, x):
        return np.full(len(x), self.mean_)


def test_without_the_private_early_check_bad_values_still_fail_as_train_errors_at_fit(monkeypatch):
    # What build_estimator meets if a scikit-learn release drops _validate_params: no early check, same error later.
    monkeypatch.setitem(ESTIMATORS["regression"], "offset", train.EstimatorSpec(Offset, False, {}))
    model = build_estimator("regression", "offset", {"offset": "big"}, seed=0)
    assert not hasattr(model, "_validate_params") and model.offset == "big"
    pipeline = build_pipeline(schema_for("regression"), "offset", {"offset": "big"}, seed=0)
    with pytest.raises(TrainError, match=r"fitting offset on 20 rows x 2 features failed: offset must be a number"):
        train.fit(pipeline, np.ones((20, 2)), np.arange(20.0), "offset")
    good = build_pipeline(schema_for("regression"), "offset", {"offset": 1.0}, seed=0)
    train.fit(good, np.ones((20, 2)), np.arange(20.0), "offset")
    assert good.predict(np.ones((1, 2))).tolist() == [10.5]
