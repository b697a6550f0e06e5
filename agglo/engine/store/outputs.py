"""Where a command writes: checked before any work, and write failures as one line.

Every command that writes (``run`` its store, ``flows`` and ``calibrate`` their ``--out``
file, ``plot`` its folder, ``analyze`` the cube's ``analysis/`` group) checks its output
location first, by creating and removing a probe file there, so that a typo or a read-only
place costs nothing. What can still fail later (a disk that fills up, a mount that goes
read-only) is reported by :func:`writing` as one line, exit 2: it is the user's environment,
and the store it leaves is resumable (a batch is marked done only after it is written).
"""

from __future__ import annotations

import errno
import os
import tempfile

from agglo.engine.errors import UserError


def _existing_ancestor(path: str) -> str:
    folder = os.path.abspath(path)
    while not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def probe_folder(what: str, folder: str) -> None:
    """``folder`` accepts a new file (a probe created and removed), else a one-line error."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".agglo-probe-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise UserError(f"{what}: cannot write in {folder!r} ({exc.strerror}); allowed: a writable location") from None


def check_new_file(what: str, path: str) -> None:
    """``path`` does not exist and its folder exists and is writable."""
    if os.path.exists(path):
        raise UserError(f"{what} {path!r} exists; allowed: a new path (it is never overwritten unasked)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"{what} {path!r}: no folder {folder!r}; allowed: a new file in an existing folder")
    probe_folder(f"{what} {path!r}", folder)


def check_folder(what: str, path: str) -> None:
    """``path`` is a folder, or can be made one, and is writable."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{what} {path!r} is a file; allowed: a folder (made if absent)")
    folder = _existing_ancestor(path)
    if not os.path.isdir(folder):
        raise UserError(f"{what} {path!r}: {folder!r} is a file; allowed: a folder (made if absent)")
    probe_folder(f"{what} {path!r}", folder)


# The user's environment, not the engine: no room, no permission, a read-only or failing disk.
ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}


class writing:  # noqa: N801 - used as a context manager, like open
    """Turn an ``OSError`` of the environment while writing ``what`` into one line (exit 2).
    Reusable: one instance may guard several steps of a run."""

    def __init__(self, what: str, resumable: bool = False) -> None:
        self.what, self.resumable = what, resumable

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or not isinstance(exc, OSError) or exc.errno not in ENVIRONMENT:
            return False
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        then = " (the store is resumable: run the same command again)" if self.resumable else ""
        raise UserError(
            f"{self.what}: writing failed: {exc.strerror or exc}{where}; "
            f"allowed: a writable location with free space{then}"
        ) from None
