"""serving/workers.py: a stop that lands while a worker still reads its task ends promptly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).with_name("stop_while_spawning.py")
HANG_S = 60.0  # the scenario's worker sleeps 120 s: only a working stop ends the script before this


# "dies": a worker that Ctrl-C killed before it could ignore SIGINT; the parent's write still blocks.
@pytest.mark.parametrize("worker", ["sleeps", "dies"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_while_the_worker_reads_its_pickled_task_does_not_hang(workers: int, worker: str) -> None:
    scenario = subprocess.Popen([sys.executable, str(SCENARIO), str(workers), worker], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
                                start_new_session=True)  # its group: the worker too, should it hang
    try:
        out, err = scenario.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the supervisor did not return within {HANG_S}s of the stop")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(scenario.pid, signal.SIGKILL)  # whatever is left of its group
        scenario.communicate()
    assert scenario.returncode == 0, err
    assert "children left: 0" in out, out + err
    assert "Traceback" not in err, err
