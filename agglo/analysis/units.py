"""Results of towns at the level of larger units: places run as towns, read as counties.

Towns at the place level reach their cores as a planner's map does (a large suburban county
is many places, some next to the centre); a delineation (OMB's metropolitan areas, commuting
zones, districts) is made of larger units. :func:`aggregate_units` reads a cube's assignment
at that level: each unit joins the target (the unit of the core, or any label the cores are
given, such as the metropolitan area of a central county) that holds the largest weight of
its towns, where a town's weight is its population (``weight="population"``) or the
population it sends to its core (``weight="flows"``: population x the share of its trips
to that core, the cube's ``share``). Towns in no agglomeration weigh nothing; the
target's share is its weight over the unit's whole population.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

WEIGHTS = ("population", "flows")


def _labels(values, name: str, n_towns: int) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values)
    if values.shape != (n_towns,):
        raise ValueError(f"{name}: one label per town of the cube ({n_towns}), got shape {values.shape}")
    labels, code = np.unique(values.astype(str), return_inverse=True)
    return labels, code.astype(np.int64)


def choose_targets(core, weight, unit_code, target_code, n_units: int):
    """For each scenario row of ``core`` (S, N): per unit, the target code with the largest
    total weight of the unit's towns whose core is of that target (ties to the lower code),
    and that weight; -1 and 0 for a unit with nothing attached."""
    n_scen = core.shape[0]
    best = np.full((n_scen, n_units), -1, dtype=np.int64)
    best_weight = np.zeros((n_scen, n_units))
    n_targets = max(int(target_code.max(initial=-1)) + 1, 1)
    for s in range(n_scen):
        member = core[s] >= 0
        key = unit_code[member] * n_targets + target_code[core[s][member]]
        keys, inverse = np.unique(key, return_inverse=True)
        sums = np.bincount(inverse, weights=weight[s][member], minlength=keys.shape[0])
        units, targets = keys // n_targets, keys % n_targets
        order = np.lexsort((targets, -sums, units))  # per unit: the largest sum first, then the lower code
        first = order[np.r_[True, units[order][1:] != units[order][:-1]]] if order.size else order
        best[s, units[first]] = targets[first]
        best_weight[s, units[first]] = sums[first]
    return best, best_weight


def aggregate_units(ds: xr.Dataset, unit, target=None, weight: str = "population", mode: str = "commute") -> xr.Dataset:
    """The cube's ``mode`` assignment read by unit.

    ``unit``: a label per town of the cube (its county, say); ``target``: a label per town
    that a core stands for (default: its unit), e.g. the metropolitan area of each central
    county, so that a metro area's central counties pool their towns. Returns a Dataset over
    the cube's scenario dimensions and ``unit``: ``target`` (the label the unit joins, "" for
    none), ``target_share`` (its weight over the unit's population) and ``unit_population``.
    """
    if weight not in WEIGHTS:
        raise ValueError(f"weight: {weight!r}; allowed: {', '.join(WEIGHTS)}")
    n = ds.sizes["town"]
    units, unit_code = _labels(unit, "unit", n)
    targets, target_code = (units, unit_code) if target is None else _labels(target, "target", n)
    core = ds["core"].sel(mode=mode)
    scen = [d for d in core.dims if d != "town"]
    stacked = core.transpose(*scen, "town").values.reshape(-1, n).astype(np.int64)
    population = ds["population"].values.astype(np.float64)
    if weight == "flows":
        share = ds["share"].sel(mode=mode).transpose(*scen, "town").values.reshape(-1, n).astype(np.float64)
        w = np.where(stacked >= 0, population[None, :] * np.nan_to_num(share), 0.0)
    else:
        w = np.broadcast_to(population, stacked.shape)
    best, best_weight = choose_targets(stacked, w, unit_code, target_code, units.shape[0])
    unit_population = np.bincount(unit_code, weights=population, minlength=units.shape[0])
    shape = [core.sizes[d] for d in scen] + [units.shape[0]]
    label = np.where(best >= 0, targets[np.maximum(best, 0)], "").astype(object)
    coords = {d: core[d] for d in scen if d in core.coords}
    coords |= {"unit": units, "unit_population": ("unit", unit_population)}
    return xr.Dataset(
        {
            "target": ([*scen, "unit"], label.reshape(shape)),
            "target_share": ([*scen, "unit"], (best_weight / unit_population[None, :]).reshape(shape)),
        },
        coords=coords,
        attrs={"mode": mode, "weight": weight},
    )
