"""Run the compiled pipeline YAML with kfp.local, reporting steps instead of KFP's log dumps.

kfp.local prints every task's full executor input (in ANSI colour) to stdout. Here stdout is
tapped for the run: everything goes to a log file, and only step starts, step ends, warnings
and the failing step's exception reach the caller, as events. verbose=True echoes it all too.
kfp.local ignores the kfp-kubernetes settings (the Secret) and base_image: steps inherit this
process's environment and run in this interpreter (SubprocessRunner(use_venv=False)).
Secrets given to run_compiled are scrubbed from every line before it reaches the log or the
echo, and the log and every step output are created owner-only (mode 0600 / 0700).
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import io
import json
import logging
import os
import re
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from kfp import components, local

# kfp.local's own default; `make clean` removes it (the object store in .data/ stays).
DEFAULT_PIPELINE_ROOT = Path("local_outputs")
# The parameter that names the InferenceService to roll out to: empty turns the deploy step off,
# and a local run has no cluster to roll out to (`make deploy VERSION=N` does that from here).
DEPLOY_SWITCH = "deploy_isvc"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '([^']+)'")
_END = re.compile(r"Task '([^']+)' finished with status (\w+)")
_STEP_LOG = re.compile(r"\[KFP Executor [^\]]* (WARNING|ERROR|CRITICAL)\]: (.*)")
REDACTED = "***"
_TRACEBACK = "Traceback (most recent call last):"
# The line a traceback ends with, "  components.errors.ObjectStoreUnreachable: cannot reach ...": the
# last one of a step is what it died of (a chained cause such as urllib3's MaxRetryError comes first).
_EXCEPTION = re.compile(r"^\s*((?:[A-Za-z_]\w*\.)*[A-Z]\w*): (.+)$")
# urllib3 logs each retry as a WARNING before the step's own, translated error says it all.
_NOISE = ("Retrying (Retry(",)


# A step inside a dsl.ParallelFor writes its outputs under for-loop-<n>-iteration-<i>/<step>/: its index.
_ITERATION = re.compile(r"/for-loop-\d+-iteration-(\d+)/([^/\s\"']+)/")


@dataclass(frozen=True)
class Event:
    kind: str  # "start" | "end" | "warning"
    step: str
    status: str = ""  # "SUCCESS" | "FAILURE" for "end"
    seconds: float = 0.0
    message: str = ""
    # One run of a step: the tasks of a dsl.ParallelFor share the step's name, not this.
    task: str = ""
    label: str = ""  # for "end": "cross-validate [2]" (its ParallelFor index) when known, else the step


@dataclass
class _Task:
    """A task kfp.local is running, in the thread that runs it (ParallelFor tasks run in threads)."""

    step: str
    task: str
    started: float
    label: str = ""
    in_traceback: bool = False


@dataclass
class LocalRun:
    ok: bool
    seconds: float
    log_path: Path
    run_dir: Path | None
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds (its last task), in order of completion
    tasks: list[tuple[str, float]] = field(default_factory=list)  # (label, seconds) of every task, as they ended
    # step -> seconds from its first start to its last end: for a ParallelFor's step, the whole fan-out.
    phases: dict[str, float] = field(default_factory=dict)
    failed_step: str | None = None
    error: str | None = None  # the failing step's last exception line

    def parameters(self, step: str) -> dict[str, Any] | None:
        """A finished step's output parameters; None when the step did not run (e.g. a gated branch).

        Args:
            step: the task's name in the pipeline.

        Returns:
            Output name -> value, or None.
        """
        path = self.run_dir / step / "executor_output.json" if self.run_dir else None
        if path is None or not path.exists():
            return None
        return json.loads(path.read_text()).get("parameterValues", {})

    def artifact(self, step: str, name: str) -> Path | None:
        """A finished step's output artifact on disk.

        Args:
            step: the task's name in the pipeline.
            name: the output's name.

        Returns:
            Its path, or None when the step did not run or wrote no such output.
        """
        path = self.run_dir / step / name if self.run_dir else None
        return path if path is not None and path.exists() else None


class _Tap(io.TextIOBase):
    """A stdout stand-in: every line to the log file, recognised lines to the event callback.

    kfp.local runs the tasks of a dsl.ParallelFor in threads that all print here, so lines are
    assembled per thread (print writes a line's text and its newline separately) and a task is
    the thread that printed its "Executing task": each task gets its own timer, warnings and
    traceback, though the tasks of one ParallelFor share a step name.
    """

    def __init__(self, log_file: TextIO, echo: TextIO | None, on_event: Callable[[Event], None],
                 secrets: list[str] | tuple[str, ...] = (), clock: Callable[[], float] = time.perf_counter) -> None:
        self._log, self._echo, self._on_event, self._clock = log_file, echo, on_event, clock
        self._secrets = sorted(secrets, key=len, reverse=True)  # a longer secret may contain a shorter one
        self._lock = threading.RLock()
        self._pending: dict[int, str] = {}  # thread -> its unfinished line
        self._running: dict[int, _Task] = {}  # thread -> the task it runs
        self._starts: dict[str, int] = {}  # step -> tasks started so far
        self.steps: dict[str, float] = {}
        self.tasks: list[tuple[str, float]] = []
        self._first: dict[str, float] = {}
        self.phases: dict[str, float] = {}
        self.step_errors: dict[str, str] = {}
        self.failed: str | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        # Whole lines only: a secret split across two writes is still one line to scrub.
        with self._lock:
            thread = threading.get_ident()
            *lines, self._pending[thread] = (self._pending.get(thread, "") + text).split("\n")
            for line in lines:
                self._emit(self._scrub(line) + "\n")
        return len(text)

    def _scrub(self, line: str) -> str:
        for secret in self._secrets:
            line = line.replace(secret, REDACTED)
        return line

    def _emit(self, line: str) -> None:
        self._log.write(line)
        if self._echo is not None:
            self._echo.write(line)
        self._line(_ANSI.sub("", line.rstrip("\n")))

    def flush(self) -> None:
        with self._lock:
            self._log.flush()
            if self._echo is not None:
                self._echo.flush()

    def close_line(self) -> None:
        """The last line of each thread, when it has no newline."""
        with self._lock:
            for thread, line in list(self._pending.items()):
                if line:
                    self._pending[thread] = ""
                    self._emit(self._scrub(line))
        self.flush()

    def _line(self, line: str) -> None:
        thread = threading.get_ident()
        current = self._running.get(thread)
        if match := _START.search(line):
            step = match.group(1)
            self._starts[step] = self._starts.get(step, 0) + 1
            task = step if self._starts[step] == 1 else f"{step}#{self._starts[step]}"
            self._running[thread] = _Task(step, task, self._clock())
            self._first.setdefault(step, self._running[thread].started)
            self._on_event(Event("start", step, task=task))
        elif match := _END.search(line):
            step, status = match.groups()
            ended = self._running.pop(thread, None)
            if ended is None or ended.step != step:  # not seen starting in this thread: time it from nothing
                ended = _Task(step, step, self._clock())
            now = self._clock()
            seconds = now - ended.started
            label = ended.label or (step if self._starts.get(step, 1) == 1 else ended.task.replace("#", " #"))
            self.steps[step] = seconds
            self.tasks.append((label, seconds))
            self.phases[step] = now - self._first.get(step, now)
            if status != "SUCCESS":
                self.failed = step
            self._on_event(Event("end", step, status, seconds, task=ended.task, label=label))
        elif current is None:
            return
        elif (match := _ITERATION.search(line)) and match.group(2) == current.step and not current.label:
            current.label = f"{current.step} [{match.group(1)}]"
        elif match := _STEP_LOG.search(line):
            if not match.group(2).startswith(_NOISE):
                self._on_event(Event("warning", current.step, message=match.group(2), task=current.task))
        elif line.strip() == _TRACEBACK:
            current.in_traceback = True
        elif current.in_traceback and (match := _EXCEPTION.match(line)):
            self.step_errors[current.step] = f"{match.group(1).rsplit('.', 1)[-1]}: {match.group(2)}"


def _ignore(_: Event) -> None:
    pass


@contextlib.contextmanager
def _umask(mask: int):
    """Files the steps (subprocesses, which inherit it) and kfp.local create meanwhile get at most ~mask."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _owner_only(path: Path) -> TextIO:
    """A new text file with mode 0600 from its first byte (not chmod after the fact)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w")


def local_arguments(package: str | Path, arguments: dict[str, Any]) -> dict[str, Any]:
    """arguments with the deploy step off, whatever they or the YAML's defaults say.

    Args:
        package: the compiled pipeline YAML.
        arguments: the run's parameters.

    Returns:
        A copy of the arguments, the deploy switch set off when the pipeline has one.
    """
    from pipelines.params import declared

    return {**arguments, DEPLOY_SWITCH: ""} if DEPLOY_SWITCH in declared(package) else dict(arguments)


class _SharedContext:
    """One of kfp.local's global-state context managers, made safe for threads that overlap.

    The first thread in enters the original (which saves the global state and sets its own); the
    last one out exits it (which restores what was saved). Threads in between share that state.
    """

    def __init__(self, original: Callable[..., contextlib.AbstractContextManager]) -> None:
        self._original = original
        self._lock = threading.Lock()
        self._users = 0
        self._entered: contextlib.AbstractContextManager | None = None

    @contextlib.contextmanager
    def __call__(self, *args: Any, **kwargs: Any):
        with self._lock:
            if self._users == 0:
                self._entered = self._original(*args, **kwargs)
                self._entered.__enter__()
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._entered.__exit__(None, None, None)


@contextlib.contextmanager
def kfp_globals_guarded():
    """kfp.local's swaps of process-wide state made safe for a dsl.ParallelFor, and undone after.

    Each task swaps builtins.print (to indent its output) and the root logger's handlers and level
    (to log to stdout at INFO), restoring what it saved; the tasks of a ParallelFor run in threads,
    so one task's restore undid another's set-up while that one still ran. Seen: a task's
    "finished with status" line dropped (the level restored to WARNING), so the progress lost that
    task and showed the next steps as if still in parallel; print left indented for the rest of the
    process; a handler left writing to the run's closed stdout tap ("ValueError: I/O operation on
    closed file" on every later log line of bench/pipeline_bench.py). During the run the contexts
    are shared (_SharedContext); afterwards print, the handlers and the level are as they were.
    """
    from kfp.local import logging_utils

    originals = logging_utils.local_logger_context, logging_utils.indented_print
    print_before = builtins.print
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logging_utils.local_logger_context = _SharedContext(originals[0])
    logging_utils.indented_print = _SharedContext(originals[1])
    try:
        yield
    finally:
        logging_utils.local_logger_context, logging_utils.indented_print = originals
        builtins.print = print_before
        root.handlers[:] = handlers
        root.setLevel(level)


def _run_container_keeping_its_status(client, image: str, command: list[str], volumes: dict[str, Any],
                                      **container_run_args: Any) -> int:
    """kfp.local's docker_task_handler.run_docker_container, reading the exit status before removal.

    kfp 2.17 starts each step's container with auto_remove=True, so a step that fails fast is often
    gone before its status is read, and that NotFound is taken for exit 0: the failed step passes,
    its dependents start and die on its missing outputs (kubeflow/pipelines#13332, unmerged fixes
    #13381 and #13907). Here the container stays until its log is read and its status known, and is
    removed after that whatever happened (Ctrl-C included); a failed removal is logged, never
    turned into the step's status.
    """
    import docker
    from kfp.local import docker_task_handler

    image = docker_task_handler.add_latest_tag_if_not_present(image)
    if not any(image in found.tags + found.attrs["RepoDigests"] for found in client.images.list()):
        print(f"Pulling image {image!r}")
        client.images.pull(image)
    container_run_args.pop("auto_remove", None)  # removed below, once its status is read
    container = client.containers.run(image=image, command=command, detach=True, stdout=True,
                                      stderr=True, volumes=volumes, **container_run_args)
    try:
        for chunk in container.logs(stream=True, follow=True):
            print(chunk.decode(errors="replace"), end="")
        return container.wait()["StatusCode"]
    finally:
        try:
            container.remove(force=True)
        except docker.errors.APIError as exc:
            logging.getLogger(__name__).warning("could not remove step container %s: %s", container.id, exc)


@contextlib.contextmanager
def kfp_docker_status_kept():
    """Within it, kfp.local.DockerRunner reports a step's real exit status (see above), then as before."""
    from kfp.local import docker_task_handler

    original = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = _run_container_keeping_its_status
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original


def run_compiled(
    package: str | Path,
    arguments: dict[str, Any],
    pipeline_root: str | Path = DEFAULT_PIPELINE_ROOT,
    verbose: bool = False,
    on_event: Callable[[Event], None] = _ignore,
    secrets: list[str] | tuple[str, ...] = (),
) -> LocalRun:
    """Run the compiled pipeline once; step failures come back in LocalRun, not as exceptions.

    Args:
        package: the compiled pipeline YAML.
        arguments: the run's parameters (the deploy step is forced off).
        pipeline_root: where the run's folder is created.
        verbose: echo kfp.local's full log.
        on_event: called with each step's start and end, for progress lines.
        secrets: strings (a source's credentials) replaced by *** in the log and the verbose echo.

    Returns:
        The LocalRun: its folder, log, per-step outcome.
    """
    arguments = local_arguments(package, arguments)
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    log_path = root / f"run-{dt.datetime.now():%Y%m%d-%H%M%S-%f}.log"
    pipeline = components.load_component_from_file(str(package))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    started = time.perf_counter()
    # Step outputs and the log may hold what a step printed: owner-only, like a credentials file.
    with _umask(0o077), _owner_only(log_path) as log_file, warnings.catch_warnings():
        # Expected here: kfp.local runs the steps in this interpreter whatever the image is.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        # ...and the cluster-only settings (resources) do nothing locally.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        tap = _Tap(log_file, sys.stdout if verbose else None, on_event, secrets)
        ok = True
        with contextlib.redirect_stdout(tap), kfp_globals_guarded():
            try:
                pipeline(**arguments)
            except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE ..."
                print(f"{exc}")
                ok = False
        tap.close_line()
    new = sorted(p for p in set(root.iterdir()) - before if p.is_dir())
    failed = tap.failed if not ok else None
    return LocalRun(
        ok=ok,
        seconds=time.perf_counter() - started,
        log_path=log_path,
        run_dir=new[-1] if new else None,
        steps=dict(tap.steps),
        tasks=list(tap.tasks),
        phases=dict(tap.phases),
        failed_step=failed,
        error=tap.step_errors.get(failed) if failed else None,
    )
