"""Pipeline parameters as the compiled YAML declares them: CLI overrides and an early check.

`--param name=value` overrides are typed from the YAML's inputDefinitions, so the local
runner and the uploader accept exactly the parameters the compiled pipeline has. check()
runs the components' own validators before any step starts, so a typo costs no pipeline run.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from components.candidates import resolve
from components.deploy import check_target
from components.errors import PipelineError, TrainError
from components.gate import check_min_gain
from components.ingest import IngestConfig
from components.registry import check_location
from components.sources import SOURCE_URL_ENV, has_secrets, redact_source
from components.train import ESTIMATORS, build_estimator, parse_hyperparameters
from contract.settings import parse_bool

# A Kubernetes object name (DNS subdomain): what minio_secret must be for the pod to start.
_SECRET_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class ParamError(PipelineError):
    """A --param override that names no parameter or has the wrong type."""


def declared(package: str | Path) -> dict[str, dict]:
    """The pipeline's parameters from the compiled YAML.

    Args:
        package: the compiled pipeline YAML.

    Returns:
        {name: {"type": "STRING" | "NUMBER_INTEGER" | ..., "default": value}}; ParamError when the file is
        unreadable.
    """
    try:
        with open(package) as handle:
            spec = next(yaml.safe_load_all(handle), None)
    except FileNotFoundError as exc:
        raise ParamError(f"compiled pipeline {package} not found: run `make compile`") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ParamError(f"compiled pipeline {package} is not readable YAML ({exc}): run `make compile`") from exc
    try:
        parameters = spec["root"]["inputDefinitions"]["parameters"]
        return {name: {"type": p["parameterType"], "default": p.get("defaultValue")}
                for name, p in parameters.items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise ParamError(
            f"compiled pipeline {package} has no root.inputDefinitions.parameters with a parameterType each "
            f"(missing {exc}): not a KFP pipeline spec; run `make compile`") from exc


def _convert(name: str, kind: str, text: str) -> Any:
    try:
        if kind == "NUMBER_INTEGER":
            return int(text)
        if kind == "NUMBER_DOUBLE":
            return float(text)
        if kind == "BOOLEAN":
            return parse_bool(text, name)
    except (ValueError, PipelineError) as exc:
        expected = {"NUMBER_INTEGER": "an integer", "NUMBER_DOUBLE": "a number", "BOOLEAN": "0/1/true/false"}[kind]
        raise ParamError(f"parameter {name}={text!r} is invalid: expected {expected}") from exc
    return text


def parse_overrides(pairs: list[str], package: str | Path) -> dict[str, Any]:
    """``--param name=value`` pairs, typed as the YAML declares them.

    Args:
        pairs: e.g. ['threshold=0.9', 'estimator=ridge'].
        package: the compiled pipeline YAML.

    Returns:
        e.g. {'threshold': 0.9, 'estimator': 'ridge'}; ParamError for an unknown name, a missing '=' or a value of
        the wrong type.
    """
    spec = declared(package)
    overrides: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep:
            raise ParamError(f"--param {pair!r} is not name=value")
        if name not in spec:
            raise ParamError(f"unknown parameter {name!r}: expected one of {', '.join(sorted(spec))}")
        overrides[name] = _convert(name, spec[name]["type"], value)
    return overrides


def effective(overrides: dict[str, Any], package: str | Path) -> dict[str, Any]:
    """Defaults from the YAML, then the overrides; integers restored (YAML stores 42 as 42.0).

    Args:
        overrides: the parsed --param values.
        package: the compiled pipeline YAML.

    Returns:
        Every parameter's value for the run.
    """
    spec = declared(package)
    values = {name: p["default"] for name, p in spec.items()}
    values.update(overrides)
    return {name: int(v) if spec[name]["type"] == "NUMBER_INTEGER" and v is not None else v
            for name, v in values.items()}


def _check_secret_name(values: dict[str, Any], name: str) -> None:
    secret = values.get(name)
    if secret is not None and not _SECRET_NAME.match(secret):
        raise ParamError(f"parameter {name}={secret!r} is invalid: expected a Kubernetes Secret name "
                         "(lowercase letters, digits, '-' and '.', at most 253)")


def check(values: dict[str, Any]) -> None:
    """Run the components' validators on the parameters; raises a PipelineError naming the bad one.

    Args:
        values: every training-pipeline parameter (effective()).
    """
    _check_secret_name(values, "minio_secret")
    _check_secret_name(values, "source_secret")
    source = str(values.get("source") or "")
    if has_secrets(source):
        raise ParamError(f"parameter source={redact_source(source)} (redacted here) carries credentials, which a "
                         "parameter shows in the KFP UI, logs and the step's command line: pass the redacted URL as "
                         f"source and put the full one in the Secret named by source_secret (key url) or, locally, "
                         f"in {SOURCE_URL_ENV}")
    IngestConfig.from_params(values["target"], values["task"], values["test_fraction"], values["seed"],
                             values["missing_values"], values["categorical_features"])
    check_location(values["bucket"], values["model_name"])
    threshold = values.get("threshold", 0.0)
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ParamError(f"parameter threshold={threshold!r} is invalid: expected a finite number "
                         "(the least R² or macro F1 that deploys)")
    if "min_gain_over_baseline" in values:
        check_min_gain(values["min_gain_over_baseline"])
    if values.get("deploy_isvc"):  # empty: no deploy step
        canary = values["deploy_canary_percent"]
        check_target(values["deploy_isvc"], values["deploy_namespace"], None if canary == -1 else canary,
                     values["deploy_timeout_s"])
    _check_candidates(values)


def _check_candidates(values: dict[str, Any]) -> None:
    """Every candidate builds for the task (with task=auto: for at least one task, the same for all).

    On the cluster a bad candidate fails alone and the others still run; here, before any step,
    a typo is cheaper to report at once.
    """
    task, estimator = values["task"], values["estimator"]
    if estimator and task not in ESTIMATORS and not any(estimator in ESTIMATORS[t] for t in ESTIMATORS):
        names = sorted({name for choices in ESTIMATORS.values() for name in choices})
        raise TrainError(f"estimator {estimator!r} is unknown: expected one of {', '.join(names)}")
    if estimator:
        parse_hyperparameters(values["hyperparameters"])
    folds = values.get("cv_folds", 5)
    if not isinstance(folds, int) or folds < 2:
        raise ParamError(f"parameter cv_folds={folds!r} is invalid: expected an integer of at least 2")
    tasks = [task] if task in ESTIMATORS else list(ESTIMATORS)
    errors: list[TrainError] = []
    for candidate_task in tasks:
        try:
            for i, candidate in enumerate(resolve(candidate_task, values["candidates"], estimator,
                                                  values["hyperparameters"])):
                try:
                    build_estimator(candidate_task, candidate["estimator"], candidate["hyperparameters"],
                                    values["seed"])
                except TrainError as exc:
                    raise TrainError(f"candidates[{i}]: {exc}" if not estimator else str(exc)) from exc
            return
        except TrainError as exc:
            errors.append(exc)
    raise errors[0]


def check_batch(values: dict[str, Any]) -> None:
    """The batch-scoring pipeline's parameters, checked as batch_predict will check them.

    Raises a PipelineError naming the bad one.

    Args:
        values: every batch-scoring parameter (effective()).
    """
    from scoring.batch import BatchOptions, model_uri

    _check_secret_name(values, "minio_secret")
    for name in ("input_uri", "output_uri"):
        uri = values.get(name) or ""
        if (uri or name == "input_uri") and not uri.startswith("s3://"):
            raise ParamError(f"parameter {name}={uri!r} is invalid: expected s3://bucket/key or s3://bucket/prefix/")
    BatchOptions.from_params(values["key_columns"], values["on_bad_row"], values["chunk_rows"])
    model_uri(values["bucket"], values["model_name"], values["model_version"])
