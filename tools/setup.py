"""`make install`: create the venv and install the project, one line per phase instead of pip's log.

    python3 tools/setup.py [--venv .venv] [--extras pipeline,serve,test] [--log PATH]

pip's full output goes to a log file (default: <venv>/install.log). On a terminal each phase line
counts the packages pip has collected so far; elsewhere (CI, a pipe) it is printed once, when the
phase ends. When a phase fails, the log's path and its last lines are printed and the exit status
is pip's. Runs on the system python3 (standard library only): the venv does not exist yet.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import IO

TAIL_LINES = 15
# pip's lines that mark one more package on its way: the progress count.
PROGRESS_PREFIXES = ("Collecting ", "Requirement already satisfied: ")
SPINNER = "|/-\\"


class PhaseFailed(Exception):
    def __init__(self, returncode: int) -> None:
        super().__init__(returncode)
        self.returncode = returncode


def run_phase(title: str, command: list[str], log: IO[str], out: IO[str] = sys.stdout,
              tail: int = TAIL_LINES) -> None:
    """Run ``command`` with its output appended to ``log``; one status line on ``out``.

    Raises PhaseFailed with the exit status when the command fails, after showing the log's tail.

    Args:
        title: the phase's name on the status line.
        command: the command and its arguments.
        log: the install log, appended to.
        out: where the status line goes (a live timer on a terminal).
        tail: log lines shown when the phase fails.
    """
    interactive = out.isatty()
    started = time.monotonic()
    log.write(f"\n$ {' '.join(command)}\n")
    log.flush()
    last = deque(maxlen=tail)
    packages = 0
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    for count, line in enumerate(proc.stdout):
        log.write(line)
        last.append(line.rstrip("\n"))
        if line.startswith(PROGRESS_PREFIXES):
            packages += 1
        if interactive:
            seen = f", {packages} packages" if packages else ""
            out.write(f"\r==> {title} {SPINNER[count % len(SPINNER)]} {time.monotonic() - started:.0f} s{seen}   ")
            out.flush()
    proc.wait()
    log.flush()
    seconds = time.monotonic() - started
    seen = f", {packages} packages" if packages else ""
    status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    out.write(f"{chr(13) if interactive else ''}==> {title} ... {status} {seconds:.0f} s{seen}      \n")
    out.flush()
    if proc.returncode != 0:
        print(f"error: {title} failed; the full output is in {log.name}. Its last lines:", file=sys.stderr)
        for line in last:
            print(f"  {line}", file=sys.stderr)
        raise PhaseFailed(proc.returncode)


def main(argv: list[str] | None = None) -> int:
    """``make install``: create the venv and install the project with its pinned packages, quietly.

    Args:
        argv: the command line without the program name (default sys.argv[1:]).

    Returns:
        0 on success, else the failed command's exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", default=".venv", help="the virtual environment to create (default: %(default)s)")
    parser.add_argument("--extras", default="pipeline,serve,test", help="the project's extras (default: %(default)s)")
    parser.add_argument("--constraints", default="constraints.txt", help="pinned versions (default: %(default)s)")
    parser.add_argument("--log", help="pip's output (default: <venv>/install.log)")
    args = parser.parse_args(argv)

    venv = Path(args.venv)
    python = venv / "bin" / "python"
    if not python.exists():
        # No log yet (it lives in the venv): venv's own output is a line or two, shown as it is.
        print(f"==> creating {venv} with {sys.executable} (Python {sys.version.split()[0]})", flush=True)
        created = subprocess.run([sys.executable, "-m", "venv", str(venv)])
        if created.returncode != 0:
            print(f"error: `{sys.executable} -m venv {venv}` failed; on Debian/Ubuntu install python3-venv "
                  "(sudo apt-get install -y python3-venv)", file=sys.stderr)
            return created.returncode
    log_path = Path(args.log) if args.log else venv / "install.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        try:
            run_phase("upgrading pip", [str(python), "-m", "pip", "install", "--upgrade", "pip"], log)
            run_phase(f"installing the project and its pinned packages ({args.extras}; about a minute the first "
                      f"time; log: {log_path})",
                      [str(python), "-m", "pip", "install", "--progress-bar", "off", "-c", args.constraints,
                       "-e", f".[{args.extras}]"], log)
        except PhaseFailed as failed:
            return failed.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
