"""The seam between planning and kernels: a batch of scenarios in, result arrays out.

:class:`Network` is what every worker needs once (towns and their neighbourhood);
:func:`batch_parameters` turns swept values into per-scenario parameter arrays;
:func:`compute_batch` calls the kernels for both modes. Every executor (in-process,
Dask) calls exactly this function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agglo.engine.config import MODES, AggloConfig
from agglo.engine.errors import UserError
from agglo.engine.towns import Towns
from agglo.kernels import (
    DECAY_CODES,
    assign_batch,
    build_neighbourhood,
    inflow_pass,
    origin_pass,
    pair_shares,
    row_lp,
    row_tables,
    truncate_rows,
)
from agglo.kernels.models import best_core_by_destination, doubly_inflow, doubly_ipf, radiation_pass, scatter_inflow

MODEL_CODES = {"gravity": 0, "attraction": 1, "doubly": 2, "radiation": 3}
N_CHUNKS = 256  # town ranges of about equal pair count; fixed so results never depend on threads


@dataclass(frozen=True)
class Rows:
    """One neighbourhood in CSR, rows sorted by distance (ties by index).

    Per pair: ``neighbour`` (int32), ``log_dist`` (float32 log km), ``lp_rel``
    (float32, log population of the neighbour minus the row's ``lp_max``) and
    ``neighbour_rank`` (below): 16 bytes a pair. ``bucket``: per-row positions for the reach bisection;
    ``cand_*``: the row positions, towns,
    log-distances and distances of the neighbours that are cores in at least one
    scenario of the run; ``chunks``: town ranges of about equal pair count;
    ``order``: the towns in a spatial order, ``order_chunks`` ranges of it and
    ``neighbour_rank`` each pair's neighbour by its position in that order (4 bytes a
    pair more), for the pass that reads its neighbours' values
    (:func:`kernels.inflow_pass`).
    """

    offsets: np.ndarray
    neighbour: np.ndarray
    log_dist: np.ndarray
    lp_rel: np.ndarray
    bucket: np.ndarray
    cand_offsets: np.ndarray
    cand_pos: np.ndarray
    cand_town: np.ndarray
    cand_logd: np.ndarray
    cand_d: np.ndarray
    chunks: np.ndarray
    order: np.ndarray
    neighbour_rank: np.ndarray
    order_chunks: np.ndarray
    radius_km: float

    @property
    def n_pairs(self) -> int:
        return int(self.neighbour.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))


@dataclass(frozen=True)
class Network:
    """Towns and, per mode, the neighbourhood its scenarios can reach (one shared
    :class:`Rows` when the modes reach about as far)."""

    population: np.ndarray
    log_pop: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    region: np.ndarray
    forced_core: np.ndarray
    lp_max: np.ndarray
    rows: dict

    @property
    def n_towns(self) -> int:
        return int(self.population.shape[0])

    @property
    def radius_km(self) -> float:
        return max(r.radius_km for r in self.rows.values())

    @property
    def n_pairs(self) -> int:
        """Pairs of the widest neighbourhood (both directions)."""
        return max(r.n_pairs for r in self.rows.values())

    @property
    def nbytes(self) -> int:
        unique = {id(r): r for r in self.rows.values()}
        town = sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))
        return town + sum(r.nbytes for r in unique.values())


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


def reach_radii(params: dict) -> dict:
    """Per mode, the largest distance its scenarios reach: max of cap · speed / (60 · circuity).

    From ``60 · circuity · d / speed <= cap``; widened by a relative 1e-9 so that rounding
    never drops a pair that the exact test in the kernel keeps.
    """
    radii = {}
    for mode in MODES:
        p = params[mode]
        radius = float(np.max(p["cap"] * p["speed"] / (60.0 * p["circuity"])))
        radii[mode] = radius * (1.0 + 1e-9) + 1e-9
    return radii


SHARE_ROWS = 0.8  # a mode reaching at least this fraction of the widest radius reads the widest rows


ORDER_BAND_DEG = 0.5


def spatial_order(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Towns in bands of 0.5 degree of latitude, west to east and back (serpentine)."""
    band = np.floor((lat + 90.0) / ORDER_BAND_DEG).astype(np.int64)
    along = np.where(band % 2 == 0, lon, -lon)
    return np.lexsort((along, band)).astype(np.int64)


