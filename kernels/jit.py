"""The one place where Numba flags are set.

``serial``/``parallel`` allow reassociation and contraction only: no-NaN / no-inf
flags would break the NaN that marks "no core reachable". ``strict``/``strict_parallel``
carry no fast-math flag at all: travel times decide reachability and must be bit for
bit what MODEL.md's formula gives, and the gravity terms must be the same IEEE
operations whichever loop shape computes them (see :mod:`kernels.gravity`).
``cache=CACHE`` lets a second process (a Dask worker) load the compiled code
instead of compiling again.
"""

import os

import numba

CACHE = os.environ.get("AGGLO_NO_CACHE") is None

FASTMATH = {"reassoc", "contract", "nsz"}

serial = numba.njit(cache=CACHE, nogil=True, fastmath=FASTMATH)
parallel = numba.njit(cache=CACHE, nogil=True, fastmath=FASTMATH, parallel=True)
strict = numba.njit(cache=CACHE, nogil=True)
strict_parallel = numba.njit(cache=CACHE, nogil=True, parallel=True)
prange = numba.prange
