"""Progress of a run on stderr: a live bar on a terminal, plain lines in a log.

On a terminal the bar (tqdm) redraws itself in place. Piped or logged, redraws would
write hundreds of carriage-return updates; there a plain line is written every
``percent_step`` % of the steps or every ``every_s`` seconds, whichever comes first.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO

from tqdm.auto import tqdm

__all__ = ["LineProgress", "NoProgress", "Progress", "progress_bar"]


class Progress(Protocol):
    """What the time loop needs from a progress display."""

    def update(self, n: int = 1) -> None:
        """``n`` more steps done."""

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        """Text shown after the count (the latest metrics)."""

    def close(self) -> None:
        """Finish the display."""


class NoProgress:
    """No output."""

    def update(self, n: int = 1) -> None:
        """Ignored."""

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        """Ignored."""

    def close(self) -> None:
        """Ignored."""


class LineProgress:
    """One plain line per ``percent_step`` % of the steps (or per ``every_s`` seconds).

    Parameters
    ----------
    total, initial
        Steps in all and steps already done (a resumed run).
    desc
        Text at the start of each line.
    stream
        Where the lines go.
    percent_step
        Percent of the steps between lines.
    every_s
        Longest wait between lines, in seconds.
    """

    def __init__(self, total: int, initial: int = 0, *, desc: str = "", stream: TextIO | None = None,
                 percent_step: float = 5.0, every_s: float = 60.0) -> None:
        self.total = max(int(total), 1)
        self.n = int(initial)
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        self.percent_step = float(percent_step)
        self.every_s = float(every_s)
        self.postfix = ""
        self._t0 = time.monotonic()
        self._last_t = self._t0
        self._last_bucket = self._bucket(self.n)
        self._closed = False

    def _bucket(self, n: int) -> int:
        return int(100.0 * n / self.total // self.percent_step)

    def _write(self) -> None:
        pct = 100.0 * self.n / self.total
        text = f"{self.desc}: {pct:3.0f}% ({self.n}/{self.total} steps, {time.monotonic() - self._t0:.0f} s)"
        if self.postfix:
            text += f" {self.postfix}"
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last_t = time.monotonic()

    def update(self, n: int = 1) -> None:
        """``n`` more steps done; writes a line when a percent mark or the time limit is passed."""
        self.n += n
        bucket = self._bucket(self.n)
        if bucket > self._last_bucket or time.monotonic() - self._last_t >= self.every_s:
            self._last_bucket = bucket
            self._write()

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        """Text written after the count on the next line."""
        self.postfix = s

    def close(self) -> None:
        """Write the last line if the last step has not been written yet."""
        if self._closed:
            return
        self._closed = True
        if self._last_bucket != self._bucket(self.n) or self.n < self.total:
            self._write()


def progress_bar(total: int, initial: int = 0, *, desc: str = "", enabled: bool = True,
                 stream: TextIO | None = None) -> Any:
    """A progress display for ``total`` steps: tqdm on a terminal, plain lines otherwise.

    Parameters
    ----------
    total, initial
        Steps in all, steps already done.
    desc
        Label (the scenario and its length).
    enabled
        ``False`` shows nothing.
    stream
        Output stream (default ``sys.stderr``).
    """
    if not enabled:
        return NoProgress()
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return tqdm(total=total, initial=initial, unit="step", desc=desc, dynamic_ncols=True, file=stream)
    return LineProgress(total, initial, desc=desc, stream=stream)
