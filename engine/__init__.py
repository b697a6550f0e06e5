"""agglo engine: towns, configuration, sweep planning, execution and Zarr result cubes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agglo")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"


def open_results(path):
    """Open a result cube (see :func:`engine.store.open_results`)."""
    from engine.store import open_results as _open

    return _open(path)


__all__ = ["__version__", "open_results"]
