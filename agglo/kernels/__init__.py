"""Numba kernels of agglo: NumPy and Numba only; ``docs/model.md`` fixes what each computes.

By concern:

- ``records``: the named tuples the kernels take (places, rows, one mode's parameters).
- ``neighbourhood``, ``rows``, ``tables``: every pair of towns within a radius as distance-sorted
  CSR rows, what the kernels read per row, and rows from a travel-time table.
- ``reach``: great-circle distance, travel time, the reach radius, the reachable prefix of a row.
- ``gravity/``: the bit-exact gravity web (terms, fastexp, lanes, batch_sums, origin, inflow,
  cores) and its bit contract.
- ``doubly`` (with ``anderson``), ``furness``, ``radiation``: the other models.
- ``assignment``: cores, shares and the per-scenario summaries.
- ``pairs``: the float64 kernel-shaped reference (flow export, tests); ``cuda``: the GPU front.
- ``checksum``: the cube's batch checksums; ``jit``: the Numba flags.
"""

from agglo.kernels.assignment import assign_batch
from agglo.kernels.gravity.inflow import inflow_pass
from agglo.kernels.gravity.origin import origin_pass
from agglo.kernels.gravity.terms import DECAY_CODES
from agglo.kernels.neighbourhood import build_neighbourhood, cell_pair_bound
from agglo.kernels.pairs import pair_shares
from agglo.kernels.reach import EARTH_RADIUS_KM, haversine_km
from agglo.kernels.records import ModeParams, Origins, Places, Rows
from agglo.kernels.rows import row_lp, row_tables, truncate_rows

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
