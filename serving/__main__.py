"""Run the V2 model server; this is what a KServe ServingRuntime starts.

    python -m serving --model_dir /mnt/models --model_name diabetes-rf --http_port 8080
    python -m serving --model_uri s3://models/diabetes-rf/production/ --host 127.0.0.1   # local

gRPC listens on --grpc_port (8081). kserve's own flags (--workers, --enable_grpc,
--enable_docs_url true, ...) work as in any kserve server; kserve reads them from the
command line when it is imported, which is why this module takes no other argv.
Every flag may be spelt with hyphens or underscores (--model-uri or --model_uri).
The model's name defaults to the model_name in its metadata.json; a --model_name that differs
wins (a KServe ServingRuntime passes the InferenceService's name) and a warning says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import socket
import sys
import tempfile
from pathlib import Path

from serving.flags import canonical

if __name__ == "__main__":
    # kserve parses sys.argv on import: give it every flag in its own spelling first (not when a
    # test imports this module: its argv is pytest's).
    sys.argv[1:] = canonical(sys.argv[1:])

from kserve import model_server  # noqa: E402 (parses sys.argv for kserve's flags on import)

from contract.files import DEFAULT_MODEL_NAME
from serving import limits, logs, settings as serving_settings
from serving.artifact import ArtifactError, download, read_metadata
from serving.inference_log import InferenceLog, InferenceLogConfigError, InferenceLogSettings
from serving.limits import LimitsConfigError
from serving.model import SklearnModel
from serving.server import CLUSTER_HOST, ModelServer
from serving.settings import ServingSettings, SettingsError

log = logging.getLogger("serving")

DEFAULT_MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts storageUri


def build_parser() -> argparse.ArgumentParser:
    """The command line: kserve's ModelServer flags plus this server's (model folder or URI, limits).

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="python -m serving", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter, parents=[model_server.parser],
    )
    parser.add_argument("--model_dir", default=DEFAULT_MODEL_DIR,
                        help="folder with model.joblib and metadata.json (default: %(default)s)")
    parser.add_argument("--model_uri", default=None,
                        help="download this storage URI (s3://bucket/prefix) instead of reading --model_dir")
    parser.add_argument("--host", default=CLUSTER_HOST,
                        help="address for HTTP and gRPC (default: %(default)s; 127.0.0.1 for loopback only)")
    limits.add_arguments(parser)
    # One line per request would cost more than the request; SERVING_ACCESS_LOG=1 turns it on.
    # model_name None: the metadata's model_name (served_name).
    parser.set_defaults(model_name=None, enable_latency_logging=False)
    return parser


def read_settings(args: argparse.Namespace) -> ServingSettings:
    """The environment's settings (read once, here) with the command line's limit flags on top.

    Args:
        args: the parsed command line.

    Returns:
        The ServingSettings; SETTING_ERRORS for a bad environment value.
    """
    settings = ServingSettings.from_env(os.environ)
    return dataclasses.replace(settings, limits=settings.limits.with_args(args))


SETTING_ERRORS = (SettingsError, LimitsConfigError, InferenceLogConfigError)  # LimitsConfigError: flags that break a rule together


def check_port_free(host: str, port: int, what: str) -> None:
    """OSError with advice when ``port`` is taken: grpcio would only print a C++ error and a traceback.

    Args:
        host: the address to bind.
        port: the port.
        what: HTTP or gRPC, for the message.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like the servers: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise OSError(exc.errno, f"{what} port {port} on {host} is already in use: stop what holds it "
                                     f"or pick another with --{what.lower()}_port") from None


def served_name(requested: str | None, model_dir: str) -> str:
    """The name to serve under: ``requested`` (--model_name) when given, else the metadata's model_name.

    A requested name that differs from the metadata's is served, with a warning naming both: a
    KServe ServingRuntime passes the InferenceService's name, which clients call.

    Args:
        requested: --model_name, None when not given.
        model_dir: the model folder (its metadata.json).

    Returns:
        The name clients call.
    """
    try:
        recorded = read_metadata(Path(model_dir)).get("model_name")
    except ArtifactError:
        recorded = None  # load() refuses the folder and says why; the name does not matter then
    if requested is None:
        return str(recorded or DEFAULT_MODEL_NAME)
    if recorded and recorded != requested:
        log.warning("--model_name %s differs from the metadata's model_name %s: serving it as %s "
                    "(omit --model_name to serve it as %s)", requested, recorded, requested, recorded,
                    extra={"model_name": requested, "metadata_model_name": recorded})
    return requested


def serve(args: argparse.Namespace, model_dir: str, log_config: dict, settings: ServingSettings,
          traffic: InferenceLogSettings | None = None) -> None:
    """Load the model (a failed load still serves, not ready) and run the servers until stopped.

    Args:
        args: the parsed command line.
        model_dir: the model folder.
        log_config: uvicorn's logging configuration (logs.configure).
        settings: the SERVING_* settings, read once.
        traffic: inference-log settings, None when the log is off.
    """
    name = served_name(args.model_name, model_dir)
    traffic_log = InferenceLog(traffic) if traffic else None
    model = SklearnModel(name, model_dir, settings.batching_config, settings.fast_path, traffic_log)
    model.load()  # on failure the server still starts, not ready, and the log says why
    ModelServer(
        host=args.host, limits=settings.limits, fast_route=settings.fast_route, offload=settings.offload,
        grpc_on_core=settings.grpc_core, log_config=log_config, http_port=args.http_port, grpc_port=args.grpc_port,
        workers=args.workers,
        max_threads=args.max_threads, max_asyncio_workers=args.max_asyncio_workers,
        enable_grpc=args.enable_grpc, enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging, event_loop=args.event_loop,
    ).start([model])


def main() -> int:
    """``python -m serving``: parse, read the settings once, check the ports, fetch the model if given a URI, serve.

    Returns:
        The exit status: 0 after a clean stop, 1 when the model URI cannot be downloaded, 2 for a bad setting or a
        taken port.
    """
    parser = build_parser()
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers {args.workers} is invalid: expected at least 1 process")
    try:
        settings = read_settings(args)
        traffic = InferenceLogSettings.from_settings(settings)  # None: the inference log is off
    except SETTING_ERRORS as exc:
        logs.configure()  # the default level: the refusal is one structured line like every other
        log.error("bad setting: %s", exc)
        return 2
    log_config = logs.configure(settings.log_level, settings.access_log)
    serving_settings.warn_unknown(log)
    try:
        check_port_free(args.host, args.http_port, "HTTP")
        if args.enable_grpc:
            check_port_free(args.host, args.grpc_port, "gRPC")
    except OSError as exc:
        log.error("cannot listen: %s", exc.strerror or exc)
        return 2
    if not args.model_uri:
        serve(args, args.model_dir, log_config, settings, traffic)
        return 0
    with tempfile.TemporaryDirectory(prefix="serving-model-") as folder:
        try:
            model_dir = str(download(args.model_uri, folder))
        except ArtifactError as exc:
            log.error("no model to serve: %s", exc, extra={"model_uri": args.model_uri})
            return 1
        serve(args, model_dir, log_config, settings, traffic)
    return 0


if __name__ == "__main__":
    sys.exit(main())
