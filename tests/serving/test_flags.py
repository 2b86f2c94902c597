"""One spelling for the user: every flag of `python -m serving` and `make serve` takes hyphens or
underscores, and the served model's name comes from its metadata unless --model_name says otherwise."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from pipelines.local.s3server import free_port
from pipelines.local import serve as local
from serving.__main__ import build_parser, served_name
from serving.flags import HYPHENATED, canonical


def _long_options(parser) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings if option.startswith("--")]


def test_every_option_of_python_m_serving_is_reached_by_both_spellings() -> None:
    options = _long_options(build_parser())
    assert len(options) > 20  # kserve's flags and ours
    for option in options:
        body = option[2:]
        for spelling in (f"--{body.replace('-', '_')}", f"--{body.replace('_', '-')}"):
            assert canonical([spelling, "1"]) == [option, "1"], spelling
            assert canonical([f"{spelling}=1"]) == [f"{option}=1"], spelling
    # HYPHENATED names exactly the options kserve spells with hyphens: a kserve upgrade that renames one fails here.
    assert HYPHENATED == {option for option in options if "-" in option[2:] and option != "--help"}


def test_values_and_positionals_are_left_alone() -> None:
    assert canonical(["--model-uri", "s3://models/bc-rf/v2/", "-h", "--", "--not-a-flag"]) == [
        "--model_uri", "s3://models/bc-rf/v2/", "-h", "--", "--not-a-flag"]


@pytest.mark.parametrize("spelling", ["--grpc-port", "--grpc_port"])
def test_make_serve_takes_both_spellings(spelling, monkeypatch) -> None:
    seen = {}
    monkeypatch.setattr(local, "run", lambda args: seen.update(vars(args)) or 0)
    assert local.main([spelling, "9191", "--model_uri", "s3://models/bc-rf/v2/", "--model-name", "x"]) == 0
    assert (seen["grpc_port"], seen["model_uri"], seen["model_name"]) == (9191, "s3://models/bc-rf/v2/", "x")


def test_the_metadata_names_the_model_unless_a_flag_does(regressor_dir, tmp_path, caplog) -> None:
    folder = tmp_path / "model"
    shutil.copytree(regressor_dir, folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["model_name"] = "bc-rf"
    (folder / "metadata.json").write_text(json.dumps(metadata))
    assert served_name(None, str(folder)) == "bc-rf"
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="serving"):
        assert served_name("diabetes-rf", str(folder)) == "diabetes-rf"
    assert ("--model_name diabetes-rf differs from the metadata's model_name bc-rf: serving it as diabetes-rf"
            in caplog.text)
    assert served_name(None, str(tmp_path / "missing")) == "diabetes-rf"  # load() then refuses the folder


def test_make_serve_names_the_model_after_its_metadata(capsys) -> None:
    assert local.served_name(None, {"model_name": "bc-rf"}) == "bc-rf"
    assert local.served_name(None, {}) == "diabetes-rf"
    assert local.served_name("diabetes-rf", {"model_name": "bc-rf"}) == "diabetes-rf"
    assert capsys.readouterr().err == ""  # the server it starts warns, once (python -m serving's served_name)


@pytest.mark.integration
def test_python_m_serving_with_hyphens_serves_under_the_metadata_name(regressor_dir, tmp_path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(regressor_dir, folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["model_name"] = "bc-rf"
    (folder / "metadata.json").write_text(json.dumps(metadata))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model-dir", str(folder), "--host", "127.0.0.1",
         "--http-port", str(port), "--grpc-port", str(free_port())],
        env={**os.environ, "SERVING_LOG_LEVEL": "WARNING"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models", timeout=2) as response:
                    body = json.loads(response.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.2)
        assert body["models"] == ["bc-rf"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/bc-rf/ready", timeout=5) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_busy_port_names_serve_args(capsys) -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        assert local.main(["--port", str(busy), "--grpc-port", str(free_port())]) == 1
    err = capsys.readouterr().err
    assert f"error: port {busy} on 127.0.0.1 is in use (another `make serve`?)" in err
    assert 'make serve SERVE_ARGS="--port 9090 --grpc-port 9091"' in err
