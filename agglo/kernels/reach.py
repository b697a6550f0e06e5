"""Great-circle distance, travel time and the reach search (docs/model.md, "Travel time",
"Reachability under a mobility cap").

Notes
-----
Haversine, ``R = 6371.0088 km``, and one-way travel time in minutes::

    d_ij = 2 R asin( sqrt( sin²(Δφ/2) + cos φ_i cos φ_j sin²(Δλ/2) ) )
    t_ij = 60 · circuity · d_ij / speed_kmh

On the rows of a travel-time table (docs/model.md, "Travel-time tables") ``t_ij`` is the
table's minutes times the time factor, and "km" below reads "table minutes".

A row of the neighbourhood is sorted by distance, so ``R(i)`` is a prefix of it:
:func:`reach_end` finds it by bisection on the float32 log-distances inside one of
the row's 32 buckets, and settles it with the float64 ``t_ij <= cap_min`` wherever
float32 could be in doubt. Reachability is exact, never an artefact of single precision.
"""

import numpy as np

from agglo.kernels.jit import inlined, prange, strict, strict_parallel

EARTH_RADIUS_KM = 6371.0088
DEG = np.pi / 180.0
DOUBT = 1e-6  # |log d - log limit| below which a float32 log-distance cannot decide reachability


@strict
def haversine_pre(phi_i, lam_i, cos_i, phi_j, lam_j, cos_j):
    """Haversine distance in km from latitudes and longitudes in radians and the cosines
    of the latitudes: the same operations, so the same bits, as :func:`haversine_km`."""
    half_dphi = np.sin((phi_j - phi_i) / 2.0)
    half_dlam = np.sin((lam_j - lam_i) / 2.0)
    h = half_dphi * half_dphi + cos_i * cos_j * half_dlam * half_dlam
    h = min(max(h, 0.0), 1.0)
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(h))


@strict
def haversine_km(lat_i, lon_i, lat_j, lon_j):
    """Haversine distance in km between points given in degrees."""
    phi_i = lat_i * DEG
    phi_j = lat_j * DEG
    return haversine_pre(phi_i, lon_i * DEG, np.cos(phi_i), phi_j, lon_j * DEG, np.cos(phi_j))


@inlined
def minutes_of_km(km, circuity, speed_kmh):
    """docs/model.md's t = 60 · circuity · d / speed_kmh, in that order of operations."""
    return 60 * circuity * km / speed_kmh


@inlined
def travel_minutes(places, i, j, circuity, speed_kmh):
    """t_ij between towns i and j of ``places``, bit for bit docs/model.md's formula."""
    km = haversine_km(places.lat[i], places.lon[i], places.lat[j], places.lon[j])
    return minutes_of_km(km, circuity, speed_kmh)


@inlined
def pair_minutes(rows, places, i, p, circuity, speed_kmh):
    """t_ij of the pair at position ``p`` of row ``i``: the travel-time table's minutes times
    the time factor (carried as ``circuity``) on table rows, else :func:`travel_minutes`."""
    if rows.minutes.shape[0] > 0:
        return circuity * rows.minutes[p]
    return travel_minutes(places, i, rows.neighbour[p], circuity, speed_kmh)


@inlined
def _reach_at_zero(log_dist, start, n):
    """Cap 0: only places at distance 0 (log -inf) are reachable."""
    end = 0
    while end < n and log_dist[start + end] == -np.inf:
        end += 1
    return end


def reach_km_of(cap_min, speed_kmh, circuity):
    """The distance a cap reaches, from docs/model.md's ``t_ij = 60 · circuity · d_ij / speed_kmh
    <= cap_min``: ``cap_min · speed_kmh / (60 · circuity)`` (scalars or NumPy arrays; on a
    travel-time table, the table's minutes it reaches). The one home of this formula."""
    return cap_min * speed_kmh / (60.0 * circuity)


reach_km = inlined(reach_km_of)  # the same, inside the kernels


@inlined
def reach_end(rows, places, i, circuity, speed_kmh, cap_min):
    """Length of the prefix of row ``i`` with t_ij <= cap_min, exactly as docs/model.md decides it."""
    offsets, log_dist, bucket, radius_km = rows.offsets, rows.log_dist, rows.bucket, rows.radius_km
    start = offsets[i]
    n = offsets[i + 1] - start
    if n == 0:
        return 0
    limit_km = reach_km(cap_min, speed_kmh, circuity)
    if not limit_km > 0:
        return _reach_at_zero(log_dist, start, n)
    limit = np.log(limit_km)
    n_buckets = bucket.shape[1] - 1
    k = n_buckets
    if limit_km < radius_km:
        k = int(n_buckets * (limit_km / radius_km) ** 2)
    lo = bucket[i, k - 1] if k > 0 else 0
    hi = bucket[i, min(k + 2, n_buckets)]
    while lo < hi:
        mid = (lo + hi) // 2
        if np.float64(log_dist[start + mid]) > limit:
            hi = mid
        else:
            lo = mid + 1
    end = lo
    doubt = DOUBT * max(1.0, abs(limit))
    # The bucket may have missed (rounding at its edges) or float32 may be in doubt
    # near the limit: walk with the exact travel time.
    while end > 0:
        ld = np.float64(log_dist[start + end - 1])
        beyond = ld > limit + doubt or (
            ld > limit - doubt and pair_minutes(rows, places, i, start + end - 1, circuity, speed_kmh) > cap_min
        )
        if not beyond:
            break
        end -= 1
    while end < n:
        ld = np.float64(log_dist[start + end])
        within = ld < limit - doubt or (
            ld < limit + doubt and pair_minutes(rows, places, i, start + end, circuity, speed_kmh) <= cap_min
        )
        if not within:
            break
        end += 1
    return end


@inlined
def count_in_region(neighbour, region, home, n):
    """How many of the first n neighbours lie in region ``home`` (closed borders' |R(i)|)."""
    count = 0
    for q in range(n):
        count += 1 if region[neighbour[q]] == home else 0
    return count


@strict_parallel
def reach_ends(rows, places, mode):
    """(S, N) int32: the reachable prefix of every row in every scenario of ``mode`` (the
    incoming rows of an asymmetric travel-time table, whose origin pass reads the outgoing)."""
    n_scen = mode.cap_min.shape[0]
    n = rows.offsets.shape[0] - 1
    out = np.zeros((n_scen, n), dtype=np.int32)
    for i in prange(n):
        for s in range(n_scen):
            out[s, i] = reach_end(rows, places, i, mode.circuity[s], mode.speed_kmh[s], mode.cap_min[s])
    return out
