"""The Python API: run a study, open its cube and analyses, analyse and explore, from a
notebook or a script. The command line (``agglo.cli``) calls the same functions.

>>> import agglo                                                        # doctest: +SKIP
>>> ds = agglo.run({"data.country": "PL", "data.admin1": ["77"],        # doctest: +SKIP
...                 "commute.cap_min": [30, 45, 60]})
>>> ds.coverage.sel(mode="commute")                                     # doctest: +SKIP

Settings are configuration keys (``agglo config`` prints them all), dotted or nested; a
list for a key that can be swept sweeps it (``"commute.cap_min": [30, 60]``), one value
sets it (and replaces the experiment's sweep of that key). Every command of ``agglo`` is
a function here (``agglo calibrate``: :func:`agglo.analysis.calibrate.calibrate_command`). Errors are
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


def configure(
    settings: dict | None = None,
    overrides: list[str] | tuple = (),
    experiment: str | None = None,
    params: list[str] | tuple = (),
):
    """The checked configuration (``AggloConfig``, OmegaConf form) of these settings;
    ``params``: override files (YAML, e.g. from :func:`calibrate`), which the settings and
    overrides override."""
    from agglo.engine.config.compose import resolve
    from agglo.engine.config.params import with_params

    head = [f"experiment={experiment}"] if experiment else []
    return resolve(with_params(list(params), [*head, *overrides_of(settings), *overrides]))


def config_text(settings: dict | None = None, overrides=(), experiment: str | None = None, params=()) -> str:
    """The resolved configuration as YAML (what ``agglo config`` prints)."""
    from agglo.engine.config.text import to_yaml

    return to_yaml(configure(settings, overrides, experiment, params)[1])


def run_store(
    settings: dict | None = None,
    overrides: list[str] | tuple = (),
    *,
    experiment: str | None = None,
    params: list[str] | tuple = (),
    quiet: bool = True,
) -> str:
    """Run a study (or finish a stopped one), as :func:`run`; returns the cube's path."""
    from agglo.engine.executors.interrupts import deferred
    from agglo.engine.run import execute

    with deferred():  # Ctrl-C acts between steps and batches (see engine/executors/interrupts.py)
        cfg, _ = configure(settings, overrides, experiment, params)
        return execute(cfg, quiet=quiet).path


def run(
    settings: dict | None = None,
    overrides: list[str] | tuple = (),
    *,
    experiment: str | None = None,
    params: list[str] | tuple = (),
    quiet: bool = True,
) -> xr.Dataset:
    """Run a study (or finish a stopped one) and return its cube as a lazy xarray Dataset.

    ``settings``: configuration keys and values (see the module's docstring); ``overrides``:
    override strings as on the command line (``"commute.cap_min=30,60"``); ``experiment``: a
    packaged study (``oaxaca``, ``ural``, ``mexico``, ...); ``params``: override files. Any
    executor works (``{"executor.kind": "local"}``); the default runs in this process and
    starts a local cluster only for a long sweep. Safe to call from a script without an
    ``if __name__ == "__main__":`` guard: the cluster's workers never run the script.
    """
    from agglo.engine.store.reading import open_results as _open

    path = run_store(settings, overrides, experiment=experiment, params=params, quiet=quiet)
    return _open(path, check="presence")  # the run has just checked or written it all


def open_results(path: str, check: str = "auto", dask: bool = True) -> xr.Dataset:
    """A result cube as a lazy xarray Dataset; a damaged cube is refused (``check``: auto,
    checksums, presence or none; see :func:`agglo.engine.store.reading.open_results`);
    ``dask=False``: each variable read whole when first used, without Dask."""
    from agglo.engine.store.cube import cube_path
    from agglo.engine.store.reading import open_results as _open

    return _open(cube_path(path), dask=dask, check=check)


def describe(path: str) -> str:
    """The cube's engine and input, dimensions, what is written, its writer lease and its
    summary table (what ``agglo info`` prints)."""
    from agglo.views.summary import describe_cube

    return describe_cube(path)


def verify(path: str) -> tuple[bool, str]:
    """(whether the cube is whole, the report): every array as written, every written
    batch's chunks there and matching their checksums (what ``agglo verify`` prints)."""
    from agglo.engine.store.reading import verify as _verify

    return _verify(path)


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

    if discover is not None and not 0 <= discover <= 1:
        raise UserError(f"--discover {discover}: a coverage gap; allowed: a number from 0 to 1")
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


def plot(path: str, out: str, select: dict | None = None, x: str | None = None, y: str | None = None) -> list[str]:
    """Write the cube's figures (maps, heat map, curves) into the folder ``out``; ``x``, ``y``:
    the swept keys on the heat map's axes."""
    from agglo.analysis.report import plot_store

    return plot_store(path, {k: str(v) for k, v in (select or {}).items()}, out, x, y)


