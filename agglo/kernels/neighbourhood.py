"""The neighbourhood of every town (CSR), built once per run.

Notes
-----
The neighbourhood holds, for every town, every other town within ``radius_km``,
sorted by distance then town index. A scenario whose reach radius is smaller
uses a prefix of each row, so one neighbourhood serves a whole sweep.
Candidates come from a uniform grid of cubes over the unit vectors: memory grows
with the number of pairs, never with N².
"""

from typing import NamedTuple

import numpy as np

from agglo.kernels.jit import parallel, prange, serial
from agglo.kernels.reach import DEG, EARTH_RADIUS_KM, haversine_pre


class Grid(NamedTuple):
    """The towns on a uniform grid of cubes over their unit vectors, cells ``cell`` wide."""

    phi: np.ndarray  # latitude, radians
    lam: np.ndarray  # longitude, radians
    cos_phi: np.ndarray
    xyz: np.ndarray  # (N, 3) unit vectors
    order: np.ndarray  # towns sorted by cell key
    sorted_keys: np.ndarray  # their cell keys
    cell: float
    n_cells: int
    chord_max: float  # squared chord pre-filter, a little wider than the radius
    radius_km: float


@serial
def _cell_keys(xyz, cell, n_cells):
    keys = np.empty(xyz.shape[0], dtype=np.int64)
    for i in range(xyz.shape[0]):
        cx = np.int64((xyz[i, 0] + 1.0) / cell)
        cy = np.int64((xyz[i, 1] + 1.0) / cell)
        cz = np.int64((xyz[i, 2] + 1.0) / cell)
        keys[i] = (cx * n_cells + cy) * n_cells + cz
    return keys


@serial
def _search(sorted_keys, key):
    lo = np.searchsorted(sorted_keys, key, side="left")
    hi = np.searchsorted(sorted_keys, key, side="right")
    return lo, hi


@serial
def _row_candidates(i, grid, out_j, out_d):
    """The neighbours of i. Without room in ``out_j`` (the counting pass): how many
    towns pass the chord pre-filter, a superset. Otherwise: fill out_j/out_d with those
    within ``radius_km`` by haversine, and return how many."""
    xyz, cell, n_cells = grid.xyz, grid.cell, grid.n_cells
    cx = np.int64((xyz[i, 0] + 1.0) / cell)
    cy = np.int64((xyz[i, 1] + 1.0) / cell)
    cz = np.int64((xyz[i, 2] + 1.0) / cell)
    fill = out_j.shape[0] > 0
    count = 0
    for dx in range(-1, 2):
        for dy in range(-1, 2):
            for dz in range(-1, 2):
                ax, ay, az = cx + dx, cy + dy, cz + dz
                if ax < 0 or ay < 0 or az < 0 or ax >= n_cells or ay >= n_cells or az >= n_cells:
                    continue
                lo, hi = _search(grid.sorted_keys, (ax * n_cells + ay) * n_cells + az)
                for q in range(lo, hi):
                    j = grid.order[q]
                    if j == i:
                        continue
                    ex = xyz[i, 0] - xyz[j, 0]
                    ey = xyz[i, 1] - xyz[j, 1]
                    ez = xyz[i, 2] - xyz[j, 2]
                    if ex * ex + ey * ey + ez * ez > grid.chord_max:
                        continue
                    if not fill:
                        count += 1
                        continue
                    d = haversine_pre(
                        grid.phi[i], grid.lam[i], grid.cos_phi[i], grid.phi[j], grid.lam[j], grid.cos_phi[j]
                    )
                    if d <= grid.radius_km:
                        out_j[count] = j
                        out_d[count] = d
                        count += 1
    return count


@parallel
def _count_rows(grid):
    n = grid.phi.shape[0]
    counts = np.zeros(n, dtype=np.int64)
    empty_j = np.empty(0, dtype=np.int32)
    empty_d = np.empty(0, dtype=np.float64)
    for i in prange(n):
        counts[i] = _row_candidates(i, grid, empty_j, empty_d)
    return counts


@serial
def _before(row_j, row_d, a, b):
    """Entry a sorts before entry b: by distance, then town index."""
    return row_d[a] < row_d[b] or (row_d[a] == row_d[b] and row_j[a] < row_j[b])


SMALL_BUCKET = 24  # insertion sort up to this many entries, a merge sort beyond


@serial
def _sort_row(row_j, row_d, n, radius_km):
    """Order of the first n entries by (distance, town index).

    A bucket sort on floor(n · (d / radius)²), monotone in d (so buckets keep the
    order) and about uniform for towns spread over the disc, then each bucket sorted
    by (distance, town index): every (d, j) is distinct, so the order is exactly the
    one a full sort gives, in about n steps instead of n log n.
    """
    by = np.empty(n, dtype=np.int64)
    if n == 0:
        return by
    bucket = np.empty(n, dtype=np.int64)
    start = np.zeros(n + 1, dtype=np.int64)
    for p in range(n):
        # 0 <= d <= radius: (d / radius)² in [0, 1], no overflow for any radius.
        x = row_d[p] / radius_km if radius_km > 0.0 else 0.0
        x = x * x * n
        b = np.int64(x) if x < n else n - 1
        bucket[p] = b
        start[b + 1] += 1
    for b in range(n):
        start[b + 1] += start[b]
    fill = start[:n].copy()
    for p in range(n):
        by[fill[bucket[p]]] = p
        fill[bucket[p]] += 1
    for b in range(n):
        lo = start[b]
        hi = start[b + 1]
        if hi - lo <= 1:
            continue
        if hi - lo <= SMALL_BUCKET:
            for a in range(lo + 1, hi):
                c = a
                while c > lo and _before(row_j, row_d, by[c], by[c - 1]):
                    by[c - 1], by[c] = by[c], by[c - 1]
                    c -= 1
            continue
        # Many towns at one distance band: by town index, then stably by distance.
        part = by[lo:hi].copy()
        part = part[np.argsort(row_j[part], kind="mergesort")]
        ranked = np.argsort(row_d[part], kind="mergesort")
        for q in range(hi - lo):
            by[lo + q] = part[ranked[q]]
    return by


