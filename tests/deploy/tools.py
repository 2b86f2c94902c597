"""Where the repository, the external CLIs and the KServe CRD schemas are, and running the CLIs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"  # `make helm` installs helm and kubectl here
MANIFESTS = REPO_ROOT / "manifests"
CHART = REPO_ROOT / "helm" / "sklearn-kserve-mlops"
# kustomize generators read git-ignored credentials files; the repo holds an example beside each.
LOCAL_ENV_SUFFIX = ".local.env"
EXAMPLE_ENV_SUFFIX = ".env.example"
DOCKERFILES = (REPO_ROOT / "components" / "Dockerfile", REPO_ROOT / "serving" / "Dockerfile")

# CI clones the repo with shared/ beside it; the env var points elsewhere.
CRD_SCHEMAS_ENV = "KSERVE_CRD_SCHEMAS"
DEFAULT_CRD_SCHEMAS = REPO_ROOT.parent / "shared" / "schemas" / "kserve"

COMMAND_TIMEOUT_S = 60


class ToolMissing(RuntimeError):
    """A CLI the checks need is not installed; the message says how to get it."""


class CommandFailed(RuntimeError):
    """A CLI exited non-zero; `output` holds what it printed (linters report on stdout)."""

    def __init__(self, argv: list[str], returncode: int, output: str):
        self.output = output
        super().__init__(f"{' '.join(argv)} exited {returncode}:\n{output.strip()}")


def find_tool(name: str, install_hint: str) -> str:
    """The repo's own copy first (.tools/bin, then the venv's bin), else PATH."""
    for folder in (TOOLS_BIN, Path(sys.executable).parent):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} not found in {TOOLS_BIN}, the venv or PATH: {install_hint}")
    return found


def run(argv: list[str], with_stderr: bool = False) -> str:
    """Run a CLI; stdout (and stderr after it, if asked) on success, CommandFailed otherwise."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stderr + done.stdout)
    return done.stdout + done.stderr if with_stderr else done.stdout


def local_env_for(example: Path) -> Path:
    """s3-credentials.env.example -> s3-credentials.local.env, beside it."""
    return example.with_name(example.name.removesuffix(EXAMPLE_ENV_SUFFIX) + LOCAL_ENV_SUFFIX)


# Stand-ins for the keys a user puts into each *.local.env (the overlays refuse CHANGE-ME ones).
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "reader-test-only",
    "AWS_SECRET_ACCESS_KEY": "reader-secret-test-only",
    "MINIO_ROOT_USER": "root-test-only",
    "MINIO_ROOT_PASSWORD": "root-password-test-only",
    "accesskey": "writer-test-only",
    "secretkey": "writer-secret-test-only",
}


def filled_env(example_text: str, values: dict[str, str]) -> str:
    """An example env file with the value of each key in `values` replaced (comments kept)."""
    lines = []
    for line in example_text.splitlines():
        key, sep, _ = line.partition("=")
        lines.append(f"{key}={values[key]}" if sep and not line.startswith("#") and key in values else line)
    return "\n".join(lines) + "\n"


def copy_manifests(dest: Path, with_local_env: bool = True, placeholders: bool = False) -> Path:
    """A copy of manifests/ without any real credentials file; with_local_env makes each from its
    example as the README tells users to: filled with TEST_CREDENTIALS, or left at the example's
    CHANGE-ME placeholders if asked. Tests never write credentials into the tree."""
    shutil.copytree(MANIFESTS, dest, ignore=shutil.ignore_patterns(f"*{LOCAL_ENV_SUFFIX}"))
    if with_local_env:
        for example in dest.rglob(f"*{EXAMPLE_ENV_SUFFIX}"):
            text = example.read_text()
            local_env_for(example).write_text(text if placeholders else filled_env(text, TEST_CREDENTIALS))
    return dest


def crd_schema_dir() -> Path:
    return Path(os.environ.get(CRD_SCHEMAS_ENV) or DEFAULT_CRD_SCHEMAS)


def makefile_image(variable: str) -> str:
    """An image name as `make images` tags it, from the Makefile's `?=` defaults."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    defaults = dict(re.findall(r"^(\w+)\s*\?=\s*(\S+)", makefile, flags=re.M))
    return re.sub(r"\$\((\w+)\)", lambda m: defaults[m.group(1)], defaults[variable])
