"""agglo: small towns clustered into agglomerations by commuting and by freight, over sweeps of scenarios.

``agglo.kernels`` computes (Numba and NumPy only), ``agglo.engine`` loads, configures, plans,
executes and stores, ``agglo.configs`` holds the Hydra YAML, ``agglo.tools`` the command line,
analysis, figures and calibration. :func:`open_results` opens a result cube.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agglo")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"


def open_results(path, check: str = "auto"):
    """Open a result cube as a lazy xarray Dataset; a damaged cube is refused (``check``:
    auto, checksums, presence or none; see :func:`agglo.engine.store.open_results`)."""
    from agglo.engine.store import open_results as _open

    return _open(path, check=check)


__all__ = ["__version__", "open_results"]
