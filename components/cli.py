"""How this project's commands end: one line on stderr for a domain error, and an exit status.

    0 done; 1 it failed (the cluster or the store did not do it); 2 refused: bad input or settings,
    or a request the registry turns down (a missing or partial version, nothing to roll back).

Used by `make deploy` (components.deploy) and `make models/promote/rollback` (pipelines.models),
so the same kind of error ends each the same way.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

# (error type, exit status, prefix of its line): the first type the error is an instance of wins,
# so list subclasses before their bases. Errors of no listed type propagate (a bug: a traceback).
ExitMap = Sequence[tuple[type[BaseException], int, str]]


def run(action: Callable[[], object], exits: ExitMap) -> int:
    """Call action(); EXIT_OK, or the status of the first matching error type after printing `error: ...`.

    Args:
        action: the step's work; its return value is ignored.
        exits: (error type, exit status, message prefix) in order; the first type that matches wins.

    Returns:
        EXIT_OK, or the matched status; an error of no listed type propagates (a traceback: a bug).
    """
    try:
        action()
    except Exception as exc:  # re-raised below unless listed
        for kind, status, prefix in exits:
            if isinstance(exc, kind):
                print(f"error: {prefix}{exc}", file=sys.stderr)
                return status
        raise
    return EXIT_OK
