"""What every worker needs once per run: the towns as the kernels read them and, per mode,
the neighbourhood its scenarios can reach.

:func:`prepare` builds it from a town table: one neighbourhood within the widest reach
of the sweep (:func:`agglo.engine.planning.scenarios.reach_radii`), and for a mode that reaches
much less far (commuting) a truncated copy, so that its scenarios read only their pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agglo.engine.config.names import MODES
from agglo.engine.data.towns import Towns
from agglo.engine.errors import UserError
from agglo.kernels import Places, Rows, build_neighbourhood, cell_pair_bound, row_lp, row_tables, truncate_rows

N_CHUNKS = 256  # town ranges of about equal pair count; fixed so results never depend on threads
SHARE_ROWS = 0.8  # a mode reaching at least this fraction of the widest radius reads the widest rows
ORDER_BAND_DEG = 0.5  # latitude band of the spatial order
# The size check (check_size): what prepare's peak memory came to per neighbour pair
# (Mexico at 150 and 400 km: 25.8 and 26.5 bytes), and a fraction of the cell bound that
# stays below the true count, so that a refused network surely does not fit: towns spread
# evenly give pi r^2 of disc against at most about 11.7 r^2 of surface in a block of 3 x 3
# x 3 cells (0.27); measured: Mexico 50-400 km 0.38-0.63, a synthetic table 50-800 km
# 0.37-0.96 (tests/test_limits.py holds real towns to it).
BYTES_PER_PAIR = 28
PAIRS_PER_BOUND = 0.25


@dataclass(frozen=True)
class Network:
    """The kernels' :class:`~agglo.kernels.Places` and, per mode, its :class:`~agglo.kernels.Rows`
    (one shared object when the modes reach about as far); ``forced_core`` marks the towns
    that are cores whatever their size. ``cols``: per mode, the incoming rows (row j: the
    towns i with a pair i -> j), the same object as ``rows[mode]`` unless the mode's
    travel-time table is asymmetric."""

    places: Places
    rows: dict
    forced_core: np.ndarray
    cols: dict | None = None
    tables: tuple = ()  # the modes whose rows come from a travel-time table (minutes, not km)

    def __post_init__(self):
        if self.cols is None:
            object.__setattr__(self, "cols", dict(self.rows))

    def symmetric(self, mode: str) -> bool:
        """Whether ``mode``'s incoming rows are its outgoing rows (reach is symmetric)."""
        return self.cols[mode] is self.rows[mode]

    @property
    def population(self) -> np.ndarray:
        return self.places.population

    @property
    def n_towns(self) -> int:
        return int(self.places.population.shape[0])

    @property
    def radius_km(self) -> float:
        """The widest reach of the distance rows (0 when every mode is on a table)."""
        return max((r.radius_km for m, r in self.rows.items() if m not in self.tables), default=0.0)

    def reach_text(self) -> str:
        """The pairs and their reach, as a run reports them."""
        parts = []
        if len(self.tables) < len(self.rows):
            parts.append(f"{self.n_pairs} neighbour pairs within {self.radius_km:.1f} km")
        for mode in self.tables:
            rows = self.rows[mode]
            kind = "symmetric" if self.symmetric(mode) else "asymmetric"
            parts.append(
                f"{mode}: {rows.neighbour.shape[0]} pairs of its {kind} travel-time table within {rows.radius_km:.1f} min"
            )
        return "; ".join(parts)

    @property
    def n_pairs(self) -> int:
        """Pairs of the widest distance neighbourhood (both directions), else of the largest table."""
        km = [int(r.neighbour.shape[0]) for m, r in self.rows.items() if m not in self.tables]
        return max(km or [int(r.neighbour.shape[0]) for r in self.rows.values()])

    @property
    def nbytes(self) -> int:
        unique = {id(r): r for r in [*self.rows.values(), *self.cols.values()]}
        arrays = [*self.places, self.forced_core] + [a for r in unique.values() for a in r]
        return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


def cost_chunks(offsets: np.ndarray, n_chunks: int = N_CHUNKS, order: np.ndarray | None = None) -> np.ndarray:
    """Boundaries of ``n_chunks`` ranges of towns (of positions in ``order`` if given)
    with about equal pair (plus town) counts."""
    n = offsets.shape[0] - 1
    sizes = np.diff(offsets) if order is None else np.diff(offsets)[order]
    cost = np.concatenate([[0], np.cumsum(sizes + 1)])  # a town with no neighbour still costs something
    targets = np.linspace(0, cost[-1], min(n_chunks, max(n, 1)) + 1)
    bounds = np.searchsorted(cost, targets, side="left")
    bounds[0], bounds[-1] = 0, n
    return np.unique(bounds).astype(np.int64)


