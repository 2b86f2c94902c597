"""pipelines.local.runner.kfp_globals_guarded: what kfp.local's ParallelFor threads leave swapped is put back."""

from __future__ import annotations

import builtins
import contextlib
import io
import logging

from pipelines.local.runner import kfp_globals_guarded


def test_print_and_the_root_loggers_handlers_come_back_as_they_were():
    root = logging.getLogger()
    handlers, level, original_print = root.handlers[:], root.level, builtins.print
    tap = io.StringIO()
    with kfp_globals_guarded():
        # What a lost race in kfp.local leaves behind: its per-task handler on the run's stdout tap.
        root.handlers[:] = [logging.StreamHandler(tap)]
        root.setLevel(logging.DEBUG)
        builtins.print = lambda *args, **kwargs: None
    tap.close()
    assert builtins.print is original_print
    assert root.handlers == handlers and root.level == level
    logging.getLogger("components.test").warning("logged after the run")  # raised on the closed tap before


def test_overlapping_tasks_keep_kfps_logger_and_indent_until_the_last_one_ends():
    # A ParallelFor's tasks, entering and leaving kfp.local's per-task contexts out of order.
    from kfp.local import logging_utils

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), kfp_globals_guarded():
            first, second = logging_utils.local_logger_context(), logging_utils.local_logger_context()
            first_print, second_print = logging_utils.indented_print(), logging_utils.indented_print()
            for entered in (first, second, first_print, second_print):
                entered.__enter__()
            first.__exit__(None, None, None)
            first_print.__exit__(None, None, None)
            logging.info("Task 'second' finished with status SUCCESS")
            print("second's output")
            second.__exit__(None, None, None)
            second_print.__exit__(None, None, None)
            logging.info("after both: not logged")
            print("after both")
    finally:
        root.setLevel(level)
    text = out.getvalue()
    assert "INFO - Task 'second' finished with status SUCCESS" in text  # kfp's INFO level still on
    assert "    second's output\n" in text and "\nafter both\n" in text
    assert "not logged" not in text  # the level came back once the last task ended