def _rows(offsets, neighbour, log_dist, lp_rel, radius_km, candidate, lat, lon) -> Rows:
    bucket, cand_offsets, cand_pos, cand_town, cand_d = row_tables(
        offsets, neighbour, log_dist, radius_km, candidate, lat, lon
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
        bucket=bucket,
        cand_offsets=cand_offsets,
        cand_pos=cand_pos,
        cand_town=cand_town,
        cand_logd=cand_logd,
        cand_d=cand_d,
        chunks=cost_chunks(offsets),
        order=order,
        neighbour_rank=rank[neighbour],
        order_chunks=cost_chunks(offsets, order=order),
        radius_km=radius_km,
    )


def prepare(towns: Towns, forced: np.ndarray, radius_km, core_floor: float | None = None) -> Network:
    """Build the neighbourhood once for a run.

    ``radius_km``: per mode (``{"commute": km, "freight": km}``, see :func:`reach_radii`)
    or one radius for both; ``core_floor``: the run's smallest ``cores.min_population``
    (None: no size rule limits the candidates, every town may be a core).
    """
    radii = dict(radius_km) if isinstance(radius_km, dict) else {mode: float(radius_km) for mode in MODES}
    widest = max(radii.values())
    offsets, neighbour, log_dist = build_neighbourhood(towns.lat, towns.lon, widest, log_float32=True)
    population = towns.population.astype(np.float64)
    log_pop = np.log(population)
    candidate = forced.copy() if core_floor is not None else np.ones(len(population), dtype=bool)
    if core_floor is not None:
        candidate |= population >= core_floor
    lat = np.ascontiguousarray(towns.lat, dtype=np.float64)
    lon = np.ascontiguousarray(towns.lon, dtype=np.float64)
    lp_rel, lp_max = row_lp(offsets, neighbour, log_pop)
    full = _rows(offsets, neighbour, log_dist, lp_rel, widest, candidate, lat, lon)
    rows = {}
    for mode in MODES:
        if radii[mode] >= SHARE_ROWS * widest:
            rows[mode] = full
        else:
            sub = truncate_rows(offsets, neighbour, log_dist, lp_rel, radii[mode])
            rows[mode] = _rows(*sub, radii[mode], candidate, lat, lon)
    return Network(
        population=population,
        log_pop=log_pop,
        lat=lat,
        lon=lon,
        region=towns.region_code,
        forced_core=forced,
        lp_max=lp_max,
        rows=rows,
    )


_FIELDS = {
    "circuity": "circuity",
    "speed": "speed_kmh",
    "cap": "cap_min",
    "beta": "beta",
    "gamma": "gamma",
    "alpha": "alpha",
    "self_time": "self_time_min",
    "min_time": "min_time_min",
    "threshold": "threshold",
}


def batch_parameters(cfg: AggloConfig, swept: dict, n_scenarios: int) -> dict:
    """Per-scenario parameter arrays: base config values, replaced by the swept ones."""

    def column(key: str, base, dtype):
        if key in swept:
            return np.asarray(swept[key])
        return np.full(n_scenarios, base, dtype=dtype)

    params: dict = {}
    for mode in MODES:
        mc = cfg.mode(mode)
        p = {}
        for name, field in _FIELDS.items():
            base = getattr(mc, field)
            p[name] = column(f"{mode}.{field}", np.nan if base is None else float(base), np.float64).astype(np.float64)
        decay = column(f"{mode}.decay", mc.decay, object)
        p["decay"] = np.asarray([DECAY_CODES[str(d)] for d in decay], dtype=np.int8)
        model = column(f"{mode}.model", mc.model, object)
        p["model"] = np.asarray([MODEL_CODES[str(m)] for m in model], dtype=np.int8)
        params[mode] = p
    borders = column("borders", cfg.borders, object)
    params["closed"] = np.asarray([str(b) == "closed" for b in borders], dtype=np.bool_)
    params["core_min_population"] = column("cores.min_population", float(cfg.cores.min_population), np.float64).astype(
        np.float64
    )
    return params


