"""The Makefile's own behaviour for a new user: quiet set-up, `make help`, and `make run`'s errors."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("setup_tool", REPO_ROOT / "tools" / "setup.py")
setup_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(setup_tool)


def _make(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_a_phase_shows_one_line_and_keeps_the_output_in_the_log(tmp_path):
    out, log_path = io.StringIO(), tmp_path / "install.log"
    script = "for i in 1 2 3; do echo Collecting pkg$i; done; echo noise"
    with log_path.open("w") as log:
        setup_tool.run_phase("installing", ["sh", "-c", script], log, out)
    assert out.getvalue().count("\n") == 1
    assert out.getvalue().startswith("==> installing ... ok ") and "3 packages" in out.getvalue()
    assert "Collecting pkg3\nnoise\n" in log_path.read_text()


def test_a_failed_phase_names_the_log_and_shows_its_last_lines(tmp_path, capsys):
    log_path = tmp_path / "install.log"
    script = "for i in $(seq 1 40); do echo line$i; done; echo 'ERROR: No matching distribution for nope'; exit 3"
    with log_path.open("w") as log, pytest.raises(setup_tool.PhaseFailed) as failed:
        setup_tool.run_phase("installing", ["sh", "-c", script], log, io.StringIO(), tail=5)
    assert failed.value.returncode == 3
    err = capsys.readouterr().err
    assert f"error: installing failed; the full output is in {log_path}" in err
    assert "  ERROR: No matching distribution for nope" in err and "line37" in err and "line36" not in err
    assert "line1\n" in log_path.read_text()


def test_setup_passes_pips_exit_status(tmp_path, capsys):
    # A venv that is only a python stub: pip "fails" with the stub's status, after the log is named.
    stub = tmp_path / "venv" / "bin" / "python"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\necho 'pip: something broke'\nexit 4\n")
    stub.chmod(0o755)
    assert setup_tool.main(["--venv", str(tmp_path / "venv")]) == 4
    assert "pip: something broke" in capsys.readouterr().err


def test_help_lists_each_target_with_the_variables_it_reads_and_their_defaults():
    result = _make("help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    targets = [line.split(":")[0] for line in (REPO_ROOT / "Makefile").read_text().splitlines()
               if "## " in line and line[:1].isalpha() and line[:1].islower() and ":" in line]
    assert len(targets) > 20
    for target in targets:
        assert f"  make {target} " in out, target
    for reads in ('reads [RUN_ARGS="--param threshold=0.3"] [SERVE_ARGS=]', "reads [BENCH_ARGS=--quick]",
                  'reads [PYTEST_ARGS="-x tests/serving"]'):
        assert reads in out
    for name, default in [("REGISTRY", "ghcr.io/sklearn-kserve-mlops"), ("VERSION", "0.1.0"), ("PYTHON", "python3")]:
        assert any(line.split()[:1] == [name] and f"(default: {default})" in line for line in out.splitlines()), name
    for name in ("RUN_ARGS", "SERVE_ARGS", "BENCH_ARGS", "PYTEST_ARGS", "KFP_HOST", "MODEL_NAME"):
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name


def test_help_shows_a_target_another_makefile_adds(tmp_path):
    extra = tmp_path / "extra.mk"
    extra.write_text("drift: ## Compare live traffic with the training profile [WINDOW=7d] [DRIFT_ARGS=]\n"
                     "\t@true\n")
    result = subprocess.run(["awk", "-f", str(REPO_ROOT / "tools" / "help.awk"), str(REPO_ROOT / "Makefile"),
                             str(extra)], capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    at = lines.index("  make drift         Compare live traffic with the training profile")
    assert lines[at + 1].split() == ["reads", "[WINDOW=7d]", "[DRIFT_ARGS=]"]


@pytest.mark.integration
def test_make_run_stops_bad_input_before_the_first_step_and_a_failed_step_differs(s3_env, tmp_path):
    """Bad input: one line, before any step, the script's exit 2. A failed step: the script's exit 1.

    GNU make itself exits 2 whenever a recipe fails ("The exit status of make is always one of three
    values"), so through make the program's own status is the one in make's `Error N` line.
    """
    env = {**s3_env, "RUN_ARGS": ""}
    bad = _make("run", "RUN_ARGS=--param source=sklearn:iris", env=env)
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[0].startswith("error: unknown bundled dataset 'sklearn:iris': expected one of")
    assert "] Error 2" in bad.stderr and "Traceback" not in bad.stderr
    assert "on kfp.local" not in bad.stdout  # no step started

    csv = tmp_path / "t.csv"  # a good header (what preflight reads) over a bad row (what ingest reads)
    csv.write_text("a,b,target\n" + "".join(f"{i},{i % 3},{i * 2}\n" for i in range(40)) + "oops,1,2\n")
    failed = _make("run", f"RUN_ARGS=--param source={csv} --pipeline-root {tmp_path / 'out'}", env=env, timeout=300)
    assert "on kfp.local" in failed.stdout  # preflight passed: the file exists, its header is right
    assert "error: ingest failed:" in failed.stderr and "column 'a' is not numeric" in failed.stderr
    assert "] Error 1" in failed.stderr, failed.stderr
    direct = subprocess.run([sys.executable, "-m", "pipelines.local.run", "--param", f"source={csv}",
                             "--pipeline-root", str(tmp_path / "out")],
                            cwd=REPO_ROOT, capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    assert direct.returncode == 1, direct.stderr
