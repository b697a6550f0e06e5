"""Every neighbourhood pair of one scenario and mode, in float64 from exact travel times:
the origin-destination table behind ``agglo flows`` and the kernel-shaped checks."""

from __future__ import annotations

import numpy as np

from agglo.engine.compute.batch import attraction_log_a, radiate, reach_of
from agglo.engine.network.build import Network
from agglo.engine.planning.scenarios import MODEL_CODES, ScenarioBatch, core_mask
from agglo.kernels import pair_shares
from agglo.kernels.doubly import doubly_ipf
from agglo.kernels.terms import log_deterrence_pairs, mode_terms


def _model_pair_shares(network: Network, one: ScenarioBatch, mode_name: str, origin, travel, reachable):
    """s_ij per pair for the attraction, doubly and radiation models (float64, exact times)."""
    mode = one.mode(mode_name)
    is_core = core_mask(network.population, network.forced_core, one.core_min_population)
    rows = network.rows[mode_name]
    dest = rows.neighbour.astype(np.int64)
    with np.errstate(divide="ignore", over="ignore"):
        log_f = log_deterrence_pairs(travel, int(mode.decay[0]), float(mode.beta[0]), float(mode.min_time_min[0]))
    lp = network.places.log_pop
    home = np.zeros(network.n_towns)
    model = int(mode.model[0])
    if model == MODEL_CODES["attraction"]:
        _, log_a = attraction_log_a(network, rows, mode, one.closed, is_core)
        alpha = float(mode.alpha[0])
        share = np.where(reachable, np.exp(lp[dest] + (alpha - 1.0) * lp[origin] + log_f - log_a[0][dest]), 0.0)
        return share, home
    ends = reach_of(network, rows, mode, one.closed, is_core).reach[0].astype(np.int64)
    if model == MODEL_CODES["doubly"]:
        balance = doubly_ipf(rows, network.places, mode_terms(mode, mode.gamma, one.closed), 0, ends)
        a, b = balance.a, balance.b
        share = np.where(reachable, a[origin] * b[dest] * network.population[dest] * np.exp(log_f), 0.0)
        home = a * b * network.population * balance.self_f
        return share, home
    share = radiate(network, rows, mode, 0, bool(one.closed[0]), ends, is_core[0])
    return share, home


def scenario_pairs(network: Network, batch: ScenarioBatch, mode_name: str, scenario: int = 0) -> dict:
    """origin, destination, travel_min, share, flow, reachable per pair; home_share per town."""
    one = batch.take(slice(scenario, scenario + 1))
    mode = one.mode(mode_name)
    closed = bool(one.closed[0])
    rows = network.rows[mode_name]
    share, travel, home = pair_shares(rows, network.places, mode, 0, closed)
    origin = np.repeat(np.arange(network.n_towns, dtype=np.int64), np.diff(rows.offsets))
    reachable = travel <= mode.cap_min[0]
    if closed:
        reachable &= network.places.region[origin] == network.places.region[rows.neighbour]
    if int(mode.model[0]) != MODEL_CODES["gravity"]:
        share, home = _model_pair_shares(network, one, mode_name, origin, travel, reachable)
    return {
        "origin": origin,
        "destination": rows.neighbour.astype(np.int64),
        "travel_min": travel,
        "share": share,
        "flow": network.population[origin] * share,
        "reachable": reachable,
        "home_share": home,
    }