def _origin(network: Network, rows: Rows, p: dict, closed: np.ndarray, is_core: np.ndarray):
    """:func:`kernels.origin_pass` for one mode's rows and parameter arrays ``p``."""
    return origin_pass(
        rows.chunks,
        rows.offsets,
        rows.neighbour,
        rows.log_dist,
        rows.lp_rel,
        network.lp_max,
        rows.bucket,
        rows.radius_km,
        network.log_pop,
        network.lat,
        network.lon,
        network.region,
        rows.cand_offsets,
        rows.cand_pos,
        rows.cand_town,
        rows.cand_logd,
        rows.cand_d,
        closed,
        is_core,
        p["circuity"],
        p["speed"],
        p["cap"],
        p["decay"],
        p["beta"],
        p["gamma"],
        p["self_time"],
        p["min_time"],
    )


def core_mask(network: Network, core_min_population: np.ndarray) -> np.ndarray:
    """(S, N) bool: the cores of each scenario."""
    is_core = (network.population[None, :] >= core_min_population[:, None]) | network.forced_core[None, :]
    return np.ascontiguousarray(is_core)


def _gravity(network: Network, rows: Rows, p: dict, closed: np.ndarray, is_core: np.ndarray) -> dict:
    n_reachable, reach, shift, denominator, best_core, best_weight = _origin(network, rows, p, closed, is_core)
    inflow = inflow_pass(
        rows.chunks,
        rows.order_chunks,
        rows.order,
        rows.offsets,
        rows.neighbour_rank,
        rows.log_dist,
        network.log_pop,
        network.region,
        closed,
        reach,
        shift,
        denominator,
        p["circuity"],
        p["speed"],
        p["decay"],
        p["beta"],
        p["gamma"],
        p["min_time"],
    )
    return {
        "n_reachable": n_reachable,
        "best_core": best_core,
        "best_weight": best_weight,
        "denominator": denominator,
        "inflow": inflow,
    }


def _by_destination(network, rows, p, closed, is_core, reach, dest_term, origin_term):
    return best_core_by_destination(
        rows.chunks,
        rows.offsets,
        rows.neighbour,
        reach,
        rows.cand_offsets,
        rows.cand_pos,
        rows.cand_town,
        rows.cand_logd,
        rows.cand_d,
        network.region,
        closed,
        is_core,
        network.log_pop,
        dest_term,
        origin_term,
        p["circuity"],
        p["speed"],
        p["decay"],
        p["beta"],
        p["min_time"],
    )


def _attraction_log_a(network: Network, rows: Rows, p: dict, closed: np.ndarray, is_core: np.ndarray):
    """log A_j: the gravity row sum with alpha as the mass exponent and no self term
    (-inf where nothing reaches j); also n_reachable, reach and the denominator."""
    q = dict(p, gamma=p["alpha"], self_time=np.full_like(p["self_time"], np.nan))
    n_reachable, reach, shift, denominator, _, _ = _origin(network, rows, q, closed, is_core)
    with np.errstate(divide="ignore"):
        log_a = np.where(denominator > 0, shift + np.log(denominator), -np.inf)
    return n_reachable, reach, log_a, denominator


def _attraction(network: Network, rows: Rows, p: dict, closed: np.ndarray, is_core: np.ndarray) -> dict:
    n_reachable, reach, log_a, denominator = _attraction_log_a(network, rows, p, closed, is_core)
    origin_term = (p["alpha"][:, None] - 1.0) * network.log_pop[None, :]
    best_core, best_share = _by_destination(network, rows, p, closed, is_core, reach, -log_a, origin_term)
    return {
        "n_reachable": n_reachable,
        "best_core": best_core,
        "best_weight": best_share,
        "denominator": np.ones_like(best_share),
        "inflow": np.where(denominator > 0, network.population[None, :], 0.0),
    }


def _balance(network: Network, rows: Rows, p: dict, s: int, closed: bool, ends: np.ndarray):
    """:func:`agglo.kernels.models.doubly_ipf` for scenario ``s`` of the parameter arrays ``p``."""
    return doubly_ipf(
        rows.chunks,
        rows.offsets,
        rows.neighbour,
        rows.log_dist,
        network.region,
        closed,
        ends,
        network.population,
        int(p["decay"][s]),
        float(p["beta"][s]),
        60.0 * float(p["circuity"][s]) / float(p["speed"][s]),
        float(p["min_time"][s]),
        float(p["self_time"][s]),
    )


