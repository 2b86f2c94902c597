"""`make score`: score a CSV/Parquet file (or every one under a prefix) with the production model.

    python -m scoring INPUT [--output OUT] [--model-uri s3://models/diabetes-rf/production/]
                      [--model-version vN] [--keys id,...] [--on-bad-row fail|reject] [--chunk-rows N]

INPUT and OUT are s3:// URIs or local paths. Object store: MINIO_ENDPOINT (with MINIO_ACCESS_KEY /
MINIO_SECRET_KEY) when set; otherwise the local rclone store on .data/s3 that `make run` pushes
into (LOCAL_S3_PORT, default 9000): a file copied into .data/s3/<bucket>/ is s3://<bucket>/... .
A progress bar (rows/s, ETA) is drawn on a terminal. Exit status: 0 done, 1 scoring failed
(nothing written), 2 bad arguments or environment.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from components.artifacts import DEFAULT_MODEL_NAME
from components.errors import PipelineError

DEFAULT_BUCKET = "models"
LOCAL_PORT_ENV = "LOCAL_S3_PORT"  # as `make run` reads it
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="s3://bucket/key.csv|.parquet, an s3:// prefix, or a local file/folder")
    parser.add_argument("--output", help="output file or folder (default: beside the input, *.predictions.*)")
    parser.add_argument("--model-uri", help="model folder: s3://... or a local path "
                                            f"(default: s3://{DEFAULT_BUCKET}/{DEFAULT_MODEL_NAME}/<version>/)")
    parser.add_argument("--model-version", default="production", help="production or v<N> (default: %(default)s)")
    parser.add_argument("--keys", default="", help="comma-separated key columns copied to the output "
                                                   "(default: the row number)")
    parser.add_argument("--on-bad-row", default="fail", choices=("fail", "reject"),
                        help="fail the job, or write bad rows to *.rejects.csv (default: %(default)s)")
    parser.add_argument("--chunk-rows", type=int, default=None, help="rows read and scored at a time")
    parser.add_argument("--data-dir", default=None, help="local S3 data folder (default: .data/s3)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    return parser


@contextlib.contextmanager
def _store_environment(data_dir: str | None, needed: bool):
    """The user's MINIO_* store, else the local one `make run` uses (started only when s3:// is involved)."""
    if not needed:
        yield
        return
    from pipelines.local.store import object_store
    from pipelines.local.s3server import DEFAULT_DATA_DIR, DEFAULT_PORT

    port = os.environ.get(LOCAL_PORT_ENV, str(DEFAULT_PORT))
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise PipelineError(f"{LOCAL_PORT_ENV}={port!r} is invalid: expected a TCP port number")
    with object_store(Path(data_dir) if data_dir else DEFAULT_DATA_DIR, int(port)) as (_, _, where):
        print(f"==> object store: {where}", file=sys.stderr)
        yield


def main(argv: list[str] | None = None) -> int:
    """``python -m scoring`` (make score): score files with a registry model, print one line per input.

    Args:
        argv: the command line without the program name (default sys.argv[1:]).

    Returns:
        EXIT_OK; EXIT_FAILED for bad rows, a schema mismatch or a model that cannot load; EXIT_BAD_INPUT for other
        mistakes (arguments, paths, the local S3 server).
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from pipelines.local.s3server import LocalS3Error
    from scoring import batch
    from scoring.library import load_model
    from scoring.progress import Progress

    try:
        options = batch.BatchOptions.from_params(args.keys, args.on_bad_row,
                                                 args.chunk_rows or batch.DEFAULT_CHUNK_ROWS)
        model = args.model_uri or batch.model_uri(DEFAULT_BUCKET, DEFAULT_MODEL_NAME, args.model_version)
        needed = any(str(x).startswith("s3://") for x in (args.input, args.output, model))
        with _store_environment(args.data_dir, needed):
            predictor = load_model(model)
            print(f"==> model {predictor.name} v{predictor.version} (sha256 {predictor.sha256[:12]}) from {model}",
                  file=sys.stderr)
            progress = None if args.no_progress else (lambda label: Progress(label))
            results = batch.score(predictor, args.input, args.output, options, progress=progress)
    except LocalS3Error as exc:
        print(f"error: local S3 server: {exc} (set LOCAL_S3_PORT, or stop the other server)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except PipelineError as exc:
        from scoring.errors import BadRow, ModelLoadError, SchemaMismatch

        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED if isinstance(exc, (BadRow, SchemaMismatch, ModelLoadError)) else EXIT_BAD_INPUT
    for result in results:
        rate = result.rows / result.seconds if result.seconds else 0
        rejected = f", {result.rejected:,} rejected -> {result.rejects}" if result.rejects else ""
        speed = f" in {result.seconds:.1f} s ({rate:,.0f} rows/s)" if result.seconds else ""
        print(f"{result.input}: {result.scored:,} of {result.rows:,} rows scored{speed} -> {result.output}{rejected}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
