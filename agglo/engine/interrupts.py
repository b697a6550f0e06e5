"""Ctrl-C (SIGINT) or SIGTERM during a run: noted at once, acted on at the next safe point.

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
received = signal.SIGINT  # the signal that stopped the run: the exit code is 128 + it


def _handler(signum, frame) -> None:
    global _requested, received
    received = signum
    if _requested:
        raise KeyboardInterrupt  # asked twice: now
    _requested = True


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C (or SIGTERM) came since the run began."""
    if _requested:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred():
    """SIGINT deferred to :func:`check` inside the block (main thread only)."""
    global _requested, received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested, received = False, signal.SIGINT
    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
        check()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _requested = False
