"""serving.settings: every SERVING_* variable read once into one object; bad values and names are reported."""

from __future__ import annotations

import logging
import re
from dataclasses import fields
from pathlib import Path

import pytest

from serving import settings, workers
from serving.batching import BatchingConfig
from serving.limits import LIMITS, Limits
from serving.settings import ServingSettings, SettingsError

SERVING_DIR = Path(settings.__file__).parent
OWN = {f.metadata["variable"]: f for f in fields(ServingSettings) if f.metadata}
SWITCHES = sorted(variable for variable, f in OWN.items() if f.metadata["parse"] is settings.switch)
ALL_SPELLINGS = "one of 1, true, yes, on (on) or 0, false, no, off (off)"


def test_unset_means_the_defaults() -> None:
    assert ServingSettings.from_env({}) == ServingSettings()
    assert ServingSettings().batching_config == BatchingConfig()
    assert ServingSettings().offload == (64 * 1024, 1)
    assert (ServingSettings().fast_path, ServingSettings().access_log, ServingSettings().log_level) == (True, False, "INFO")


def test_every_setting_is_read_into_its_field() -> None:
    env = {"SERVING_FAST_PATH": "0", "SERVING_FAST_ROUTE": "off", "SERVING_BATCHING": "no", "SERVING_GRPC_CORE": "0",
           "SERVING_BATCH_MAX_ROWS": "64", "SERVING_BATCH_WINDOW_MS": "2.5", "SERVING_OFFLOAD_BYTES": "0",
           "SERVING_OFFLOAD_PROCESSES": "2", "SERVING_LOG_LEVEL": " debug ", "SERVING_ACCESS_LOG": "YES",
           "SERVING_MAX_CONCURRENCY": "7", "SERVING_GRACE_S": "12",
           "SERVING_INFERENCE_LOG": " s3://logs/traffic/ ", "SERVING_INFERENCE_LOG_SAMPLE": "0.25",
           "SERVING_INFERENCE_LOG_BATCH_ROWS": "10", "SERVING_INFERENCE_LOG_FLUSH_S": "0.5",
           "SERVING_INFERENCE_LOG_MAX_ROWS": "100", "SERVING_INFERENCE_LOG_CLOSE_TIMEOUT_S": "2"}
    assert set(env) - set(LIMITS_ENV) == set(OWN), "a setting of ServingSettings is missing from this test"
    read = ServingSettings.from_env(env)
    assert read.batching_config == BatchingConfig(enabled=False, max_batch_rows=64, max_latency_ms=2.5)
    assert (read.fast_path, read.fast_route, read.access_log, read.log_level) == (False, False, True, "DEBUG")
    assert read.grpc_core is False
    assert read.offload == (0, 2)
    assert read.limits == Limits(max_concurrency=7, grace_s=12.0)
    assert (read.inference_log, read.inference_log_sample, read.inference_log_batch_rows, read.inference_log_flush_s,
            read.inference_log_max_rows, read.inference_log_close_timeout_s) == ("s3://logs/traffic/", 0.25, 10, 0.5,
                                                                                 100, 2.0)


LIMITS_ENV = {limit.env for limit in LIMITS.values()}


@pytest.mark.parametrize("variable", SWITCHES)
@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("TRUE", True), (" yes ", True), ("On", True),
                                               ("0", False), ("false", False), ("NO", False), (" off", False)])
def test_switch_spellings(variable: str, raw: str, expected: bool) -> None:
    assert getattr(ServingSettings.from_env({variable: raw}), OWN[variable].name) is expected


def test_there_are_switches() -> None:
    assert SWITCHES == ["SERVING_ACCESS_LOG", "SERVING_BATCHING", "SERVING_FAST_PATH", "SERVING_FAST_ROUTE",
                        "SERVING_GRPC_CORE"]


# Text settings take any value; their own module says what it means (an empty inference-log URI: off).
TEXT = sorted(variable for variable, f in OWN.items() if f.metadata["parse"] is settings.text)


def test_text_settings_are_only_the_inference_log_uri_and_blank_means_off() -> None:
    assert TEXT == ["SERVING_INFERENCE_LOG"]
    assert ServingSettings.from_env({"SERVING_INFERENCE_LOG": "  "}).inference_log == ""


@pytest.mark.parametrize("variable", sorted(set(OWN) - set(TEXT)) + sorted(LIMITS_ENV))
@pytest.mark.parametrize("raw", ["", "  "])
def test_an_empty_value_is_an_error_naming_what_is_accepted(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError) as error:
        ServingSettings.from_env({variable: raw})
    message = str(error.value)
    assert message.startswith(f"{variable}={raw!r} is ") and "expected" in message, message
    if variable in SWITCHES:
        assert ALL_SPELLINGS in message