def _radiate(network: Network, rows: Rows, p: dict, s: int, closed: bool, ends: np.ndarray, is_core: np.ndarray):
    """:func:`agglo.kernels.models.radiation_pass` for scenario ``s`` of the parameter arrays ``p``."""
    return radiation_pass(
        rows.chunks,
        rows.offsets,
        rows.neighbour,
        rows.log_dist,
        network.lat,
        network.lon,
        network.region,
        closed,
        ends,
        network.population,
        is_core,
        float(p["circuity"][s]),
        float(p["speed"][s]),
    )


def _doubly(network: Network, rows: Rows, p: dict, closed: np.ndarray, is_core: np.ndarray) -> dict:
    n_reachable, reach, _, _, _, _ = _origin(network, rows, p, closed, is_core)
    n_scen, n = reach.shape
    log_a = np.empty((n_scen, n))
    log_b = np.empty((n_scen, n))
    inflow = np.empty((n_scen, n))
    iterations = np.zeros(n_scen, dtype=np.int32)
    error = np.zeros(n_scen)
    for s in range(n_scen):
        ends = reach[s].astype(np.int64)
        la, lb, it, err, f, _, a, b = _balance(network, rows, p, s, bool(closed[s]), ends)
        log_a[s], log_b[s], iterations[s], error[s] = la, lb, it, err
        inflow[s] = doubly_inflow(rows.chunks, rows.offsets, rows.neighbour, f, ends, network.population, a, b)
    best_core, best_share = _by_destination(network, rows, p, closed, is_core, reach, log_b, log_a)
    return {
        "n_reachable": n_reachable,
        "best_core": best_core,
        "best_weight": best_share,
        "denominator": np.ones_like(best_share),
        "inflow": inflow,
        "ipf_iterations": iterations,
        "ipf_error": error,
    }


def _radiation(network: Network, rows: Rows, p: dict, closed: np.ndarray, is_core: np.ndarray) -> dict:
    n_reachable, reach, _, _, _, _ = _origin(network, rows, p, closed, is_core)
    n_scen, n = reach.shape
    best_core = np.empty((n_scen, n), dtype=np.int32)
    best_share = np.empty((n_scen, n))
    inflow = np.empty((n_scen, n))
    for s in range(n_scen):
        ends = reach[s].astype(np.int64)
        share, best_core[s], best_share[s], _ = _radiate(network, rows, p, s, bool(closed[s]), ends, is_core[s])
        inflow[s] = scatter_inflow(rows.offsets, rows.neighbour, ends, network.population, share)
    return {
        "n_reachable": n_reachable,
        "best_core": best_core,
        "best_weight": best_share,
        "denominator": np.ones_like(best_share),
        "inflow": inflow,
    }


_MODEL_PASSES = {0: _gravity, 1: _attraction, 2: _doubly, 3: _radiation}


_MERGED_TYPES = {
    "n_reachable": np.int32,
    "best_core": np.int32,
    "best_weight": np.float64,
    "denominator": np.float64,
    "inflow": np.float64,
    "ipf_iterations": np.int32,
    "ipf_error": np.float64,
}


def compute_batch(network: Network, params: dict) -> dict:
    """Both modes for a batch of S scenarios: MODEL.md's cube variables, scenario first.

    Scenarios are grouped by each mode's flow model; every model's pass is independent of
    the other scenarios of its group, so results never depend on the batch.
    Returns arrays of shape (S, 2, N) for the town variables and (S, 2) for the others.
    """
    is_core = core_mask(network, params["core_min_population"])
    n_scen, n = is_core.shape
    per_mode = []
    for mode in MODES:
        p = params[mode]
        rows = network.rows[mode]
        merged = {
            "ipf_iterations": np.zeros(n_scen, dtype=np.int32),
            "ipf_error": np.full(n_scen, np.nan),
        }
        codes = np.unique(p["model"])
        if len(codes) == 1:  # the usual case: the model's arrays as they come, no copy
            merged.update(_MODEL_PASSES[int(codes[0])](network, rows, p, params["closed"], is_core))
        else:
            merged.update(
                n_reachable=np.zeros((n_scen, n), dtype=np.int32),
                best_core=np.full((n_scen, n), -1, dtype=np.int32),
                best_weight=np.zeros((n_scen, n)),
                denominator=np.zeros((n_scen, n)),
                inflow=np.zeros((n_scen, n)),
            )
            for code in codes:
                idx = np.flatnonzero(p["model"] == code)
                sub = {k: v[idx] for k, v in p.items()}
                got = _MODEL_PASSES[int(code)](
                    network, rows, sub, params["closed"][idx], np.ascontiguousarray(is_core[idx])
                )
                for name, value in got.items():
                    merged[name][idx] = value
        for name, dtype in _MERGED_TYPES.items():
            merged[name] = np.asarray(merged[name], dtype=dtype)  # no copy when already so
        core, share, agglo_population, coverage, n_agglomerations = assign_batch(
            network.population,
            is_core,
            merged["best_core"],
            merged["best_weight"],
            merged["denominator"],
            p["threshold"],
        )
        per_mode.append(
            {
                "core": core,
                "share": share,
                "n_reachable": merged["n_reachable"],
                "inflow": merged["inflow"].astype(np.float32),
                "agglo_population": agglo_population,
                "coverage": coverage,
                "n_agglomerations": n_agglomerations,
                "ipf_iterations": merged["ipf_iterations"],
                "ipf_error": merged["ipf_error"],
            }
        )
    return {name: np.stack([m[name] for m in per_mode], axis=1) for name in per_mode[0]}


