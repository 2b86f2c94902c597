"""Model behaviour (Made-With-ML style): quality floor, direction, invariance, determinism.

On the default model: a 100-tree random forest trained by the pipeline's own train step on the
diabetes train split (seed 42), and the same on breast_cancer. Only what this project's choices
decide is checked; what scikit-learn guarantees for any forest (predictions inside the training
target range, one row and a batch agreeing, probabilities summing to 1) is not re-tested here.
"""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest

from components import train
from components.datasets import read_dataset


@pytest.fixture(scope="module")
def diabetes_model(diabetes_rf):
    return joblib.load(diabetes_rf / "model.joblib")


@pytest.fixture(scope="module")
def diabetes_data(diabetes):
    schema = json.loads(diabetes.schema.read_text())
    return read_dataset(diabetes.train, schema), read_dataset(diabetes.test, schema), schema


def test_held_out_r2_clears_the_default_threshold(diabetes_model, diabetes_data):
    _, (x_test, y_test), _ = diabetes_data
    assert diabetes_model.score(x_test, y_test) > 0.2


@pytest.mark.parametrize("feature", ["bmi", "s5"])
def test_direction_higher_bmi_or_triglycerides_predicts_more_progression(diabetes_model, diabetes_data, feature):
    (x_train, _), _, schema = diabetes_data
    index = [f["name"] for f in schema["features"]].index(feature)
    low, high = np.median(x_train, axis=0), np.median(x_train, axis=0)
    low[index], high[index] = np.quantile(x_train[:, index], [0.1, 0.9])
    assert diabetes_model.predict(high[None])[0] > diabetes_model.predict(low[None])[0] + 20


def test_training_is_deterministic_for_a_seed(diabetes, diabetes_model, diabetes_data, tmp_path):
    _, (x_test, _), _ = diabetes_data
    train.run(train_path=diabetes.train, schema_path=diabetes.schema, model_dir=tmp_path / "same",
              estimator="random_forest", hyperparameters="{}", seed=42)
    train.run(train_path=diabetes.train, schema_path=diabetes.schema, model_dir=tmp_path / "other",
              estimator="random_forest", hyperparameters="{}", seed=7)
    same = joblib.load(tmp_path / "same" / "model.joblib").predict(x_test)
    other = joblib.load(tmp_path / "other" / "model.joblib").predict(x_test)
    np.testing.assert_array_equal(same, diabetes_model.predict(x_test))
    assert not np.array_equal(other, same)


def test_classifier_separates_breast_cancer_with_calibrated_probabilities(breast_cancer, breast_cancer_rf):
    schema = json.loads(breast_cancer.schema.read_text())
    x_test, y_test = read_dataset(breast_cancer.test, schema)
    model = joblib.load(breast_cancer_rf / "model.joblib")
    assert model.score(x_test, y_test) > 0.9
    assert list(model.classes_) == schema["target"]["classes"]
