"""Credentials never deploy as committed placeholders: kustomize reads git-ignored *.local.env
files that the user makes from the committed *.env.example files, and refuses to build without them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from . import render
from .tools import (
    EXAMPLE_ENV_SUFFIX,
    LOCAL_ENV_SUFFIX,
    MANIFESTS,
    REPO_ROOT,
    CommandFailed,
    copy_manifests,
    local_env_for,
)

EXAMPLES = sorted(MANIFESTS.rglob(f"*{EXAMPLE_ENV_SUFFIX}"))


def _generator_env_files(manifests: Path) -> list[Path]:
    """Every env file a secretGenerator or configMapGenerator reads, in every kustomization."""
    files = []
    for kustomization in manifests.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for generator in (*spec.get("secretGenerator", []), *spec.get("configMapGenerator", [])):
            files += [kustomization.parent / name for name in generator.get("envs", [])]
    return files


def test_generators_read_only_local_files_that_have_an_example():
    env_files = _generator_env_files(MANIFESTS)
    assert env_files, "no generator reads an env file: the walk is broken"
    for env_file in env_files:
        assert env_file.name.endswith(LOCAL_ENV_SUFFIX), f"{env_file} would be committed with its secrets"
    # Each file read has a committed example to copy, and each example is read by something.
    assert sorted(set(env_files)) == sorted(local_env_for(example) for example in EXAMPLES)


@pytest.mark.parametrize("overlay", render.overlay_names())
def test_build_fails_until_the_local_files_exist(kubectl, tmp_path, overlay):
    manifests = copy_manifests(tmp_path / "manifests", with_local_env=False)
    with pytest.raises(CommandFailed) as failure:
        render.kustomize(kubectl, overlay, manifests)
    # kustomize's own missing-file error, naming the file to create.
    assert "s3-credentials.local.env" in failure.value.output
    assert "no such file or directory" in failure.value.output


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_each_missing_file_is_named(kubectl, tmp_path, example):
    manifests = copy_manifests(tmp_path / "manifests")
    local_env_for(manifests / example.relative_to(MANIFESTS)).unlink()
    with pytest.raises(CommandFailed) as failure:
        render.kustomize(kubectl, "with-minio", manifests)  # the overlay that reads every file
    assert local_env_for(example).name in failure.value.output


def test_examples_hold_only_placeholders():
    for example in EXAMPLES:
        values = [line.partition("=")[2] for line in example.read_text().splitlines()
                  if line and not line.startswith("#")]
        assert values and all(value.startswith("CHANGE-ME") for value in values), example


def test_no_credentials_file_is_tracked():
    try:
        tracked = subprocess.run(["git", "ls-files", "--", "manifests"], cwd=REPO_ROOT, capture_output=True,
                                 text=True, check=True, timeout=30).stdout.split()
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git checkout, cannot list tracked files: {error}")
    assert [path for path in tracked if path.endswith(LOCAL_ENV_SUFFIX)] == []
