"""Run the V2 model server; this is what a KServe ServingRuntime starts.

    python -m serving --model_dir /mnt/models --model_name diabetes-rf --http_port 8080
    python -m serving --model_uri s3://models/diabetes-rf/production/ --host 127.0.0.1   # local

gRPC listens on --grpc_port (8081). kserve's own flags (--workers, --enable_grpc,
--enable_docs_url true, ...) work as in any kserve server; kserve reads them from the
command line when it is imported, which is why this module takes no other argv.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
import tempfile

from kserve import model_server  # parses sys.argv for kserve's flags on import

from serving import limits, logs, offload
from serving.artifact import ArtifactError, download
from serving.batching import BatchingConfig, BatchingConfigError
from serving.engine import EngineConfigError, fast_path_enabled
from serving.inference_log import InferenceLog, InferenceLogConfigError, InferenceLogSettings
from serving.limits import Limits, LimitsConfigError
from serving.model import DEFAULT_MODEL_NAME, SklearnModel
from serving.offload import OffloadConfigError
from serving.routes import RouteConfigError, fast_route_enabled
from serving.server import CLUSTER_HOST, ModelServer

log = logging.getLogger("serving")

DEFAULT_MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts storageUri


def build_parser() -> argparse.ArgumentParser:
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
    parser.set_defaults(model_name=DEFAULT_MODEL_NAME, enable_latency_logging=False)
    return parser


class Settings(argparse.Namespace):
    """Everything read from the environment, checked before anything starts."""


def read_settings(args: argparse.Namespace) -> Settings:
    """The environment's settings with the command line's on top; a ValueError subclass names the bad one."""
    settings = Settings()
    settings.fast_path = fast_path_enabled()
    settings.batching = BatchingConfig.from_env()
    settings.fast_route = fast_route_enabled()
    settings.limits = Limits.from_env(os.environ).with_args(args)
    settings.offload = offload.settings()
    settings.inference_log = InferenceLogSettings.from_env()
    return settings


SETTING_ERRORS = (EngineConfigError, BatchingConfigError, RouteConfigError, LimitsConfigError, OffloadConfigError,
                  InferenceLogConfigError)


def check_port_free(host: str, port: int, what: str) -> None:
    """OSError with advice when ``port`` is taken: grpcio would only print a C++ error and a traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like the servers: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise OSError(exc.errno, f"{what} port {port} on {host} is already in use: stop what holds it "
                                     f"or pick another with --{what.lower()}_port") from None


def serve(args: argparse.Namespace, model_dir: str, log_config: dict, settings: Settings) -> None:
    traffic_log = InferenceLog(settings.inference_log) if settings.inference_log else None
    model = SklearnModel(args.model_name, model_dir, settings.batching, settings.fast_path, traffic_log)
    model.load()  # on failure the server still starts, not ready, and the log says why
    ModelServer(
        host=args.host, limits=settings.limits, fast_route=settings.fast_route, offload=settings.offload,
        log_config=log_config, http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers,
        max_threads=args.max_threads, max_asyncio_workers=args.max_asyncio_workers,
        enable_grpc=args.enable_grpc, enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging, event_loop=args.event_loop,
    ).start([model])


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers {args.workers} is invalid: expected at least 1 process")
    try:
        log_config = logs.configure()
    except logs.LogConfigError as exc:  # logging is not set up yet: one plain line
        print(f"bad setting: {exc}", file=sys.stderr)
        return 2
    try:
        settings = read_settings(args)
    except SETTING_ERRORS as exc:
        log.error("bad setting: %s", exc)
        return 2
    try:
        check_port_free(args.host, args.http_port, "HTTP")
        if args.enable_grpc:
            check_port_free(args.host, args.grpc_port, "gRPC")
    except OSError as exc:
        log.error("cannot listen: %s", exc.strerror or exc)
        return 2
    if not args.model_uri:
        serve(args, args.model_dir, log_config, settings)
        return 0
    with tempfile.TemporaryDirectory(prefix="serving-model-") as folder:
        try:
            model_dir = str(download(args.model_uri, folder))
        except ArtifactError as exc:
            log.error("no model to serve: %s", exc, extra={"model_uri": args.model_uri})
            return 1
        serve(args, model_dir, log_config, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
