"""A terminal progress line: scenarios done / total, rate, time left."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, stream=None, every_s: float = 2.0, quiet: bool = False):
        self.quiet = quiet
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self.every_s = every_s
        self.last = 0.0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.done >= self.total or now - self.last >= (0.2 if self.tty else self.every_s):
            self.last = now
            self._show(now)

    def _show(self, now: float) -> None:
        if self.quiet:
            return
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        text = f"[{bar}] {self.done}/{self.total} scenarios  {rate:.1f}/s  {elapsed:.0f} s elapsed, {left:.0f} s left"
        end = "" if self.tty and self.done < self.total else "\n"
        self.stream.write(("\r" if self.tty else "") + text + end)
        self.stream.flush()
