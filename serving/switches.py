"""On/off settings read from the environment: SERVING_FAST_PATH, SERVING_FAST_ROUTE, SERVING_BATCHING, SERVING_ACCESS_LOG."""

from __future__ import annotations

from collections.abc import Mapping

from contract.settings import parse_bool


def switch(environ: Mapping[str, str], name: str, error: type[ValueError], default: bool = True) -> bool:
    """``name`` in ``environ``: 1/true/yes/on or 0/false/no/off; unset or empty is ``default``; else ``error``."""
    raw = environ.get(name, "").strip()
    if not raw:  # NAME= in a manifest or shell means "not set", as the docs say, not "off"
        return default
    return parse_bool(raw, name, error)  # the project's one boolean parser, raising our domain's error
