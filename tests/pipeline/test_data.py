"""Data expectations (Made-With-ML style) for the bundled datasets, as ingest hands them on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.datasets import read_dataset


@pytest.mark.parametrize(
    "fixture, rows, features, target_check",
    [
        ("diabetes", 442, 10, lambda y: y.min() >= 25 and y.max() <= 346),
        ("breast_cancer", 569, 30, lambda y: set(np.unique(y)) == {0, 1}),
    ],
)
def test_bundled_dataset_expectations(request, fixture, rows, features, target_check):
    ingested = request.getfixturevalue(fixture)
    schema = json.loads(ingested.schema.read_text())
    x_train, y_train = read_dataset(ingested.train, schema)
    x_test, y_test = read_dataset(ingested.test, schema)
    x, y = np.vstack([x_train, x_test]), np.concatenate([y_train, y_test])
    assert x.shape == (rows, features) and len(schema["features"]) == features
    assert not np.isnan(x).any() and target_check(y)
    assert len(y_test) == int(np.ceil(rows * 0.2))
    # The schema's ranges are what the server may check requests against: they must hold for the data.
    lows = np.array([f["min"] for f in schema["features"]])
    highs = np.array([f["max"] for f in schema["features"]])
    assert (x >= lows).all() and (x <= highs).all()
    assert np.isclose(x.min(axis=0), lows).all() and np.isclose(x.max(axis=0), highs).all()

