"""Fixtures shared by every test folder: the loopback S3 server and its settings."""

from __future__ import annotations

import pytest

from pipelines.local.s3server import LocalS3Server

IMAGE_TESTS = "tests/images/"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The image tests go last: in CI the images are being built in the background meanwhile (.ci/run)."""
    items.sort(key=lambda item: item.nodeid.startswith(IMAGE_TESTS))  # stable: the others keep their order


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> LocalS3Server:
    """One rclone S3 server for the session, on a free loopback port, data in a temp folder."""
    with LocalS3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    """Point MINIO_* and AWS_* at the session's S3 server for one test."""
    env = s3_server.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