def flows(settings: dict | None = None, overrides=(), *, out: str, to_cores: bool = False, experiment=None):
    """Write one scenario's origin-destination table (``out``: .parquet or .csv, never an
    existing file): origin, destination, mode, travel_min, share, flow. Returns (out, rows)."""
    from agglo.engine.compute.flows import export

    head = [f"experiment={experiment}"] if experiment else []
    return export([*head, *overrides_of(settings), *overrides], out, to_cores)


def times(
    settings: dict | None = None, overrides=(), *, out: str, mode: str = "freight", cap_min=None, experiment=None
):
    """Write the built-in travel times of ``mode`` as a travel-time table (docs/traveltimes.md),
    the pairs within ``cap_min`` (default: the mode's cap). Returns (out, pairs, cap)."""
    from agglo.engine.data.times import export

    head = [f"experiment={experiment}"] if experiment else []
    return export([*head, *overrides_of(settings), *overrides], mode, out, cap_min)


def calibrate(
    flows: str,
    towns: str,
    *,
    model: str | None = None,
    decay: str = "power",
    cost: str = "minutes",
    mode: str = "commute",
    pairs: str = "all",
    overrides=(),
    out: str | None = None,
    overwrite: bool = False,
    places: str | None = None,
    near_km: float = 150.0,
    curve: str | None = None,
):
    """Fit the gravity parameters of ``mode`` to observed flows (``flows``: origin,
    destination, flow by town_id; ``towns``: their table) by Poisson regression; ``out``: also
    write the fitted values as an override file for ``run(params=[out])`` (an existing file
    only with ``overwrite``). ``model``: production unless given. ``places``: ``towns`` are
    zones (counties, municipalities) and this town table, with a ``zone`` column, lists the
    towns in them: the doubly-constrained model is fitted between the zones' towns
    (:func:`agglo.analysis.observed.place_weighted_files`), so beta and the self time are a
    town's (docs/flows.md, "Calibration"); ``curve`` (with ``places``): bin edges in minutes,
    "0,15,30,60", for the deterrence measured between the towns, a value per bin, beside the
    power law (:func:`agglo.analysis.observed.place_curve`). Returns (the fit, the report ``agglo calibrate``
    prints)."""
    import os

    from agglo.analysis import calibrate as fitting
    from agglo.analysis.observed import calibrate_files
    from agglo.engine.data.towns import load_table
    from agglo.engine.store.outputs import check_new_file, writing

    if curve is not None and places is None:
        raise UserError(
            f"--curve = {curve!r} without --places; allowed: --curve with --places (measured between towns)"
        )
    if out and not (overwrite and os.path.isfile(out)):
        check_new_file("--out", out)
    cfg, _ = configure(overrides=overrides)
    settings = cfg.mode(mode)
    if places is not None:
        choices = (model, decay, cost, pairs, curve)
        fit, lines, yaml = _calibrate_places(flows, towns, places, choices, mode, settings, near_km)
    else:
        fit, seen = calibrate_files(
            flows, load_table(towns), model or "production", decay, cost, settings.speed_kmh, settings.circuity, pairs
        )
        lines, yaml = [seen, fitting.report(fit, mode)], fitting.to_yaml(fit, mode, cost, flows)
    if out:
        with writing(f"--out {out!r}"), open(out, "w" if overwrite else "x", encoding="utf-8") as fh:
            fh.write(yaml)
        lines.append(f"-> {out} (use: agglo run --params {out} ...)")
    return fit, "\n".join(lines)


def _calibrate_places(flows, towns, places, choices, mode, settings, near_km):
    """``calibrate(places=...)``: the fit, the report's lines and the override file's text."""
    from agglo.analysis.observed import parse_edges, place_curve, place_report, place_weighted_files, place_yaml
    from agglo.engine.data.towns import load_table
    from agglo.engine.errors import UserError

    model, decay, cost, pairs, curve = choices
    for key, value, allowed in (("--model", model, (None, "doubly")), ("--cost", cost, ("minutes",)),
                                ("--pairs", pairs, ("all",))):  # fmt: skip
        if value not in allowed:
            raise UserError(
                f"{key} = {value!r} with --places; allowed: {' or '.join(str(a) for a in allowed if a)} "
                "(the fit between the zones' towns is the doubly-constrained model on minutes, every pair)"
            )
    if not (near_km > 0):
        raise UserError(f"--near-km = {near_km!r}; allowed: a number of km > 0")
    edges = None if curve is None else parse_edges(curve)
    fit, common, seen, zones = place_weighted_files(flows, load_table(towns), places, decay, settings, near_km)
    lines = [seen, place_report(fit, common, mode)] + ([] if edges is None else [place_curve(fit, zones, edges)])
    return fit, lines, place_yaml(fit, common, mode, flows)
