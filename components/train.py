"""Train: build an sklearn Pipeline for a named estimator, fit it on arrays, save model.joblib.

Linear and kernel models get scaling (plus imputation / one-hot encoding when the schema asks
for it). Tree models get no preprocessing at all: scaling changes nothing for them, handles NaN
natively, and every extra step costs time on each prediction the server makes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import joblib
import numpy as np
import sklearn
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from components import profile
from components.artifacts import MODEL_FILE, TRAINING_FILE, feature_names, read_json, schema_task, write_json
from components.datasets import read_dataset
from components.errors import TrainError

log = logging.getLogger(__name__)

# SVC(probability=True) is deprecated in scikit-learn 1.9 (removed in 1.11, replaced by
# CalibratedClassifierCV(SVC(), ensemble=False)); with 1.9.1 pinned, the warning is noise in every fit.
warnings.filterwarnings("ignore", message="The `probability` parameter was deprecated", category=FutureWarning)


@dataclass(frozen=True)
class EstimatorSpec:
    factory: Callable[..., BaseEstimator]
    # Linear and kernel models need scaled (and imputed, one-hot) inputs; trees do not.
    needs_preprocessing: bool
    defaults: dict[str, Any]


ESTIMATORS: dict[str, dict[str, EstimatorSpec]] = {
    "regression": {
        "ridge": EstimatorSpec(Ridge, True, {}),
        "kernel_ridge": EstimatorSpec(KernelRidge, True, {"kernel": "rbf"}),
        "random_forest": EstimatorSpec(RandomForestRegressor, False, {"n_estimators": 100}),
        "hist_gradient_boosting": EstimatorSpec(HistGradientBoostingRegressor, False, {}),
    },
    "classification": {
        "logistic_regression": EstimatorSpec(LogisticRegression, True, {"max_iter": 1000}),
        # probability=True: evaluate's ROC/PR curves and the server's probabilities need predict_proba.
        "svc": EstimatorSpec(SVC, True, {"probability": True}),
        "random_forest": EstimatorSpec(RandomForestClassifier, False, {"n_estimators": 100}),
        "hist_gradient_boosting": EstimatorSpec(HistGradientBoostingClassifier, False, {}),
    },
}


def parse_hyperparameters(text: str | dict) -> dict[str, Any]:
    """The hyperparameters parameter as a dict.

    Args:
        text: a JSON object ("" for none) or a dict.

    Returns:
        The dict; TrainError when it is not a JSON object.
    """
    if isinstance(text, dict):
        return dict(text)
    try:
        value = json.loads(text or "{}")
    except ValueError as exc:
        raise TrainError(f"hyperparameters {text!r} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise TrainError(f"hyperparameters {text!r} must be a JSON object such as {{\"n_estimators\": 200}}")
    return value


def _spec(task: str, estimator: str) -> EstimatorSpec:
    if task not in ESTIMATORS:
        raise TrainError(f"task {task!r} is invalid: expected one of {', '.join(ESTIMATORS)}")
    choices = ESTIMATORS[task]
    if estimator not in choices:
        raise TrainError(f"estimator {estimator!r} is not available for {task}: expected one of {', '.join(choices)}")
    return choices[estimator]


def build_estimator(task: str, estimator: str, hyperparameters: dict[str, Any], seed: int) -> BaseEstimator:
    """The bare estimator with defaults, seed and the user's hyperparameters, validated without fitting.

    Args:
        task: regression or classification.
        estimator: a name of ESTIMATORS[task].
        hyperparameters: the user's values.
        seed: random_state, where the estimator has one.

    Returns:
        The unfitted estimator; TrainError names an unknown estimator or parameter.
    """
    spec = _spec(task, estimator)
    model = spec.factory()
    valid = model.get_params()
    unknown = sorted(set(hyperparameters) - set(valid))
    if unknown:
        raise TrainError(
            f"hyperparameter {unknown[0]!r} is not a parameter of {estimator} ({type(model).__name__}): "
            f"expected some of {', '.join(sorted(valid))}"
        )
    params = dict(spec.defaults)
    if "random_state" in valid:
        params["random_state"] = seed
    params.update(hyperparameters)
    model.set_params(**params)
    # sklearn checks values only inside fit(); checking here fails a run (and `--param` checks) in
    # seconds, before any data is read. _validate_params is private: it exists in the pinned
    # scikit-learn 1.9.1. Without it the same check still happens in fit(), which also raises TrainError.
    try:
        validate = model._validate_params
    except AttributeError:
        log.debug("%s has no _validate_params: hyperparameters are checked when fitting", type(model).__name__)
        return model
    try:
        validate()
    except (ValueError, TypeError) as exc:
        raise TrainError(f"bad hyperparameter for {estimator}: {exc}") from exc
    return model


def configured_hyperparameters(model: BaseEstimator, task: str, estimator: str, hyperparameters: dict) -> dict:
    """What the metadata records: the defaults this project sets, the seed, and the user's values.

    Args:
        model: the built estimator.
        task: its task.
        estimator: its name.
        hyperparameters: the user's values.

    Returns:
        Parameter -> value, sorted by name.
    """
    params = model.get_params()
    keys = set(ESTIMATORS[task][estimator].defaults) | set(hyperparameters) | ({"random_state"} & set(params))
    return {key: params[key] for key in sorted(keys)}


def build_pipeline(schema: dict, estimator: str, hyperparameters: dict[str, Any], seed: int) -> Pipeline:
    """The estimator with the preprocessing it needs (imputation, scaling, encoding), as one Pipeline.

    Args:
        schema: the ingested schema (categories, missing values).
        estimator: a name of ESTIMATORS for the schema's task.
        hyperparameters: the user's values.
        seed: random_state.

    Returns:
        The unfitted Pipeline, its final step named model.
    """
    task = schema_task(schema)
    model = build_estimator(task, estimator, hyperparameters, seed)
    categorical = [i for i, f in enumerate(schema["features"]) if "categories" in f]
    impute = schema.get("missing_values") == "impute"
    if not ESTIMATORS[task][estimator].needs_preprocessing:
        if categorical and isinstance(model, (HistGradientBoostingRegressor, HistGradientBoostingClassifier)) \
                and "categorical_features" not in hyperparameters:
            model.set_params(categorical_features=categorical)
        return Pipeline([("model", model)])
    numeric = [i for i in range(len(schema["features"])) if i not in categorical]
    numeric_steps = ([SimpleImputer(strategy="median")] if impute else []) + [StandardScaler()]
    if not categorical:
        steps = [(type(step).__name__.lower(), step) for step in numeric_steps]
    else:
        # One-hot treats NaN as its own category, so categorical columns need no imputer.
        steps = [("preprocess", ColumnTransformer([
            ("numeric", make_pipeline(*numeric_steps), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]))]
    return Pipeline(steps + [("model", model)])


def fit(pipeline: Pipeline, x: np.ndarray, y: np.ndarray, estimator: str) -> float:
    """Fit in place; returns the seconds it took.

    Args:
        pipeline: the Pipeline to fit.
        x: the features.
        y: the target.
        estimator: its name, for the error message.

    Returns:
        The seconds fitting took; TrainError when the fit fails.
    """
    started = time.perf_counter()
    try:
        pipeline.fit(x, y)
    except (ValueError, TypeError, MemoryError) as exc:
        raise TrainError(f"fitting {estimator} on {x.shape[0]} rows x {x.shape[1]} features failed: {exc}") from exc
    return time.perf_counter() - started


def run(*, train_path: str | Path, schema_path: str | Path, model_dir: str | Path, estimator: str,
        hyperparameters: str | dict, seed: int) -> dict:
    """The train step: fit on the train split and write model_dir/model.joblib + training.json.

    Args:
        train_path: the training split (CSV).
        schema_path: the ingested schema.
        model_dir: where model.joblib and training.json go.
        estimator: a name of ESTIMATORS for the task.
        hyperparameters: its parameters, a JSON object or a dict.
        seed: the estimator's random_state.

    Returns:
        The training record written to training.json (estimator, hyperparameters, features, data_sha256, seconds).
    """
    schema = read_json(schema_path, "schema")
    params = parse_hyperparameters(hyperparameters)
    pipeline = build_pipeline(schema, estimator, params, seed)
    x, y = read_dataset(train_path, schema)
    seconds = fit(pipeline, x, y, estimator)
    task = schema_task(schema)
    info = {
        "framework": "scikit-learn",
        "sklearn_version": sklearn.__version__,
        "model_file": MODEL_FILE,
        "task": task,
        "estimator": estimator,
        "hyperparameters": configured_hyperparameters(pipeline.named_steps["model"], task, estimator, params),
        "feature_names": feature_names(schema),
        "train_rows": int(x.shape[0]),
        # Lineage: the training data exactly as this step read it.
        "data_sha256": hashlib.sha256(Path(train_path).read_bytes()).hexdigest(),
        "training_seconds": round(seconds, 4),
        # What drift is measured against later (push copies it into metadata.json).
        "profile": profile.of_training(x, y, pipeline.predict(x), schema),
    }
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, model_dir / MODEL_FILE)
    write_json(model_dir / TRAINING_FILE, info)
    log.info("trained %s on %d rows in %.2f s", estimator, x.shape[0], seconds)
    return info
