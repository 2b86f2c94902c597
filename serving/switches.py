"""On/off settings read from the environment: SERVING_FAST_PATH, SERVING_FAST_ROUTE, SERVING_BATCHING."""

from __future__ import annotations

from collections.abc import Mapping

from components.errors import ObjectStoreConfigError
from components.objectstore import parse_bool


def switch(environ: Mapping[str, str], name: str, error: type[ValueError]) -> bool:
    """``name`` in ``environ``: on unless 0/false/no/off; any other value raises ``error``."""
    try:
        return parse_bool(environ.get(name, "1"), name)
    except ObjectStoreConfigError as exc:  # the project's one boolean parser; its error, our domain
        raise error(str(exc)) from None
