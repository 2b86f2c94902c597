"""The object store of a local run or `make serve`: the user's MinIO when MINIO_ENDPOINT is set, else an embedded one.

Its own module so that `make serve` (pipelines.local.serve) starts without importing kfp and the
pipeline definitions, which pipelines.local.run needs (seconds on a loaded machine).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from contract.store import StoreSettings
from pipelines.local.s3server import LocalS3Server


@contextlib.contextmanager
def object_store(data_dir: Path, port: int) -> Iterator[tuple[str, bool, str]]:
    """The user's MinIO when MINIO_ENDPOINT is set, else a local S3 server for the block.

    Args:
        data_dir: the local server's data folder.
        port: the local server's port.

    Yields:
        (endpoint, secure, description of where it is); the local server stops on leaving.
    """
    if os.environ.get("MINIO_ENDPOINT"):
        settings = StoreSettings.from_env()
        yield settings.endpoint, settings.secure, f"{settings.url} (MINIO_ENDPOINT)"
        return
    with LocalS3Server(data_dir, port) as server:
        # The steps are subprocesses: they inherit these, as a pod inherits the Secret's variables.
        previous = {key: os.environ.get(key) for key in server.env()}
        os.environ.update(server.env())
        try:
            yield server.endpoint, False, f"{server.url}, local rclone, data in {data_dir}"
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
