"""Push writes model.skops beside model.joblib, and refuses a model the server would refuse."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from components import modelformat
from components.errors import PushError
from components.push import skops_bytes


def test_skops_form_of_the_trained_model_predicts_the_same(diabetes_rf, diabetes):
    data = skops_bytes(diabetes_rf)
    original = joblib.load(diabetes_rf / "model.joblib")
    x = np.random.default_rng(0).normal(size=(20, original.n_features_in_))
    np.testing.assert_array_equal(modelformat.loads(data).predict(x), original.predict(x))


def test_a_model_the_server_would_refuse_is_not_pushed(tmp_path):
    joblib.dump(LinearRegression().fit(np.eye(3), [1.0, 2.0, 3.0]), tmp_path / "model.joblib")
    # The message says how to fix it: the allow-list and the command that rewrites it.
    with pytest.raises(PushError, match="would be refused by the server: .*LinearRegression.*ESTIMATORS and run "
                                        r"`python -m components.modelformat --write`$"):
        skops_bytes(tmp_path)
