"""serving.local's own error paths: what `make serve` says when the port or the URI is wrong."""

from __future__ import annotations

import http.server
import threading

import pytest

from pipelines.local.s3server import free_port
from serving import local


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


def test_the_default_uri_is_the_slash_terminated_production_prefix() -> None:
    # A storageUri prefix without the slash also matches production-old/ and friends.
    assert local.DEFAULT_MODEL_URI == "s3://models/diabetes-rf/production/"
    assert local._split_s3(local.DEFAULT_MODEL_URI) == ("models", "diabetes-rf/production")
