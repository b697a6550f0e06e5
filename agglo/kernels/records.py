"""The typed records the kernels take: named tuples of arrays, which Numba passes as structs.

A pass reads a few of these instead of a long list of positional arrays:

- :class:`Places`: the towns, per town (docs/model.md's ``population``, ``lat``, ``lon``,
  ``region`` as an integer code) and what the passes derive from them once.
- :class:`Rows`: one neighbourhood in CSR, rows sorted by distance (ties by index), with
  the per-row tables the passes search. Rows of a travel-time table (docs/model.md,
  "Travel-time tables") have the same layout in minutes instead of km: ``log_dist`` holds
  log minutes, ``minutes`` the table's own values, and the mode's ``circuity`` carries the
  table's ``time_factor`` with ``speed_kmh`` 60, so that every km formula reads minutes.
- :class:`ModeParams`: one mode's parameters, one value per scenario, under docs/model.md's
  names (``decay`` and ``model`` as integer codes, ``self_time_min`` NaN for "no self term").
- :class:`Origins`: what the origin pass leaves for the inflow pass and the assignment.
"""

from typing import NamedTuple

import numpy as np


class Places(NamedTuple):
    population: np.ndarray  # (N,) float64
    log_pop: np.ndarray  # (N,) float64, log population
    lat: np.ndarray  # (N,) float64, degrees
    lon: np.ndarray  # (N,) float64, degrees
    region: np.ndarray  # (N,) int, first-level region code
    lp_max: np.ndarray  # (N,) float64, largest log destination mass of the town and its neighbours
    log_mass: np.ndarray  # (N,) float64, log destination mass: the table's mass column, else log_pop


class Rows(NamedTuple):
    offsets: np.ndarray  # (N+1,) int64: the neighbours of i are positions offsets[i]:offsets[i+1]
    neighbour: np.ndarray  # (P,) int32, town index
    log_dist: np.ndarray  # (P,) float32, log km (-inf for a repeated place)
    lp_rel: np.ndarray  # (P,) float32, log destination mass of the neighbour minus the row's lp_max
    radius_km: float  # every pair within this distance is a row entry
    longest: int  # the largest row length (scratch size)
    bucket: np.ndarray  # (N, 33) int32: first row position beyond radius_km * sqrt(k / 32)
    cand_offsets: np.ndarray  # (N+1,) int64: CSR of the neighbours that may be cores
    cand_pos: np.ndarray  # row position of each candidate core (ascending)
    cand_town: np.ndarray  # its town index
    cand_logd: np.ndarray  # its float64 log km
    cand_d: np.ndarray  # its float64 km
    chunks: np.ndarray  # town ranges of about equal pair count (the parallel work units)
    order: np.ndarray  # (N,) int64: the towns in a spatial order
    order_chunks: np.ndarray  # ranges of positions in that order, of about equal pair count
    neighbour_rank: np.ndarray  # (P,) int32: each pair's neighbour by its position in the order
    minutes: (
        np.ndarray
    )  # (P,) float64 minutes of a travel-time table's pair (log_dist is then their log); empty for km rows


class ModeParams(NamedTuple):
    model: np.ndarray  # (S,) int8, MODEL_CODES
    decay: np.ndarray  # (S,) int8, DECAY_CODES
    speed_kmh: np.ndarray  # (S,) float64 (60 on a travel-time table)
    circuity: np.ndarray  # (S,) float64 (the time_factor on a travel-time table)
    cap_min: np.ndarray
    beta: np.ndarray
    alpha: np.ndarray
    gamma: np.ndarray
    threshold: np.ndarray
    self_time_min: np.ndarray  # NaN: no self term
    min_time_min: np.ndarray


class Origins(NamedTuple):
    n_reachable: np.ndarray  # (S, N) int32, |R(i)|
    reach: np.ndarray  # (S, N) int32, length of the reachable prefix of row i (> n_reachable under closed borders)
    shift: np.ndarray  # (S, N) float64, natural log-weight that the row's terms are relative to
    denominator: np.ndarray  # (S, N) float64, Σ exp(lw - shift) with the self term; 0 when nothing
    best_core: np.ndarray  # (S, N) int32, -1 when no core is reachable
    best_weight: np.ndarray  # (S, N) float64, exp(lw - shift) of that core


def take(params: ModeParams, index) -> ModeParams:
    """The scenarios ``index`` of ``params`` (a slice or an integer array)."""
    return ModeParams(*(np.ascontiguousarray(field[index]) for field in params))
