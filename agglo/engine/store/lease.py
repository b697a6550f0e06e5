"""One writer at a time: the writer lease of a store.

The lease is a small JSON record beside the store, ``.NAME.lease`` next to ``NAME`` (beside,
not inside: it is taken before the template exists and must outlive an overwrite, which
renames the old store away). It names its holder: a random token, host, PID (and the
process's start time, so that a reused PID is not mistaken for the holder), the command,
when it was taken and the last heartbeat. The holder renews the heartbeat every
``HEARTBEAT_S`` seconds from a thread, and removes the lease when it ends, however it ends
(a SIGKILL excepted: that is what takeover is for).

A run or analysis that finds a lease held by someone else stops with one line naming the
holder, whatever its ``store.mode``. A lease is *stale*, and taken over with a message, when
its holder is a process of this host that is no longer running, or when its heartbeat is
older than ``store.lease_timeout_s`` (a holder on another host, or one that hangs).

Every batch checks, just before it writes and again before it marks itself done, that the
run still holds the lease (its token is the lease's): a batch of a writer that lost its lease
is never marked done, and its run stops. On a local file system each read and update of the
lease happens under an exclusive ``flock`` of the lease file, so two writers starting at the
same instant cannot both take it. An object store (``s3://``, ...) has no lock: there the
lease object is written and read back, which excludes all but writers starting within one
round trip of each other; the batch checksums (see :mod:`agglo.engine.store.cube`) catch what
such a race could leave.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from agglo.engine.errors import UserError

HEARTBEAT_S = 5.0
DEFAULT_TIMEOUT_S = 120.0
MIN_TIMEOUT_S = 4 * HEARTBEAT_S


@dataclass(frozen=True)
class Holder:
    token: str
    host: str
    pid: int
    pid_start: str
    command: str
    started: float
    heartbeat: float

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return (
            f"{self.command} (host {self.host}, PID {self.pid}, since {since}, "
            f"heartbeat {max(0.0, now - self.heartbeat):.0f} s ago)"
        )


UNREADABLE = "unreadable"  # a lease file that is not a lease record (its writer was killed writing it)


def lease_path(store_path: str) -> str:
    """Where the lease of ``store_path`` lives: ``.NAME.lease`` in the store's folder."""
    text = str(store_path).rstrip("/")
    head, _, name = text.rpartition("/")
    return f"{head}/.{name}.lease" if head or text.startswith("/") else f".{name}.lease"


def _process_start(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (Linux), '' where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]


