"""pipelines.local.runner.kfp_docker_status_kept: a step container's exit status survives its removal.

A stand-in Docker client plays the race kfp.local loses (kubeflow/pipelines#13332): a container
started with auto_remove=True is gone by the time its status is asked for.
"""

from __future__ import annotations

import docker
import pytest
from kfp.local import docker_task_handler

from pipelines.local.runner import kfp_docker_status_kept


class _Container:
    def __init__(self, exit_code: int, auto_remove: bool, remove_fails: bool) -> None:
        self.id = "c0ffee"
        self.exit_code = exit_code
        self.auto_remove = auto_remove
        self.remove_fails = remove_fails
        self.removed = 0

    def logs(self, stream: bool, follow: bool = False):
        yield b"reading /data/missing.csv\n"
        yield "FileNotFoundError: /data/missing.csv ✗\n".encode()

    def wait(self):
        if self.auto_remove:  # exited and already removed by the daemon
            raise docker.errors.NotFound("No such container: c0ffee")
        return {"StatusCode": self.exit_code}

    def remove(self, force: bool = False):
        self.removed += 1
        if self.remove_fails:
            raise docker.errors.APIError("removal of container c0ffee is already in progress")


class _Image:
    tags = ["pipeline:0.1.0"]
    attrs = {"RepoDigests": []}


class _Client:
    def __init__(self, exit_code: int, remove_fails: bool = False) -> None:
        self.exit_code, self.remove_fails = exit_code, remove_fails
        self.run_kwargs: dict = {}
        self.container: _Container | None = None
        self.images = self
        self.containers = self

    def list(self):
        return [_Image()]

    def pull(self, image):
        raise AssertionError(f"pulled {image}, which is present")

    def run(self, **kwargs):
        self.run_kwargs = kwargs
        self.container = _Container(self.exit_code, kwargs.get("auto_remove", False), self.remove_fails)
        return self.container


def _run(client: _Client, **run_args) -> int:
    return docker_task_handler.run_docker_container(client=client, image="pipeline:0.1.0", command=["python"],
                                                    volumes={}, **run_args)


def test_kfp_local_alone_takes_a_fast_failure_for_success():
    # Why the workaround exists; when kfp fixes it, this fails and the workaround can go.
    assert _run(_Client(exit_code=1)) == 0


@pytest.mark.parametrize("exit_code", [0, 1, 137])
def test_the_exit_status_is_read_then_the_container_removed(exit_code, capsys):
    client = _Client(exit_code)
    with kfp_docker_status_kept():
        assert _run(client, user="1000", auto_remove=True) == exit_code
    assert "auto_remove" not in client.run_kwargs and client.run_kwargs["user"] == "1000"
    assert client.container.removed == 1
    out = capsys.readouterr().out
    assert "reading /data/missing.csv\nFileNotFoundError: /data/missing.csv ✗\n" in out  # the step's own log


def test_a_failed_removal_is_logged_not_taken_for_the_steps_status(caplog):
    client = _Client(exit_code=1, remove_fails=True)
    with kfp_docker_status_kept():
        assert _run(client) == 1
    assert client.container.removed == 1
    assert "could not remove step container c0ffee" in caplog.text


def test_kfp_local_is_as_before_afterwards():
    original = docker_task_handler.run_docker_container
    with pytest.raises(KeyError), kfp_docker_status_kept():
        assert docker_task_handler.run_docker_container is not original
        raise KeyError("a failing run")
    assert docker_task_handler.run_docker_container is original
