"""Credentials never deploy as committed placeholders: kustomize reads git-ignored *.local.env
files that the user makes from the committed *.env.example files, refuses to build without them,
and refuses to build while a key in them still starts with CHANGE-ME or is empty
(manifests/components/refuse-placeholders and components/minio/refuse-placeholders).
"""

from __future__ import annotations

import base64
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
    TEST_CREDENTIALS,
    CommandFailed,
    copy_manifests,
    filled_env,
    local_env_for,
)

EXAMPLES = sorted(MANIFESTS.rglob(f"*{EXAMPLE_ENV_SUFFIX}"))
REFUSED = "is CHANGE-ME or empty: put the real value there"


def _example_keys(example: Path) -> list[str]:
    return [line.partition("=")[0] for line in example.read_text().splitlines() if line and not line.startswith("#")]


# (example file, key): each key of each example, to be left at a placeholder on its own.
EXAMPLE_KEYS = [(example, key) for example in EXAMPLES for key in _example_keys(example)]


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


@pytest.mark.parametrize("overlay", render.overlay_names())
def test_build_refuses_the_copied_examples(kubectl, tmp_path, overlay):
    """`cp X.env.example X.local.env` and nothing more: every overlay refuses to render."""
    manifests = copy_manifests(tmp_path / "manifests", placeholders=True)
    with pytest.raises(CommandFailed) as failure:
        render.kustomize(kubectl, overlay, manifests)
    assert REFUSED in failure.value.output
    assert ".local.env is CHANGE-ME" in failure.value.output


@pytest.mark.parametrize("value", ["CHANGE-ME", "CHANGE-ME-later", ""], ids=["placeholder", "prefix", "empty"])
@pytest.mark.parametrize(("example", "key"), EXAMPLE_KEYS, ids=[f"{e.name}:{k}" for e, k in EXAMPLE_KEYS])
def test_each_key_left_at_a_placeholder_is_named(kubectl, tmp_path, example, key, value):
    manifests = copy_manifests(tmp_path / "manifests")
    local = local_env_for(manifests / example.relative_to(MANIFESTS))
    local.write_text(filled_env(example.read_text(), {**TEST_CREDENTIALS, key: value}))
    with pytest.raises(CommandFailed) as failure:
        render.kustomize(kubectl, "with-minio", manifests)  # the overlay that reads every file
    relative = local_env_for(example).relative_to(REPO_ROOT)
    assert f"{key} in {relative} {REFUSED}" in failure.value.output


@pytest.mark.parametrize("overlay", render.overlay_names())
def test_filled_keys_render_and_the_check_leaves_no_trace(rendered, overlay):
    docs = rendered("kustomize", overlay)
    secrets = render.find(docs, "Secret")
    assert secrets, f"{overlay} renders no Secret: nothing was checked"
    for secret in secrets:
        assert "placeholder-check" not in secret["metadata"].get("labels", {}), secret["metadata"]
        decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
        assert decoded == {key: TEST_CREDENTIALS[key] for key in decoded}, secret["metadata"]["name"]


def test_a_key_that_only_contains_change_me_renders(kubectl, tmp_path):
    """Only a leading CHANGE-ME is a placeholder: the check splits on its base64, at the start."""
    manifests = copy_manifests(tmp_path / "manifests")
    local = manifests / "base" / "s3-credentials.local.env"
    real = {**TEST_CREDENTIALS, "AWS_SECRET_ACCESS_KEY": "abcCHANGE-ME"}  # 3 bytes: a base64 boundary
    local.write_text(filled_env(local.read_text(), real))
    secret = render.only(render.kustomize(kubectl, "serverless", manifests), "Secret", "model-reader-s3")
    assert base64.b64decode(secret["data"]["AWS_SECRET_ACCESS_KEY"]).decode() == "abcCHANGE-ME"
