"""Ctrl-C (SIGINT) or SIGTERM during a run: noted at once, acted on at the next safe point.

A KeyboardInterrupt raised wherever the signal lands can land inside a callback from native
code (Numba loading its cached kernels calls back into Python through ctypes); Python then
prints that exception as "ignored" with a traceback and the run goes on. So while a run is
set up and computed, the first SIGINT only sets a flag; :func:`check`, called between the
steps of a run and between batches, raises KeyboardInterrupt there. The batches in flight
finish and are marked done; the store stays resumable. A second SIGINT raises at once.

A long compiled step (the neighbourhood build, a national batch) holds the main thread
inside native code, where no Python signal handler runs until it returns: :func:`native`
runs such a step in a thread of its own (the kernels release the GIL) while the main
thread waits in short joins, so the signal is heard within a fraction of a second. A step
that writes nothing (``stop_at_first``: the build) is left at the first signal; a batch
at the second. A step left running is ``abandoned``: the command exits without waiting.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

_requested = False
_active = False  # inside deferred(): the handlers are ours
received = signal.SIGINT  # the signal that stopped the run: the exit code is 128 + it
abandoned = False  # a native step was left running when the run stopped


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
    global _active
    _requested, received = False, signal.SIGINT
    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    _active = True
    try:
        yield
        check()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _requested = _active = False


def native(step, *args, stop_at_first: bool = False):
    """``step(*args)``, run so that a signal is heard while it runs (see the module's
    docstring); in a thread of its own only in the main thread of a run under
    :func:`deferred`, else called directly."""
    global abandoned
    if not _active or threading.current_thread() is not threading.main_thread():
        return step(*args)
    import numba

    threads = numba.get_num_threads()  # Numba's thread count is per thread
    box: dict = {}

    def target():
        numba.set_num_threads(threads)
        try:
            box["value"] = step(*args)
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="agglo-native", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.05)
            if stop_at_first:
                check()
    except KeyboardInterrupt:
        abandoned = worker.is_alive()
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def exit_status() -> int:
    """After Ctrl-C or SIGTERM stopped a command: one line, and the exit status of the signal."""
    what = "terminated (SIGTERM)" if received == signal.SIGTERM else "interrupted"
    print(f"agglo: {what}; run again with the same config to resume", file=sys.stderr)
    if abandoned:  # a compiled step still runs in a thread: exit without waiting for it
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(128 + int(received))
    return 128 + int(received)
