"""The Docker engine, both images built once per session, and the pipeline run inside its image.

Images are tagged sklearn-kserve-mlops-test/* and containers named sklearn-kserve-mlops-test-*,
so they never collide with `make images` or with other users of the engine; containers are
removed in teardown, images are kept (the next session's build is then all cache hits).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# Tagged per checkout: worktrees on one machine share the engine, and a build from another one
# must not replace the image this session tests (the layers are shared through the cache anyway).
CHECKOUT_TAG = "tests-" + hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:8]
TEST_IMAGES = {role: f"sklearn-kserve-mlops-test/{role}:{CHECKOUT_TAG}" for role in ("pipeline", "server")}
CONTAINER_PREFIX = "sklearn-kserve-mlops-test"
# Cold: the Debian stand-in (~90 s) and two builds (~130 s); warm: cache hits in seconds.
BUILD_TIMEOUT_S = 900
# Lines for the end of the pytest run (image sizes, timings): pytest captures a test's print.
_REPORT: list[str] = []


def report(line: str) -> None:
    _REPORT.append(line)


def pytest_terminal_summary(terminalreporter) -> None:
    if _REPORT:
        terminalreporter.section("images")
        for line in _REPORT:
            terminalreporter.write_line(line)


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}")
    return done


def container_name(role: str) -> str:
    return f"{CONTAINER_PREFIX}-{role}-{uuid.uuid4().hex[:8]}"


# Set by .ci/run: there the engine is started on purpose, so its absence is a failure, not a skip.
REQUIRE_ENV = "REQUIRE_IMAGE_TESTS"


def _not_tested(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: the image tests must run here)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def engine() -> None:
    if shutil.which("docker") is None:
        _not_tested("images NOT tested: no docker CLI (apt-get install docker.io, as .ci/run does)")
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        _not_tested("images NOT tested: no Docker engine answers (as root: `make docker-engine`, as .ci/run does): "
                    f"{info.stderr.strip().splitlines()[-1] if info.stderr.strip() else info.returncode}")


@pytest.fixture(scope="session")
def images(engine, tmp_path_factory) -> dict[str, str]:
    """Both images, built by `make images`' script from the committed Dockerfiles."""
    log = tmp_path_factory.mktemp("images") / "build.log"
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(["bash", str(REPO_ROOT / "images" / "build.sh"), TEST_IMAGES["pipeline"],
                               TEST_IMAGES["server"]], stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                              timeout=BUILD_TIMEOUT_S, check=False)
    text = log.read_text()
    assert done.returncode == 0, f"images/build.sh failed:\n{text[-4000:]}"
    sizes = {role: int(docker("image", "inspect", "--format", "{{.Size}}", image).stdout) for role, image in
             TEST_IMAGES.items()}
    report("image sizes: " + ", ".join(f"{role} {size / 1e6:.0f} MB" for role, size in sizes.items()) +
           f"; build {time.monotonic() - started:.0f}s" + (" (with the Debian stand-in)" if "debootstrap" in text else ""))
    return dict(TEST_IMAGES, log=text)


@pytest.fixture(scope="session")
def shared_dir():
    """make() -> a folder the containers' non-root user can write and read (pytest's folders are 0700)."""
    made: list[Path] = []

    def make() -> Path:
        folder = Path(tempfile.mkdtemp(prefix=f"{CONTAINER_PREFIX}-"))
        folder.chmod(0o777)
        made.append(folder)
        return folder

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def pipeline_env(s3_env: dict[str, str], lock_file: Path) -> dict[str, str]:
    """What the pod gets from the minio_secret Secret in a cluster (kfp.local does not read Secrets),
    and the registry's lock: the loopback store (rclone) ignores conditional writes, so its writers
    serialise on a file lock (components/registry.py). The containers see only the pipeline root, so
    the lock lives there; the container steps are the only writers of the image tests' bucket."""
    lock_file.touch()
    lock_file.chmod(0o666)
    return {**{key: s3_env[key] for key in ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_REGION")},
            "REGISTRY_LOCK_FILE": str(lock_file)}


def compile_for(image: str, output: Path) -> Path:
    """`make compile PIPELINE_IMAGE=...` into output."""
    subprocess.run([sys.executable, "-m", "pipelines.training_pipeline", "--output", str(output)],
                   env={**os.environ, "PIPELINE_IMAGE": image}, cwd=REPO_ROOT, check=True, capture_output=True,
                   timeout=120)
    return output
