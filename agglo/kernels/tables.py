"""The rows of a travel-time table (docs/model.md, "Travel-time tables"): the pairs a user's
router or survey listed, in the neighbourhood's CSR layout, sorted by minutes.

Notes
-----
Row ``i`` holds the pairs ``(i, j)`` the table lists, sorted by minutes, then town index
(the order :func:`agglo.kernels.neighbourhood._sort_row` gives a distance row), so that a
cap reaches a prefix of every row as it does on distance rows. Built with a counting sort
by origin (stable: a row's pairs keep the table's order until sorted) and one sort per
row in parallel; a pair listed twice is found on the way (the row's later copy).
The incoming rows of an asymmetric table are the same build with the columns swapped.
"""

import numpy as np

from agglo.kernels.jit import parallel, prange, serial
from agglo.kernels.neighbourhood import _sort_row
from agglo.kernels.reach import haversine_km, minutes_of_km
from agglo.kernels.rows import _prefix_lengths

N_PARTS = 64  # row ranges of the parallel sort, each with its own scratch of N stamps


@serial
def _by_origin(n, origin):
    """(offsets, the table rows by origin in table order): a counting sort, or none for a
    table already grouped by origin in ascending order (a router's usual output)."""
    offsets = np.zeros(n + 1, dtype=np.int64)
    grouped = True
    for k in range(origin.shape[0]):
        offsets[origin[k] + 1] += 1
        if k > 0 and origin[k] < origin[k - 1]:
            grouped = False
    for i in range(n):
        offsets[i + 1] += offsets[i]
    if grouped:
        return offsets, np.arange(origin.shape[0])
    fill = offsets[:n].copy()
    at = np.empty(origin.shape[0], dtype=np.int64)
    for k in range(origin.shape[0]):
        at[fill[origin[k]]] = k
        fill[origin[k]] += 1
    return offsets, at


@parallel
def _sorted_rows(offsets, at, dest, minutes, parts, neighbour, minutes_out, log_out, repeated):
    n = offsets.shape[0] - 1
    for c in prange(parts.shape[0] - 1):
        stamp = np.full(n, -1, dtype=np.int64)  # the last row that listed j
        for i in range(parts[c], parts[c + 1]):
            start = offsets[i]
            count = offsets[i + 1] - start
            if count == 0:
                continue
            row_j = np.empty(count, dtype=np.int32)
            row_d = np.empty(count, dtype=np.float64)
            top = 0.0
            for q in range(count):
                k = at[start + q]
                j = dest[k]
                if stamp[j] == i and repeated[i] < 0:
                    repeated[i] = k  # table order within the row: the first later copy
                stamp[j] = i
                row_j[q] = j
                row_d[q] = minutes[k]
                top = max(top, minutes[k])
            ordered = True  # already sorted by (minutes, town index), as the engine writes a table
            for q in range(1, count):
                if row_d[q] < row_d[q - 1] or (row_d[q] == row_d[q - 1] and row_j[q] < row_j[q - 1]):
                    ordered = False
                    break
            by = np.arange(count) if ordered else _sort_row(row_j, row_d, count, top)
            for q in range(count):
                neighbour[start + q] = row_j[by[q]]
                minutes_out[start + q] = row_d[by[q]]
                log_out[start + q] = np.float32(np.log(row_d[by[q]]))


def table_rows(n, origin, dest, minutes):
    """CSR rows of the pairs ``origin[k] -> dest[k]`` (town indices, 0..n-1, no self pair) in
    ``minutes[k]`` (finite, >= 0).

    Returns ``offsets`` (int64, n+1), ``neighbour`` (int32), ``log_min`` (float32 log minutes,
    -inf for 0), ``minutes`` (float64) and ``repeated``: the table row of the first pair that
    repeats an earlier one (the earliest such row), or -1.
    """
    origin = np.ascontiguousarray(origin, dtype=np.int32)
    dest = np.ascontiguousarray(dest, dtype=np.int32)
    minutes = np.ascontiguousarray(minutes, dtype=np.float64)
    offsets, at = _by_origin(n, origin)
    pairs = int(offsets[-1])
    cuts = np.searchsorted(offsets, np.linspace(0, pairs, N_PARTS + 1), side="left").clip(0, n)
    parts = np.unique(np.concatenate([[0], cuts, [n]]))
    neighbour = np.empty(pairs, dtype=np.int32)
    minutes_out = np.empty(pairs, dtype=np.float64)
    log_out = np.empty(pairs, dtype=np.float32)
    repeated = np.full(n, -1, dtype=np.int64)
    with np.errstate(divide="ignore"):
        _sorted_rows(offsets, at, dest, minutes, parts.astype(np.int64), neighbour, minutes_out, log_out, repeated)
    found = repeated[repeated >= 0]
    return offsets, neighbour, log_out, minutes_out, int(found.min()) if found.size else -1


def rows_within(offsets, arrays, limit):
    """The prefix of every row whose minutes (``arrays[0]``) are at most ``limit``, of each of
    ``arrays`` (per-pair arrays of the rows): (offsets, arrays)."""
    keep = _prefix_lengths(offsets, arrays[0], float(limit))
    new_offsets = np.cumsum(keep)
    if new_offsets[-1] == offsets[-1]:
        return offsets, arrays
    counts = np.diff(offsets)
    position = np.arange(offsets[-1]) - np.repeat(offsets[:-1], counts)
    mask = position < np.repeat(keep[1:], counts)
    return new_offsets, [a[mask] for a in arrays]


@parallel
def pair_minutes_km(offsets, neighbour, lat, lon, circuity, speed_kmh):
    """docs/model.md's straight-line t_ij of every pair of distance rows, float64: the same
    operations, so the same bits, as the kernels' exact reach test (``agglo times``)."""
    out = np.empty(neighbour.shape[0], dtype=np.float64)
    for i in prange(offsets.shape[0] - 1):
        for p in range(offsets[i], offsets[i + 1]):
            j = neighbour[p]
            out[p] = minutes_of_km(haversine_km(lat[i], lon[i], lat[j], lon[j]), circuity, speed_kmh)
    return out
