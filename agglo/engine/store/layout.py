"""What a cube holds: its variables (docs/model.md's result names), their coordinates and
attributes, and the template written before any batch (every array, filled by batches)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import numpy as np

from agglo.engine.config.names import MODES
from agglo.engine.data.towns import Towns
from agglo.engine.planning.plan import Plan

if TYPE_CHECKING:
    import xarray as xr

# fmt: off
VARIABLES = {
    # name: (dtype, per town?, units, description)
    "core": (np.int32, True, "1", "index (along town) of the town's core; itself for a core; -1 for none"),
    "share": (np.float32, True, "1", "share s_ij* of the town's trips to its best reachable core; NaN: no core reachable; 1 for a core"),
    "n_reachable": (np.int32, True, "1", "number of towns reachable within the mode's cap, |R_m(i)|"),
    "inflow": (np.float32, True, "persons", "gravity inflow of trips into the town from the towns that reach it"),
    "agglo_population": (np.float64, True, "persons", "for a core: its population plus its members'; 0 for other towns"),
    "coverage": (np.float64, False, "1", "population of non-core towns in an agglomeration / population of all non-core towns"),
    "n_agglomerations": (np.int32, False, "1", "number of cores with at least one member"),
    "ipf_iterations": (np.int32, False, "1", "doubly-constrained model: balancing iterations used; 0 for other models"),
    "ipf_error": (np.float64, False, "1", "doubly-constrained model: largest relative row or column error when balancing stopped; NaN otherwise"),
}
# fmt: on

MODE_TEXT = {
    "commute": "daily commuting: people travel to the core",
    "freight": "freight: semi-finished goods travel to the core's basic enterprise",
}


def _coords(plan: Plan, towns: Towns) -> dict:
    """The cube's coordinates: name -> (dims, values, attributes)."""
    n = len(towns)
    coords: dict = {
        "mode": (
            "mode",
            np.array(MODES, dtype=object),
            {"description": "; ".join(f"{m}: {t}" for m, t in MODE_TEXT.items())},
        ),
        "town": (
            "town",
            np.arange(n, dtype=np.int64),
            {"description": "row of the town table (the index used by 'core')"},
        ),
        "town_id": ("town", towns.town_id, {"description": "unique town key (GeoNames geonameid for GeoNames input)"}),
        "name": ("town", towns.name.astype(object), {"description": "display name"}),
        "lat": ("town", towns.lat, {"units": "degrees_north", "description": "latitude, WGS84"}),
        "lon": ("town", towns.lon, {"units": "degrees_east", "description": "longitude, WGS84"}),
        "population": ("town", towns.population, {"units": "persons", "description": "population"}),
        "region": (
            "town",
            (towns.region if towns.region is not None else np.full(n, "", dtype=object)).astype(object),
            {"description": "first-level division (closed borders act on it)"},
        ),
    }
    if plan.kind == "grid":
        for key in plan.keys:
            values = plan.values[key]
            coords[key] = (key, values, {"description": f"swept configuration key {key}"})
    elif plan.kind in ("sample", "table"):
        dim = plan.dims[0]
        what = f"{plan.sampler['sampler']} sample index" if plan.kind == "sample" else "row of the scenario table"
        coords[dim] = (dim, np.arange(plan.shape[0], dtype=np.int64), {"description": what})
        for key in plan.keys:
            coords[key] = (dim, plan.values[key], {"description": f"configuration key {key} per {dim}"})
    return coords


def _variables(plan: Plan, n: int):
    """Each result variable: name, dtype, dims, shape, chunks, units, description."""
    for name, (dtype, per_town, units, text) in VARIABLES.items():
        tail = ("mode", "town") if per_town else ("mode",)
        sizes = (len(MODES), n) if per_town else (len(MODES),)
        yield name, dtype, plan.dims + tail, plan.shape + sizes, plan.chunks + sizes, units, text


def template(plan: Plan, towns: Towns, attrs: dict) -> xr.Dataset:
    """The cube as xarray would write it: every variable, coordinate and attribute, lazy data.

    ``create`` writes the same metadata without building this (dask is not on a run's path);
    the tests hold the two to the same ``zarr.json`` files.
    """
    import dask.array as da
    import xarray as xr

    data_vars = {
        name: (dims, da.zeros(shape, chunks=chunks, dtype=dtype), {"units": units, "description": text})
        for name, dtype, dims, shape, chunks, units, text in _variables(plan, len(towns))
    }
    return xr.Dataset(data_vars, coords=_coords(plan, towns), attrs=attrs)


# xarray's CF encoding of a NaN fill value, as it stores it in a float variable's attributes
_NAN_FILL = base64.standard_b64encode(np.float64(np.nan).tobytes()).decode()


def write_array(root, name: str, values_or_shape, dims: tuple, attrs: dict, chunks: tuple | None = None) -> None:
    """One array as xarray writes it: strings as zarr ``string``, NaN fill and a CF
    ``_FillValue`` for floats, 0 for integers; coordinates in one chunk."""
    if isinstance(values_or_shape, np.ndarray):
        values = values_or_shape
        if values.dtype.kind in "OUT":
            values = values.astype(str)
        shape, dtype = values.shape, values.dtype
    else:
        values, (shape, dtype) = None, values_or_shape
    floating = np.issubdtype(dtype, np.floating)
    if floating:
        attrs = attrs | {"_FillValue": _NAN_FILL}
    if dtype.kind == "U":
        dtype, fill = str, ""
    else:
        fill = np.nan if floating else 0
    array = root.create_array(
        name,
        shape=shape,
        chunks=chunks or shape,
        dtype=dtype,
        fill_value=fill,
        dimension_names=dims,
        attributes=attrs,
    )
    if values is not None:
        array[...] = values


def template_nodes(plan: Plan, towns: Towns) -> tuple[dict, dict]:
    """The template's arrays, as written: coordinates name -> (dims, values, attributes)
    and variables name -> (dtype, dims, shape, chunks, attributes)."""
    coords = {}
    non_index = {}
    for name, (dims, values, var_attrs) in _coords(plan, towns).items():
        dims = (dims,) if isinstance(dims, str) else tuple(dims)
        coords[name] = (dims, np.asarray(values), var_attrs)
        if dims != (name,):
            non_index[name] = set(dims)
    variables = {}
    for name, dtype, dims, shape, chunks, units, text in _variables(plan, len(towns)):
        var_attrs = {"units": units, "description": text}
        linked = sorted(c for c, c_dims in non_index.items() if c_dims <= set(dims))
        if linked:
            var_attrs["coordinates"] = " ".join(linked)
        variables[name] = (np.dtype(dtype), dims, shape, chunks, var_attrs)
    return coords, variables


def write_node(root, name: str, coords: dict, variables: dict) -> None:
    if name in coords:
        dims, values, var_attrs = coords[name]
        write_array(root, name, values, dims, var_attrs)
    else:
        dtype, dims, shape, chunks, var_attrs = variables[name]
        write_array(root, name, (shape, dtype), dims, var_attrs, chunks)