def _model_pair_shares(network, params, mode, scenario, origin, travel, reachable):
    """s_ij per pair for the attraction, doubly and radiation models (float64, exact times)."""
    one = {k: v[scenario : scenario + 1] for k, v in params[mode].items()}
    closed = params["closed"][scenario : scenario + 1]
    is_core = core_mask(network, params["core_min_population"][scenario : scenario + 1])
    rows = network.rows[mode]
    dest = rows.neighbour.astype(np.int64)
    decay = "power" if int(one["decay"][0]) == 0 else "exponential"
    beta, min_time = float(one["beta"][0]), float(one["min_time"][0])
    with np.errstate(divide="ignore", over="ignore"):
        log_f = -beta * (np.log(np.maximum(travel, min_time)) if decay == "power" else travel)
    lp = network.log_pop
    home = np.zeros(network.n_towns)
    model = int(one["model"][0])
    if model == MODEL_CODES["attraction"]:
        _, _, log_a, _ = _attraction_log_a(network, rows, one, closed, is_core)
        log_a = log_a[0]
        alpha = float(one["alpha"][0])
        share = np.where(reachable, np.exp(lp[dest] + (alpha - 1.0) * lp[origin] + log_f - log_a[dest]), 0.0)
        return share, home
    n_reachable, reach, _, _, _, _ = _origin(network, rows, one, closed, is_core)
    ends = reach[0].astype(np.int64)
    if model == MODEL_CODES["doubly"]:
        _, _, _, _, _, self_f, a, b = _balance(network, rows, one, 0, bool(closed[0]), ends)
        share = np.where(reachable, a[origin] * b[dest] * network.population[dest] * np.exp(log_f), 0.0)
        home = a * b * network.population * self_f
        return share, home
    share, _, _, _ = _radiate(network, rows, one, 0, bool(closed[0]), ends, is_core[0])
    return share, home


def scenario_pairs(network: Network, params: dict, mode: str, scenario: int = 0) -> dict:
    """Every neighbourhood pair of one scenario and mode, in float64 from exact travel
    times: origin, destination, travel_min, share, flow, reachable; and the home share
    per town (for flow export and checks)."""
    p = {k: v[scenario] for k, v in params[mode].items()}
    closed = bool(params["closed"][scenario])
    rows = network.rows[mode]
    share, travel, home = pair_shares(
        rows.chunks,
        rows.offsets,
        rows.neighbour,
        network.lat,
        network.lon,
        network.log_pop,
        network.region,
        closed,
        p["circuity"],
        p["speed"],
        p["cap"],
        int(p["decay"]),
        p["beta"],
        p["gamma"],
        p["self_time"],
        p["min_time"],
    )
    origin = np.repeat(np.arange(network.n_towns, dtype=np.int64), np.diff(rows.offsets))
    reachable = travel <= p["cap"]
    if closed:
        reachable &= network.region[origin] == network.region[rows.neighbour]
    if int(p["model"]) != MODEL_CODES["gravity"]:
        share, home = _model_pair_shares(network, params, mode, scenario, origin, travel, reachable)
    return {
        "origin": origin,
        "destination": rows.neighbour.astype(np.int64),
        "travel_min": travel,
        "share": share,
        "flow": network.population[origin] * share,
        "reachable": reachable,
        "home_share": home,
    }
