"""The model registry: each flow model of docs/model.md by its code, with its batched
passes (a group of scenarios at once, what a sweep runs) and its single-scenario pair
shares (what ``agglo flows`` writes). A new model is one entry here and its kernels.

The batched passes return, per scenario and town, what the assignment reads:
``n_reachable``, ``best_core``, ``best_weight`` / ``denominator`` (the best core's share),
``inflow``, and for the doubly model ``ipf_iterations`` and ``ipf_error``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agglo.engine.compute.keys import doubly_groups, radiation_groups, radiation_twins
from agglo.engine.network.build import Network
from agglo.engine.planning.scenarios import MODEL_CODES, ScenarioBatch, core_mask
from agglo.kernels import ModeParams, Rows, inflow_pass, origin_pass
from agglo.kernels.doubly import balance_group, log_factors
from agglo.kernels.furness import furness_group
from agglo.kernels.gravity.cores import best_core_by_destination
from agglo.kernels.gravity.terms import mode_terms
from agglo.kernels.pairs import factor_pair_shares
from agglo.kernels.radiation import batch_inflow, radiation_batch
from agglo.kernels.reach import reach_ends
from agglo.kernels.records import take


def incoming(network: Network, rows: Rows) -> Rows:
    """The incoming rows of the mode whose rows are ``rows`` (themselves unless the mode's
    travel-time table is asymmetric: then row j lists the towns i with a pair i -> j)."""
    for mode, own in network.rows.items():
        if own is rows:
            return network.cols[mode]
    return rows


def _gravity(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> dict:
    origins = origin_pass(rows, network.places, mode, mode.gamma, closed, is_core)
    cols = incoming(network, rows)
    if cols is rows:  # reach is symmetric: town j gathers from its own row's prefix
        inflow = inflow_pass(rows, network.places, mode, closed, origins)
    else:  # from its incoming row's prefix: the towns i with t_ij <= cap
        into = origins._replace(reach=reach_ends(cols, network.places, mode))
        inflow = inflow_pass(cols, network.places, mode, closed, into)
    return {
        "n_reachable": origins.n_reachable,
        "best_core": origins.best_core,
        "best_weight": origins.best_weight,
        "denominator": origins.denominator,
        "inflow": inflow,
    }


def attraction_log_a(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray):
    """(origins, log A_j): A_j = Σ_{i reaching j} population_i^alpha f(t_ij) is the gravity
    row sum with alpha as the mass exponent and no self term (-inf where nothing reaches j)."""
    no_self = mode._replace(self_time_min=np.full_like(mode.self_time_min, np.nan))
    origins = origin_pass(rows, network.places, no_self, mode.alpha, closed, is_core)
    with np.errstate(divide="ignore"):
        log_a = np.where(origins.denominator > 0, origins.shift + np.log(origins.denominator), -np.inf)
    return origins, log_a


def _by_destination(origins, best_core, best_share, inflow, **extra) -> dict:
    """The results of a model whose shares come whole (not as weight / denominator)."""
    return {
        "n_reachable": origins.n_reachable,
        "best_core": best_core,
        "best_weight": best_share,
        "denominator": np.ones_like(best_share),
        "inflow": inflow,
        **extra,
    }


def _attraction(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> dict:
    cols = incoming(network, rows)
    origins, log_a = attraction_log_a(network, cols, mode, closed, is_core)
    reached = origins.denominator > 0
    if cols is not rows:  # A_j came from j's incoming row; reach and cores from the outgoing
        origins = reach_of(network, rows, mode, closed, is_core)
    origin_term = (mode.alpha[:, None] - 1.0) * network.places.log_pop[None, :]
    terms = mode_terms(mode, mode.gamma, closed)
    best_core, best_share = best_core_by_destination(
        rows, network.places, origins.reach, is_core, terms, -log_a, origin_term
    )
    inflow = np.where(reached, network.population[None, :], 0.0)
    return _by_destination(origins, best_core, best_share, inflow)


def reach_of(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray):
    """The origin pass for n_reachable and each row's reachable prefix (models that need only those)."""
    return origin_pass(rows, network.places, mode, mode.gamma, closed, is_core)


def doubly_factors(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray):
    """The doubly model's balance per scenario: (origins, terms, log A, log B, inflow,
    rounds, error). A symmetric table balances in the symmetric form (A = B = x,
    :func:`~agglo.kernels.doubly.balance_group`), an asymmetric one by
    :func:`~agglo.kernels.furness.furness_group`; each per group of scenarios that share f."""
    origins = reach_of(network, rows, mode, closed, is_core)
    terms = mode_terms(mode, mode.gamma, closed)
    n_scen, n = origins.reach.shape
    log_a, log_b, inflow = np.empty((n_scen, n)), np.empty((n_scen, n)), np.empty((n_scen, n))
    iterations = np.zeros(n_scen, dtype=np.int32)
    error = np.zeros(n_scen)
    cols = incoming(network, rows)
    ends_in = None if cols is rows else reach_ends(cols, network.places, mode)
    for group in doubly_groups(mode, closed):
        ends = np.ascontiguousarray(origins.reach[group], dtype=np.int64)
        if ends_in is None:
            x, inflow[group], iterations[group], error[group], _, _ = balance_group(
                rows, network.places, terms, group, ends
            )
            log_a[group] = log_b[group] = log_factors(x)
        else:
            into = np.ascontiguousarray(ends_in[group], dtype=np.int64)
            a, b, inflow[group], iterations[group], error[group] = furness_group(
                rows, cols, network.places, terms, group, ends, into
            )
            log_a[group], log_b[group] = log_factors(a), log_factors(b)
    return origins, terms, log_a, log_b, inflow, iterations, error


