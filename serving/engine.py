"""Prediction engine: turns a fitted scikit-learn model into the function the server calls.

Interface (stable): compile_predictor(model, method) -> Callable[[np.ndarray], np.ndarray].

Why: scikit-learn's forest ``predict`` spends ~4 ms per call on per-tree Python and joblib overhead,
whatever the batch size, which caps a server at a few hundred requests per second. For tree
ensembles (random forests, extra trees, single-output histogram gradient boosting), optionally
behind an sklearn Pipeline, this module flattens every tree into one set of node arrays and walks
all trees for all rows at once with a few vectorised numpy operations per tree level. The
arithmetic is the one scikit-learn does (same input dtype conversion, same comparisons, leaf values
summed tree by tree in the same order), so results are bit-identical; the parity tests assert it.

This module picks the path (compile_predictor) and builds the kernels of the ensembles it knows;
the node table and its walk are serving.flatforest, the numpy twins of preprocessing steps
serving.transforms, and the input range a model takes (for the server's 400s) serving.inputrange.

Anything else (other estimators, NaN or infinite input, empty or non-numeric arrays) is answered
by the model's own method, so behaviour, errors included, stays scikit-learn's. fast=False
(what the server passes for SERVING_FAST_PATH=0, see serving.settings) always uses scikit-learn.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import issparse
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from serving.flatforest import FlatForest
from serving.transforms import Transform, compile_transform, split_pipeline

PredictFn = Callable[[np.ndarray], np.ndarray]


# The flat layout takes ~60 bytes per node; beyond this the model's own method is used instead.
MAX_FLAT_NODES = 5_000_000
# Batches larger than this go to a forest's own predict: scikit-learn's per-call overhead (~4 ms)
# no longer matters there and its compiled walk is cheaper per row than ours on deep trees
# (diabetes forest, depth 24: ours 1.04x as fast at 1,000 rows, 0.96x at 2,000, 0.59x at 16,000).
# Same numbers either way: scikit-learn's are the reference. Histogram boosters keep the flat walk
# at every size (ours measured 2-40x faster up to 16,000 rows: their trees are shallow).
FOREST_MAX_FLAT_ROWS = 1_500

_FORESTS = (RandomForestRegressor, RandomForestClassifier, ExtraTreesRegressor, ExtraTreesClassifier)
_HIST_GB = (HistGradientBoostingRegressor, HistGradientBoostingClassifier)

logger = logging.getLogger(__name__)


def compile_predictor(model, method: str = "predict", *, fast: bool = True) -> PredictFn:
    """Return a function computing ``getattr(model, method)(X)`` for a 2-D numeric array X.

    Called once at model load. The result is thread-safe and holds no per-call state.

    Args:
        model: a fitted estimator or Pipeline.
        method: predict or predict_proba.
        fast: False always answers with the model's own method (SERVING_FAST_PATH=0).

    Returns:
        A FastPredictor where the model has a fast path, else the model's bound method.
    """
    own = getattr(model, method)
    if not fast:
        logger.info("prediction engine: scikit-learn %s (fast path switched off)", method)
        return own
    steps, final = split_pipeline(model)
    n_features = getattr(model, "n_features_in_", None)
    # Checked before compiling: the flat table is sized by the final estimator's own count.
    if n_features is None or getattr(final, "n_features_in_", None) is None:
        # nothing to check requests against: leave them to scikit-learn
        logger.info("prediction engine: scikit-learn %s (model does not record its feature count)", method)
        return own
    kernel = _compile_final(final, method)
    if kernel is None:
        logger.info("prediction engine: scikit-learn %s (%s has no fast path)", method, type(final).__name__)
        return own
    transforms = [compile_transform(step) for step in steps]
    predictor = FastPredictor(transforms, kernel, int(n_features), own, kernel.description)
    logger.info("prediction engine: %s", predictor.description)
    return predictor


def describe(predictor: PredictFn) -> str:
    """One line naming the path a compiled predictor takes (for logs and the benchmark).

    Args:
        predictor: what compile_predictor returned.

    Returns:
        For example "flat tree walk for RandomForestRegressor.predict (100 trees, ...)" or "scikit-learn predict".
    """
    return getattr(predictor, "description", f"scikit-learn {getattr(predictor, '__name__', predictor)}")


class FastPredictor:
    """Preprocessing steps, then a flattened tree ensemble; the model's own method for unusual input."""

    def __init__(
        self,
        transforms: Sequence[Transform],
        kernel: "_EnsembleKernel",
        n_features: int,
        fallback: PredictFn,
        description: str,
    ) -> None:
        self._transforms = tuple(transforms)
        self._kernel = kernel
        self._fallback = fallback
        self.n_features = n_features
        self.description = description

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X has shape {X.shape}, expected (n_rows, {self.n_features})")
        # NaN handling (imputers, trees' missing-value routing) and sklearn's own error messages
        # for empty or odd input stay scikit-learn's: those cases take the slow, exact route.
        if X.shape[0] == 0 or X.dtype.kind not in "fiu" or not np.isfinite(X).all():
            return self._fallback(X)
        for transform in self._transforms:
            X = transform(X)
        return self._kernel(X)


