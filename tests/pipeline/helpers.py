"""Helpers shared by the pipeline tests."""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from components import ingest
from pipelines.local.s3server import free_port


@dataclass(frozen=True)
class Ingested:
    train: Path
    test: Path
    schema: Path
    config: ingest.IngestConfig
    source: str


def run_ingest(folder: Path, source: str, **config) -> Ingested:
    cfg = ingest.IngestConfig(**config)
    paths = folder / "train.csv", folder / "test.csv", folder / "schema.json"
    ingest.run(source=source, config=cfg, train_path=paths[0], test_path=paths[1], schema_path=paths[2])
    return Ingested(*paths, cfg, source)


@contextlib.contextmanager
def loopback_http(handler: type[http.server.BaseHTTPRequestHandler],
                  tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve handler on a free 127.0.0.1 port in a thread (HTTPS with tls); yields "127.0.0.1:PORT"."""
    quiet = type(handler.__name__, (handler,), {"log_message": lambda self, *args: None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), quiet)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
