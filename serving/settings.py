"""Every ``SERVING_*`` setting of the server, read once at start into one typed, checked object.

``python -m serving`` calls ``ServingSettings.from_env()`` before anything starts and hands the
result down; nothing else reads these variables. A setting is one line of ``ServingSettings``:
its field (name, type, default) and ``setting(VARIABLE, parser, default)``. The limits keep their
own table (``serving.limits.LIMITS``), since each also has a command-line flag.

Values: an empty one (``NAME=`` in a manifest) is an error like any other the parser refuses,
and the message names the variable, the value and every accepted spelling.

Names: a ``SERVING_*`` variable the server does not know is a warning that names the known ones,
not an error. During a rollback the older image meets the newer manifest, whose new settings it
cannot know; it must still start. The warning (with "did you mean") still catches a misspelled name.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from contract.settings import FALSE_SPELLINGS, TRUE_SPELLINGS, parse_bool
from serving.batching import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_LATENCY_MS, BatchingConfig
from serving.limits import LIMITS, Limits, LimitsConfigError

PREFIX = "SERVING_"
DEFAULT_OFFLOAD_BYTES = 64 * 1024  # ~3k rows: a few ms on the loop; larger bodies block it for longer
DEFAULT_OFFLOAD_PROCESSES = 1
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Set by the server for its own processes, never by a user (serving.workers marks spawned workers).
INTERNAL_VARIABLES = ("SERVING_SPAWNED_WORKER",)

Parser = Callable[[str, str], Any]  # (variable, raw value) -> value, or SettingsError


class SettingsError(ValueError):
    """A SERVING_* variable has a value the server does not accept; the message lists what it accepts."""


def switch(variable: str, raw: str) -> bool:
    """On/off: the contract's spellings, in any case.

    Args:
        variable: the variable's name, for the message.
        raw: its value as set.

    Returns:
        The boolean; SettingsError for an empty or unknown spelling.
    """
    spellings = f"one of {', '.join(TRUE_SPELLINGS)} (on) or {', '.join(FALSE_SPELLINGS)} (off)"
    if not raw.strip():
        raise SettingsError(f"{variable}={raw!r} is empty: expected {spellings}, or leave it unset")
    try:
        return parse_bool(raw, variable, SettingsError)
    except SettingsError:
        raise SettingsError(f"{variable}={raw!r} is not a boolean: expected {spellings}") from None


def integer(low: int) -> Parser:
    """A whole number of at least ``low``.

    Args:
        low: the least value accepted.

    Returns:
        A parser (variable, raw) -> int that raises SettingsError below low or for a non-integer.
    """
    def parse(variable: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            value = low - 1
        if value < low:
            raise SettingsError(f"{variable}={raw!r} is invalid: expected an integer >= {low}")
        return value
    return parse


def number(low: float, high: float, unit: str) -> Parser:
    """A finite number in [low, high].

    Args:
        low: the least value accepted.
        high: the largest.
        unit: what the number counts, for the message.

    Returns:
        A parser (variable, raw) -> float that raises SettingsError outside [low, high] or for NaN.
    """
    def parse(variable: str, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # NaN fails too
            raise SettingsError(f"{variable}={raw!r} is invalid: expected {unit} in [{low:g}, {high:g}]")
        return value
    return parse


def choice(options: tuple[str, ...]) -> Parser:
    """One of ``options``, in any case; the value is the option as spelled there.

    Args:
        options: the accepted values, upper case.

    Returns:
        A parser (variable, raw) -> str.
    """
    def parse(variable: str, raw: str) -> str:
        value = raw.strip().upper()
        if value not in options:
            raise SettingsError(f"{variable}={raw!r} is invalid: expected one of {', '.join(options)}")
        return value
    return parse


def text(variable: str, raw: str) -> str:
    """Any text, stripped (its own module checks what it means: the inference log's URI).

    Args:
        variable: the variable's name (unused: text is never refused here).
        raw: its value as set.

    Returns:
        The value without surrounding blanks.
    """
    return raw.strip()


def setting(variable: str, parse: Parser, default: Any) -> Any:
    """A ServingSettings field read from ``variable`` with ``parse``; ``default`` when it is unset.

    Args:
        variable: the SERVING_* name.
        parse: the parser of its value.
        default: the value when it is unset.

    Returns:
        A dataclass field carrying the variable and parser in its metadata.
    """
    return field(default=default, metadata={"variable": variable, "parse": parse})


@dataclass(frozen=True)
class ServingSettings:
    """What the environment says, checked; the defaults are what an unset variable means."""

    fast_path: bool = setting("SERVING_FAST_PATH", switch, True)  # the compiled engine (serving.engine)
    fast_route: bool = setting("SERVING_FAST_ROUTE", switch, True)  # inference before FastAPI (serving.routes)
    grpc_core: bool = setting("SERVING_GRPC_CORE", switch, True)  # gRPC on grpcio's core loop (serving.grpc_core)
    batching: bool = setting("SERVING_BATCHING", switch, True)  # adaptive batching (serving.batching)
    batch_max_rows: int = setting("SERVING_BATCH_MAX_ROWS", integer(1), DEFAULT_MAX_BATCH_ROWS)
    batch_window_ms: float = setting("SERVING_BATCH_WINDOW_MS", number(0, 1000, "milliseconds"),
                                     DEFAULT_MAX_LATENCY_MS)
    offload_bytes: int = setting("SERVING_OFFLOAD_BYTES", integer(0), DEFAULT_OFFLOAD_BYTES)  # 0: never offload
    offload_processes: int = setting("SERVING_OFFLOAD_PROCESSES", integer(1), DEFAULT_OFFLOAD_PROCESSES)
    log_level: str = setting("SERVING_LOG_LEVEL", choice(LOG_LEVELS), "INFO")
    access_log: bool = setting("SERVING_ACCESS_LOG", switch, False)  # one line per request
    # The inference log (serving.inference_log): off while the URI is unset or empty.
    inference_log: str = setting("SERVING_INFERENCE_LOG", text, "")  # s3://bucket/prefix/
    inference_log_sample: float = setting("SERVING_INFERENCE_LOG_SAMPLE", number(0, 1, "a share of requests"), 1.0)
    inference_log_batch_rows: int = setting("SERVING_INFERENCE_LOG_BATCH_ROWS", integer(1), 1000)
    inference_log_flush_s: float = setting("SERVING_INFERENCE_LOG_FLUSH_S", number(0.01, 3600, "seconds"), 10.0)
    inference_log_max_rows: int = setting("SERVING_INFERENCE_LOG_MAX_ROWS", integer(1), 20000)
    inference_log_close_timeout_s: float = setting("SERVING_INFERENCE_LOG_CLOSE_TIMEOUT_S",
                                                   number(0, 600, "seconds"), 5.0)
    limits: Limits = field(default_factory=Limits)  # serving.limits.LIMITS: variables and flags

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServingSettings:
        """Read and check every setting.

        Args:
            environ: the environment to read (default: this process's).

        Returns:
            The settings; SettingsError names the first bad variable, its value and what it accepts.
        """
        values = {f.name: _read(f, environ) for f in fields(cls) if f.metadata and f.metadata["variable"] in environ}
        try:
            limits = Limits.from_env(environ)
        except LimitsConfigError as exc:
            raise SettingsError(str(exc)) from None
        return cls(**values, limits=limits)

    @classmethod
    def value_from_env(cls, name: str, environ: Mapping[str, str] = os.environ) -> Any:
        """One setting, for a library use of the server's code (batch scoring's fast path) that needs no other.

        Args:
            name: the field, e.g. "fast_path".
            environ: the environment to read.

        Returns:
            The parsed value, or the default when the variable is unset; SettingsError for a bad value.
        """
        found = next(f for f in fields(cls) if f.name == name and f.metadata)
        return _read(found, environ) if found.metadata["variable"] in environ else found.default

    @property
    def batching_config(self) -> BatchingConfig:
        """The adaptive batcher's configuration.

        Returns:
            A BatchingConfig (on/off, max rows, window in milliseconds).
        """
        return BatchingConfig(self.batching, self.batch_max_rows, self.batch_window_ms)

    @property
    def offload(self) -> tuple[int, int]:
        """(bytes from which a body is offloaded, pool processes), as serving.offload.Offloader takes them.

        Returns:
            (min_bytes, processes); min_bytes 0 turns offloading off.
        """
        return self.offload_bytes, self.offload_processes


def _read(setting_field: Any, environ: Mapping[str, str]) -> Any:
    variable = setting_field.metadata["variable"]
    return setting_field.metadata["parse"](variable, environ[variable])


def known_variables() -> tuple[str, ...]:
    """Every SERVING_* variable the server reads or sets, sorted.

    Returns:
        The names: ServingSettings' own, the limits', and the ones the server sets for itself.
    """
    own = [f.metadata["variable"] for f in fields(ServingSettings) if f.metadata]
    return tuple(sorted({*own, *(limit.env for limit in LIMITS.values()), *INTERNAL_VARIABLES}))


def unknown_variables(environ: Mapping[str, str] = os.environ) -> list[str]:
    """One line per SERVING_* variable the server does not know, with the closest known name.

    Args:
        environ: the environment to look at.

    Returns:
        The lines, sorted by variable; [] when every SERVING_* name is known.
    """
    known = known_variables()
    lines = []
    for name in sorted(n for n in environ if n.startswith(PREFIX) and n not in known):
        # Compared without the prefix, which every name shares and which would make anything "close".
        close = difflib.get_close_matches(name[len(PREFIX):], [k[len(PREFIX):] for k in known], n=1)
        hint = f"did you mean {PREFIX}{close[0]}? " if close else ""
        lines.append(f"{name} is not a setting of this server and is ignored; {hint}known: {', '.join(known)}")
    return lines


def warn_unknown(log: logging.Logger, environ: Mapping[str, str] = os.environ) -> None:
    """Log a warning for each SERVING_* variable the server does not know (see the module docstring: why not an error).

    Args:
        log: where the warnings go.
        environ: the environment to look at.
    """
    for line in unknown_variables(environ):
        log.warning(line)
