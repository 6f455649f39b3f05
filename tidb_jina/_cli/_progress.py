"""A small progress bar for stderr: count, percentage, rate and ETA, no dependency.

On a terminal the bar redraws in place (at most every ``interval`` seconds); into a file
or pipe it writes a plain line every ``log_interval`` seconds and a final one, so logs stay
readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24


class Progress:
    """Progress of ``total`` items of work, drawn on ``stream``."""

    def __init__(
        self,
        total: int,
        *,
        label: str = "ingest",
        unit: str = "chunks",
        stream: TextIO | None = None,
        enabled: bool = True,
        interval: float = 0.1,
        log_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.done = 0
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else log_interval
        self._clock = clock
        self._start = clock()
        self._last_draw = self._start

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items done; redraw when it is time."""
        self.done = min(self.total, self.done + n)
        now = self._clock()
        if now - self._last_draw >= self.interval:
            self._last_draw = now
            self._draw(now, final=False)

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._draw(self._clock(), final=True)

    def line(self, now: float | None = None) -> str:
        """The bar as text: ``label [####....] done/total pct rate ETA``."""
        now = self._clock() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        fraction = self.done / self.total if self.total else 1.0
        filled = int(fraction * BAR_WIDTH)
        rate = self.done / elapsed
        remaining = (self.total - self.done) / rate if rate > 0 else None
        return (
            f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
            f"{self.done}/{self.total} {self.unit} {fraction:4.0%} "
            f"{rate:6.1f} {self.unit}/s ETA {format_seconds(remaining)}"
        )

    def _draw(self, now: float, *, final: bool) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + self.line(now) + ("\n" if final else ""))
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()


def format_seconds(seconds: float | None) -> str:
    """``m:ss`` (or ``h:mm:ss``); ``--:--`` when unknown."""
    if seconds is None:
        return "--:--"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
