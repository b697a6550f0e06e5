"""A synthetic road network where straight lines and roads disagree: a river and one bridge.

No registry package ships a regional road network or inter-town travel times for offline
use (docs/traveltimes.md says what was looked for), so the travel-time tables' example and
tests route on this one. Towns sit on a square lattice of roads (``spacing_km`` apart,
every lattice node a town); a river runs north-south between two columns, crossed by one
bridge; a large core sits on the east bank far from the bridge. A road's minutes are its
great-circle length at ``speed_kmh``, so a route is never shorter than the straight line at
the same speed (the triangle inequality on the sphere), and a town across the river from the
core is near it as the crow flies and far from it by road.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LAT0, LON0 = 17.0, -96.7  # the lattice's centre (about Oaxaca's latitude)
KM_PER_DEG = 111.2


def river_and_bridge(
    half: int = 12,
    spacing_km: float = 5.0,
    speed_kmh: float = 50.0,
    bridge_row: int = 0,
    core_at: tuple = (3, 9),
    limit_min: float = 240.0,
    seed: int = 0,
):
    """(towns, table): the towns (a town table: town_id, name, lat, lon, population, and the
    lattice's column and row; column < 0 is the west bank) and the road minutes of every
    ordered pair within ``limit_min`` (origin, destination, minutes).

    The lattice spans columns and rows -half..half; the river lies between column -1 and
    column 0, crossed only on ``bridge_row``; ``core_at`` (column, row) is a city of 400 000,
    (-half + 2, -half + 2) one of 150 000 on the west bank; the other towns draw 500 to
    30 000 people (log-uniform, seeded)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    from agglo.kernels import haversine_km

    cols, rows = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1), indexing="ij")
    cols, rows = cols.ravel(), rows.ravel()
    n = cols.shape[0]
    lat = LAT0 + rows * spacing_km / KM_PER_DEG
    lon = LON0 + cols * spacing_km / (KM_PER_DEG * np.cos(np.radians(LAT0)))
    at = {(int(c), int(r)): k for k, (c, r) in enumerate(zip(cols, rows))}
    a, b = [], []
    for (c, r), k in at.items():
        for dc, dr in ((1, 0), (0, 1)):
            other = at.get((c + dc, r + dr))
            if other is None or (dc == 1 and c == -1 and r != bridge_row):  # the river, but for the bridge
                continue
            a.append(k)
            b.append(other)
    a, b = np.array(a), np.array(b)
    km = np.array([haversine_km(lat[i], lon[i], lat[j], lon[j]) for i, j in zip(a, b)])
    minutes = 60.0 * km / speed_kmh
    graph = coo_matrix((np.r_[minutes, minutes], (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()
    times = dijkstra(graph, directed=True, limit=limit_min)
    origin, dest = np.nonzero(np.isfinite(times) & (times > 0))
    rng = np.random.default_rng(seed)
    population = np.round(np.exp(rng.uniform(np.log(500), np.log(30000), n)))
    population[at[core_at]] = 400000
    population[at[(-half + 2, -half + 2)]] = 150000
    towns = pd.DataFrame(
        {
            "town_id": np.arange(n) + 1,
            "name": [f"c{c}r{r}" for c, r in zip(cols, rows)],
            "lat": lat,
            "lon": lon,
            "population": population,
            "column": cols,
            "row": rows,
        }
    )
    table = pd.DataFrame({"origin": origin + 1, "destination": dest + 1, "minutes": times[origin, dest]})
    return towns, table
