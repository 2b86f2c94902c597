"""Serve the production model on this machine: ``make serve`` (and, with --demo, the end of ``make run``).

    python -m pipelines.local.serve [--demo] [--port 8080] [--grpc-port 8081] [--model-uri s3://...] [--model-name NAME]

Unless MINIO_ENDPOINT is set, the embedded S3 server starts on .data/s3 (port 9000), the
store ``make run`` pushes into. The server listens on 127.0.0.1 only. With --demo, one sample
request built from the model's schema is sent and its answer shown. Ctrl-C stops everything.
The model is served under the model_name of its metadata.json unless --model-name says otherwise
(then a warning names both). Flags may be spelt with hyphens or underscores, as for python -m serving.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from components.artifacts import DEFAULT_MODEL_NAME
from components.errors import ObjectStoreError
from components.objectstore import ObjectStore
from contract.files import METADATA_FILE
from pipelines.local.s3server import DEFAULT_DATA_DIR, DEFAULT_PORT, LocalS3Error
from pipelines.local.store import object_store
from serving.flags import both_spellings
from serving.server import LOCAL_HOST

DEFAULT_MODEL_URI = f"s3://models/{DEFAULT_MODEL_NAME}/production/"
DEFAULT_HTTP_PORT = 8080
DEFAULT_GRPC_PORT = 8081
SAMPLE_FILE = Path(".data/sample-request.json")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


class LocalServeError(RuntimeError):
    """Something the user must fix before the model can be served (printed, exit 1)."""


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise LocalServeError(f"--model-uri {uri!r} is not s3://bucket/prefix")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


def check_model_exists(uri: str) -> dict[str, Any]:
    """The production metadata.json, or a plain explanation of why there is none.

    Args:
        uri: s3://bucket/<model>/production (the model folder).

    Returns:
        The metadata dict; LocalServeError saying what to run when there is no model there.
    """
    bucket, prefix = _split_s3(uri)
    try:
        metadata = ObjectStore.from_env().get_json(bucket, f"{prefix}/{METADATA_FILE}")
    except ObjectStoreError as exc:
        raise LocalServeError(f"cannot read {uri}: {exc}") from None
    if metadata is None:
        raise LocalServeError(
            f"no model at {uri} yet: run `make run` first (it trains the model and pushes it there)"
        )
    return metadata


def _port_free(host: str, port: int) -> bool:
    """Whether the server could bind: like uvicorn, with SO_REUSEADDR, so that the TIME_WAIT
    sockets a server just stopped leaves behind (a second `make run`) do not count as in use."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _get(url: str, body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read() or b"{}"
    try:
        return status, json.loads(raw)
    except ValueError:
        raise LocalServeError(
            f"{url} answered HTTP {status} with non-JSON {raw[:80]!r}: is another service on that port?"
        ) from None


def wait_until_ready(proc: subprocess.Popen, base: str, model: str) -> None:
    """Wait for the server to listen; it loads before listening, so readiness is then final.

    Args:
        proc: the server process.
        base: its http:// base URL.
        model: the served model's name.
    """
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise LocalServeError(f"the server exited with code {proc.returncode} (see its log above)")
        with contextlib.suppress(OSError):
            status, body = _get(f"{base}/v2/models/{model}/ready")
            if status == 200:
                return
            raise LocalServeError(f"the model is not ready: {body.get('error', body)}")
        if time.monotonic() > deadline:
            raise LocalServeError(f"the server did not answer on {base} within {START_TIMEOUT_S:.0f}s")
        time.sleep(0.2)


def sample_request(metadata: dict[str, Any]) -> dict[str, Any]:
    """One row in the middle of each feature's training range, from the model's own schema.

    Args:
        metadata: the V2 model metadata (GET /v2/models/<name>).

    Returns:
        A V2 request body as a dict.
    """
    tensor = metadata["inputs"][0]
    features = tensor["parameters"]["features"]
    row = [round((f.get("min", 0.0) + f.get("max", 0.0)) / 2, 6) for f in features]
    return {"inputs": [{"name": tensor["name"], "datatype": "FP64", "shape": [1, len(row)], "data": row}]}


def demo(base: str, model: str) -> None:
    """Send one sample request and print it with the answer.

    The body is saved to SAMPLE_FILE for the curl and hey commands printed after it.

    Args:
        base: the server's http:// base URL.
        model: the served model's name.
    """
    _, metadata = _get(f"{base}/v2/models/{model}")
    request = sample_request(metadata)
    body = json.dumps(request)
    SAMPLE_FILE.parent.mkdir(parents=True, exist_ok=True)
    SAMPLE_FILE.write_text(body + "\n")
    status, answer = _get(f"{base}/v2/models/{model}/infer", body.encode())
    names = metadata["inputs"][0]["parameters"]["feature_names"]
    print(f"\nSample V2 request (features {', '.join(names)}):\n  {body}")
    print(f"Answer (HTTP {status}):\n  {json.dumps(answer)}")
    infer = f"{base}/v2/models/{model}/infer"
    print("\nTry it:")
    print(f"  curl -s {base}/v2/models/{model}")
    print(f"  curl -s -H 'Content-Type: application/json' -d {shlex.quote(body)} {infer}")
    print(f"  hey -n 2000 -c 16 -m POST -T application/json -D {SAMPLE_FILE} {infer}")


