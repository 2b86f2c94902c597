"""--param overrides typed from the compiled YAML, and the early check that saves a pipeline run."""

from __future__ import annotations

import pytest

from components.errors import DataError, DeployConfigError, EvaluateError, PipelineError, PushError, TrainError
from pipelines import params
from pipelines.training_pipeline import PACKAGE_PATH


def test_overrides_take_the_declared_types():
    parsed = params.parse_overrides(
        ["threshold=0.35", "seed=7", "minio_secure=true", "estimator=ridge", 'hyperparameters={"alpha": 2}'],
        PACKAGE_PATH)
    assert parsed == {"threshold": 0.35, "seed": 7, "minio_secure": True, "estimator": "ridge",
                      "hyperparameters": '{"alpha": 2}'}


def test_value_may_contain_equals_signs():
    assert params.parse_overrides(["source=http://h/f.csv?a=b"], PACKAGE_PATH) == {"source": "http://h/f.csv?a=b"}


@pytest.mark.parametrize(
    "pair, expected",
    [
        ("threshold", "--param 'threshold' is not name=value"),
        ("trees=5", "unknown parameter 'trees': expected one of allow_schema_change, bucket, candidates, categorical_features, cv_folds"),
        ("seed=1.5", "parameter seed='1.5' is invalid: expected an integer"),
        ("threshold=high", "parameter threshold='high' is invalid: expected a number"),
        ("minio_secure=maybe", "parameter minio_secure='maybe' is invalid: expected 0/1/true/false"),
    ],
)
def test_bad_overrides_are_named(pair, expected):
    with pytest.raises(params.ParamError, match=expected):
        params.parse_overrides([pair], PACKAGE_PATH)


def test_effective_values_are_the_defaults_the_brief_asks_for():
    values = params.effective({}, PACKAGE_PATH)
    assert values == {
        "source": "sklearn:diabetes", "target": "target", "task": "auto", "test_fraction": 0.2, "seed": 42,
        "missing_values": "error", "categorical_features": "", "candidates": "", "estimator": "",
        "hyperparameters": "{}", "cv_folds": 5, "threshold": 0.2, "min_gain_over_baseline": 0.1,
        "model_name": "diabetes-rf", "bucket": "models",
        "minio_endpoint": "minio-service.kubeflow:9000", "minio_secure": False,
        "minio_secret": "mlpipeline-minio-artifact", "source_secret": "training-source", "allow_schema_change": False,
        "drift_gate": False,
        "deploy_isvc": "diabetes-rf",
        "deploy_namespace": "sklearn-kserve-mlops", "deploy_canary_percent": -1, "deploy_timeout_s": 300,
    }
    assert isinstance(values["seed"], int)
    params.check(values)


