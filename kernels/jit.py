"""The one place where Numba flags are set.

``fastmath`` allows reassociation and contraction only: no-NaN / no-inf flags
would break the NaN that marks "no core reachable". ``cache=True`` lets a second
process (a Dask worker) load the compiled code instead of compiling again.
"""

import numba

FASTMATH = {"reassoc", "contract", "nsz"}

serial = numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
parallel = numba.njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)
prange = numba.prange
