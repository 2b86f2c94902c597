"""A linear model's answers are scikit-learn's for the rows as sent, alone or as a batch, bit for bit.

The pipeline's default winner on diabetes is StandardScaler + Ridge, whose predict is ``X @ coef_``.
numpy adds a row's products in one order for a 1-row matrix (BLAS dot) and in another for more rows
(BLAS gemv), so scikit-learn itself may answer a row alone and the same row inside a batch 1 ulp
apart (OpenBLAS 0.3.31: 1 of the first 10 rows for this fit, 4 for the pipeline's). The reference
is therefore predict on exactly the rows of each request: the server must add nothing to that
difference and hide none of it.
The forest tests (test_model.py) cannot see this: trees add leaf values in tree order at any batch size.
"""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from serving.batching import BatchingConfig
from serving.model import SklearnModel


@pytest.fixture(scope="module")
def ridge(diabetes):
    x, y, _ = diabetes
    return make_pipeline(StandardScaler(), Ridge(random_state=42)).fit(x, y)


def _answer(model: SklearnModel, rows: np.ndarray) -> list[float]:
    body = orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(rows.shape),
                                     "data": rows.tolist()}]})
    raw, _ = asyncio.run(model.infer_json(body))
    return orjson.loads(raw)["outputs"][0]["data"]


@pytest.mark.parametrize("batching", [True, False], ids=["batching-on", "batching-off"])
def test_ridge_single_rows_and_batches_equal_sklearn_on_the_same_rows(tmp_path, write_model, ridge, diabetes,
                                                                      batching: bool) -> None:
    x, _, names = diabetes
    model = SklearnModel("diabetes-rf", write_model(tmp_path / "ridge", ridge, "regression", names, x),
                         BatchingConfig(enabled=batching))
    assert model.load(), model.load_error
    rows = x[:10]
    singles = [_answer(model, row[None])[0] for row in rows]
    np.testing.assert_array_equal(singles, [ridge.predict(row[None])[0] for row in rows])
    np.testing.assert_array_equal(_answer(model, rows), ridge.predict(rows))
