"""Numpy twins of scikit-learn preprocessing steps: the same output, bit for bit, without its checks.

Used by the engine on finite input only (FastPredictor sends anything else to the whole model).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

Transform = Callable[[np.ndarray], np.ndarray]

# What scikit-learn's validation keeps as is; any other numeric dtype becomes float64.
FLOAT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16))


def split_pipeline(model) -> tuple[list, object]:
    """(the steps before the final estimator, skipping None and "passthrough"; the final estimator).

    Args:
        model: a fitted estimator, a Pipeline or not.

    Returns:
        (steps, final); ([], model) for a bare estimator.
    """
    if isinstance(model, Pipeline):
        steps = [step for _, step in model.steps[:-1] if step is not None and step != "passthrough"]
        return steps, model.steps[-1][1]
    return [], model


def compile_transform(step) -> Transform:
    """A numpy version of a preprocessing step's transform when one gives identical output.

    Only reached with finite input (FastPredictor sends anything else to the whole model).
    Each version repeats scikit-learn's dtype rule and in-place arithmetic, which is why the
    outputs are bit-identical; any other step keeps its own ``transform``.

    Args:
        step: a fitted preprocessing step.

    Returns:
        A function X -> transformed X: the twin, or the step's own transform.
    """
    kind = type(step)
    if kind is StandardScaler:
        mean = step.mean_ if step.with_mean else None
        scale = step.scale_ if step.with_std else None
        return lambda X: _scale(X, mean, scale)
    if kind is MinMaxScaler and not step.clip:
        return lambda X: _min_max(X, step.scale_, step.min_)
    if kind is SimpleImputer and imputer_is_identity_on_finite(step):
        # Nothing is missing in finite input: the imputer only applies its dtype rule.
        if step.strategy in ("mean", "median"):
            return lambda X: X if X.dtype in FLOAT_DTYPES else X.astype(np.float64)
        return lambda X: X
    return step.transform


def _float_copy(X: np.ndarray) -> np.ndarray:
    return np.array(X, dtype=X.dtype if X.dtype in FLOAT_DTYPES else np.float64, copy=True)


def _scale(X: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None) -> np.ndarray:
    X = _float_copy(X)
    if mean is not None:
        X -= mean.astype(X.dtype)
    if scale is not None:
        X /= scale.astype(X.dtype)
    return X


def _min_max(X: np.ndarray, scale: np.ndarray, minimum: np.ndarray) -> np.ndarray:
    X = _float_copy(X)
    X *= scale
    X += minimum
    return X


def imputer_is_identity_on_finite(imputer: SimpleImputer) -> bool:
    """Whether the fitted imputer returns finite input unchanged (apart from its dtype rule).

    Args:
        imputer: a fitted SimpleImputer.

    Returns:
        True when NaN is its missing value, it adds no indicator, and drops no column.
    """
    missing = imputer.missing_values
    return (
        isinstance(missing, float)
        and np.isnan(missing)
        and not imputer.add_indicator
        and imputer._fit_dtype.kind == "f"
        # features with no observed value are dropped by transform unless kept
        and (imputer.keep_empty_features or not np.isnan(imputer.statistics_).any())
    )
