"""pipelines.local.serve's own error paths: what `make serve` says when the port or the URI is wrong."""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import pytest
import yaml

from components.registry import production_prefix
from pipelines.local.s3server import free_port
from pipelines.local import serve as local

ROOT = Path(__file__).resolve().parents[2]


class _PlainText(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>some other service</html>")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def other_service():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _PlainText)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_non_json_answer_names_the_port_problem(other_service) -> None:
    with pytest.raises(local.LocalServeError, match=r"answered HTTP 200 with non-JSON .*another service on that port"):
        local._get(f"{other_service}/v2/models/diabetes-rf/ready")


@pytest.mark.parametrize("uri", ["models/diabetes-rf/production/", "s3://models", "http://x/y"])
def test_a_model_uri_that_is_not_s3_is_refused(uri) -> None:
    with pytest.raises(local.LocalServeError, match="is not s3://bucket/prefix"):
        local._split_s3(uri)


def test_the_default_uri_is_where_the_pipeline_publishes_production_by_default() -> None:
    # What push writes with the compiled pipeline's defaults; slash-terminated, since a storageUri
    # prefix without the slash also matches production-old/ and friends.
    # The compiled YAML holds the pipeline spec, then the platform spec: the first document.
    spec = next(yaml.safe_load_all((ROOT / "pipelines" / "training_pipeline.yaml").read_text()))
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    bucket, model_name = parameters["bucket"]["defaultValue"], parameters["model_name"]["defaultValue"]
    assert local.DEFAULT_MODEL_URI == f"s3://{bucket}/{production_prefix(model_name)}"
    assert local.DEFAULT_MODEL_URI.endswith("/production/")
    assert local._split_s3(local.DEFAULT_MODEL_URI) == (bucket, f"{model_name}/production")


def _time_wait_port() -> int:
    """A loopback port whose listener is gone but whose server side of a connection is in TIME_WAIT."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first, so it is the side left in TIME_WAIT
    client.close()
    listener.close()
    return port


def test_a_port_in_time_wait_is_free_for_the_next_server() -> None:
    # What a second `make run` meets right after the first one's server stopped.
    port = _time_wait_port()
    with socket.socket() as plain:  # the state is real: a bind without SO_REUSEADDR fails
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    assert local._port_free("127.0.0.1", port)


def test_a_port_with_a_listener_is_in_use() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not local._port_free("127.0.0.1", listener.getsockname()[1])
