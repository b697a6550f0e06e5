"""Which scenarios of a batch share work: one key per scenario, made of the bytes of what
its results (or one pass of a model) depend on, so that NaN (no self term) equals NaN.
Scenarios with equal keys get the same bits: every pass is independent of the other
scenarios of its batch."""

from __future__ import annotations

import numpy as np

from agglo.kernels import ModeParams

# What one doubly-constrained balance shares (caps may differ: it runs them in lockstep).
DOUBLY_FIELDS = ("decay", "beta", "min_time_min", "self_time_min", "circuity", "speed_kmh")
# What one radiation pass shares (caps may differ), and what its results depend on.
RADIATION_PASS_FIELDS = ("circuity", "speed_kmh")
RADIATION_FIELDS = ("cap_min", "circuity", "speed_kmh")


def scenario_keys(mode: ModeParams, closed: np.ndarray, is_core: np.ndarray | None = None, fields=None) -> list:
    """Per scenario: the borders, the cores (unless None) and the mode's ``fields`` (all by
    default), as bytes."""
    arrays = [np.ascontiguousarray(getattr(mode, f)) for f in (fields or ModeParams._fields)]
    return [
        (bool(closed[s]), *(() if is_core is None else (is_core[s].tobytes(),)), *(a[s].tobytes() for a in arrays))
        for s in range(closed.shape[0])
    ]


def scenario_groups(keys) -> list[np.ndarray]:
    """The scenarios (indices) with equal keys, one array per key in order of first appearance."""
    groups: dict = {}
    for s, key in enumerate(keys):
        groups.setdefault(key, []).append(s)
    return [np.array(g, dtype=np.int64) for g in groups.values()]


def first_of(keys) -> np.ndarray:
    """For each scenario, the first scenario with an equal key."""
    first: dict = {}
    return np.array([first.setdefault(key, s) for s, key in enumerate(keys)], dtype=np.int64)


def mode_keys(mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> list:
    """Everything a scenario's results in this mode depend on besides the network."""
    return scenario_keys(mode, closed, is_core)


def doubly_groups(mode: ModeParams, closed: np.ndarray) -> list[np.ndarray]:
    """The scenarios that one :func:`~agglo.kernels.doubly.balance_group` balances in lockstep."""
    return scenario_groups(scenario_keys(mode, closed, fields=DOUBLY_FIELDS))


def radiation_twins(mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> np.ndarray:
    """For each scenario, the first with the same radiation results: the model is
    parameter-free, so its shares depend only on the reach and the cores (scenarios that
    differ only in beta, gamma, alpha, threshold, ... share one pass)."""
    return first_of(scenario_keys(mode, closed, is_core, RADIATION_FIELDS))


def radiation_groups(mode: ModeParams, closed: np.ndarray, is_core: np.ndarray) -> list[np.ndarray]:
    """The scenarios that one :func:`~agglo.kernels.radiation.radiation_batch` pass serves."""
    return scenario_groups(scenario_keys(mode, closed, is_core, RADIATION_PASS_FIELDS))
