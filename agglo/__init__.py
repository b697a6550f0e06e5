"""agglo: small towns clustered into agglomerations by commuting and by freight, over sweeps of scenarios.

``agglo.kernels`` computes (Numba and NumPy only), ``agglo.engine`` configures, loads, plans,
computes, executes and stores, ``agglo.analysis`` holds the statistics of a cube and the
calibration, ``agglo.views`` the tables, figures and the explorer, ``agglo.configs`` the
Hydra YAML. The Python API (:mod:`agglo.api`), which the command line (:mod:`agglo.cli`)
calls: :func:`run` a study and get its cube (:func:`run_store`: its path),
:func:`open_results`, :func:`describe`, :func:`verify`, :func:`analyze`,
:func:`open_analysis`, :func:`explore`, :func:`plot`, :func:`regions`, :func:`flows`,
:func:`times`, :func:`calibrate`, :func:`configure`, :func:`config_text`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agglo")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"


from agglo.api import (  # noqa: E402
    analyses,
    analyze,
    calibrate,
    config_text,
    configure,
    describe,
    explore,
    flows,
    open_analysis,
    open_results,
    plot,
    regions,
    run,
    run_store,
    times,
    verify,
)
from agglo.engine.errors import UserError  # noqa: E402

__all__ = [
    "__version__",
    "run",
    "run_store",
    "configure",
    "config_text",
    "describe",
    "verify",
    "flows",
    "times",
    "calibrate",
    "open_results",
    "open_analysis",
    "analyses",
    "analyze",
    "explore",
    "plot",
    "regions",
    "UserError",
]
