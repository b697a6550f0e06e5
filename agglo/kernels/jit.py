"""The one place where Numba flags are set.

``inlined`` is ``strict`` inlined into its caller at Numba's IR level, and ``borrowed`` is
``strict`` without reference counting: the kernels take records of arrays, and every array
read out of a record costs an atomic increment and decrement, which in a per-row helper
costs more than its arithmetic. So the loop over a chunk of rows is ``borrowed`` (it
allocates nothing; its buffers come from its caller) with its per-row and per-pair helpers
``inlined`` into it. Only helpers called from ``strict`` code are inlined: inlined code
takes its caller's flags.
``serial``/``parallel`` allow reassociation and contraction only: no-NaN / no-inf
flags would break the NaN that marks "no core reachable". ``strict``/``strict_parallel``
carry no fast-math flag at all: travel times decide reachability and must be bit for
bit what docs/model.md's formula gives, and the gravity terms must be the same IEEE
operations whichever loop shape computes them (see :mod:`agglo.kernels.gravity.terms`).
``cache=CACHE`` lets a second process (a Dask worker) load the compiled code
instead of compiling again; the cache folder is keyed by the kernels' sources.
"""

import hashlib
import os
from pathlib import Path

import numba

CACHE = os.environ.get("AGGLO_NO_CACHE") is None


def cache_root() -> Path:
    """The user's agglo cache folder: ``$XDG_CACHE_HOME/agglo``, else ``~/.cache/agglo``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agglo"


def _cache_dir() -> str | None:
    """Numba invalidates a cached function when its own file changes, not when a function
    it inlines from another file does (an edited exp32 would stay in the cached gravity
    kernels). So the cache lives in a folder named by a hash of every kernel source."""
    sources = sorted(Path(__file__).parent.rglob("*.py"))
    key = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in sources)).hexdigest()[:16]
    base = cache_root() / "numba" / key
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # not writable: Numba's own default (next to the sources)
    return str(base)


if CACHE and "NUMBA_CACHE_DIR" not in os.environ:
    _dir = _cache_dir()
    if _dir is not None:
        numba.config.CACHE_DIR = _dir

FASTMATH = {"reassoc", "contract", "nsz"}

serial = numba.njit(cache=CACHE, nogil=True, fastmath=FASTMATH)
parallel = numba.njit(cache=CACHE, nogil=True, fastmath=FASTMATH, parallel=True)
strict = numba.njit(cache=CACHE, nogil=True)
inlined = numba.njit(cache=CACHE, nogil=True, inline="always")
borrowed = numba.njit(cache=CACHE, nogil=True, _nrt=False)
strict_parallel = numba.njit(cache=CACHE, nogil=True, parallel=True)
prange = numba.prange
