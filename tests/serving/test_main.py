"""``python -m serving`` refuses a bad speed-up setting at start, naming the variable and the value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.local.s3server import free_port


# A few settings end to end (tests/serving/test_settings.py covers every setting and value).
@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("SERVING_FAST_PATH", "maybe", "SERVING_FAST_PATH='maybe' is not a boolean: expected one of 1, true, yes, on"),
        ("SERVING_FAST_ROUTE", "", "SERVING_FAST_ROUTE='' is empty: expected one of 1, true, yes, on (on) or 0, false, no, off"),
        ("SERVING_BATCH_WINDOW_MS", "5000", "SERVING_BATCH_WINDOW_MS='5000' is invalid: expected milliseconds in [0, 1000]"),
        ("SERVING_INFERENCE_LOG", "logs/traffic", "SERVING_INFERENCE_LOG='logs/traffic' is invalid: expected s3://bucket/prefix/"),
    ],
)
def test_bad_setting_stops_the_start_with_a_message(regressor_dir: Path, variable: str, value: str,
                                                    expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "serving", "--model_dir", str(regressor_dir), "--host", "127.0.0.1",
         "--http_port", str(free_port()), "--grpc_port", str(free_port())],
        env={**os.environ, variable: value}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
