"""Prediction engine: turns a fitted scikit-learn model into the function the server calls.

Interface (stable): compile_predictor(model, method) -> Callable[[np.ndarray], np.ndarray].

Why: scikit-learn's forest ``predict`` spends ~4 ms per call on per-tree Python and joblib overhead,
whatever the batch size, which caps a server at a few hundred requests per second. For tree
ensembles (random forests, extra trees, single-output histogram gradient boosting), optionally
behind an sklearn Pipeline, this module flattens every tree into one set of node arrays and walks
all trees for all rows at once with a few vectorised numpy operations per tree level. The
arithmetic is the one scikit-learn does (same input dtype conversion, same comparisons, leaf values
summed tree by tree in the same order), so results are bit-identical; the parity tests assert it.

Anything else (other estimators, NaN or infinite input, empty or non-numeric arrays) is answered
by the model's own method, so behaviour, errors included, stays scikit-learn's. Set
SERVING_FAST_PATH=0 (or pass fast=False) to always use scikit-learn.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import issparse
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from serving.switches import switch

PredictFn = Callable[[np.ndarray], np.ndarray]
Transform = Callable[[np.ndarray], np.ndarray]

FAST_PATH_ENV = "SERVING_FAST_PATH"

# Rows walked together. Past a few hundred rows the temporaries stop fitting in cache and the
# per-row cost grows; chunking keeps it flat (measured on the diabetes forest: 4.4 µs/row at 512).
ROWS_PER_CHUNK = 256
# From this many rows on, entries that reached a leaf are dropped every COMPACT_EVERY levels;
# for fewer rows the bookkeeping costs more than the levels it saves.
COMPACT_MIN_ROWS = 4
COMPACT_EVERY = 4
# The flat layout takes ~60 bytes per node; beyond this the model's own method is used instead.
MAX_FLAT_NODES = 5_000_000

# What scikit-learn's validation keeps as is; any other numeric dtype becomes float64.
_FLOAT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16))
_FORESTS = (RandomForestRegressor, RandomForestClassifier, ExtraTreesRegressor, ExtraTreesClassifier)
_HIST_GB = (HistGradientBoostingRegressor, HistGradientBoostingClassifier)
# scikit-learn's tree models cast X to float32 (sklearn.tree's DTYPE) before walking their trees,
# so a finite float64 beyond float32's range makes them raise (ExtraTree* are DecisionTree*).
_FLOAT32_INPUT = (*_FORESTS, DecisionTreeRegressor, DecisionTreeClassifier, GradientBoostingRegressor,
                  GradientBoostingClassifier)
_FLOAT64_MAX = float(np.finfo(np.float64).max)

logger = logging.getLogger(__name__)


class EngineConfigError(ValueError):
    """The engine switch has a value that is neither on nor off."""


def fast_path_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Read SERVING_FAST_PATH: on unless set to 0/false/no/off."""
    return switch(environ, FAST_PATH_ENV, EngineConfigError)


