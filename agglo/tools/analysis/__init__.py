"""What users ask of a cube: which keys drive the clusters (``sensitivity``), how robust
each town's membership is (``stability``), which parameter box makes freight cover much
more than commuting (``discovery``). Each works from the Zarr cube, lazily, chunk by chunk.
"""

from agglo.tools.analysis.discovery import prim
from agglo.tools.analysis.sensitivity import analyze_sensitivity, scalar_outputs, scenario_table
from agglo.tools.analysis.stability import adjusted_rand, coassignment, stability

__all__ = [
    "adjusted_rand",
    "analyze_sensitivity",
    "coassignment",
    "prim",
    "scalar_outputs",
    "scenario_table",
    "stability",
]
