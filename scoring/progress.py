"""A one-line progress bar for batch scoring: rows, rows/s and ETA; silent when not on a terminal.

The total is known for Parquet (row count in the footer) and estimated for CSV from the
bytes read so far, so the ETA is shown either way. Logs and CI output stay clean: without
a TTY nothing is drawn, and the caller prints its own summary.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30
# Redraw at most this often: drawing per chunk would cost more than the chunk on fast models.
REDRAW_EVERY_S = 0.2


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


class Progress:
    """update(rows, fraction) after each chunk; close() at the end."""

    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool | None = None,
                 clock=time.monotonic) -> None:
        self.label = label
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = self._stream.isatty() if enabled is None else enabled
        self._clock = clock
        self._start = clock()
        self._drawn = float("-inf")
        self.rows = 0

    def update(self, rows: int, fraction: float | None) -> None:
        """Record progress and redraw the line at most every REDRAW_EVERY_S (when enabled).

        Args:
            rows: rows scored so far.
            fraction: share of the input done (0..1), None when unknown.
        """
        self.rows = rows
        now = self._clock()
        if self.enabled and now - self._drawn >= REDRAW_EVERY_S:
            self._drawn = now
            self._stream.write(f"\r{self.label}: " + self.line(rows, fraction, now - self._start))
            self._stream.flush()

    @staticmethod
    def line(rows: int, fraction: float | None, elapsed: float) -> str:
        """The progress text: a bar, percent and ETA when the fraction is known, always rows and rows/s.

        Args:
            rows: rows scored so far.
            fraction: share done (0..1), None when unknown.
            elapsed: seconds since the start.

        Returns:
            The text, without a carriage return.
        """
        rate = rows / elapsed if elapsed > 0 else 0.0
        text = f"{rows:,} rows, {rate:,.0f} rows/s"
        if fraction is not None and 0 < fraction <= 1:
            filled = int(BAR_WIDTH * fraction)
            eta = elapsed * (1 - fraction) / fraction
            text = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%} {text}, ETA {_duration(eta)}"
        return text

    def close(self) -> None:
        if self.enabled:
            self._stream.write(f"\r{self.label}: " + self.line(self.rows, 1.0, self._clock() - self._start) + "\n")
            self._stream.flush()

    @property
    def seconds(self) -> float:
        """Seconds since the progress started (the injected clock).

        Returns:
            The elapsed seconds.
        """
        return self._clock() - self._start