@dataclass(frozen=True)
class _EnsembleKernel:
    """Input conversion + flat forest + the estimator's own finishing arithmetic."""

    forest: FlatForest
    input_dtype: np.dtype
    finish: Callable[[np.ndarray], np.ndarray]  # (n, K) leaf sums -> method output
    fallback: PredictFn  # the final estimator's own method, for input the kernel does not take
    description: str
    max_rows: int | None = None  # larger batches go to the fallback (faster there, same numbers)

    def __call__(self, X) -> np.ndarray:
        if issparse(X) or (self.max_rows is not None and X.shape[0] > self.max_rows):
            return self.fallback(X)  # sparse: e.g. one-hot output of a ColumnTransformer
        with np.errstate(over="ignore"):  # overflow is detected just below and left to sklearn to report
            converted = np.asarray(X, dtype=self.input_dtype)
        if converted.ndim != 2 or converted.shape[1] != self.forest.n_features \
                or not np.isfinite(converted).all():  # e.g. float64 beyond float32's range, NaN out of a step
            return self.fallback(X)
        return self.finish(self.forest.sum_leaves(converted))


# One flattened table per fitted estimator: a classifier's predict and predict_proba share it
# (for a large forest it is hundreds of MB). Weak keys: it goes when the estimator does.
_FLAT_TABLES: "weakref.WeakKeyDictionary[object, FlatForest]" = weakref.WeakKeyDictionary()


def _flat_table(estimator, build: Callable[[], FlatForest]) -> FlatForest:
    flat = _FLAT_TABLES.get(estimator)
    if flat is None:
        flat = _FLAT_TABLES[estimator] = build()
    return flat


def _compile_final(estimator, method: str) -> _EnsembleKernel | None:
    if type(estimator) in _FORESTS:
        return _forest_kernel(estimator, method)
    if type(estimator) in _HIST_GB:
        return _hist_gb_kernel(estimator, method)
    return None


def _forest_kernel(forest, method: str) -> _EnsembleKernel | None:
    is_classifier = hasattr(forest, "classes_")
    if forest.n_outputs_ != 1 and is_classifier:
        return None
    if method not in (("predict", "predict_proba") if is_classifier else ("predict",)):
        return None
    trees = [est.tree_ for est in forest.estimators_]
    if sum(tree.node_count for tree in trees) > MAX_FLAT_NODES:
        return None
    if is_classifier:
        values = [tree.value[:, 0, : forest.n_classes_] for tree in trees]
    else:
        values = [tree.value[:, :, 0] for tree in trees]
    flat = _flat_table(forest, lambda: FlatForest.from_trees(
        [
            (t.feature, t.threshold, t.children_left, t.children_right, t.children_left < 0, v, t.max_depth)
            for t, v in zip(trees, values)
        ],
        np.dtype(np.float32),  # scikit-learn's forests cast X to float32 before walking the trees
        forest.n_features_in_,
    ))
    n_trees = len(trees)

    def mean(sums: np.ndarray) -> np.ndarray:
        return sums / n_trees

    if not is_classifier:
        finish = _compose(mean, np.ravel) if forest.n_outputs_ == 1 else mean
    elif method == "predict_proba":
        finish = mean
    else:
        finish = _compose(mean, lambda proba: np.argmax(proba, axis=1), lambda i: forest.classes_.take(i, axis=0))
    return _EnsembleKernel(flat, np.dtype(np.float32), finish, getattr(forest, method), _name(forest, method, flat),
                           max_rows=FOREST_MAX_FLAT_ROWS)


def _hist_gb_kernel(model, method: str) -> _EnsembleKernel | None:
    is_classifier = hasattr(model, "classes_")
    if method not in (("predict", "predict_proba") if is_classifier else ("predict",)):
        return None
    # Categorical splits (bitsets) and multiclass (one tree per class per iteration) keep sklearn's path.
    if model._preprocessor is not None or model.n_trees_per_iteration_ != 1:
        return None
    nodes = [predictors[0].nodes for predictors in model._predictors]
    if any(n["is_categorical"].any() for n in nodes) or sum(len(n) for n in nodes) > MAX_FLAT_NODES:
        return None
    flat = _flat_table(model, lambda: FlatForest.from_trees(
        [
            (
                n["feature_idx"], n["num_threshold"], n["left"].astype(np.intp), n["right"].astype(np.intp),
                n["is_leaf"].astype(bool), n["value"][:, None], int(n["depth"].max()),
            )
            for n in nodes
        ],
        np.dtype(np.float64),  # the histogram booster compares float64 features to float64 thresholds
        model.n_features_in_,
        # scikit-learn: zeros + baseline, then one tree after another
        start=0.0 + np.asarray(model._baseline_prediction, np.float64).ravel(),
    ))
    if not is_classifier:
        finish = _compose(np.ravel, model._loss.link.inverse)
    elif method == "predict_proba":
        finish = model._loss.predict_proba
    else:
        finish = _compose(np.ravel, lambda raw: raw > 0, lambda positive: model.classes_[positive.astype(int)])
    return _EnsembleKernel(flat, np.dtype(np.float64), finish, getattr(model, method), _name(model, method, flat))


def _compose(*functions: Callable) -> Callable:
    def composed(value):
        for function in functions:
            value = function(value)
        return value

    return composed


def _name(estimator, method: str, flat: FlatForest) -> str:
    return (
        f"flat tree walk for {type(estimator).__name__}.{method} "
        f"({len(flat.roots)} trees, {flat.n_nodes} nodes, depth {flat.depth})"
    )


