"""Limits and the logging set-up: what each accepts, and the error for what it does not (reading: test_settings)."""

from __future__ import annotations

import argparse
import asyncio

import numpy as np
import orjson
import pytest

from serving import logs, v2
from serving.limits import LIMITS, Limits, LimitsConfigError, add_arguments
from serving.model import SklearnModel


def test_defaults_suit_a_pod() -> None:
    limits = Limits()
    assert limits.header_timeout_s < limits.body_timeout_s
    assert limits.drain_delay_s < limits.grace_s < 30  # the manifests' terminationGracePeriodSeconds


def test_environment_then_command_line() -> None:
    env = {"SERVING_HEADER_TIMEOUT_S": "2.5", "SERVING_MAX_CONCURRENCY": "7", "SERVING_GRACE_S": " 12 "}
    limits = Limits.from_env(env)
    assert (limits.header_timeout_s, limits.max_concurrency, limits.grace_s) == (2.5, 7, 12.0)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    overridden = limits.with_args(parser.parse_args(["--max_concurrency", "3", "--body_timeout_s", "4"]))
    assert (overridden.max_concurrency, overridden.body_timeout_s, overridden.header_timeout_s) == (3, 4.0, 2.5)
    with pytest.raises(LimitsConfigError, match=r"SERVING_IDLE_TIMEOUT_S='' is invalid: expected a number of seconds"):
        Limits.from_env({"SERVING_IDLE_TIMEOUT_S": ""})  # set means set: empty is not "unset"


@pytest.mark.parametrize(("env", "value"), [
    ("SERVING_MAX_CONCURRENCY", "0"), ("SERVING_MAX_CONCURRENCY", "2.5"), ("SERVING_BODY_TIMEOUT_S", "soon"),
    ("SERVING_HEADER_TIMEOUT_S", "nan"), ("SERVING_IDLE_TIMEOUT_S", "-1"), ("SERVING_MAX_BODY_BYTES", "inf"),
])
def test_bad_environment_values_name_the_variable_value_and_expectation(env: str, value: str) -> None:
    with pytest.raises(LimitsConfigError) as error:
        Limits.from_env({env: value})
    assert env in str(error.value) and repr(value) in str(error.value) and "expected" in str(error.value)


def test_bad_flag_is_an_argparse_error() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--max_concurrency", "0"])
    assert exit_.value.code == 2


def test_drain_delay_is_part_of_the_grace_period() -> None:
    with pytest.raises(LimitsConfigError, match="drain_delay_s=25.*grace_s=20"):
        Limits(drain_delay_s=25, grace_s=20)


def test_every_limit_has_a_flag_and_a_variable() -> None:
    assert set(LIMITS) == set(vars(Limits()))
    assert len({limit.env for limit in LIMITS.values()}) == len(LIMITS)


@pytest.mark.parametrize("access_log", [True, False])
def test_access_log_sets_the_per_request_loggers(access_log: bool) -> None:
    loggers = logs.log_config("WARNING", access_log)["loggers"]
    per_request = "INFO" if access_log else "WARNING"
    assert loggers["uvicorn.access"]["level"] == loggers["kserve.trace"]["level"] == per_request
    assert loggers["kserve"]["level"] == "WARNING"


@pytest.fixture(scope="module")
def model(regressor_dir) -> SklearnModel:
    model = SklearnModel("diabetes-rf", regressor_dir)
    assert model.load()
    return model


@pytest.mark.parametrize("big", [2**63, 2**64 - 1])
def test_uint64_beyond_int64_is_accepted(model: SklearnModel, regressor, big: int) -> None:
    # numpy reads [2**63, 0, ...] as float64 (int64 cannot hold it); it is valid UINT64 all the same.
    row = [0] * model.spec.n_features
    body = orjson.dumps({"inputs": [{"name": "input-0", "shape": [2, len(row)], "datatype": "UINT64",
                                     "data": [[big, *row[1:]], row]}]})
    answer, _ = asyncio.run(model.infer_json(body))
    expected = regressor.predict(np.array([[float(big), *row[1:]], row], dtype=np.float64))
    np.testing.assert_allclose(orjson.loads(answer)["outputs"][0]["data"], expected)


@pytest.mark.parametrize("data", [[[2**63, -1]], [[2**63, 1.5]]])
def test_uint64_still_refuses_negatives_and_fractions(data: list) -> None:
    array = v2._json_values(data, b"", "inputs[0]", "UINT64", 2)
    assert array.dtype.kind == "f"  # left as float: the datatype check then refuses it with a 400
