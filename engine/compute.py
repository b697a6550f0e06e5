"""The seam between planning and kernels: a batch of scenarios in, result arrays out.

:class:`Network` is what every worker needs once (towns and their neighbourhood);
:func:`batch_parameters` turns swept values into per-scenario parameter arrays;
:func:`compute_batch` calls the kernels for both modes. Every executor (in-process,
Dask) calls exactly this function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.config import MODES, AggloConfig
from engine.errors import UserError
from engine.towns import Towns
from kernels import DECAY_CODES, assign_batch, build_neighbourhood, inflow_pass, origin_pass, pair_shares

N_CHUNKS = 256  # town ranges of about equal pair count; fixed so results never depend on threads


@dataclass(frozen=True)
class Network:
    population: np.ndarray
    log_pop: np.ndarray
    region: np.ndarray
    forced_core: np.ndarray
    offsets: np.ndarray
    neighbour: np.ndarray
    dist_km: np.ndarray
    log_dist: np.ndarray
    chunks: np.ndarray
    radius_km: float

    @property
    def n_towns(self) -> int:
        return int(self.population.shape[0])

    @property
    def n_pairs(self) -> int:
        return int(self.neighbour.shape[0])


def cost_chunks(offsets: np.ndarray, n_chunks: int = N_CHUNKS) -> np.ndarray:
    """Town boundaries of ``n_chunks`` ranges with about equal pair (plus town) counts."""
    n = offsets.shape[0] - 1
    cost = offsets + np.arange(n + 1)  # a town with no neighbour still costs something
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


def reach_radius_km(params: dict) -> float:
    """Largest distance any scenario reaches: max over modes of cap · speed / (60 · circuity).

    From ``60 · circuity · d / speed <= cap``; widened by a relative 1e-9 so that rounding
    never drops a pair that the exact test in the kernel keeps.
    """
    radius = 0.0
    for mode in MODES:
        p = params[mode]
        radius = max(radius, float(np.max(p["cap"] * p["speed"] / (60.0 * p["circuity"]))))
    return radius * (1.0 + 1e-9) + 1e-9


def prepare(towns: Towns, forced: np.ndarray, radius_km: float) -> Network:
    offsets, neighbour, dist_km = build_neighbourhood(towns.lat, towns.lon, radius_km)
    with np.errstate(divide="ignore"):
        log_dist = np.log(dist_km)
    population = towns.population.astype(np.float64)
    return Network(
        population=population,
        log_pop=np.log(population),
        region=towns.region_code,
        forced_core=forced,
        offsets=offsets,
        neighbour=neighbour,
        dist_km=dist_km,
        log_dist=log_dist,
        chunks=cost_chunks(offsets),
        radius_km=radius_km,
    )


_FIELDS = {
    "circuity": "circuity",
    "speed": "speed_kmh",
    "cap": "cap_min",
    "beta": "beta",
    "gamma": "gamma",
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
        params[mode] = p
    borders = column("borders", cfg.borders, object)
    params["closed"] = np.asarray([str(b) == "closed" for b in borders], dtype=np.bool_)
    params["core_min_population"] = column("cores.min_population", float(cfg.cores.min_population), np.float64).astype(
        np.float64
    )
    return params


def _origin(network: Network, p: dict, closed: np.ndarray, is_core: np.ndarray):
    """:func:`kernels.origin_pass` for one mode's parameter arrays ``p``."""
    return origin_pass(
        network.chunks,
        network.offsets,
        network.neighbour,
        network.dist_km,
        network.log_dist,
        network.log_pop,
        network.region,
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


def compute_batch(network: Network, params: dict) -> dict:
    """Both modes for a batch of S scenarios: MODEL.md's cube variables, scenario first.

    Returns arrays of shape (S, 2, N) for the town variables and (S, 2) for the others.
    """
    n_scen = params["closed"].shape[0]
    is_core = (network.population[None, :] >= params["core_min_population"][:, None]) | network.forced_core[None, :]
    is_core = np.ascontiguousarray(is_core)
    out: dict = {}
    per_mode = []
    for mode in MODES:
        p = params[mode]
        n_reachable, shift, denominator, best_core, best_weight = _origin(network, p, params["closed"], is_core)
        inflow = inflow_pass(
            network.chunks,
            network.offsets,
            network.neighbour,
            network.dist_km,
            network.log_dist,
            network.log_pop,
            network.population,
            network.region,
            params["closed"],
            p["circuity"],
            p["speed"],
            p["cap"],
            p["decay"],
            p["beta"],
            p["gamma"],
            p["min_time"],
            shift,
            denominator,
        )
        core, share, agglo_population, coverage, n_agglomerations = assign_batch(
            network.population, is_core, best_core, best_weight, denominator, p["threshold"]
        )
        per_mode.append(
            {
                "core": core,
                "share": share,
                "n_reachable": n_reachable,
                "inflow": inflow.astype(np.float32),
                "agglo_population": agglo_population,
                "coverage": coverage,
                "n_agglomerations": n_agglomerations,
            }
        )
    for name in per_mode[0]:
        out[name] = np.stack([m[name] for m in per_mode], axis=1)
    assert out["core"].shape[0] == n_scen
    return out


def scenario_pairs(network: Network, params: dict, mode: str, scenario: int = 0) -> dict:
    """Every neighbourhood pair of one scenario and mode: origin, destination, travel_min,
    share, flow, reachable; and the home share per town (for flow export and checks)."""
    p = {k: v[scenario : scenario + 1] for k, v in params[mode].items()}
    closed = params["closed"][scenario : scenario + 1]
    is_core = np.ascontiguousarray(
        (network.population >= params["core_min_population"][scenario]) | network.forced_core
    )[None, :]
    _, shift, denominator, _, _ = _origin(network, p, closed, is_core)
    share, travel, home = pair_shares(
        network.chunks,
        network.offsets,
        network.neighbour,
        network.dist_km,
        network.log_dist,
        network.log_pop,
        network.region,
        bool(closed[0]),
        p["circuity"][0],
        p["speed"][0],
        p["cap"][0],
        int(p["decay"][0]),
        p["beta"][0],
        p["gamma"][0],
        p["self_time"][0],
        p["min_time"][0],
        shift[0],
        denominator[0],
    )
    origin = np.repeat(np.arange(network.n_towns, dtype=np.int64), np.diff(network.offsets))
    reachable = travel <= p["cap"][0]
    if closed[0]:
        reachable &= network.region[origin] == network.region[network.neighbour]
    return {
        "origin": origin,
        "destination": network.neighbour.astype(np.int64),
        "travel_min": travel,
        "share": share,
        "flow": network.population[origin] * share,
        "reachable": reachable,
        "home_share": home,
    }
