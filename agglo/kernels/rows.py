"""What the kernels read per neighbourhood row beyond the neighbours: each pair's log
population relative to the row's largest, the row's candidate cores with their float64
distances, the distance buckets that start a reach search, and a mode's truncated copy."""

import numpy as np

from agglo.kernels.jit import parallel, prange, serial
from agglo.kernels.reach import haversine_km


@parallel
def _row_lp(offsets, neighbour, log_pop, floor, lp_rel, lp_max):
    for i in prange(offsets.shape[0] - 1):
        top = max(log_pop[i], floor[i])
        for p in range(offsets[i], offsets[i + 1]):
            top = max(top, log_pop[neighbour[p]])
        lp_max[i] = top
        for p in range(offsets[i], offsets[i + 1]):
            lp_rel[p] = log_pop[neighbour[p]] - top


@serial
def _candidate_cores(offsets, neighbour, candidate, lat, lon, minutes):
    n = offsets.shape[0] - 1
    cand_offsets = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        count = 0
        for p in range(offsets[i], offsets[i + 1]):
            if candidate[neighbour[p]]:
                count += 1
        cand_offsets[i + 1] = cand_offsets[i] + count
    cand_pos = np.empty(cand_offsets[n], dtype=np.int32)
    cand_town = np.empty(cand_offsets[n], dtype=np.int32)
    cand_d = np.empty(cand_offsets[n], dtype=np.float64)
    for i in range(n):
        k = cand_offsets[i]
        for p in range(offsets[i], offsets[i + 1]):
            j = neighbour[p]
            if candidate[j]:
                cand_pos[k] = p - offsets[i]
                cand_town[k] = j
                if minutes.shape[0] > 0:  # a travel-time table's rows: its minutes
                    cand_d[k] = minutes[p]
                else:
                    cand_d[k] = haversine_km(lat[i], lon[i], lat[j], lon[j])
                k += 1
    return cand_offsets, cand_pos, cand_town, cand_d


@parallel
def _row_buckets(offsets, log_dist, radius_km, n_buckets):
    n = offsets.shape[0] - 1
    bucket = np.empty((n, n_buckets + 1), dtype=np.int32)
    for i in prange(n):
        start = offsets[i]
        stop = offsets[i + 1]
        q = 0
        for k in range(n_buckets):
            limit = np.log(radius_km * np.sqrt(k / n_buckets)) if k > 0 else -np.inf
            while start + q < stop and np.float64(log_dist[start + q]) <= limit:
                q += 1
            bucket[i, k] = q
        bucket[i, n_buckets] = stop - start
    return bucket


N_BUCKETS = 32


def row_lp(offsets, neighbour, log_pop, floor=None):
    """``lp_rel`` (float32, per pair): log population of the neighbour minus ``lp_max``,
    the largest log population of the row, its town and ``floor`` (per town: the largest of
    other rows, so that one ``lp_max`` serves them all; so ``lp_rel <= 0``)."""
    log_pop = np.ascontiguousarray(log_pop, dtype=np.float64)
    lp_rel = np.empty(neighbour.shape[0], dtype=np.float32)
    lp_max = np.empty(offsets.shape[0] - 1, dtype=np.float64)
    _row_lp(offsets, neighbour, log_pop, log_pop if floor is None else floor, lp_rel, lp_max)
    return lp_rel, lp_max


def row_tables(offsets, neighbour, log_dist, radius_km, candidate, lat, lon, minutes=None):
    """Per-row tables the scenario kernels read besides the pairs.

    ``bucket`` (N, 33) int32: the first row position beyond ``radius_km · sqrt(k/32)``,
    so that a reach limit is searched among about 1/32 of a row;
    ``cand_offsets``/``cand_pos``/``cand_town``/``cand_d``: CSR of the row positions
    (ascending) whose neighbour is ``candidate`` (may be a core), that neighbour, and
    its float64 distance in km (``minutes`` given: the rows of a travel-time table, whose
    ``radius_km`` and distances are that table's minutes).
    """
    minutes = np.empty(0, dtype=np.float64) if minutes is None else minutes
    bucket = _row_buckets(offsets, log_dist, float(radius_km), N_BUCKETS)
    cand_offsets, cand_pos, cand_town, cand_d = _candidate_cores(
        offsets, neighbour, np.ascontiguousarray(candidate, dtype=np.bool_), lat, lon, minutes
    )
    return bucket, cand_offsets, cand_pos, cand_town, cand_d


@parallel
def _prefix_lengths(offsets, log_dist, limit):
    n = offsets.shape[0] - 1
    keep = np.zeros(n + 1, dtype=np.int64)
    for i in prange(n):
        q = offsets[i]
        while q < offsets[i + 1] and np.float64(log_dist[q]) <= limit:
            q += 1
        keep[i + 1] = q - offsets[i]
    return keep


@parallel
def _copy_prefixes(offsets, new_offsets, arrays_i32, arrays_f32_a, arrays_f32_b, out_i32, out_a, out_b):
    for i in prange(offsets.shape[0] - 1):
        for q in range(new_offsets[i + 1] - new_offsets[i]):
            out_i32[new_offsets[i] + q] = arrays_i32[offsets[i] + q]
            out_a[new_offsets[i] + q] = arrays_f32_a[offsets[i] + q]
            out_b[new_offsets[i] + q] = arrays_f32_b[offsets[i] + q]


def truncate_rows(offsets, neighbour, log_dist, lp_rel, radius_km):
    """The neighbourhood within a smaller radius: the prefix of every row whose float32
    log-distance is at most log(radius_km) (plus 1e-6, more than float32's rounding, so
    no pair within the radius is lost). A mode whose caps reach much less far than the
    other's reads only these pairs: contiguous, instead of a prefix of each long row."""
    limit = np.log(radius_km) + 1e-6 * max(1.0, abs(np.log(radius_km))) if radius_km > 0 else -np.inf
    keep = _prefix_lengths(offsets, log_dist, limit)
    new_offsets = np.cumsum(keep)
    total = int(new_offsets[-1])
    out_nb = np.empty(total, dtype=np.int32)
    out_ld = np.empty(total, dtype=np.float32)
    out_lp = np.empty(total, dtype=np.float32)
    _copy_prefixes(offsets, new_offsets, neighbour, log_dist, lp_rel, out_nb, out_ld, out_lp)
    return new_offsets, out_nb, out_ld, out_lp