def _running_here(holder: Holder) -> bool:
    """Whether the holder, a process of this host, still runs (a zombie does not)."""
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    try:
        state = Path(f"/proc/{holder.pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True  # no /proc (not Linux): the PID exists, trust it
    if state == "Z":
        return False
    return not holder.pid_start or _process_start(holder.pid) == holder.pid_start


def why_stale(holder: Holder | str, timeout_s: float, now: float | None = None) -> str | None:
    """Why a found lease may be taken over, or None while its holder is alive."""
    now = time.time() if now is None else now
    if holder == UNREADABLE:
        return "its file is not a lease record (its writer was killed while writing it)"
    if holder.host == socket.gethostname() and not _running_here(holder):
        return f"process {holder.pid} is not running on this host"
    if now - holder.heartbeat > timeout_s:
        return f"no heartbeat for {now - holder.heartbeat:.0f} s, more than store.lease_timeout_s = {timeout_s:g}"
    return None


def _parse(data: bytes) -> Holder | str | None:
    if not data.strip():
        return None if not data else UNREADABLE
    try:
        holder = Holder(**json.loads(data))
    except (ValueError, TypeError):
        return UNREADABLE
    kinds = {
        "token": str,
        "host": str,
        "pid": int,
        "pid_start": str,
        "command": str,
        "started": float,
        "heartbeat": float,
    }
    ok = all(isinstance(getattr(holder, k), (int, float) if t is float else t) for k, t in kinds.items())
    return holder if ok else UNREADABLE


def _encode(holder: Holder) -> bytes:
    return json.dumps(asdict(holder), sort_keys=True).encode()


# --- the two places a lease can live: a local file (under flock) or an object -------------


@contextlib.contextmanager
def _locked_file(path: str, create: bool):
    """An fd of the lease file under an exclusive flock, or None when there is no file.

    The inode is checked after locking: a holder that released the lease removed the file
    while we waited, and a lock on a removed file would guard nothing."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except FileNotFoundError:
            yield None
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield fd
    finally:
        os.close(fd)  # releases the lock


def _transact(path: str, change, create: bool = True):
    """Read the lease at ``path``, let ``change(found)`` decide, apply its decision.

    ``change`` returns (what to store: a Holder, None to remove the lease, or ... to leave
    it as it is; a result to return)."""
    if "://" in path:
        import fsspec

        fs, where = fsspec.core.url_to_fs(path)
        found = _parse(fs.cat_file(where)) if fs.exists(where) else None
        new, result = change(found)
        if new is None and found is not None:
            fs.rm_file(where)
        elif isinstance(new, Holder):
            fs.pipe_file(where, _encode(new))
        return result
    with _locked_file(path, create) as fd:
        if fd is None:
            return change(None)[1]
        found = _parse(os.pread(fd, 1 << 16, 0))
        new, result = change(found)
        if new is None:
            os.unlink(path)  # under the lock: a waiter sees the inode gone and starts over
        elif isinstance(new, Holder):
            data = _encode(new)
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        return result


def read(store_path: str) -> Holder | str | None:
    """The lease of ``store_path`` as found (a Holder, UNREADABLE, or None), changing nothing."""
    return _transact(lease_path(store_path), lambda found: (..., found), create=False)


def holds(store_path: str, token: str) -> bool:
    """Whether the lease of ``store_path`` is (still) the one with ``token``."""
    found = read(store_path)
    return isinstance(found, Holder) and found.token == token


# --- taking, renewing and giving back ------------------------------------------------------


class Lease:
    """A taken lease; renewed from a thread until :meth:`release`."""

    def __init__(self, store_path: str, holder: Holder, timeout_s: float):
        self.store_path = store_path
        self.path = lease_path(store_path)
        self.holder = holder
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="agglo-lease-heartbeat", daemon=True)
        self._thread.start()

    @property
    def token(self) -> str:
        return self.holder.token

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.renew()
            except OSError:
                pass  # a failing disk: the next beat tries again; the batches' own checks decide

    def renew(self) -> None:
        """A new heartbeat, if the lease is still ours (a lost lease is never taken back:
        the batches' :func:`check` stops the run)."""

        def change(found):
            if isinstance(found, Holder) and found.token == self.token:
                return Holder(**{**asdict(found), "heartbeat": time.time()}), None
            return ..., None

        _transact(self.path, change, create=False)

    def release(self) -> None:
        self._stop.set()
        self._thread.join()

        def change(found):
            mine = isinstance(found, Holder) and found.token == self.token
            return (None if mine else ...), None

        with contextlib.suppress(OSError):
            _transact(self.path, change, create=False)


def acquire(store_path: str, command: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Lease:
    """Take the writer lease of ``store_path`` or stop with one line naming its holder."""
    now = time.time()
    pid = os.getpid()
    mine = Holder(
        token=secrets.token_hex(16),
        host=socket.gethostname(),
        pid=pid,
        pid_start=_process_start(pid),
        command=command,
        started=now,
        heartbeat=now,
    )
    what = f"store.path = {store_path!r}"

    def change(found):
        if found is None:
            return mine, None
        stale = why_stale(found, timeout_s)
        if stale is None:
            return ..., found
        held = found.describe() if isinstance(found, Holder) else "an unknown writer"
        print(f"{what}: taking over the writer lease of {held}: {stale}", file=sys.stderr)
        return mine, None

    path = lease_path(store_path)
    if "://" not in path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        holder = _transact(path, change)
        if holder is None and "://" in path and not holds(store_path, mine.token):
            holder = read(store_path)  # an object store: another writer's put landed after ours
    except OSError as exc:
        reason = errno.errorcode.get(exc.errno, "") if exc.errno else ""
        raise UserError(
            f"{what}: cannot take its writer lease {path!r} ({exc.strerror or exc}{', ' + reason if reason else ''}); "
            "allowed: a store whose folder accepts files"
        ) from None
    if holder is not None:
        held = holder.describe() if isinstance(holder, Holder) else "an unknown writer"
        raise UserError(
            f"{what} is being written by {held}; allowed: wait until it ends, or another store.path "
            f"(a lease without a heartbeat for store.lease_timeout_s = {timeout_s:g} s is taken over)"
        )
    return Lease(store_path, mine, timeout_s)


@contextlib.contextmanager
def held(store_path: str, command: str, timeout_s: float = DEFAULT_TIMEOUT_S):
    """The lease of ``store_path`` for the block; given back when it ends."""
    lease = acquire(store_path, command, timeout_s)
    try:
        yield lease
    finally:
        lease.release()


def check(store_path: str, token: str | None, what: str) -> None:
    """Stop a batch whose run no longer holds the lease (``token`` None: no lease in use)."""
    if token is None:
        return
    found = read(store_path)
    if isinstance(found, Holder) and found.token == token:
        return
    held = found.describe() if isinstance(found, Holder) else ("nobody" if found is None else "an unknown writer")
    raise LeaseLost(
        f"store.path = {store_path!r}: this run lost its writer lease (now held by {held}); "
        f"{what}, the batches marked done stay valid; allowed: the same 'agglo run' once that holder has ended (it resumes)"
    )


class LeaseLost(UserError):
    """The run's lease was taken over (its heartbeat was late, or someone removed it)."""