@pytest.mark.parametrize(("variable", "raw", "message"), [
    ("SERVING_FAST_PATH", "maybe", f"SERVING_FAST_PATH='maybe' is not a boolean: expected {ALL_SPELLINGS}"),
    ("SERVING_FAST_ROUTE", "fast", f"SERVING_FAST_ROUTE='fast' is not a boolean: expected {ALL_SPELLINGS}"),
    ("SERVING_BATCHING", "sometimes", f"SERVING_BATCHING='sometimes' is not a boolean: expected {ALL_SPELLINGS}"),
    ("SERVING_ACCESS_LOG", "perhaps", f"SERVING_ACCESS_LOG='perhaps' is not a boolean: expected {ALL_SPELLINGS}"),
    ("SERVING_BATCH_MAX_ROWS", "lots", "SERVING_BATCH_MAX_ROWS='lots' is invalid: expected an integer >= 1"),
    ("SERVING_BATCH_MAX_ROWS", "0", "SERVING_BATCH_MAX_ROWS='0' is invalid: expected an integer >= 1"),
    ("SERVING_BATCH_MAX_ROWS", "2.5", "SERVING_BATCH_MAX_ROWS='2.5' is invalid: expected an integer >= 1"),
    ("SERVING_BATCH_WINDOW_MS", "-1", "SERVING_BATCH_WINDOW_MS='-1' is invalid: expected milliseconds in [0, 1000]"),
    ("SERVING_BATCH_WINDOW_MS", "5000", "SERVING_BATCH_WINDOW_MS='5000' is invalid: expected milliseconds in [0, 1000]"),
    ("SERVING_BATCH_WINDOW_MS", "soon", "SERVING_BATCH_WINDOW_MS='soon' is invalid"),
    ("SERVING_BATCH_WINDOW_MS", "nan", "SERVING_BATCH_WINDOW_MS='nan' is invalid"),
    ("SERVING_OFFLOAD_BYTES", "-1", "SERVING_OFFLOAD_BYTES='-1' is invalid: expected an integer >= 0"),
    ("SERVING_OFFLOAD_BYTES", "big", "SERVING_OFFLOAD_BYTES='big' is invalid: expected an integer >= 0"),
    ("SERVING_OFFLOAD_PROCESSES", "0", "SERVING_OFFLOAD_PROCESSES='0' is invalid: expected an integer >= 1"),
    ("SERVING_LOG_LEVEL", "LOUD", "SERVING_LOG_LEVEL='LOUD' is invalid: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("SERVING_MAX_CONCURRENCY", "0", "SERVING_MAX_CONCURRENCY='0' is invalid: expected an integer >= 1"),
])
def test_a_bad_value_names_the_variable_the_value_and_what_is_accepted(variable: str, raw: str, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        ServingSettings.from_env({variable: raw})
    assert str(error.value).startswith(message), str(error.value)


def test_one_value_for_a_library_use() -> None:
    assert ServingSettings.value_from_env("fast_path", {}) is True
    assert ServingSettings.value_from_env("fast_path", {"SERVING_FAST_PATH": "off"}) is False
    # Only that variable is read: batch scoring does not fail on a server-only setting.
    assert ServingSettings.value_from_env("fast_path", {"SERVING_LOG_LEVEL": "LOUD"}) is True
    with pytest.raises(SettingsError, match="SERVING_FAST_PATH='sure'"):
        ServingSettings.value_from_env("fast_path", {"SERVING_FAST_PATH": "sure"})


def test_an_unknown_name_is_a_warning_naming_the_closest_and_the_known_ones(caplog) -> None:
    env = {"SERVING_FAST_PAT": "0", "SERVING_ZZZ": "1", "SERVING_FAST_PATH": "1", "HOME": "/root"}
    lines = settings.unknown_variables(env)
    assert len(lines) == 2, lines
    assert lines[0].startswith("SERVING_FAST_PAT is not a setting of this server and is ignored; did you mean "
                               "SERVING_FAST_PATH? known: ")
    assert lines[1].startswith("SERVING_ZZZ is not a setting of this server and is ignored; known: ")
    assert all(", ".join(settings.known_variables()) in line for line in lines)
    with caplog.at_level(logging.WARNING):
        settings.warn_unknown(logging.getLogger("test"), env)
    assert [r.getMessage() for r in caplog.records] == lines
    ServingSettings.from_env(env)  # a warning, not an error: an older image must start with a newer manifest


def test_the_known_names_are_every_setting_and_the_internal_marker() -> None:
    known = set(settings.known_variables())
    assert known == set(OWN) | LIMITS_ENV | {workers.SPAWNING_ENV}
    assert settings.unknown_variables({name: "1" for name in known}) == []


def test_every_serving_variable_the_server_code_names_is_a_known_setting() -> None:
    # A setting read anywhere but here would be missing from the table: its name would be unknown.
    named = {name for path in SERVING_DIR.glob("*.py")
             for name in re.findall(r"\bSERVING_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())}
    assert named, "no SERVING_ name found: the pattern is wrong"
    assert named - set(settings.known_variables()) == set()


def test_nothing_in_serving_but_the_settings_reads_the_environment_for_a_setting() -> None:
    readers = [f"{path.name}: {line.strip()}" for path in sorted(SERVING_DIR.glob("*.py")) if path.name != "settings.py"
               for line in path.read_text().splitlines()
               if re.search(r"environ(\.get)?\s*[\[(]\s*['\"A-Z_]*SERVING_|getenv\(\s*['\"]SERVING_", line)]
    assert readers == []
