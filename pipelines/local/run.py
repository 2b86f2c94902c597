"""`make run`, first half: run the compiled pipeline locally and say what came of it.

    python -m pipelines.local.run [--param name=value ...] [--verbose] [--then-serve "SERVE FLAGS"]

With --then-serve (what `make run` does, with SERVE_ARGS), a finished run goes on to serve the
production model of the run's own bucket and model_name (pipelines.local.serve --demo), so
`--param model_name=bc-rf` serves bc-rf, not the default model.

Object store: MINIO_ENDPOINT (with MINIO_ACCESS_KEY / MINIO_SECRET_KEY, MINIO_SECURE) when set,
used unchanged; otherwise a local `rclone serve s3` on 127.0.0.1:9000 (LOCAL_S3_PORT overrides)
keeping its data in .data/s3, so a later `make serve` and the next `make run` find the model.
A source with credentials (user:password@, a signed query, a token in the fragment) may be given
as --param source=... or in SOURCE_URL: the steps get the full URL only through SOURCE_URL, the
parameter, the run log and the steps' command lines carry it redacted.
Exit status: 0 when the run finished, whether the gate deployed the model or not; 1 when a step
failed; 2 on bad parameters or environment, found before the first step (pipelines.local.preflight).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shlex
import sys
from pathlib import Path
from typing import Iterator, TextIO

from components.artifacts import read_json
from components.errors import PipelineError
from components.sources import SOURCE_URL_ENV, has_secrets, redact_source, secret_parts
from components.selection import table as selection_table
from pipelines import params
from pipelines.local import preflight
from pipelines.local.runner import DEFAULT_PIPELINE_ROOT, Event, LocalRun, run_compiled
from pipelines.local.s3server import DEFAULT_DATA_DIR, DEFAULT_PORT, LocalS3Error
from pipelines.local.store import object_store
from pipelines.training_pipeline import PACKAGE_PATH, PIPELINE_NAME

STORE_PARAMS = ("minio_endpoint", "minio_secure")
# kfp.local ignores kfp-kubernetes settings: the Secret is a cluster-only parameter.
CLUSTER_ONLY_PARAMS = ("minio_secret", "source_secret")
# kfp.local runs have no cluster to roll out to: run_compiled turns the deploy step off, and
# `make deploy VERSION=N` rolls a pushed version out from here.
DEPLOY_PARAMS = ("deploy_isvc", "deploy_namespace", "deploy_canary_percent", "deploy_timeout_s")
EXIT_OK, EXIT_STEP_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class Progress:
    """One line per step, '  ingest          ... ok 1.6 s', completed when the step ends; its warnings below it.

    Tasks that run side by side (a dsl.ParallelFor) each get their own line, with their own time,
    when they end: the line opened by the first becomes their heading.
    """

    WIDTH = 15  # the longest step name, plan-candidates

    def __init__(self, out: TextIO | None = None) -> None:
        # Bound now: while the pipeline runs, sys.stdout is the runner's log tap.
        self._out = out if out is not None else sys.stdout
        self._warnings: dict[str, list[str]] = {}
        self._running: set[str] = set()
        self._open: str | None = None  # the task whose line waits for its "ok"

    def __call__(self, event: Event) -> None:
        task = event.task or event.step
        if event.kind == "start":
            if self._running and self._open is not None:
                self._write(" in parallel:\n")
                self._open = None
            elif not self._running:
                self._write(f"  {event.step:<{self.WIDTH}} ...")
                self._open = task
            self._running.add(task)
        elif event.kind == "warning":
            self._warnings.setdefault(task, []).append(event.message)
        elif event.kind == "end":
            status = "ok" if event.status == "SUCCESS" else "FAILED"
            self._running.discard(task)
            if self._open == task:
                self._write(f" {status} {event.seconds:.1f} s\n")
                self._open = None
            else:
                self._write(f"    {event.label or event.step:<{self.WIDTH}} {status} {event.seconds:.1f} s\n")
            for message in self._warnings.pop(task, []):
                self._write(f"    ! {message}\n")

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()


def _shown(path: Path | str | None) -> str:
    """Paths under the working directory are shown relative to it."""
    if path is None:
        return "-"
    with contextlib.suppress(ValueError):
        return str(Path(path).resolve().relative_to(Path.cwd()))
    return str(path)


def _production_state(uri: str, production: dict | None) -> str:
    """'unchanged (vN)' only when production/ matches production.json; otherwise what is wrong with it."""
    if not production:
        return f"{uri} unchanged (no production model yet)"
    if production.get("copy_consistent") is False:
        return (f"production.json names v{production['version']}, but {production.get('copy_state')}: "
                "`make models` repairs it (so does the next push)")
    return f"{uri} unchanged (v{production['version']})"


def run_folder(root: Path | str) -> Path:
    """This run's own output folder: concurrent runs never read each other's steps.

    Args:
        root: the pipeline root.

    Returns:
        ``<root>/run-<local time>-<pid>`` (not created).
    """
    return Path(root) / f"run-{dt.datetime.now():%Y%m%d-%H%M%S-%f}-{os.getpid()}"


def summarize(run: LocalRun, values: dict) -> int:
    """Print metrics, the decision and the model URI (errors to stderr).

    Args:
        run: the finished local run.
        values: the run's parameters.

    Returns:
        The exit status: EXIT_OK, or EXIT_STEP_FAILED (after naming the failed step and the log).
    """
    def fail(*lines: str) -> int:
        for line in (*lines, f"full log: {_shown(run.log_path)}"):
            print(line, file=sys.stderr)
        return EXIT_STEP_FAILED

    if not run.ok:
        step = run.failed_step or "a step"
        pushed = ("push failed part-way: production is as it was (or the error says how to restore it)"
                  if step == "push" else "nothing was pushed")
        return fail(f"error: {step} failed: {run.error or 'see the log'}", pushed)
    evaluation_path = run.artifact("evaluate", "evaluation")
    if evaluation_path is None:
        return fail("error: the run finished without an evaluation")
    evaluation = read_json(evaluation_path, "evaluation")
    shown = " | ".join(f"{name} {'n/a' if v is None else f'{v:.4f}'}" for name, v in evaluation["metrics"].items())
    selection_path = run.artifact("train", "selection")
    if selection_path is not None:
        print("candidates (cross-validated on the training split):")
        print(selection_table(read_json(selection_path, "selection")), end="")
    print(f"metrics ({evaluation['test_rows']} held-out rows): {shown}")
    production = f"s3://{values['bucket']}/{values['model_name']}/production/"
    pushed = run.parameters("push")
    if evaluation["deploy"] and pushed and pushed.get("promoted") is False:
        # Another run moved production between evaluate and push, to a model this one does not beat.
        print(f"decision: KEPT, NOT PROMOTED - production changed during the run: {pushed['reason']}")
        print(f"model:      {pushed['model_uri']}  (kept, not served)")
        print(f"production: {production} unchanged by this run")
    elif evaluation["deploy"] and pushed:
        print(f"decision: DEPLOYED - {evaluation['reason']}")
        print(f"model:      {pushed['model_uri']}")
        print(f"production: {pushed['production_uri']}  (InferenceService storageUri)")
    elif evaluation.get("nothing_new"):
        print(f"decision: NOTHING NEW TO LEARN - {evaluation['reason']}; nothing pushed")
        print(f"production: {_production_state(production, evaluation.get('production'))}")
    else:
        print(f"decision: NOT DEPLOYED - {evaluation['reason']}")
        print(f"production: {_production_state(production, evaluation.get('production'))}")
    print(f"report:     {_shown(run.artifact('evaluate', 'report'))}")
    return EXIT_OK


def model_to_serve(run: LocalRun, values: dict) -> str | None:
    """The production folder of the run's bucket/model_name, or None when the run left none to serve.

    Args:
        run: the finished run.
        values: the run's parameters (bucket, model_name).

    Returns:
        s3://bucket/model_name/production/ when this run pushed or production existed before; else None.
    """
    evaluation_path = run.artifact("evaluate", "evaluation")
    evaluation = read_json(evaluation_path, "evaluation") if evaluation_path is not None else {}
    if run.parameters("push") is None and not evaluation.get("production"):
        return None
    return f"s3://{values['bucket']}/{values['model_name']}/production/"


def then_serve(model_uri: str | None, serve_args: str, data_dir: str, port: int) -> int:
    """Serve the run's production model as `make serve` would, with the run's object store.

    Args:
        model_uri: what model_to_serve found; None prints why nothing is served.
        serve_args: pipelines.local.serve's flags (SERVE_ARGS); they come last, so an explicit
            --model-uri, --data-dir or --s3-port there wins.
        data_dir: the run's local S3 data folder.
        port: the run's local S3 port.

    Returns:
        pipelines.local.serve's exit status (0 when there was nothing to serve).
    """
    if model_uri is None:
        print("nothing to serve: this model has no production version yet (the gate kept this one out); "
              "`make serve SERVE_ARGS=\"--model-uri s3://...\"` serves another", flush=True)
        return EXIT_OK
    from pipelines.local import serve  # no kfp needed, and serve's own signal handling from here on

    return serve.main(["--demo", "--model-uri", model_uri, "--data-dir", str(data_dir), "--s3-port", str(port),
                       *shlex.split(serve_args)])


@contextlib.contextmanager
def source_credentials(overrides: dict) -> Iterator[list[str]]:
    """Move a source's credentials out of the parameter into SOURCE_URL for the steps; yields what to scrub.

    The parameter becomes the redacted URL (kfp.local prints it and puts it on each step's command
    line); the steps inherit SOURCE_URL and ingest joins the two (components.sources.resolve_source).

    Args:
        overrides: the --param values; its 'source' is replaced by the redacted URL.

    Yields:
        The secrets to scrub from logs ([] when the source has none).
    """
    full = str(overrides.get("source") or os.environ.get(SOURCE_URL_ENV) or "").strip()
    if not has_secrets(full):
        yield []
        return
    overrides["source"] = redact_source(full)
    previous = os.environ.get(SOURCE_URL_ENV)
    os.environ[SOURCE_URL_ENV] = full
    try:
        yield secret_parts(full)
    finally:
        if previous is None:
            os.environ.pop(SOURCE_URL_ENV, None)
        else:
            os.environ[SOURCE_URL_ENV] = previous


def _local_port() -> int:
    text = os.environ.get("LOCAL_S3_PORT", str(DEFAULT_PORT))
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise params.ParamError(f"LOCAL_S3_PORT={text!r} is invalid: expected a TCP port number")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """``make run``: run the compiled pipeline with kfp.local against the local (or your) S3 store and summarize.

    Args:
        argv: the command line without the program name (default sys.argv[1:]).

    Returns:
        EXIT_OK, EXIT_STEP_FAILED when a step failed, EXIT_BAD_INPUT for bad parameters or an unusable store.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a pipeline parameter (repeatable), e.g. --param threshold=0.3")
    parser.add_argument("--verbose", action="store_true", help="show kfp.local's full logs")
    parser.add_argument("--package", default=str(PACKAGE_PATH), help="compiled pipeline YAML (default: %(default)s)")
    parser.add_argument("--pipeline-root", default=str(DEFAULT_PIPELINE_ROOT),
                        help="where step outputs go, one run-<time>-<pid>/ folder per run")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="local S3 data folder")
    parser.add_argument("--then-serve", metavar="SERVE_FLAGS", default=None,
                        help="after a finished run, serve its model_name's production model with "
                             "python -m pipelines.local.serve --demo SERVE_FLAGS (make run passes SERVE_ARGS)")
    args = parser.parse_args(argv)
    if args.then_serve is not None:  # a typo in SERVE_ARGS is found now, not after the training
        from pipelines.local import serve

        try:
            serve.build_parser().parse_args(["--demo", *shlex.split(args.then_serve)])
        except ValueError as exc:  # shlex: an unclosed quote
            print(f"error: SERVE_ARGS / --then-serve {args.then_serve!r} is not a command line: {exc}",
                  file=sys.stderr)
            return EXIT_BAD_INPUT

    try:
        overrides = params.parse_overrides(args.param, args.package)
        if set(overrides) & set(STORE_PARAMS):
            raise params.ParamError("minio_endpoint/minio_secure come from MINIO_ENDPOINT/MINIO_SECURE locally: "
                                    "set those (with MINIO_ACCESS_KEY/MINIO_SECRET_KEY) instead")
        if set(overrides) & set(CLUSTER_ONLY_PARAMS):
            raise params.ParamError("minio_secret and source_secret name Kubernetes Secrets, which kfp.local does "
                                    "not read: locally the keys come from MINIO_ACCESS_KEY/MINIO_SECRET_KEY and "
                                    f"the full source URL from {SOURCE_URL_ENV} (or --param source=...)")
        if set(overrides) & set(DEPLOY_PARAMS):
            raise params.ParamError("the deploy_* parameters drive the cluster's deploy step, which local runs skip: "
                                    "after the run, `make deploy VERSION=N` rolls a version out to an InferenceService")
        with source_credentials(overrides) as secrets:
            values = params.effective(overrides, args.package)
            params.check(values)
            port = _local_port()
            with object_store(Path(args.data_dir), port) as (endpoint, secure, where):
                values.update(minio_endpoint=endpoint, minio_secure=secure)
                print(f"==> object store: {where}")
                preflight.check(values)  # before the first step: a typo or a dead store costs seconds
                print(f"==> {PIPELINE_NAME}: {_shown(args.package)} on kfp.local (steps run as local processes)")
                # With --verbose, kfp's own log shows each step: progress lines would interleave with it.
                progress = (lambda event: None) if args.verbose else Progress()
                run = run_compiled(args.package, values, run_folder(args.pipeline_root), args.verbose, progress,
                                   secrets=secrets)
                print(f"==> finished in {run.seconds:.1f} s")
                code = summarize(run, values)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except LocalS3Error as exc:
        print(f"error: local S3 server: {exc} (set LOCAL_S3_PORT to another port, or stop the other server)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if code != EXIT_OK or args.then_serve is None:
        return code
    # After the run's own S3 server stopped: serve starts one on the same folder and port.
    return then_serve(model_to_serve(run, values), args.then_serve, args.data_dir, port)


if __name__ == "__main__":
    sys.exit(main())
