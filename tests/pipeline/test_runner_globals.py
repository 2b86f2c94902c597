"""pipelines.local.runner.kfp_print_restored: what kfp.local's ParallelFor threads leave swapped is put back."""

from __future__ import annotations

import builtins
import io
import logging

from pipelines.local.runner import kfp_print_restored


def test_print_and_the_root_loggers_handlers_come_back_as_they_were():
    root = logging.getLogger()
    handlers, level, original_print = root.handlers[:], root.level, builtins.print
    tap = io.StringIO()
    with kfp_print_restored():
        # What a lost race in kfp.local leaves behind: its per-task handler on the run's stdout tap.
        root.handlers[:] = [logging.StreamHandler(tap)]
        root.setLevel(logging.DEBUG)
        builtins.print = lambda *args, **kwargs: None
    tap.close()
    assert builtins.print is original_print
    assert root.handlers == handlers and root.level == level
    logging.getLogger("components.test").warning("logged after the run")  # raised on the closed tap before
