"""The pipeline image is configurable end to end: `make compile PIPELINE_IMAGE=...` (or REGISTRY=/
VERSION=) writes YAML that runs it, the committed YAML runs the default, and `make upload` refuses
YAML compiled for another image than the one asked for, before it contacts Kubeflow."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipelines import upload
from pipelines.training_pipeline import PACKAGE_PATH as TRAINING_YAML
from pipelines.batch_scoring_pipeline import PACKAGE_PATH as SCORING_YAML
from pipelines.monitor_pipeline import PACKAGE_PATH as MONITOR_YAML
from tests.deploy.tools import makefile_image

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPILE_TIMEOUT_S = 180
UNREACHABLE_KFP = "http://127.0.0.1:1"  # nothing listens: a refusal must come before any call


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=COMPILE_TIMEOUT_S, check=False)


@pytest.mark.parametrize("package", [TRAINING_YAML, SCORING_YAML, MONITOR_YAML],
                         ids=["training", "batch-scoring", "monitor"])
def test_committed_yaml_runs_the_default_image(package):
    assert upload.executor_images(package) == {makefile_image("PIPELINE_IMAGE")}


@pytest.mark.parametrize(
    ("variables", "expected"),
    [(("PIPELINE_IMAGE=registry.example:5000/team/pipe:7",), "registry.example:5000/team/pipe:7"),
     (("REGISTRY=registry.example/team", "VERSION=2.0.1"), "registry.example/team/pipeline:2.0.1")],
    ids=["PIPELINE_IMAGE", "REGISTRY-VERSION"],
)
def test_make_compile_writes_yaml_that_runs_the_image_asked_for(tmp_path, variables, expected):
    done = make("compile", *variables, f"COMPILE_DIR={tmp_path}")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("training_pipeline.yaml", "batch_scoring_pipeline.yaml", "monitor_pipeline.yaml"):
        assert upload.executor_images(tmp_path / name) == {expected}, name


def test_upload_refuses_yaml_compiled_for_another_image(capsys):
    asked = "registry.example/team/pipeline:9.9.9"
    code = upload.main(["--host", UNREACHABLE_KFP, "--image", asked, "--package", str(TRAINING_YAML)])
    error = capsys.readouterr().err
    assert code == 2
    assert makefile_image("PIPELINE_IMAGE") in error and asked in error
    assert f"make compile PIPELINE_IMAGE={asked}" in error


def test_make_upload_passes_the_image_it_was_asked_for():
    # The refusal through make itself: PIPELINE_IMAGE reaches `--image`, exit 2, before any network call.
    done = make("upload", f"KFP_HOST={UNREACHABLE_KFP}", "PIPELINE_IMAGE=elsewhere/pipeline:1")
    assert done.returncode != 0
    assert "elsewhere/pipeline:1" in done.stderr and "runs image" in done.stderr, done.stderr


def test_upload_accepts_yaml_that_runs_the_image_asked_for_and_only_then_connects(capsys):
    # Same image: the check passes and upload goes on to probe Kubeflow (which is not there: exit 2).
    code = upload.main(["--host", UNREACHABLE_KFP, "--image", makefile_image("PIPELINE_IMAGE"),
                        "--package", str(TRAINING_YAML)])
    err = capsys.readouterr().err
    assert code == 2 and "no Kubeflow Pipelines API at" in err
    assert "runs image" not in err