def served_name(requested: str | None, metadata: dict[str, Any]) -> str:
    """--model-name when given, else the metadata's.

    A --model-name that differs from the metadata's is warned about once, by the server it is passed to.

    Args:
        requested: --model-name, None when not given.
        metadata: the production metadata.

    Returns:
        The name to serve under.
    """
    if requested is None:
        return str(metadata.get("model_name") or DEFAULT_MODEL_NAME)
    return requested


def server_command(args: argparse.Namespace) -> list[str]:
    """The ``python -m serving`` command line for these options.

    Args:
        args: the parsed options (model URI and name, host, ports).

    Returns:
        The argv list.
    """
    return [
        sys.executable, "-m", "serving", "--model_uri", args.model_uri, "--model_name", args.model_name,
        "--host", args.host, "--http_port", str(args.port), "--grpc_port", str(args.grpc_port),
        "--enable_docs_url", "true",
    ]


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server, then SIGKILL it after STOP_TIMEOUT_S; waits until it is gone.

    Args:
        proc: the server process.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: argparse.Namespace) -> int:
    """``make serve``: check the ports and the model, start the server, wait for ready, serve until Ctrl-C.

    With --demo, one sample request is sent once the server is ready.

    Args:
        args: the parsed options.

    Returns:
        0 after a clean stop or Ctrl-C, 1 when the server exited with an error; LocalServeError for a taken port or
        no model.
    """
    for port in (args.port, args.grpc_port):
        if not _port_free(args.host, port):
            raise LocalServeError(
                f"port {port} on {args.host} is in use (another `make serve`?): pick free ones, e.g. "
                f"make serve SERVE_ARGS=\"--port 9090 --grpc-port 9091\" "
                f"(python -m pipelines.local.serve --port 9090 --grpc-port 9091)"
            )
    with object_store(args.data_dir, args.s3_port) as (_, _, where):
        metadata = check_model_exists(args.model_uri)
        args.model_name = served_name(args.model_name, metadata)
        print(f"Serving {args.model_uri} (version {metadata.get('version')}, {metadata.get('estimator')}, "
              f"sha256 {str(metadata.get('sha256'))[:12]}) from {where}")
        env = {**os.environ, "SERVING_LOG_LEVEL": os.environ.get("SERVING_LOG_LEVEL", "WARNING")}
        proc = subprocess.Popen(server_command(args), env=env)
        try:
            base = f"http://{args.host}:{args.port}"
            wait_until_ready(proc, base, args.model_name)
            print(f"Ready: V2 REST on {base}/v2 (docs {base}/docs, metrics {base}/metrics), "
                  f"gRPC on {args.host}:{args.grpc_port}")
            if args.demo:
                demo(base, args.model_name)
            print("\nServing until Ctrl-C.", flush=True)
            proc.wait()
            return 0 if proc.returncode in (0, -signal.SIGINT, -signal.SIGTERM) else 1
        except KeyboardInterrupt:
            return 0
        finally:
            stop(proc)
            print("Stopped.", flush=True)


def _interrupt(_signum: int, _frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (a service manager, a test's teardown) stops like Ctrl-C: server too


def build_parser() -> argparse.ArgumentParser:
    """The command line of `make serve` (and of `make run`'s SERVE_ARGS, checked before the run starts).

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(prog="python -m pipelines.local.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", action="store_true", help="send one sample request and print curl/hey commands")
    # Both spellings of each flag: python -m serving (kserve's argparse) spells them with underscores.
    parser.add_argument(*both_spellings("--port"), "--http_port", "--http-port", dest="port", type=int,
                        default=DEFAULT_HTTP_PORT, help="REST port (default: %(default)s)")
    parser.add_argument(*both_spellings("--grpc-port"), dest="grpc_port", type=int, default=DEFAULT_GRPC_PORT,
                        help="gRPC port (default: %(default)s)")
    parser.add_argument("--host", default=LOCAL_HOST, help="bind address (default: %(default)s)")
    parser.add_argument(*both_spellings("--model-uri"), dest="model_uri", default=DEFAULT_MODEL_URI,
                        help="s3://bucket/prefix/ of the model folder, slash-terminated (default: %(default)s)")
    parser.add_argument(*both_spellings("--model-name"), dest="model_name", default=None,
                        help="the name to serve under (default: the model_name in the model's metadata.json)")
    parser.add_argument(*both_spellings("--data-dir"), dest="data_dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="the embedded S3 server's data folder (default: %(default)s)")
    parser.add_argument(*both_spellings("--s3-port"), dest="s3_port", type=int,
                        default=int(os.environ.get("LOCAL_S3_PORT", DEFAULT_PORT)),
                        help="port of the embedded S3 server when MINIO_ENDPOINT is unset (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`make serve`: serve the model until Ctrl-C or SIGTERM.

    Args:
        argv: the flags (default: sys.argv[1:]).

    Returns:
        The exit status: 0 after a stop, 1 when the model cannot be served, 130 on Ctrl-C before it is.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except LocalServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except LocalS3Error as exc:
        print(f"error: local S3 server: {exc} (pass --s3-port, or set MINIO_ENDPOINT)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
