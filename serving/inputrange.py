"""The raw input values a model computes on without overflowing its dtype, per feature.

The server refuses values outside this range with a 400 naming the feature (serving.rows),
where scikit-learn would raise a ValueError (a 500) deep inside its tree code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from serving.transforms import imputer_is_identity_on_finite, split_pipeline

# scikit-learn's tree models cast X to float32 (sklearn.tree's DTYPE) before walking their trees,
# so a finite float64 beyond float32's range makes them raise (ExtraTree* are DecisionTree*).
_FLOAT32_INPUT = (RandomForestRegressor, RandomForestClassifier, ExtraTreesRegressor, ExtraTreesClassifier,
                  DecisionTreeRegressor, DecisionTreeClassifier, GradientBoostingRegressor, GradientBoostingClassifier)
_FLOAT64_MAX = float(np.finfo(np.float64).max)


@dataclass(frozen=True, eq=False)
class InputRange:
    """Per feature, the raw input values a model computes on without overflowing its dtype."""

    low: np.ndarray  # (n_features,) float64
    high: np.ndarray
    reason: str  # why, for error messages ("" when the range is all finite float64)


def input_range(model, n_features: int) -> InputRange:
    """The values ``model`` takes, per feature, before its Pipeline steps.

    A float32 tree model behind scaling steps takes less than float32's range (scaling up by
    1/std first), or more; the range is carried back through each step. A step whose effect
    on magnitudes is not known here leaves only the float64 range: refusing values the model
    would take is worse than letting scikit-learn judge them.

    Args:
        model: the fitted model as served.
        n_features: columns of its input.

    Returns:
        The per-feature [low, high] and why it is narrower than float64's ("" when it is not).
    """
    steps, final = split_pipeline(model)
    anything = InputRange(np.full(n_features, -_FLOAT64_MAX), np.full(n_features, _FLOAT64_MAX), "")
    if not isinstance(final, _FLOAT32_INPUT):
        return anything
    limit = float(np.finfo(np.float32).max)
    low, high = np.full(n_features, -limit), np.full(n_features, limit)
    for step in reversed(steps):
        affine = _affine(step)
        if affine is None:
            return anything
        scale, offset = affine
        with np.errstate(over="ignore"):  # beyond float64: anything finite maps inside
            low, high = (low - offset) / scale, (high - offset) / scale
        low, high = np.maximum(low, -_FLOAT64_MAX), np.minimum(high, _FLOAT64_MAX)
    after = f" after {', '.join(type(step).__name__ for step in steps)}" if steps else ""
    return InputRange(low, high, f"{type(final).__name__} computes in float32{after}")


def _affine(step) -> tuple[np.ndarray | float, np.ndarray | float] | None:
    """(scale, offset) with scale > 0 such that the step maps x to x * scale + offset, per feature."""
    kind = type(step)
    if kind is StandardScaler:
        std = step.scale_ if step.with_std else 1.0
        mean = step.mean_ if step.with_mean else 0.0
        return 1.0 / std, -mean / std
    if kind is MinMaxScaler and not step.clip:  # clipping is not affine
        return step.scale_, step.min_
    if kind is SimpleImputer and imputer_is_identity_on_finite(step):
        return 1.0, 0.0
    return None