def compile_predictor(model, method: str = "predict", *, fast: bool | None = None) -> PredictFn:
    """Return a function computing ``getattr(model, method)(X)`` for a 2-D numeric array X.

    Called once at model load. The result is thread-safe and holds no per-call state.
    """
    own = getattr(model, method)
    if not (fast_path_enabled() if fast is None else fast):
        logger.info("prediction engine: scikit-learn %s (fast path switched off)", method)
        return own
    steps, final = _split_pipeline(model)
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
    transforms = [_compile_transform(step) for step in steps]
    predictor = FastPredictor(transforms, kernel, int(n_features), own, kernel.description)
    logger.info("prediction engine: %s", predictor.description)
    return predictor


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
    """
    steps, final = _split_pipeline(model)
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
    if kind is SimpleImputer and _imputer_is_identity_on_finite(step):
        return 1.0, 0.0
    return None


def describe(predictor: PredictFn) -> str:
    """One line naming the path a compiled predictor takes (for logs and the benchmark)."""
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
class FlatForest:
    """All trees of an ensemble in one node table, node i stored at index 2*i.

    ``child[2*i + go_right]`` is 2 * (the child's index), so one level of descent is
    ``node += x > threshold[node]; node = child[node]``. Leaves point to themselves, so walking
    more levels than a tree is deep is harmless.
    """

    feature: np.ndarray  # (2N,) intp; feature tested at node i (0 at leaves)
    threshold: np.ndarray  # (2N,) input dtype; go right when x > threshold
    child: np.ndarray  # (2N,) intp
    is_leaf: np.ndarray  # (2N,) bool
    value: np.ndarray  # (2N, K) float64 leaf values
    roots: np.ndarray  # (T,) intp
    depth: int
    n_features: int
    start: np.ndarray  # (K,) float64 the running sum starts from (0, or a booster's baseline)

    @classmethod
    def from_trees(
        cls, trees: Sequence[tuple], input_dtype: np.dtype, n_features: int, start: np.ndarray | None = None
    ) -> FlatForest:
        """Build from per-tree (feature, threshold, left, right, is_leaf, value, depth) arrays."""
        sizes = [len(tree[0]) for tree in trees]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        n_nodes = int(sum(sizes))
        feature = np.zeros(2 * n_nodes, np.intp)
        threshold = np.zeros(2 * n_nodes, input_dtype)
        child = np.empty(2 * n_nodes, np.intp)
        is_leaf = np.zeros(2 * n_nodes, bool)
        value = np.zeros((2 * n_nodes, trees[0][5].shape[1]), np.float64)
        for (feat, thr, left, right, leaf, val, _), first in zip(trees, offsets):
            at = slice(2 * first, 2 * (first + len(feat)), 2)
            own = np.arange(len(feat), dtype=np.intp) + first
            feature[at] = np.where(leaf, 0, feat)
            threshold[at] = _round_down(thr, input_dtype)
            child[at] = 2 * np.where(leaf, own, left + first)
            child[2 * first + 1 : 2 * (first + len(feat)) : 2] = 2 * np.where(leaf, own, right + first)
            is_leaf[at] = leaf
            value[at] = val
        depth = max(tree[6] for tree in trees)
        start = np.zeros(value.shape[1]) if start is None else np.asarray(start, np.float64).reshape(-1)
        return cls(feature, threshold, child, is_leaf, value, 2 * offsets, int(depth), n_features, start)

    @property
    def n_nodes(self) -> int:
        return len(self.feature) // 2

    def sum_leaves(self, X: np.ndarray) -> np.ndarray:
        """(n, K): ``start`` plus each row's leaf values, added tree by tree in tree order."""
        n_trees, width = len(self.roots), self.value.shape[1]
        out = np.empty((X.shape[0], width), np.float64)
        for first in range(0, X.shape[0], ROWS_PER_CHUNK):
            chunk = X[first : first + ROWS_PER_CHUNK]
            terms = np.empty((n_trees + 1, chunk.shape[0], width), np.float64)
            terms[0] = self.start
            np.take(self.value, self._leaves(chunk).reshape(n_trees, chunk.shape[0]), axis=0, out=terms[1:])
            # accumulate, not sum: numpy's sum may add pairwise; scikit-learn adds one tree at a time.
            out[first : first + chunk.shape[0]] = np.add.accumulate(terms, axis=0)[-1]
        return out

    def _leaves(self, X: np.ndarray) -> np.ndarray:
        """Leaf index reached in every tree by every row, tree-major (entry t * n_rows + r)."""
        n_rows = X.shape[0]
        flat_x = np.ascontiguousarray(X).ravel()
        node = np.repeat(self.roots, n_rows)
        row_start = None if n_rows == 1 else np.tile(np.arange(n_rows, dtype=np.intp) * self.n_features, len(self.roots))
        if n_rows < COMPACT_MIN_ROWS:
            return self._descend(node, row_start, flat_x, self.depth)
        node = self._descend(node, row_start, flat_x, self.depth // 2)
        # Most paths end well before the deepest leaf: keep walking only the unfinished ones.
        active = np.flatnonzero(~self.is_leaf[node])
        while active.size:
            walked = self._descend(node[active], row_start[active], flat_x, COMPACT_EVERY)
            node[active] = walked
            active = active[~self.is_leaf[walked]]
        return node

    def _descend(self, node: np.ndarray, row_start: np.ndarray | None, flat_x: np.ndarray, levels: int) -> np.ndarray:
        for _ in range(levels):
            column = self.feature[node]
            if row_start is not None:
                column += row_start
            node += flat_x[column] > self.threshold[node]
            node = self.child[node]
        return node


@dataclass(frozen=True)
class _EnsembleKernel:
    """Input conversion + flat forest + the estimator's own finishing arithmetic."""

    forest: FlatForest
    input_dtype: np.dtype
    finish: Callable[[np.ndarray], np.ndarray]  # (n, K) leaf sums -> method output
    fallback: PredictFn  # the final estimator's own method, for input the kernel does not take
    description: str

    def __call__(self, X) -> np.ndarray:
        if issparse(X):  # e.g. one-hot output of a ColumnTransformer
            return self.fallback(X)
        with np.errstate(over="ignore"):  # overflow is detected just below and left to sklearn to report
            converted = np.asarray(X, dtype=self.input_dtype)
        if converted.ndim != 2 or converted.shape[1] != self.forest.n_features \
                or not np.isfinite(converted).all():  # e.g. float64 beyond float32's range, NaN out of a step
            return self.fallback(X)
        return self.finish(self.forest.sum_leaves(converted))


def _split_pipeline(model) -> tuple[list, object]:
    if isinstance(model, Pipeline):
        steps = [step for _, step in model.steps[:-1] if step is not None and step != "passthrough"]
        return steps, model.steps[-1][1]
    return [], model


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
    return _EnsembleKernel(flat, np.dtype(np.float32), finish, getattr(forest, method), _name(forest, method, flat))


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


def _round_down(threshold: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Largest ``dtype`` value <= threshold: for x of that dtype, x <= t exactly when x <= it.

    scikit-learn compares float32 features with float64 thresholds; rounding the thresholds down
    once lets the walk compare float32 with float32 and still take the same branch.
    """
    rounded = np.asarray(threshold).astype(dtype)
    if dtype != np.float64:
        above = rounded.astype(np.float64) > threshold
        rounded[above] = np.nextafter(rounded[above], dtype.type(-np.inf))
    return rounded


def _name(estimator, method: str, flat: FlatForest) -> str:
    return (
        f"flat tree walk for {type(estimator).__name__}.{method} "
        f"({len(flat.roots)} trees, {flat.n_nodes} nodes, depth {flat.depth})"
    )


def _compile_transform(step) -> Transform:
    """A numpy version of a preprocessing step's transform when one gives identical output.

    Only reached with finite input (FastPredictor sends anything else to the whole model).
    Each version repeats scikit-learn's dtype rule and in-place arithmetic, which is why the
    outputs are bit-identical; any other step keeps its own ``transform``.
    """
    kind = type(step)
    if kind is StandardScaler:
        mean = step.mean_ if step.with_mean else None
        scale = step.scale_ if step.with_std else None
        return lambda X: _scale(X, mean, scale)
    if kind is MinMaxScaler and not step.clip:
        return lambda X: _min_max(X, step.scale_, step.min_)
    if kind is SimpleImputer and _imputer_is_identity_on_finite(step):
        # Nothing is missing in finite input: the imputer only applies its dtype rule.
        if step.strategy in ("mean", "median"):
            return lambda X: X if X.dtype in _FLOAT_DTYPES else X.astype(np.float64)
        return lambda X: X
    return step.transform


def _float_copy(X: np.ndarray) -> np.ndarray:
    return np.array(X, dtype=X.dtype if X.dtype in _FLOAT_DTYPES else np.float64, copy=True)


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


def _imputer_is_identity_on_finite(imputer: SimpleImputer) -> bool:
    missing = imputer.missing_values
    return (
        isinstance(missing, float)
        and np.isnan(missing)
        and not imputer.add_indicator
        and imputer._fit_dtype.kind == "f"
        # features with no observed value are dropped by transform unless kept
        and (imputer.keep_empty_features or not np.isnan(imputer.statistics_).any())
    )