@pytest.mark.parametrize(
    "override, error, expected",
    [
        ({"estimator": "svm"}, TrainError, "estimator 'svm' is unknown: expected one of hist_gradient_boosting"),
        ({"task": "classification", "estimator": "ridge"}, TrainError, "not available for classification"),
        ({"estimator": "ridge", "hyperparameters": '{"trees": 1}'}, TrainError,
         "hyperparameter 'trees' is not a parameter"),
        ({"estimator": "ridge", "hyperparameters": "{"}, TrainError, "not valid JSON"),
        ({"hyperparameters": '{"alpha": 2}'}, TrainError, "needs the estimator parameter"),
        ({"estimator": "ridge", "candidates": '[{"estimator": "ridge"}]'}, TrainError,
         "estimator and candidates are both set"),
        ({"candidates": "[]"}, TrainError, "expected a non-empty JSON list"),
        ({"candidates": '{"estimator": "ridge"}'}, TrainError, "expected a non-empty JSON list"),
        ({"candidates": '[{"estimator": "ridge", "params": {}}]'}, TrainError,
         r"candidates\[0\] has unknown field 'params'"),
        ({"candidates": '[{"estimator": "ridge"}, {"hyperparameters": {}}]'}, TrainError,
         r"candidates\[1\]=.* is invalid: expected an object with a non-empty string \"estimator\""),
        ({"task": "regression", "candidates": '[{"estimator": "ridge"}, {"estimator": "ridge", '
                                              '"hyperparameters": {"alpha": -1}}]'},
         TrainError, r"candidates\[1\]: bad hyperparameter for ridge"),
        ({"cv_folds": 1}, params.ParamError, "cv_folds=1 is invalid: expected an integer of at least 2"),
        ({"threshold": float("nan")}, params.ParamError, "threshold=nan is invalid: expected a finite number"),
        ({"threshold": float("-inf")}, params.ParamError, "threshold=-inf is invalid: expected a finite number"),
        ({"min_gain_over_baseline": -0.1}, EvaluateError,
         r"min_gain_over_baseline=-0.1 is invalid: expected a number from 0 to 1"),
        ({"min_gain_over_baseline": 2.0}, EvaluateError, r"min_gain_over_baseline=2.0 is invalid"),
        ({"task": "cluster"}, DataError, "task='cluster' is invalid"),
        ({"test_fraction": 1.5}, DataError, "test_fraction=1.5 is invalid"),
        ({"bucket": "B"}, PushError, "bucket 'B' is not a valid bucket name"),
        ({"minio_secret": "Minio_Keys"}, params.ParamError, "minio_secret='Minio_Keys' is invalid: expected a "
                                                             "Kubernetes Secret name"),
        ({"minio_secret": ""}, params.ParamError, "minio_secret='' is invalid"),
        ({"deploy_isvc": "Diabetes"}, DeployConfigError, "isvc='Diabetes' is invalid"),
        ({"deploy_namespace": "a_b"}, DeployConfigError, "namespace='a_b' is invalid"),
        ({"deploy_canary_percent": 150}, DeployConfigError, "canary_percent=150 is invalid"),
        ({"deploy_canary_percent": -2}, DeployConfigError, "canary_percent=-2 is invalid"),
        ({"deploy_timeout_s": 0}, DeployConfigError, "timeout_s=0 is invalid"),
    ],
)
def test_check_fails_early_with_the_components_own_errors(override, error, expected):
    with pytest.raises(error, match=expected):
        params.check(params.effective(override, PACKAGE_PATH))


def test_an_empty_deploy_isvc_turns_the_deploy_step_and_its_checks_off():
    params.check(params.effective({"deploy_isvc": "", "deploy_namespace": "", "deploy_timeout_s": 0}, PACKAGE_PATH))
    params.check(params.effective({"deploy_canary_percent": 0}, PACKAGE_PATH))
    params.check(params.effective({"deploy_canary_percent": 100}, PACKAGE_PATH))


def test_auto_task_accepts_hyperparameters_valid_for_either_task():
    # "gini" is a classifier criterion only; with task=auto the data decides later.
    gini = {"estimator": "random_forest", "hyperparameters": '{"criterion": "gini"}'}
    params.check(params.effective(gini, PACKAGE_PATH))
    with pytest.raises(PipelineError, match="criterion"):
        params.check(params.effective({**gini, "task": "regression"}, PACKAGE_PATH))


def test_candidates_for_classification_pass_with_task_auto_and_fail_for_regression():
    candidates = '[{"estimator": "logistic_regression", "hyperparameters": {"C": 0.5}}, {"estimator": "svc"}]'
    params.check(params.effective({"candidates": candidates}, PACKAGE_PATH))
    with pytest.raises(TrainError, match="candidates\\[0\\]: estimator 'logistic_regression' is not available for "
                                         "regression"):
        params.check(params.effective({"candidates": candidates, "task": "regression"}, PACKAGE_PATH))


@pytest.mark.parametrize(
    "content, expected",
    [
        ("root: [unclosed", "is not readable YAML"),
        ("", "has no root.inputDefinitions.parameters"),
        ("- a list\n", "has no root.inputDefinitions.parameters"),
        ("root:\n  inputDefinitions:\n    parameters:\n      seed: {defaultValue: 1}\n", "'parameterType'"),
    ],
)
def test_a_broken_compiled_yaml_is_named_not_a_traceback(tmp_path, content, expected):
    package = tmp_path / "pipeline.yaml"
    package.write_text(content)
    with pytest.raises(params.ParamError) as caught:
        params.parse_overrides(["seed=1"], package)
    assert str(package) in str(caught.value) and expected in str(caught.value)
    assert "make compile" in str(caught.value)
