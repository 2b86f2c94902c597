"""Run the V2 model server; this is what a KServe ServingRuntime starts.

    python -m serving --model_dir /mnt/models --model_name diabetes-rf --http_port 8080
    python -m serving --model_uri s3://models/diabetes-rf/production/ --host 127.0.0.1   # local

gRPC listens on --grpc_port (8081). kserve's own flags (--workers, --enable_grpc,
--enable_docs_url true, ...) work as in any kserve server; kserve reads them from the
command line when it is imported, which is why this module takes no other argv.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile

from kserve import model_server  # parses sys.argv for kserve's flags on import

from serving import logs
from serving.artifact import ArtifactError, download
from serving.batching import BatchingConfig, BatchingConfigError
from serving.engine import EngineConfigError, fast_path_enabled
from serving.model import DEFAULT_MODEL_NAME, SklearnModel
from serving.routes import DEFAULT_MAX_BODY_BYTES, RouteConfigError, fast_route_enabled
from serving.server import CLUSTER_HOST, ModelServer

log = logging.getLogger("serving")

DEFAULT_MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts storageUri


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


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
    parser.add_argument("--max_body_bytes", type=_positive_int, default=DEFAULT_MAX_BODY_BYTES,
                        help="larger inference bodies get HTTP 413 (default: %(default)s)")
    # One line per request would cost more than the request; SERVING_ACCESS_LOG=1 turns it on.
    parser.set_defaults(model_name=DEFAULT_MODEL_NAME, enable_latency_logging=False)
    return parser


def serve(args: argparse.Namespace, model_dir: str, log_config: dict, batching: BatchingConfig,
          fast_path: bool, fast_route: bool) -> None:
    model = SklearnModel(args.model_name, model_dir, batching, fast_path)
    model.load()  # on failure the server still starts, not ready, and the log says why
    ModelServer(
        host=args.host, max_body_bytes=args.max_body_bytes, fast_route=fast_route, log_config=log_config,
        http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers,
        max_threads=args.max_threads, max_asyncio_workers=args.max_asyncio_workers,
        enable_grpc=args.enable_grpc, enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging, event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
    ).start([model])


def main() -> int:
    args = build_parser().parse_args()
    log_config = logs.configure()
    try:
        fast_path = fast_path_enabled()
        batching = BatchingConfig.from_env()
        fast_route = fast_route_enabled()
    except (EngineConfigError, BatchingConfigError, RouteConfigError) as exc:
        log.error("bad setting: %s", exc)
        return 2
    if not args.model_uri:
        serve(args, args.model_dir, log_config, batching, fast_path, fast_route)
        return 0
    with tempfile.TemporaryDirectory(prefix="serving-model-") as folder:
        try:
            model_dir = str(download(args.model_uri, folder))
        except ArtifactError as exc:
            log.error("no model to serve: %s", exc, extra={"model_uri": args.model_uri})
            return 1
        serve(args, model_dir, log_config, batching, fast_path, fast_route)
    return 0


if __name__ == "__main__":
    sys.exit(main())
