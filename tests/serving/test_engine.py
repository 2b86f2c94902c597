"""The prediction engine gives exactly scikit-learn's answers, only faster.

Every parity check compares bit for bit (np.array_equal plus dtype and shape) with the model's
own method on the same rows, and first checks that the fast path is really the one taken.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import warnings

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeRegressor

from serving import engine, flatforest, inputrange
from serving.engine import compile_predictor, describe

FAST = "flat tree walk"

_DATA = {
    "regression": load_diabetes(return_X_y=True),
    "binary": load_breast_cancer(return_X_y=True),
    "multiclass": load_iris(return_X_y=True),
}
# Labels that are not 0..k-1: the kernel must map the winning column back to classes_.
_DATA["binary-named"] = (_DATA["binary"][0], np.array(["malignant", "benign"])[_DATA["binary"][1]])

# name -> (task, model factory, methods with a fast path)
MODELS = {
    "rf-regressor": ("regression", lambda: RandomForestRegressor(n_estimators=10, random_state=0), ["predict"]),
    "extra-trees-regressor": ("regression", lambda: ExtraTreesRegressor(n_estimators=6, random_state=0), ["predict"]),
    "rf-classifier-binary": (
        "binary", lambda: RandomForestClassifier(n_estimators=6, random_state=0), ["predict", "predict_proba"]),
    "extra-trees-multiclass": (
        "multiclass", lambda: ExtraTreesClassifier(n_estimators=6, random_state=0), ["predict", "predict_proba"]),
    "scaled-imputed-rf": ("regression", lambda: make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), RandomForestRegressor(n_estimators=6, random_state=0)),
        ["predict"]),
    "minmax-rf-classifier": ("binary", lambda: make_pipeline(
        MinMaxScaler(), RandomForestClassifier(n_estimators=6, random_state=0)), ["predict", "predict_proba"]),
    "generic-step-rf": ("regression", lambda: make_pipeline(  # a step with no numpy twin keeps its transform
        FunctionTransformer(np.tanh), RandomForestRegressor(n_estimators=6, random_state=0)), ["predict"]),
    "hist-gb-regressor": ("regression", lambda: HistGradientBoostingRegressor(max_iter=15, random_state=0), ["predict"]),
    "poisson-hist-gb": ("regression", lambda: HistGradientBoostingRegressor(  # log link: exp of the raw sum
        loss="poisson", max_iter=15, random_state=0), ["predict"]),
    "nan-step-hist-gb": ("regression", lambda: make_pipeline(  # NaN out of a step: the booster's own predict
        FunctionTransformer(lambda x: np.where(x > 0, x, np.nan)), HistGradientBoostingRegressor(max_iter=15, random_state=0)),
        ["predict"]),
    "rf-classifier-named": (
        "binary-named", lambda: RandomForestClassifier(n_estimators=4, random_state=0), ["predict", "predict_proba"]),
    "hist-gb-named": (
        "binary-named", lambda: HistGradientBoostingClassifier(max_iter=10, random_state=0), ["predict", "predict_proba"]),
    "scaled-hist-gb-binary": ("binary", lambda: make_pipeline(
        StandardScaler(), HistGradientBoostingClassifier(max_iter=15, random_state=0)), ["predict", "predict_proba"]),
    "sparse-one-hot-rf": ("regression", lambda: make_pipeline(  # sparse step output: sklearn walks it
        ColumnTransformer([("sex", OneHotEncoder(handle_unknown="ignore"), [1])], remainder="passthrough", sparse_threshold=1.0),
        RandomForestRegressor(n_estimators=4, random_state=0)), ["predict"]),
    "project-pipeline-rf": ("regression", lambda: Pipeline(  # what components/train.py builds for trees
        [("model", RandomForestRegressor(n_estimators=10, random_state=1))]), ["predict"]),
}
CASES = [(name, method) for name, (_, _, methods) in MODELS.items() for method in methods]


@pytest.fixture(scope="session")
def fitted() -> dict:
    """Small forests (a few trees each) fitted once: parity does not need many trees, and mutation
    testing reruns this file once per mutant."""
    models = {}
    for name, (task, factory, _) in MODELS.items():
        x, y = _DATA[task]
        models[name] = factory().fit(x, y)
    return models


def _queries(task: str, n_rows: int, seed: int) -> np.ndarray:
    """Training rows nudged by a few percent: new points that still reach deep leaves."""
    x, _ = _DATA[task]
    rng = np.random.default_rng(seed)
    rows = x[rng.integers(0, len(x), n_rows)]
    return rows * (1 + rng.normal(0, 0.03, rows.shape))


def assert_identical(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want), f"max abs difference {np.max(np.abs(got - want))}"


@pytest.mark.parametrize("n_rows", [1, 32, 300])  # 300: past one ROWS_PER_CHUNK
@pytest.mark.parametrize("name,method", CASES)
def test_fast_path_equals_sklearn(fitted, name, method, n_rows):
    model = fitted[name]
    predict = compile_predictor(model, method, fast=True)
    assert describe(predict).startswith(FAST), describe(predict)
    x = _queries(MODELS[name][0], n_rows, seed=n_rows)
    assert_identical(predict(x), getattr(model, method)(x))


@pytest.mark.parametrize("name,method", CASES)
def test_single_rows_equal_sklearn(fitted, name, method):
    # One row at a time is where a vectorised sum could silently reorder additions.
    model = fitted[name]
    predict = compile_predictor(model, method, fast=True)
    x = _queries(MODELS[name][0], 30, seed=7)
    got = np.concatenate([predict(row[None, :]) for row in x])
    want = np.concatenate([getattr(model, method)(row[None, :]) for row in x])
    assert_identical(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float16])
def test_other_input_dtypes_follow_sklearn(fitted, dtype):
    model = fitted["scaled-imputed-rf"]
    x = (_queries("regression", 64, seed=3) * (100 if dtype is np.int64 else 1)).astype(dtype)
    assert_identical(compile_predictor(model, fast=True)(x), model.predict(x))


def test_features_equal_to_a_threshold_take_sklearn_branch(fitted):
    # sklearn compares float32 features with float64 thresholds; the engine stores thresholds as
    # float32 rounded down. Rows sitting exactly on float32 neighbours of thresholds probe that.
    model = fitted["rf-regressor"]
    tree = model.estimators_[0].tree_
    splits = np.flatnonzero(tree.children_left >= 0)[:200]
    base = _queries("regression", len(splits), seed=11)
    rows = []
    for row, node in zip(base, splits):
        nearest = np.float32(tree.threshold[node])
        for value in (nearest, np.nextafter(nearest, np.float32(-1)), np.nextafter(nearest, np.float32(1))):
            probe = row.copy()
            probe[tree.feature[node]] = value
            rows.append(probe)
    x = np.array(rows)
    assert_identical(compile_predictor(model, fast=True)(x), model.predict(x))


def test_missing_values_are_answered_by_sklearn(fitted):
    model = fitted["scaled-imputed-rf"]
    x = _queries("regression", 8, seed=5)
    x[2, 3] = np.nan
    assert_identical(compile_predictor(model, fast=True)(x), model.predict(x))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # sklearn's own cast, then its error
@pytest.mark.parametrize("value", [np.inf, 1e300])
def test_values_beyond_float32_raise_sklearn_error(fitted, value):
    model = fitted["rf-regressor"]
    x = _queries("regression", 4, seed=2)
    x[1, 0] = value
    with pytest.raises(ValueError, match="infinity"):
        model.predict(x)
    with pytest.raises(ValueError, match="infinity"):
        compile_predictor(model, fast=True)(x)


@pytest.mark.parametrize("shape", [(3, 9), (3, 11), (10,), (2, 10, 1)])
def test_wrong_shape_is_a_clear_error(fitted, shape):
    predict = compile_predictor(fitted["rf-regressor"], fast=True)
    with pytest.raises(ValueError, match=r"expected \(n_rows, 10\)"):
        predict(np.zeros(shape))


def test_empty_input_raises_like_sklearn(fitted):
    with pytest.raises(ValueError, match="0 sample"):
        compile_predictor(fitted["rf-regressor"], fast=True)(np.zeros((0, 10)))


@pytest.mark.parametrize("model,method", [
    (Ridge(), "predict"),
    (HistGradientBoostingClassifier(max_iter=5), "predict"),  # multiclass boosting: one tree per class
    (RandomForestClassifier(n_estimators=5), "predict_log_proba"),
])
def test_models_without_fast_path_use_their_own_method(model, method):
    x, y = _DATA["multiclass"]
    model.fit(x, y)
    predict = compile_predictor(model, method, fast=True)
    assert predict == getattr(model, method)
    assert describe(predict).startswith("scikit-learn")


def test_switch_off_by_argument_and_the_environment_is_not_read(fitted, monkeypatch):
    # SERVING_FAST_PATH is read once, by serving.settings (tests/serving/test_settings.py); the engine takes a bool.
    model = fitted["rf-regressor"]
    assert compile_predictor(model, fast=False) == model.predict
    monkeypatch.setenv("SERVING_FAST_PATH", "0")
    assert describe(compile_predictor(model)).startswith(FAST)


def test_concurrent_calls_from_threads_agree(fitted):
    model = fitted["rf-classifier-binary"]
    predict = compile_predictor(model, "predict_proba", fast=True)
    inputs = [_queries("binary", n, seed=n) for n in (1, 5, 40, 300)]
    want = [model.predict_proba(x) for x in inputs]
    failures = []

    def worker():
        for _ in range(20):
            for x, expected in zip(inputs, want):
                if not np.array_equal(predict(x), expected):
                    failures.append(x.shape)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_large_batches_are_walked_in_chunks(fitted, monkeypatch):
    # Chunk edges must not shift rows: a batch of 2.5 chunks equals sklearn row for row.
    monkeypatch.setattr(flatforest, "ROWS_PER_CHUNK", 16)
    model = fitted["rf-regressor"]
    x = _queries("regression", 40, seed=9)
    assert_identical(compile_predictor(model, fast=True)(x), model.predict(x))



@pytest.mark.parametrize("name,method,flat_above_limit", [
    ("rf-regressor", "predict", False),
    ("rf-classifier-binary", "predict_proba", False),
    ("hist-gb-regressor", "predict", True),  # boosters keep the flat walk at every size
])
def test_forest_batches_past_the_limit_go_to_sklearn(fitted, monkeypatch, name, method, flat_above_limit):
    monkeypatch.setattr(engine, "FOREST_MAX_FLAT_ROWS", 8)  # read when the kernel is built
    walked: list[int] = []
    sum_leaves = flatforest.FlatForest.sum_leaves
    monkeypatch.setattr(flatforest.FlatForest, "sum_leaves", lambda self, X: walked.append(len(X)) or sum_leaves(self, X))
    model = fitted[name]
    predict = compile_predictor(model, method, fast=True)
    for n_rows in (8, 9):
        x = _queries(MODELS[name][0], n_rows, seed=n_rows)
        assert_identical(predict(x), getattr(model, method)(x))
    assert walked == ([8, 9] if flat_above_limit else [8])


# name -> (task, model factory): the raw-input range must be exactly what scikit-learn takes.
FLOAT32_MODELS = {
    "rf-regressor": ("regression", lambda: RandomForestRegressor(n_estimators=5, random_state=0)),
    "extra-trees-classifier": ("binary", lambda: ExtraTreesClassifier(n_estimators=5, random_state=0)),
    "decision-tree": ("regression", lambda: DecisionTreeRegressor(random_state=0)),
    "gradient-boosting": ("regression", lambda: GradientBoostingRegressor(n_estimators=5, random_state=0)),
    "scaled-rf": ("regression", lambda: make_pipeline(StandardScaler(), RandomForestRegressor(n_estimators=5))),
    "imputed-scaled-rf": ("regression", lambda: make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), RandomForestRegressor(n_estimators=5))),
    "minmax-rf": ("binary", lambda: make_pipeline(MinMaxScaler((-3, 7)), RandomForestClassifier(n_estimators=5))),
    "unscaled-std-rf": ("regression", lambda: make_pipeline(StandardScaler(with_std=False),
                                                            RandomForestRegressor(n_estimators=5))),
}


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # sklearn's cast, then its error
@pytest.mark.parametrize("name", FLOAT32_MODELS)
def test_input_range_is_exactly_what_float32_models_take(name):
    task, factory = FLOAT32_MODELS[name]
    x, y = _DATA[task]
    model = factory().fit(x, y)
    accepted = inputrange.input_range(model, x.shape[1])
    assert "computes in float32" in accepted.reason
    assert np.all(accepted.low < x.min(axis=0)) and np.all(accepted.high > x.max(axis=0))
    for column in (0, x.shape[1] - 1):
        for bound in (accepted.low[column], accepted.high[column]):
            row = x[:1].copy()
            row[0, column] = bound
            model.predict(row)  # the bound itself is taken
            row[0, column] = bound * (1 + 1e-6)  # a millionth further out is not
            with pytest.raises(ValueError, match="too large for dtype\\('float32'\\)"):
                model.predict(row)


@pytest.mark.parametrize("model", [
    pytest.param(HistGradientBoostingRegressor(max_iter=5), id="hist-gb-float64"),
    pytest.param(Ridge(), id="linear"),
    # tanh bounds what the forest sees: no float32 limit applies to the raw input
    pytest.param(make_pipeline(FunctionTransformer(np.tanh), RandomForestRegressor(n_estimators=5)), id="unknown-step"),
    pytest.param(make_pipeline(MinMaxScaler(clip=True), RandomForestRegressor(n_estimators=5)), id="clipping-step"),
])
def test_input_range_is_all_finite_floats_when_nothing_narrows_it(model):
    x, y = _DATA["regression"]
    model.fit(x, y)
    accepted = inputrange.input_range(model, x.shape[1])
    finite = np.finfo(np.float64).max
    assert np.all(accepted.low == -finite) and np.all(accepted.high == finite) and accepted.reason == ""
    row = x[:1].copy()
    row[0, 0] = 1e300
    assert np.isfinite(model.predict(row)).all()


@pytest.mark.parametrize("name", ["rf-classifier-binary", "minmax-rf-classifier", "scaled-hist-gb-binary"])
def test_predict_and_predict_proba_share_one_flat_table(fitted, name):
    # For a large forest the table is hundreds of MB: a classifier's two outputs must not hold two.
    model = fitted[name]
    predict, proba = compile_predictor(model, "predict"), compile_predictor(model, "predict_proba")
    assert predict._kernel.forest is proba._kernel.forest
    x = _queries(MODELS[name][0], 64, seed=7)
    assert_identical(predict(x), model.predict(x))
    assert_identical(proba(x), model.predict_proba(x))


def test_each_fitted_estimator_gets_its_own_flat_table(fitted):
    twin = RandomForestRegressor(n_estimators=10, random_state=0).fit(*_DATA["regression"])
    other = RandomForestRegressor(n_estimators=10, random_state=1).fit(*_DATA["regression"])
    assert compile_predictor(twin)._kernel.forest is not compile_predictor(other)._kernel.forest


# ---------------------------------------------------------------- edges that mutation testing found unpinned

def test_multi_output_forests_classifiers_to_sklearn_regressors_fast():
    x, y = _DATA["regression"]
    two = np.column_stack([y > np.median(y), y > np.quantile(y, 0.8)]).astype(int)
    classifier = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, two)
    assert describe(compile_predictor(classifier, "predict")).startswith("scikit-learn")
    assert describe(compile_predictor(classifier, "predict_proba")).startswith("scikit-learn")
    regressor = RandomForestRegressor(n_estimators=5, random_state=0).fit(x, np.column_stack([y, -y]))
    predict = compile_predictor(regressor, "predict")
    assert describe(predict).startswith(FAST)
    rows = _queries("regression", 7, seed=3)
    assert_identical(predict(rows), regressor.predict(rows))  # (7, 2): not flattened to one column


def test_methods_other_than_predict_and_predict_proba_are_the_models_own():
    # (A regressor's predict_proba cannot be asked for: the model has none, compile_predictor's getattr raises.)
    model = RandomForestRegressor(n_estimators=3, random_state=0).fit(*_DATA["regression"])
    assert compile_predictor(model, "apply") == model.apply


@pytest.mark.parametrize("skipped", [None, "passthrough"])
def test_a_passthrough_or_none_step_in_the_middle_of_a_pipeline_is_skipped(skipped):
    x, y = _DATA["regression"]
    model = Pipeline([("scale", StandardScaler()), ("nothing", skipped),
                      ("forest", RandomForestRegressor(n_estimators=10, random_state=0))]).fit(x, y)
    predict = compile_predictor(model)
    assert describe(predict).startswith(FAST)
    rows = _queries("regression", 33, seed=4)
    assert_identical(predict(rows), model.predict(rows))
    # The range is carried back through the scaler alone (a passthrough maps nothing).
    accepted = inputrange.input_range(model, x.shape[1])
    assert accepted.reason == "RandomForestRegressor computes in float32 after StandardScaler"


def test_a_model_without_n_features_in_is_left_to_sklearn():
    # Was an AttributeError at load: the flat table was built from the forest's count before the check.
    x, y = _DATA["regression"]
    forest = RandomForestRegressor(n_estimators=3, random_state=0).fit(x, y)
    del forest.n_features_in_
    predict = compile_predictor(forest)
    assert describe(predict).startswith("scikit-learn")
    assert_identical(predict(x[:5]), forest.predict(x[:5]))
    inner = RandomForestRegressor(n_estimators=3, random_state=0).fit(x, y)
    pipeline = make_pipeline(StandardScaler().fit(x), inner)
    pipeline.steps[-1][1].fit(StandardScaler().fit_transform(x), y)
    del inner.n_features_in_
    assert getattr(pipeline, "n_features_in_", None) == x.shape[1]  # the Pipeline's comes from its scaler
    assert describe(compile_predictor(pipeline)).startswith("scikit-learn")


def test_forests_beyond_the_node_limit_are_left_to_sklearn(monkeypatch):
    model = RandomForestRegressor(n_estimators=4, random_state=0).fit(*_DATA["regression"])
    nodes = sum(tree.tree_.node_count for tree in model.estimators_)
    monkeypatch.setattr(engine, "MAX_FLAT_NODES", nodes)
    assert describe(compile_predictor(model)).startswith(FAST)  # at the limit: still flattened
    monkeypatch.setattr(engine, "MAX_FLAT_NODES", nodes - 1)
    assert describe(compile_predictor(model)).startswith("scikit-learn")


def test_the_input_range_is_clamped_to_finite_float64():
    # A huge std scales float32's limit up past float64's: the range stays finite, never inf.
    x, y = _DATA["regression"]
    model = make_pipeline(StandardScaler(), RandomForestRegressor(n_estimators=3, random_state=0)).fit(x, y)
    model[0].scale_[0] = 1e300  # set, not fitted: the squares of such values overflow the fit itself
    accepted = inputrange.input_range(model, x.shape[1])
    finite = np.finfo(np.float64).max
    assert accepted.low[0] == -finite and accepted.high[0] == finite
    assert np.all(np.isfinite(accepted.low)) and np.all(np.isfinite(accepted.high))
    assert -finite < accepted.low[1] and accepted.high[1] < finite  # the other features are narrowed


def test_descriptions_name_the_estimator_method_and_table(fitted):
    forest = fitted["rf-regressor"]
    nodes = sum(tree.tree_.node_count for tree in forest.estimators_)
    depth = max(tree.tree_.max_depth for tree in forest.estimators_)
    assert describe(compile_predictor(forest)) == \
        f"flat tree walk for RandomForestRegressor.predict (10 trees, {nodes} nodes, depth {depth})"
    booster = fitted["scaled-hist-gb-binary"][-1]
    nodes = sum(len(predictors[0].nodes) for predictors in booster._predictors)
    depth = max(int(predictors[0].nodes["depth"].max()) for predictors in booster._predictors)
    assert describe(compile_predictor(fitted["scaled-hist-gb-binary"], "predict_proba")) == \
        f"flat tree walk for HistGradientBoostingClassifier.predict_proba (15 trees, {nodes} nodes, depth {depth})"


def test_each_choice_is_logged_once_at_info_with_its_reason(fitted, caplog):
    ridge = Ridge().fit(*_DATA["regression"])
    no_count = RandomForestRegressor(n_estimators=2, random_state=0).fit(*_DATA["regression"])
    del no_count.n_features_in_
    forest = fitted["rf-regressor"]
    with caplog.at_level(logging.INFO, logger="serving.engine"):
        compile_predictor(forest, "predict", fast=False)
        compile_predictor(no_count, "predict")
        compile_predictor(ridge, "predict")
        fast = compile_predictor(forest, "predict")
    assert [r.getMessage() for r in caplog.records if r.name == "serving.engine"] == [
        "prediction engine: scikit-learn predict (fast path switched off)",
        "prediction engine: scikit-learn predict (model does not record its feature count)",
        "prediction engine: scikit-learn predict (Ridge has no fast path)",
        f"prediction engine: {fast.description}",
    ]


def test_the_kernel_leaves_odd_input_to_the_estimator_and_adds_no_warning(fitted):
    # What FastPredictor passes on after its steps: float64 beyond float32's range (the cast overflows,
    # silently: sklearn reports it) or, from a step that changes the width, the wrong number of columns.
    kernel = compile_predictor(fitted["rf-regressor"])._kernel
    seen: list[np.ndarray] = []
    spy = dataclasses.replace(kernel, fallback=lambda X: seen.append(X) or "the estimator's answer")
    huge = _queries("regression", 3, seed=1)
    huge[1, 4] = 1e300
    narrow = _queries("regression", 3, seed=1)[:, :9]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert spy(huge) == "the estimator's answer" and spy(narrow) == "the estimator's answer"
    assert seen[0] is huge and seen[1] is narrow


def test_forest_tables_hold_float32_thresholds_boosters_float64(fitted):
    # Half the memory for forests (float32 is what sklearn's trees compare in), rounded down so
    # that the branch taken is sklearn's (test_features_equal_to_a_threshold_take_sklearn_branch).
    assert compile_predictor(fitted["rf-regressor"])._kernel.forest.threshold.dtype == np.float32
    assert compile_predictor(fitted["hist-gb-regressor"])._kernel.forest.threshold.dtype == np.float64


def test_boosters_beyond_the_node_limit_are_left_to_sklearn(fitted, monkeypatch):
    model = fitted["hist-gb-regressor"]
    nodes = sum(len(predictors[0].nodes) for predictors in model._predictors)
    monkeypatch.setattr(engine, "MAX_FLAT_NODES", nodes)
    assert describe(compile_predictor(model)).startswith(FAST)  # at the limit: still flattened
    monkeypatch.setattr(engine, "MAX_FLAT_NODES", nodes - 1)
    assert describe(compile_predictor(model)).startswith("scikit-learn")


def test_a_booster_raw_score_of_exactly_zero_is_the_first_class(fitted):
    # sklearn's binary booster predicts classes_[1] for raw > 0 only (as argmax([0.5, 0.5]) is 0).
    model = copy.deepcopy(fitted["hist-gb-named"])
    model._baseline_prediction = np.zeros_like(model._baseline_prediction)
    for predictors in model._predictors:
        predictors[0].nodes["value"] = 0.0
    x = _queries("binary-named", 5, seed=2)
    assert list(model.predict(x)) == [model.classes_[0]] * 5 == ["benign"] * 5
    assert_identical(compile_predictor(model)(x), model.predict(x))
