"""Ctrl-C during a run: noted at once, acted on at the next safe point.

A KeyboardInterrupt raised wherever the signal lands can land inside a callback from native
code (Numba loading its cached kernels calls back into Python through ctypes); Python then
prints that exception as "ignored" with a traceback and the run goes on. So while a run is
set up and computed, the first SIGINT only sets a flag; :func:`check`, called between the
steps of a run and between batches, raises KeyboardInterrupt there. The batches in flight
finish and are marked done; the store stays resumable. A second SIGINT raises at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_requested = False


def _handler(signum, frame) -> None:
    global _requested
    if _requested:
        raise KeyboardInterrupt  # asked twice: now
    _requested = True


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed since the run began."""
    if _requested:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred():
    """SIGINT deferred to :func:`check` inside the block (main thread only)."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested = False
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
        check()
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False
