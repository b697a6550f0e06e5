"""Every neighbourhood pair of one scenario and mode, in float64 from exact travel times:
the origin-destination table behind ``agglo flows`` and the kernel-shaped checks."""

from __future__ import annotations

import numpy as np

from agglo.engine.compute.models import MODELS
from agglo.engine.network.build import Network
from agglo.engine.planning.scenarios import ScenarioBatch
from agglo.kernels import pair_shares


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
    model = MODELS[int(mode.model[0])]
    if model.pairs is not None:  # gravity's are the kernel's own
        share, home = model.pairs(network, one, mode_name)
    return {
        "origin": origin,
        "destination": rows.neighbour.astype(np.int64),
        "travel_min": travel,
        "share": share,
        "flow": network.population[origin] * share,
        "reachable": reachable,
        "home_share": home,
    }