def forced_cores(towns: Towns, ids: list) -> np.ndarray:
    """Towns that are cores whatever their size: the table's ``core`` column and ``cores.ids``."""
    forced = towns.core.copy()
    if ids:
        keys = {str(t): i for i, t in enumerate(towns.town_id)}
        for wanted in ids:
            if str(wanted) not in keys:
                raise UserError(
                    f"cores.ids: town_id {wanted!r} is not in {towns.source}; allowed: town_ids of the table"
                )
            forced[keys[str(wanted)]] = True
    return forced


def spatial_order(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Towns in bands of 0.5 degree of latitude, west to east and back (serpentine)."""
    band = np.floor((lat + 90.0) / ORDER_BAND_DEG).astype(np.int64)
    along = np.where(band % 2 == 0, lon, -lon)
    return np.lexsort((along, band)).astype(np.int64)


def _rows(offsets, neighbour, log_dist, lp_rel, radius_km, candidate, lat, lon, minutes=None) -> Rows:
    bucket, cand_offsets, cand_pos, cand_town, cand_d = row_tables(
        offsets, neighbour, log_dist, radius_km, candidate, lat, lon, minutes
    )
    with np.errstate(divide="ignore"):
        cand_logd = np.log(cand_d)
    order = spatial_order(lat, lon)
    rank = np.empty(order.shape[0], dtype=np.int32)
    rank[order] = np.arange(order.shape[0], dtype=np.int32)
    return Rows(
        offsets=offsets,
        neighbour=neighbour,
        log_dist=log_dist,
        lp_rel=lp_rel,
        radius_km=float(radius_km),
        longest=int(np.diff(offsets).max(initial=0)),
        bucket=bucket,
        cand_offsets=cand_offsets,
        cand_pos=cand_pos,
        cand_town=cand_town,
        cand_logd=cand_logd,
        cand_d=cand_d,
        chunks=cost_chunks(offsets),
        order=order,
        order_chunks=cost_chunks(offsets, order=order),
        neighbour_rank=rank[neighbour],
        minutes=np.empty(0, dtype=np.float64) if minutes is None else minutes,
    )


def available_bytes() -> int | None:
    """Memory this process may still take: the kernel's MemAvailable, or less under a
    cgroup limit; None where neither can be read."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit != "max":
            found.append(int(limit) - int(open("/sys/fs/cgroup/memory.current").read()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _too_large(towns: Towns, radius_km: float, pairs: int, available: int) -> UserError:
    return UserError(
        f"{towns.source}: the neighbourhood of {len(towns)} towns within {radius_km:.0f} km would hold at least "
        f"{pairs / 1e6:,.0f} M town pairs, about {pairs * BYTES_PER_PAIR / 2**30:.1f} GiB, and this machine has "
        f"{available / 2**30:.1f} GiB available; allowed: smaller caps (commute.cap_min, freight.cap_min), "
        "a region (data.admin1), a larger data.min_population, or a machine with more memory"
    )


def _estimate(towns: Towns, radius_km) -> tuple[float, int]:
    """(the widest radius, the neighbourhood's pairs estimated from below by the build's
    cell grid: a sort of the towns, no pair looked at)."""
    if isinstance(radius_km, dict):  # the distance rows' (a travel-time table's pairs are known when read)
        widest = max((float(r) for r in radius_km.values() if isinstance(r, (int, float))), default=0.0)
    else:
        widest = float(radius_km)
    if widest == 0.0:
        return 0.0, 0
    return widest, int(PAIRS_PER_BOUND * cell_pair_bound(towns.lat, towns.lon, widest))


def check_size(towns: Towns, radius_km, available: int | None = None) -> None:
    """Refuse, in one line and before any work, a neighbourhood that cannot fit in memory:
    its estimated pairs (:func:`_estimate`) times what prepare takes a pair."""
    available = available_bytes() if available is None else available
    if available is None or len(towns) == 0:
        return
    widest, pairs = _estimate(towns, radius_km)
    if pairs * BYTES_PER_PAIR > available:
        raise _too_large(towns, widest, pairs, available)


def prepare(towns: Towns, forced: np.ndarray, radius_km, core_floor: float | None = None) -> Network:
    """:func:`build`, with a network that runs out of memory refused in one line."""
    try:
        return build(towns, forced, radius_km, core_floor)
    except MemoryError:
        raise _too_large(towns, *_estimate(towns, radius_km), available_bytes() or 0) from None


def _table_rows(arrays, log_mass, lp_max, limit_min, candidate, lat, lon) -> Rows:
    """The :class:`Rows` of a travel-time table's (offsets, neighbour, log minutes, minutes)."""
    offsets, neighbour, log_min, minutes = arrays
    lp_rel = row_lp(offsets, neighbour, log_mass, floor=lp_max)[0]
    # Rows hold the pairs within limit_min; a row's buckets split that range.
    return _rows(offsets, neighbour, log_min, lp_rel, max(limit_min, 1e-300), candidate, lat, lon, minutes)


def destination_log_mass(towns: Towns, log_pop: np.ndarray) -> np.ndarray:
    """log of the destination mass (docs/model.md, "Shares"): the table's ``mass`` column, else
    the population (the very array ``log_pop``, so that a run without the column is unchanged)."""
    return log_pop if towns.mass is None else np.log(towns.mass.astype(np.float64))


def build(towns: Towns, forced: np.ndarray, radius_km, core_floor: float | None = None) -> Network:
    """Build the neighbourhood once for a run.

    ``radius_km``: per mode (``{"commute": km, "freight": km}``, see
    :func:`agglo.engine.planning.scenarios.reach_radii`) or one radius for both; a mode whose value
    is a :class:`~agglo.engine.data.traveltimes.TimeTable` gets the rows of that table instead
    (:func:`agglo.engine.data.traveltimes.table_network_rows`). ``core_floor``: the run's
    smallest ``cores.min_population`` (None: every town may be a core).
    """
    from agglo.engine.data.traveltimes import TimeTable, table_network_rows

    radii = dict(radius_km) if isinstance(radius_km, dict) else {mode: float(radius_km) for mode in MODES}
    tables = {mode: r for mode, r in radii.items() if isinstance(r, TimeTable)}
    km = {mode: float(r) for mode, r in radii.items() if mode not in tables}
    population = towns.population.astype(np.float64)
    log_pop = np.log(population)
    log_mass = destination_log_mass(towns, log_pop)
    candidate = forced.copy() if core_floor is not None else np.ones(len(population), dtype=bool)
    if core_floor is not None:
        candidate |= population >= core_floor
    # Writable copies: the kernels are compiled for the array types of a mapped network
    # (netcache, the local cluster's workers), and a read-only array is another type.
    lat = np.array(towns.lat, dtype=np.float64)
    lon = np.array(towns.lon, dtype=np.float64)
    read = {mode: table_network_rows(towns, table, log_mass) for mode, table in tables.items()}
    floor = log_mass  # lp_max bounds the log destination mass of every row of every mode
    for got in read.values():
        floor = np.maximum(floor, got.lp_max)
    rows, cols = {}, {}
    if km:
        widest = max(km.values())
        offsets, neighbour, log_dist = build_neighbourhood(towns.lat, towns.lon, widest, log_float32=True)
        lp_rel, lp_max = row_lp(offsets, neighbour, log_mass, floor=floor)
        full = _rows(offsets, neighbour, log_dist, lp_rel, widest, candidate, lat, lon)
        for mode, radius in km.items():
            if radius >= SHARE_ROWS * widest:
                rows[mode] = full
            else:
                sub = truncate_rows(offsets, neighbour, log_dist, lp_rel, radius)
                rows[mode] = _rows(*sub, radius, candidate, lat, lon)
    else:
        lp_max = floor
    for mode, got in read.items():
        limit = tables[mode].limit_min
        rows[mode] = _table_rows(got.out, log_mass, lp_max, limit, candidate, lat, lon)
        if not got.symmetric:
            cols[mode] = _table_rows(got.into, log_mass, lp_max, limit, candidate, lat, lon)
    rows = {mode: rows[mode] for mode in MODES}
    cols = {mode: cols.get(mode, rows[mode]) for mode in MODES}
    places = Places(
        population=population, log_pop=log_pop, lat=lat, lon=lon, region=towns.region_code, lp_max=lp_max,
        log_mass=log_mass,
    )  # fmt: skip
    return Network(
        places=places, rows=rows, forced_core=forced, cols=cols, tables=tuple(m for m in MODES if m in tables)
    )
