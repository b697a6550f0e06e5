"""Numba kernels of agglo: NumPy and Numba only; ``docs/model.md`` fixes what each computes.

By concern:

- ``records``: the named tuples the kernels take (places, rows, one mode's parameters).
- ``neighbourhood``: every pair of towns within a radius, as distance-sorted CSR rows.
- ``reach``: great-circle distance, travel time, the reachable prefix of a row.
- ``terms``: deterrence and the gravity term, in float64 and in the float32 base-2 form.
- ``lanes``: a row sum in 32 float64 lanes in a fixed order (SIMD).
- ``batch_sums``: the scenario-innermost loop shape of a row's terms.
- ``cores``: the best reachable core.
- ``origin``, ``inflow``: the two gravity passes; ``doubly``, ``radiation``: the other models.
- ``assignment``: cores, shares and the per-scenario summaries.
- ``pairs``: the float64 kernel-shaped reference (flow export, tests).
- ``fastexp``: a float32 2^x that vectorises; ``jit``: the Numba flags.
"""

from agglo.kernels.assignment import assign_batch
from agglo.kernels.inflow import inflow_pass
from agglo.kernels.neighbourhood import build_neighbourhood, cell_pair_bound
from agglo.kernels.origin import origin_pass
from agglo.kernels.pairs import pair_shares
from agglo.kernels.reach import EARTH_RADIUS_KM, haversine_km
from agglo.kernels.records import ModeParams, Origins, Places, Rows
from agglo.kernels.rows import row_lp, row_tables, truncate_rows
from agglo.kernels.terms import DECAY_CODES

__all__ = [
    "DECAY_CODES",
    "EARTH_RADIUS_KM",
    "ModeParams",
    "Origins",
    "Places",
    "Rows",
    "assign_batch",
    "build_neighbourhood",
    "cell_pair_bound",
    "haversine_km",
    "inflow_pass",
    "origin_pass",
    "pair_shares",
    "row_lp",
    "row_tables",
    "truncate_rows",
]
