"""agglo: small towns clustered into agglomerations by commuting and by freight, over sweeps of scenarios.

``agglo.kernels`` computes (Numba and NumPy only), ``agglo.engine`` loads, configures, plans,
executes and stores, ``agglo.configs`` holds the Hydra YAML, ``agglo.tools`` the command line,
analysis, figures and calibration. The Python API (:mod:`agglo.api`): :func:`run` a study
and get its cube, :func:`open_results`, :func:`analyze`, :func:`open_analysis`,
:func:`explore`, :func:`plot`, :func:`regions`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agglo")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"


from agglo.api import analyses, analyze, configure, explore, open_analysis, open_results, plot, regions, run  # noqa: E402
from agglo.engine.errors import UserError  # noqa: E402

__all__ = [
    "__version__",
    "run",
    "configure",
    "open_results",
    "open_analysis",
    "analyses",
    "analyze",
    "explore",
    "plot",
    "regions",
    "UserError",
]
