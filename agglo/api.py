"""The Python API: run a study, open its cube and analyses, analyse and explore, from a
notebook or a script. The command line (``agglo.cli``) calls the same functions.

>>> import agglo                                                        # doctest: +SKIP
>>> ds = agglo.run({"data.country": "PL", "data.admin1": ["77"],        # doctest: +SKIP
...                 "commute.cap_min": [30, 45, 60]})
>>> ds.coverage.sel(mode="commute")                                     # doctest: +SKIP

Settings are configuration keys (``agglo config`` prints them all), dotted or nested; a
list for a key that can be swept sweeps it (``"commute.cap_min": [30, 60]``), one value
sets it (and replaces the experiment's sweep of that key). Errors are
:class:`agglo.UserError` with the same one-line message the command line prints.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agglo.engine.errors import UserError

if TYPE_CHECKING:
    import xarray as xr

LIST_KEYS = ("data.admin1", "cores.ids")  # keys whose one value is itself a list


def _text(value: Any) -> str:
    """``value`` in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_text(v)}" for k, v in value.items()) + "}"
    return _text(str(value))


def _flat(settings: dict, prefix: str = "") -> dict:
    """Nested settings as dotted keys (``{"commute": {"cap_min": 60}}`` -> ``commute.cap_min``);
    the maps of ``sweep.grid`` and ``sweep.bounds`` stay maps."""
    out = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in ("sweep.grid", "sweep.bounds"):
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def overrides_of(settings: dict | None) -> list[str]:
    """Settings as override strings: a list for a sweepable key sweeps it, anything else sets it."""
    from agglo.engine.config.schema import SWEEPABLE

    out = []
    for key, value in _flat(settings or {}).items():
        if isinstance(value, (list, tuple)) and key in SWEEPABLE:
            if not value:
                raise UserError(f"{key} = []: no values; allowed: one value or a non-empty list to sweep")
            out.append(f"{key}=" + ",".join(_text(v) for v in value))
        elif isinstance(value, (list, tuple)) and key not in LIST_KEYS and not key.startswith("sweep."):
            raise UserError(f"{key} = {json.dumps(list(value))}: '{key}' cannot be swept; allowed: one value")
        else:
            out.append(f"{key}={_text(value)}")
    return out


def configure(settings: dict | None = None, overrides: list[str] | tuple = (), experiment: str | None = None):
    """The checked configuration (``AggloConfig``, OmegaConf form) of these settings."""
    from agglo.engine.config.compose import resolve

    head = [f"experiment={experiment}"] if experiment else []
    return resolve([*head, *overrides_of(settings), *overrides])


def run(
    settings: dict | None = None,
    overrides: list[str] | tuple = (),
    *,
    experiment: str | None = None,
    quiet: bool = True,
) -> xr.Dataset:
    """Run a study (or finish a stopped one) and return its cube as a lazy xarray Dataset.

    ``settings``: configuration keys and values (see the module's docstring); ``overrides``:
    override strings as on the command line (``"commute.cap_min=30,60"``); ``experiment``: a
    packaged study (``oaxaca``, ``ural``, ``mexico``, ...). Any executor works
    (``{"executor.kind": "local"}``); the default runs in this process and starts a local
    cluster only for a long sweep. Safe to call from a script without an
    ``if __name__ == "__main__":`` guard: the cluster's workers never run the script.
    """
    from agglo.engine.executors.interrupts import deferred
    from agglo.engine.run import execute
    from agglo.engine.store.reading import open_results as _open

    cfg, _ = configure(settings, overrides, experiment)
    with deferred():
        outcome = execute(cfg, quiet=quiet)
    return _open(outcome.path, check="presence")  # the run has just checked or written it all


def open_results(path: str, check: str = "auto") -> xr.Dataset:
    """A result cube as a lazy xarray Dataset; a damaged cube is refused (``check``: auto,
    checksums, presence or none; see :func:`agglo.engine.store.reading.open_results`)."""
    from agglo.engine.store.cube import cube_path
    from agglo.engine.store.reading import open_results as _open

    return _open(cube_path(path), check=check)


def open_analysis(path: str, name: str) -> xr.Dataset:
    """An analysis group that ``agglo analyze`` wrote into the cube (``sensitivity``,
    ``stability``, ...), loaded."""
    from agglo.analysis.report import GROUP, read_group
    from agglo.engine.store.cube import cube_path

    path = cube_path(path)
    try:
        return read_group(path, name)
    except (KeyError, FileNotFoundError, ValueError):
        raise UserError(
            f"{path}: no analysis group {name!r}; allowed: {', '.join(analyses(path)) or 'none yet'} "
            f"(written by agglo.analyze or 'agglo analyze' under {GROUP}/)"
        ) from None


def analyses(path: str) -> list[str]:
    """The analysis groups the cube holds."""
    import zarr

    from agglo.analysis.report import GROUP

    try:
        group = zarr.open_group(path, path=GROUP, mode="r", use_consolidated=False)
    except Exception:  # noqa: BLE001 - no analysis yet
        return []
    return sorted(name for name, _ in group.groups())


def analyze(
    path: str,
    towns: str | None = None,
    region: str | None = None,
    ari: tuple | None = None,
    discover: float | None = None,
) -> str:
    """Sensitivity, stability and, on request, co-assignment (``towns``, ``region``), an
    adjusted Rand index between two scenarios (``ari``) and scenario discovery
    (``discover``: a coverage gap); written into the cube's ``analysis/`` groups (see
    :func:`open_analysis`). Returns the report that ``agglo analyze`` prints."""
    from agglo.analysis.report import analyze_store

    return analyze_store(path, towns, region, ari, discover)


def explore(path: str, out: str, select: dict | None = None, max_mb: float = 40.0) -> str:
    """Write the cube's interactive page (one self-contained HTML file) to ``out``."""
    from agglo.views.explore import explore_store

    return explore_store(path, out, {k: str(v) for k, v in (select or {}).items()}, max_mb)


def regions(country: str, min_population: float = 500.0):
    """The first-level divisions of a country that ``data.admin1`` takes (a pandas
    DataFrame: admin1 code -> largest town, towns, population)."""
    from agglo.engine.data.towns import regions as _regions

    return _regions(country, min_population)


def plot(path: str, out: str, select: dict | None = None) -> list[str]:
    """Write the cube's figures (maps, heat map, curves) into the folder ``out``."""
    from agglo.analysis.report import plot_store

    return plot_store(path, {k: str(v) for k, v in (select or {}).items()}, out)
