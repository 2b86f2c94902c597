"""Run the compiled pipeline YAML with kfp.local, reporting steps instead of KFP's log dumps.

kfp.local prints every task's full executor input (in ANSI colour) to stdout. Here stdout is
tapped for the run: everything goes to a log file, and only step starts, step ends, warnings
and the failing step's exception reach the caller, as events. verbose=True echoes it all too.
kfp.local ignores the kfp-kubernetes settings (the Secret) and base_image: steps inherit this
process's environment and run in this interpreter (SubprocessRunner(use_venv=False)).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import re
import sys
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
_EXCEPTION = re.compile(r"^\s*((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception)): (.+)$")


@dataclass(frozen=True)
class Event:
    kind: str  # "start" | "end" | "warning"
    step: str
    status: str = ""  # "SUCCESS" | "FAILURE" for "end"
    seconds: float = 0.0
    message: str = ""


@dataclass
class LocalRun:
    ok: bool
    seconds: float
    log_path: Path
    run_dir: Path | None
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds, in order of completion
    # step -> seconds from its first start to its last end: for a ParallelFor's step, the whole fan-out.
    phases: dict[str, float] = field(default_factory=dict)
    failed_step: str | None = None
    error: str | None = None  # the failing step's last exception line

    def parameters(self, step: str) -> dict[str, Any] | None:
        """A finished step's output parameters; None when the step did not run (e.g. a gated branch)."""
        path = self.run_dir / step / "executor_output.json" if self.run_dir else None
        if path is None or not path.exists():
            return None
        return json.loads(path.read_text()).get("parameterValues", {})

    def artifact(self, step: str, name: str) -> Path | None:
        path = self.run_dir / step / name if self.run_dir else None
        return path if path is not None and path.exists() else None


class _Tap(io.TextIOBase):
    """A stdout stand-in: every line to the log file, recognised lines to the event callback."""

    def __init__(self, log_file: TextIO, echo: TextIO | None, on_event: Callable[[Event], None]) -> None:
        self._log, self._echo, self._on_event = log_file, echo, on_event
        self._pending = ""
        self._started: dict[str, float] = {}
        self._current: str | None = None
        self.steps: dict[str, float] = {}
        self._first: dict[str, float] = {}
        self.phases: dict[str, float] = {}
        self.step_errors: dict[str, str] = {}
        self.failed: str | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._log.write(text)
        if self._echo is not None:
            self._echo.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self._log.flush()
        if self._echo is not None:
            self._echo.flush()

    def _line(self, line: str) -> None:
        if match := _START.search(line):
            self._current = match.group(1)
            self._started[self._current] = time.perf_counter()
            self._first.setdefault(self._current, self._started[self._current])
            self._on_event(Event("start", self._current))
        elif match := _END.search(line):
            step, status = match.groups()
            seconds = time.perf_counter() - self._started.get(step, time.perf_counter())
            self.steps[step] = seconds
            self.phases[step] = time.perf_counter() - self._first.get(step, time.perf_counter())
            self._current = None
            if status != "SUCCESS":
                self.failed = step
            self._on_event(Event("end", step, status, seconds))
        elif self._current and (match := _STEP_LOG.search(line)):
            self._on_event(Event("warning", self._current, message=match.group(2)))
        elif self._current and (match := _EXCEPTION.match(line)):
            self.step_errors[self._current] = f"{match.group(1).rsplit('.', 1)[-1]}: {match.group(2)}"


def _ignore(_: Event) -> None:
    pass


def local_arguments(package: str | Path, arguments: dict[str, Any]) -> dict[str, Any]:
    """arguments with the deploy step off, whatever they or the YAML's defaults say."""
    from pipelines.params import declared

    return {**arguments, DEPLOY_SWITCH: ""} if DEPLOY_SWITCH in declared(package) else dict(arguments)


def run_compiled(
    package: str | Path,
    arguments: dict[str, Any],
    pipeline_root: str | Path = DEFAULT_PIPELINE_ROOT,
    verbose: bool = False,
    on_event: Callable[[Event], None] = _ignore,
) -> LocalRun:
    """Run the compiled pipeline once; step failures come back in LocalRun, not as exceptions."""
    arguments = local_arguments(package, arguments)
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    log_path = root / f"run-{dt.datetime.now():%Y%m%d-%H%M%S-%f}.log"
    pipeline = components.load_component_from_file(str(package))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    started = time.perf_counter()
    with open(log_path, "w") as log_file, warnings.catch_warnings():
        # Expected here: kfp.local runs the steps in this interpreter whatever the image is.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        # ...and the cluster-only settings (resources) do nothing locally.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        tap = _Tap(log_file, sys.stdout if verbose else None, on_event)
        ok = True
        with contextlib.redirect_stdout(tap):
            try:
                pipeline(**arguments)
            except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE ..."
                print(f"{exc}")
                ok = False
        tap.flush()
    new = sorted(p for p in set(root.iterdir()) - before if p.is_dir())
    failed = tap.failed if not ok else None
    return LocalRun(
        ok=ok,
        seconds=time.perf_counter() - started,
        log_path=log_path,
        run_dir=new[-1] if new else None,
        steps=dict(tap.steps),
        phases=dict(tap.phases),
        failed_step=failed,
        error=tap.step_errors.get(failed) if failed else None,
    )
