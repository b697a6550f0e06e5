"""What users ask of a cube: which keys drive the clusters (``sensitivity``), how robust
each town's membership is (``stability``), which parameter box makes freight cover much
more than commuting (``discovery``), what larger units (counties of places) join (``units``).
"""

from agglo.analysis.discovery import prim
from agglo.analysis.sensitivity import analyze_sensitivity, scalar_outputs, scenario_table
from agglo.analysis.stability import adjusted_rand, coassignment, stability
from agglo.analysis.units import aggregate_units

__all__ = [
    "adjusted_rand",
    "aggregate_units",
    "analyze_sensitivity",
    "coassignment",
    "prim",
    "scalar_outputs",
    "scenario_table",
    "stability",
]
