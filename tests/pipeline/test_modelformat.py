"""The trusted types come from the estimators the pipeline trains, and every one of them round-trips."""

from __future__ import annotations

import numpy as np

from components import modelformat
from contract.trusted_types import TRUSTED_TYPES


def test_every_trainable_estimator_round_trips_and_the_trusted_list_is_exactly_theirs():
    named: set[str] = set()
    cases = []
    for case, pipeline, x in modelformat.fitted_models():
        data = modelformat.dumps(pipeline)
        named |= modelformat.named_types(data)
        loaded = modelformat.loads(data)  # refuses anything outside TRUSTED_TYPES
        for method in ("predict", "predict_proba"):
            if hasattr(pipeline, method):
                np.testing.assert_array_equal(getattr(loaded, method)(x), getattr(pipeline, method)(x), err_msg=case)
        cases.append(case)
    from components.train import ESTIMATORS

    assert {case.split("/")[0] for case in cases} == {name for names in ESTIMATORS.values() for name in names}
    # Not a hand list: exactly the derivation (run `python -m components.modelformat --write` after a change).
    assert named == TRUSTED_TYPES, (sorted(named - TRUSTED_TYPES), sorted(TRUSTED_TYPES - named))


def test_a_type_outside_the_list_is_named_in_the_refusal():
    from sklearn.linear_model import LinearRegression

    data = modelformat.dumps(LinearRegression().fit(np.eye(3), [1.0, 2.0, 3.0]))
    try:
        modelformat.loads(data)
    except modelformat.UntrustedModel as exc:
        assert "sklearn.linear_model._base.LinearRegression" in str(exc)
    else:
        raise AssertionError("an estimator this project never trains was loaded")
    assert modelformat.loads(data, trusted=TRUSTED_TYPES | modelformat.named_types(data)).coef_.shape == (3,)
