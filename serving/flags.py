"""One spelling of every flag for the user, whichever one kserve's argparse chose.

kserve spells most of its flags with underscores (``--grpc_port``), two with hyphens
(``--event-loop``, ``--timeout-keep-alive``), and parses ``sys.argv`` when it is imported.
``make serve`` and the README use hyphens. :func:`canonical` rewrites each option to the spelling
the parser knows, so ``--model-uri`` and ``--model_uri`` both work; it runs before kserve's import.
"""

from __future__ import annotations

from typing import Iterable

# The options kserve 0.21 spells with hyphens; every other option of `python -m serving` uses
# underscores. tests/serving/test_flags.py checks this against the real parser.
HYPHENATED = frozenset({"--event-loop", "--timeout-keep-alive"})


def _key(option: str) -> str:
    """``--grpc-port`` -> ``--grpc_port``: the spelling-free form of a long option."""
    return "--" + option[2:].replace("-", "_")


_HYPHENATED_BY_KEY = {_key(option): option for option in HYPHENATED}


def canonical(argv: Iterable[str]) -> list[str]:
    """``argv`` with each ``--long-option`` (or ``--long-option=value``) in the parser's spelling.

    Args:
        argv: command-line tokens.

    Returns:
        The tokens, option names respelled, values untouched.
    """
    result: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token == "--":  # everything after it is positional
            result.append(token)
            result.extend(tokens)
            break
        if token.startswith("--") and len(token) > 2:
            name, eq, value = token.partition("=")
            key = _key(name)
            result.append(_HYPHENATED_BY_KEY.get(key, key) + eq + value)
        else:
            result.append(token)
    return result


def both_spellings(option: str) -> list[str]:
    """``--grpc-port`` -> ["--grpc-port", "--grpc_port"]: argparse option strings for a flag of ours.

    Args:
        option: one spelling, with its leading '--'.

    Returns:
        The hyphenated and underscored spellings (one entry when they are the same).
    """
    underscored = _key(option)
    hyphenated = "--" + option[2:].replace("_", "-")
    return list(dict.fromkeys((hyphenated, underscored)))