def _doubly(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> dict:
    """s_ij = A_i B_j D_j f_ij: the best core by destination term log B_j, origin term log A_i."""
    origins, terms, log_a, log_b, inflow, iterations, error = doubly_factors(network, rows, mode, closed, is_core)
    best_core, best_share = best_core_by_destination(rows, network.places, origins.reach, is_core, terms, log_b, log_a)
    return _by_destination(origins, best_core, best_share, inflow, ipf_iterations=iterations, ipf_error=error)


def radiate(network: Network, rows: Rows, mode: ModeParams, s: int, closed: bool, ends, is_core) -> np.ndarray:
    """s_ij per pair of scenario ``s`` (0 beyond its reach), from
    :func:`agglo.kernels.radiation.radiation_batch`."""
    ends = np.ascontiguousarray(ends, dtype=np.int64)[None, :]
    weight, total, _, _ = radiation_batch(
        rows, network.places, closed, ends, is_core, float(mode.circuity[s]), float(mode.speed_kmh[s])
    )
    per_pair = np.repeat(total[0], np.diff(rows.offsets))
    return np.divide(weight, per_pair, out=np.zeros_like(weight), where=per_pair > 0)


def _radiation(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> dict:
    first = radiation_twins(mode, closed, is_core)
    unique = np.flatnonzero(first == np.arange(first.shape[0]))  # the scenarios computed
    mode_u, closed_u, core_u = take(mode, unique), closed[unique], np.ascontiguousarray(is_core[unique])
    origins = reach_of(network, rows, mode_u, closed_u, core_u)
    n_unique, n = origins.reach.shape
    best_core = np.empty((n_unique, n), dtype=np.int32)
    best_share = np.empty((n_unique, n))
    inflow = np.empty((n_unique, n))
    for k in radiation_groups(mode_u, closed_u, core_u):
        s = int(k[0])
        ends = np.ascontiguousarray(origins.reach[k], dtype=np.int64)
        args = (bool(closed_u[s]), ends, core_u[s], float(mode_u.circuity[s]), float(mode_u.speed_kmh[s]))
        weight, total, best_core[k], best_share[k] = radiation_batch(rows, network.places, *args)
        inflow[k] = batch_inflow(rows, network.places, ends, weight, total)
    back = np.searchsorted(unique, first)  # each scenario's row among the computed ones
    origins = origins._replace(n_reachable=origins.n_reachable[back])
    return _by_destination(origins, best_core[back], best_share[back], inflow[back])


def _gravity_cuda(network: Network, rows: Rows, mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> dict:
    """The gravity passes on the GPU (:mod:`agglo.kernels.cuda`); ``near``: the towns
    whose core the CPU passes might choose otherwise (counted by :func:`_mode_batch`)."""
    import numba

    from agglo.kernels.cuda import BLOCK, gravity_passes

    # Numba's CUDA simulator runs each thread as a Python thread: there, two a block
    block = 2 if numba.config.ENABLE_CUDASIM else BLOCK
    return gravity_passes(rows, network.places, mode, closed, is_core, block=block)


def _pair_inputs(network: Network, one: ScenarioBatch, mode_name: str):
    mode = one.mode(mode_name)
    return mode, core_mask(network.population, network.forced_core, one.core_min_population), network.rows[mode_name]


def _attraction_pairs(network: Network, one: ScenarioBatch, mode_name: str):
    """s_ij = population_j f(t_ij) population_i^(alpha-1) / A_j, A_j from j's incoming row."""
    mode, is_core, rows = _pair_inputs(network, one, mode_name)
    _, log_a = attraction_log_a(network, incoming(network, rows), mode, one.closed, is_core)
    no_row = np.zeros(network.n_towns)
    alpha = float(mode.alpha[0])
    return factor_pair_shares(
        rows, network.places, mode, 0, bool(one.closed[0]), no_row, -log_a[0], alpha - 1.0, -np.inf
    )


def _doubly_pairs(network: Network, one: ScenarioBatch, mode_name: str):
    """s_ij = A_i B_j population_j f(t_ij), the home share A_i B_i population_i f_self."""
    mode, is_core, rows = _pair_inputs(network, one, mode_name)
    _, terms, log_a, log_b, _, _, _ = doubly_factors(network, rows, mode, one.closed, is_core)
    self_log_f = float(terms.self_log_f[0]) if terms.has_self[0] else -np.inf
    return factor_pair_shares(rows, network.places, mode, 0, bool(one.closed[0]), log_a[0], log_b[0], 0.0, self_log_f)


def _radiation_pairs(network: Network, one: ScenarioBatch, mode_name: str):
    mode, is_core, rows = _pair_inputs(network, one, mode_name)
    ends = reach_of(network, rows, mode, one.closed, is_core).reach[0].astype(np.int64)
    return radiate(network, rows, mode, 0, bool(one.closed[0]), ends, is_core[0]), np.zeros(network.n_towns)


@dataclass(frozen=True)
class Model:
    name: str
    passes: Callable  # (network, rows, mode, closed, is_core) -> the batched results
    pairs: Callable | None  # (network, one scenario, mode name) -> (s_ij per pair, home share per town)


MODELS = {
    MODEL_CODES["gravity"]: Model("gravity", _gravity, None),  # pairs: the gravity kernel's own shares
    MODEL_CODES["attraction"]: Model("attraction", _attraction, _attraction_pairs),
    MODEL_CODES["doubly"]: Model("doubly", _doubly, _doubly_pairs),
    MODEL_CODES["radiation"]: Model("radiation", _radiation, _radiation_pairs),
}
MODEL_PASSES = {code: model.passes for code, model in MODELS.items()}
# The GPU front's passes: the gravity model only (other models are refused before a run
# on cuda starts: engine/run.py)
CUDA_PASSES = {MODEL_CODES["gravity"]: _gravity_cuda}
