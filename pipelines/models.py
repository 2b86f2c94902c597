"""`make models`, `make promote VERSION=N`, `make rollback`: the registry from the command line.

    python -m pipelines.models list     [--model-name M] [--bucket B]
    python -m pipelines.models promote N [--reason TEXT] [--allow-schema-change]
    python -m pipelines.models rollback  [--reason TEXT]

The store is MINIO_ENDPOINT's when set, else the local rclone store in .data/s3 (as `make run`).
Every command first repairs a production/ that does not match production.json. Exit status
(components.cli): 0 done; 1 the store failed (unreachable, the local server did not start);
2 refused (missing, partial, other task or schema, nothing to roll back) or bad settings.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import socket
import sys
from pathlib import Path

from components import cli
from components.artifacts import DEFAULT_MODEL_NAME
from components.errors import (
    ObjectStoreAccessDenied,
    ObjectStoreConfigError,
    ObjectStoreError,
    PipelineError,
)
from components.objectstore import ObjectStore
from components.registry import Registry
from pipelines.local.run import _local_port, object_store
from pipelines.local.s3server import DEFAULT_DATA_DIR, LocalS3Error

# Refused (2): what the user asked for or set up is wrong. Failed (1): the store did not answer.
EXITS = [
    (ObjectStoreConfigError, cli.EXIT_BAD_INPUT, ""),
    (ObjectStoreAccessDenied, cli.EXIT_BAD_INPUT, ""),
    (ObjectStoreError, cli.EXIT_FAILED, ""),
    (PipelineError, cli.EXIT_BAD_INPUT, ""),
    (LocalS3Error, cli.EXIT_FAILED, "local S3 server: "),
]


def table(registry: Registry) -> str:
    """Every version with its metrics, creation time, data hash, state and the production marker.

    Args:
        registry: the model's registry.

    Returns:
        The table as text (a line saying so when there are no versions).
    """
    pointer = registry.current()
    versions = registry.versions(verify=True)
    if not versions:
        return (f"no versions of {registry.model_name} in {registry.uri(registry.model_name + '/')} yet: "
                "`make run` pushes the first (or pick another MODEL_NAME=)")
    rows = [("", "version", "state", "created_at", "primary metric", "data sha256", "run_id")]
    for info in versions:
        meta = info.metadata or {}
        primary = meta.get("primary_metric") or {}
        value = primary.get("value")
        metric = f"{primary.get('name')} {value:.4f}" if isinstance(value, (int, float)) else "-"
        data = str((meta.get("lineage") or {}).get("data_sha256") or "-")[:12]
        state = info.state if info.complete else f"{info.state}: {info.problem}"
        marker = "*" if pointer is not None and pointer.version == info.number else ""
        rows.append((marker, f"v{info.number}", state, str(meta.get("created_at", "-")), metric, data,
                     str(meta.get("run_id", "-"))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    footer = (f"production: v{pointer.version} (seq {pointer.seq}, {pointer.action} by {pointer.by}, "
              f"{pointer.moved_at})" if pointer else "production: none yet")
    return "\n".join([f"{registry.uri(registry.model_name + '/')}", *lines, footer])


def _version(text: str) -> int:
    """argparse type of VERSION: the N of v<N>."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"VERSION={text!r} is invalid: expected a version number >= 1 "
                                         "(the N of v<N> in `make models`)")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """``make models`` / ``python -m pipelines.models list|promote N|rollback``: list versions or move production.

    Args:
        argv: the command line without the program name (default sys.argv[1:]).

    Returns:
        cli.EXIT_OK, cli.EXIT_BAD_INPUT for a mistake (arguments, settings, access), cli.EXIT_FAILED when the store
        failed.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["list", "promote", "rollback"])
    parser.add_argument("version", nargs="?", type=_version, help="promote: the N of v<N>")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--bucket", default="models")
    parser.add_argument("--reason", default="", help="recorded in the history entry")
    parser.add_argument("--allow-schema-change", action="store_true")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="local S3 data folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # Its retries of a refused connection are not news: the error line below says what failed.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    by = f"{getpass.getuser()}@{socket.gethostname()}"

    def command() -> None:
        if args.command == "promote" and args.version is None:
            raise PipelineError("promote needs a version: make promote VERSION=N")
        with object_store(Path(args.data_dir), _local_port()):
            store = ObjectStore.from_env()
            registry = Registry.for_writing(store, args.bucket, args.model_name)
            with registry.guard.session():
                if registry.sync_production():
                    print(f"repaired {registry.production_uri} from production.json")
                before = registry.current()
                if args.command == "promote":
                    moved = registry.promote(args.version, by, args.reason or f"make promote VERSION={args.version}",
                                             args.allow_schema_change)
                    print(_moved(before, moved, registry))
                elif args.command == "rollback":
                    moved = registry.rollback(by, args.reason or "make rollback", args.allow_schema_change)
                    print(_moved(before, moved, registry))
                else:
                    print(table(registry))

    return cli.run(command, EXITS)


def _moved(before, after, registry: Registry) -> str:
    """One line: where production was and is, and the history entry that records the move."""
    if before is not None and after.seq == before.seq:
        return f"production: v{after.version} already, nothing moved ({registry.production_uri} serves it)"
    was = f"v{before.version}" if before is not None else "none"
    return (f"production: {was} -> v{after.version} ({after.action}, history seq {after.seq}); "
            f"{registry.production_uri} serves it")


if __name__ == "__main__":
    sys.exit(main())
