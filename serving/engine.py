"""Prediction engine: turns a fitted scikit-learn model into the function the server calls.

Interface (stable): compile_predictor(model, method) -> Callable[[np.ndarray], np.ndarray].
The fast tree-ensemble path replaces this body (see issue 5); today it calls scikit-learn.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

PredictFn = Callable[[np.ndarray], np.ndarray]


def compile_predictor(model, method: str = "predict") -> PredictFn:
    return getattr(model, method)
