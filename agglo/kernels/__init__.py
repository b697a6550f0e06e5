"""Numba kernels of agglo: travel time, neighbourhoods, gravity shares, assignment.

Imports NumPy and Numba only. ``shared/MODEL.md`` fixes what every function computes.
"""

from agglo.kernels.assignment import assign_batch
from agglo.kernels.geometry import EARTH_RADIUS_KM, build_neighbourhood, haversine_km, row_lp, row_tables, truncate_rows
from agglo.kernels.gravity import DECAY_CODES, inflow_pass, origin_pass, pair_shares

__all__ = [
    "DECAY_CODES",
    "EARTH_RADIUS_KM",
    "assign_batch",
    "build_neighbourhood",
    "haversine_km",
    "inflow_pass",
    "origin_pass",
    "pair_shares",
    "row_lp",
    "row_tables",
    "truncate_rows",
]