@parallel
def _fill_rows(grid, offsets, kept, neighbour, dist_km, take_log):
    n = grid.phi.shape[0]
    for i in prange(n):
        start = offsets[i]
        stop = offsets[i + 1]
        if stop == start:
            continue
        row_j = np.empty(stop - start, dtype=np.int32)
        row_d = np.empty(stop - start, dtype=np.float64)
        count = _row_candidates(i, grid, row_j, row_d)
        kept[i] = count
        by = _sort_row(row_j, row_d, count, grid.radius_km)
        for p in range(count):
            neighbour[start + p] = row_j[by[p]]
            if take_log:
                dist_km[start + p] = np.log(row_d[by[p]])
            else:
                dist_km[start + p] = row_d[by[p]]


@serial
def _compact(offsets, kept, neighbour, dist_km):
    """Close the gaps left by pre-filter candidates beyond the radius (rows move left)."""
    n = kept.shape[0]
    new_offsets = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        new_offsets[i + 1] = new_offsets[i] + kept[i]
        if new_offsets[i] != offsets[i]:
            for p in range(kept[i]):
                neighbour[new_offsets[i] + p] = neighbour[offsets[i] + p]
                dist_km[new_offsets[i] + p] = dist_km[offsets[i] + p]
    return new_offsets


def _grid_of(lat, lon, radius_km):
    """The unit-sphere points and the cell grid the build searches (cells one chord wide)."""
    phi, lam = lat * DEG, lon * DEG
    xyz = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1)
    angle = min(radius_km / EARTH_RADIUS_KM, np.pi)
    chord = 2.0 * np.sin(angle / 2.0)
    # The chord test is only a pre-filter: widen it so rounding never drops a pair.
    chord = chord * (1.0 + 1e-9) + 1e-12
    cell = max(chord, 1e-6)
    n_cells = int(2.0 / cell) + 2
    return phi, lam, xyz, chord, cell, n_cells


def cell_pair_bound(lat, lon, radius_km) -> int:
    """An upper bound on the ordered pairs (self included) within ``radius_km``, from
    the build's own cell grid: for every town, the towns of its cell and the 26 around
    it. It costs a sort of the towns' cell keys, not a look at any pair."""
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    _, _, xyz, _, cell, n_cells = _grid_of(lat, lon, float(radius_km))
    cells, counts = np.unique(_cell_keys(xyz, cell, n_cells), return_counts=True)
    cz = cells % n_cells
    cy = (cells // n_cells) % n_cells
    cx = cells // (n_cells * n_cells)
    around = np.zeros(cells.shape[0], dtype=np.int64)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                key = ((cx + dx) * n_cells + (cy + dy)) * n_cells + (cz + dz)
                at = np.minimum(np.searchsorted(cells, key), cells.shape[0] - 1)
                around += np.where(cells[at] == key, counts[at], 0)
    return int(np.sum(counts * around))


def build_neighbourhood(lat, lon, radius_km, log_float32=False):
    """Every pair of towns within ``radius_km`` of each other, as CSR arrays.

    Returns ``offsets`` (int64, N+1), ``neighbour`` (int32) and ``dist_km``
    (float64): the neighbours of town ``i`` are ``neighbour[offsets[i]:offsets[i+1]]``,
    sorted by distance, ties by index. With ``log_float32`` the third array is
    ``log(dist_km)`` rounded to float32 (-inf for a repeated place): 4 bytes a pair
    instead of 8, and the only distance the scenario kernels read per pair.
    """
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    n = lat.shape[0]
    radius_km = float(radius_km)
    phi, lam, xyz, chord, cell, n_cells = _grid_of(lat, lon, radius_km)
    keys = _cell_keys(xyz, cell, n_cells)
    order = np.argsort(keys, kind="mergesort").astype(np.int64)
    grid = Grid(phi, lam, np.cos(phi), xyz, order, keys[order], cell, n_cells, chord * chord, radius_km)
    counts = _count_rows(grid)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    neighbour = np.empty(offsets[-1], dtype=np.int32)
    dist_km = np.empty(offsets[-1], dtype=np.float32 if log_float32 else np.float64)
    kept = np.zeros(n, dtype=np.int64)
    _fill_rows(grid, offsets, kept, neighbour, dist_km, log_float32)
    offsets = _compact(offsets, kept, neighbour, dist_km)
    total = int(offsets[-1])
    # Views: the few pairs the pre-filter let through beyond the radius leave a tail.
    return offsets, neighbour[:total], dist_km[:total]
